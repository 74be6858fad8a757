"""LazyConfig helpers: strict command-line overrides and access to the packaged common configs."""
import difflib
import os
from typing import Sequence

from detectron2.config import LazyConfig
from omegaconf import OmegaConf

__all__ = ["apply_overrides_strict", "get_config", "get_config_path"]

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
