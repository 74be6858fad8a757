"""Capture named module outputs of a model for one forward pass.

In the spirit of mmrazor's recorders: a :class:`FeatureRecorder` is attached to a model
once; it stores outputs only inside a ``with recorder.record() as records:`` block, so
nothing is kept between iterations (no buffers, nothing in ``state_dict``), and
:meth:`FeatureRecorder.remove` detaches every hook.
"""
import contextlib
import difflib
from typing import Dict, Iterator, List, Sequence

from torch import nn

__all__ = ["FeatureRecorder"]


class FeatureRecorder:
    """Records the outputs of submodules, addressed by their dotted names.

    Example::

        rec = FeatureRecorder(model, ["backbone.bottom_up.res5", "backbone"])
        with rec.record() as feats:
            model(inputs)
        feats["backbone.bottom_up.res5"]  # the output of that module in this forward

    A module called more than once in a forward keeps its last output.
    """

    def __init__(self, model: nn.Module, names: Sequence[str]):
        self.names: List[str] = list(dict.fromkeys(names))
        modules = dict(model.named_modules())
        missing = [n for n in self.names if n not in modules]
        if missing:
            hints = {n: difflib.get_close_matches(n, modules.keys(), n=3) for n in missing}
            raise KeyError(
                "FeatureRecorder: no module named "
                + ", ".join(f"'{n}' (close: {hints[n]})" for n in missing)
                + f" in {type(model).__name__}."
            )
        self._active: Dict[str, object] = None
        self._handles = [modules[n].register_forward_hook(self._make_hook(n)) for n in self.names]

    def _make_hook(self, name):
        def hook(module, inputs, output):
            if self._active is not None:
                self._active[name] = output

        return hook

    @contextlib.contextmanager
    def record(self) -> Iterator[Dict[str, object]]:
        """Record outputs during the block; yields the dict being filled."""
        if self._active is not None:
            raise RuntimeError("FeatureRecorder.record() is not re-entrant.")
        records: Dict[str, object] = {}
        self._active = records
        try:
            yield records
        finally:
            self._active = None
        missing = [n for n in self.names if n not in records]
        if missing:
            raise RuntimeError(f"FeatureRecorder: modules {missing} did not run in the recorded forward.")

    def remove(self) -> None:
        """Detach all hooks from the model."""
        for h in self._handles:
            h.remove()
        self._handles = []
