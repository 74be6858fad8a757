"""LazyConfig helpers: strict command-line overrides and access to the packaged common configs."""
import difflib
import enum
import inspect
import os
from typing import List, Optional, Sequence

from detectron2.config import LazyConfig
from omegaconf import OmegaConf

__all__ = ["apply_overrides_strict", "constructor_defaults", "get_config", "get_config_path"]

_CONFIG_ROOT = os.path.join(os.path.dirname(__file__), "configs")


def get_config_path(relative: str) -> str:
    """Absolute path of a packaged config, e.g. ``get_config_path("common/train.py")``."""
    path = os.path.join(_CONFIG_ROOT, relative)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No packaged config '{relative}' under {_CONFIG_ROOT}.")
    return path


def get_config(relative: str):
    """Load a packaged config (like detectron2's ``model_zoo.get_config``)."""
    return LazyConfig.load(get_config_path(relative))


def _all_keys(cfg, prefix=""):
    keys = []
    for k in cfg.keys():
        full = f"{prefix}{k}"
        keys.append(full)
        v = cfg[k]
        if OmegaConf.is_dict(v):
            keys.extend(_all_keys(v, full + "."))
    return keys


def apply_overrides_strict(cfg, overrides: Sequence[str]):
    """Apply ``key=value`` overrides, refusing keys that do not exist in ``cfg``.

    Detectron2's ``LazyConfig.apply_overrides`` silently creates unknown keys, so a typo
    (``train.max_iters=10``) would be ignored. Here an unknown key raises ``KeyError`` with
    the closest existing keys; prefix a key with ``+`` to add a new one on purpose
    (``+model.student.foo=1``).
    """
    plain = []
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"Override '{item}' is not of the form key=value.")
        key, value = item.split("=", 1)
        if key.startswith("+"):
            plain.append(f"{key[1:]}={value}")
            continue
        if OmegaConf.select(cfg, key, default=_MISSING) is _MISSING:
            # select returns None for keys set to None; distinguish missing keys by walking parents.
            parent, _, leaf = key.rpartition(".")
            node = OmegaConf.select(cfg, parent) if parent else cfg
            if not OmegaConf.is_dict(node) or leaf not in node:
                close = difflib.get_close_matches(key, _all_keys(cfg), n=3, cutoff=0.6)
                hint = f" Did you mean: {', '.join(close)}?" if close else ""
                raise KeyError(f"Unknown config key '{key}' in override '{item}'.{hint} (Use '+{key}=...' to add a new key.)")
        plain.append(item)
    return LazyConfig.apply_overrides(cfg, plain)


_MISSING = object()


def _canonical(value) -> str:
    """A repr of a default argument that is the same in every process: plain values as such,
    functions and classes by their qualified name, other objects by their type only (their repr
    may hold a memory address)."""
    if value is None or isinstance(value, (bool, int, float, str, bytes)):
        return repr(value)
    if isinstance(value, enum.Enum):
        return f"{type(value).__qualname__}.{value.name}"
    if isinstance(value, (list, tuple, set, frozenset)):
        items = [_canonical(v) for v in value]
        return f"{type(value).__name__}({', '.join(sorted(items) if isinstance(value, (set, frozenset)) else items)})"
    if isinstance(value, dict):
        return "dict(" + ", ".join(sorted(f"{_canonical(k)}: {_canonical(v)}" for k, v in value.items())) + ")"
    if hasattr(value, "__qualname__") and hasattr(value, "__module__"):
        return f"{value.__module__}.{value.__qualname__}"
    return f"<{type(value).__module__}.{type(value).__qualname__}>"


def _defined_under(obj, roots: Sequence[str]) -> bool:
    """Whether ``obj`` (a class or function) is defined in a file under one of ``roots``."""
    try:
        path = os.path.abspath(inspect.getsourcefile(inspect.unwrap(obj)) or "")
    except TypeError:  # built-in
        return False
    return any(path.startswith(os.path.abspath(root) + os.sep) for root in roots)


def constructor_defaults(cfg, roots: Optional[Sequence[str]] = None) -> List[str]:
    """The arguments that ``instantiate(cfg)`` would leave at their defaults, one line per argument.

    For every ``LazyCall`` node of ``cfg`` (a dict with ``_target_``, at any depth), each parameter
    of the target's signature that has a default and that the node does not set gives
    ``"<key path>: <module>.<target>.<name>=<default>"`` (see ``_canonical`` for how defaults are
    written). A config's own values say only what it sets; these lines say what else its objects
    are built with, so that a digest of both changes when a constructor default does. Targets that
    cannot be imported or inspected give one line saying so. Defaults of objects that a
    constructor builds itself, without a config node, are not covered.

    roots: only targets defined in files under these folders (e.g. the repository: its own
    classes, not PyTorch's or Detectron2's, whose defaults change with the installed version);
    targets that cannot be imported are then left out too. None: every target."""
    from detectron2.utils.registry import locate

    lines: List[str] = []

    def walk(node, path: str) -> None:
        if OmegaConf.is_list(node) or isinstance(node, (list, tuple)):
            for i, v in enumerate(node):
                walk(v, f"{path}.{i}" if path else str(i))
            return
        if not (OmegaConf.is_dict(node) or isinstance(node, dict)):
            return
        keys = list(node.keys())
        if "_target_" in keys:
            target = node["_target_"]
            name = target if isinstance(target, str) else f"{getattr(target, '__module__', '?')}.{getattr(target, '__qualname__', repr(target))}"
            try:
                obj = locate(target) if isinstance(target, str) else target
                params = inspect.signature(obj).parameters.values()
                if roots is not None and not _defined_under(obj, roots):
                    params = ()
            except Exception as e:  # noqa: BLE001 (a digest must not fail on an odd target)
                if roots is None:
                    lines.append(f"{path or '<root>'}: {name} (signature not available: {type(e).__name__})")
                params = ()
            for p in params:
                if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) or p.default is p.empty or p.name in keys:
                    continue
                lines.append(f"{path or '<root>'}: {name}.{p.name}={_canonical(p.default)}")
        for k in keys:
            if k == "_target_":
                continue
            try:
                value = node[k]
            except Exception:  # noqa: BLE001 (a missing "???" value or an unresolvable interpolation: nothing to walk)
                continue
            walk(value, f"{path}.{k}" if path else str(k))

    walk(cfg, "")
    return lines
