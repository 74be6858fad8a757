"""A DetectionCheckpointer that refuses class heads of the wrong size and resuming from another
model's checkpoint, the checkpointer of a (distillation) model with its extra checkpointables, and one
that loads a student network alone from a distillation checkpoint (--eval-only)."""
from typing import Dict, List, Mapping, Optional, Sequence

from detectron2.checkpoint import DetectionCheckpointer
from torch import nn

from kd_core.export import STUDENT_PREFIX, extract_student_state_dict

__all__ = [
    "ClassHeadCheckpointer",
    "ResumeMismatchError",
    "StudentCheckpointer",
    "build_checkpointer",
    "check_class_head_shapes",
    "check_resumed_model_matches",
    "state_dict_differences",
]


def check_class_head_shapes(model: nn.Module, state_dict: Dict[str, object]) -> None:
    """Raise a clear error when a checkpoint's class head does not fit the model.

    Every submodule that names its class-head parameters through a ``class_head_parameter_names()``
    method (the DETR models of this project do) is checked, wherever it sits (the model itself, a
    student inside a distillation model, ...): each such parameter present in ``state_dict`` (with or
    without a "module." prefix) must have the model's shape.
    """
    for prefix, module in model.named_modules():
        names_fn = getattr(module, "class_head_parameter_names", None)
        if not callable(names_fn):
            continue
        params = dict(module.named_parameters())
        for name in names_fn():
            key = f"{prefix}.{name}" if prefix else name
            ckpt_value = state_dict.get(key, state_dict.get(f"module.{key}"))
            if ckpt_value is None:
                continue
            ckpt_shape, model_shape = tuple(ckpt_value.shape), tuple(params[name].shape)
            if ckpt_shape != model_shape:
                raise ValueError(
                    f"Checkpoint parameter '{key}' has shape {ckpt_shape} but the model's has shape "
                    f"{model_shape}: the checkpoint's class head predicts {ckpt_shape[0]} classes while "
                    f"{type(module).__name__} is configured with num_classes={getattr(module, 'num_classes', '?')}. "
                    "Set num_classes to the checkpoint's, or remove the class-head keys from the checkpoint "
                    "to fine-tune on a different label set."
                )


class ResumeMismatchError(ValueError):
    """The checkpoint a run resumes from was not written by this model (see :func:`check_resumed_model_matches`)."""


def state_dict_differences(own: Mapping[str, object], theirs: Mapping[str, object]) -> List[str]:
    """What keeps ``theirs`` (a checkpoint's state dict) from being loaded into a module whose state
    dict is ``own``: keys missing on either side, tensors of another shape. A "module." prefix on
    every key of ``theirs`` (as a DDP-wrapped model writes them) is ignored, as fvcore's loader
    strips it. An empty list when they fit."""
    if theirs and all(k.startswith("module.") for k in theirs):
        theirs = {k[len("module.") :]: v for k, v in theirs.items()}
    problems = [f"'{k}' is missing from the checkpoint" for k in own if k not in theirs]
    problems += [f"'{k}' is in the checkpoint but not in the model" for k in theirs if k not in own]
    problems += [
        f"'{k}' has shape {tuple(theirs[k].shape)} in the checkpoint and {tuple(v.shape)} in the model"
        for k, v in own.items()
        if k in theirs and hasattr(theirs[k], "shape") and hasattr(v, "shape") and tuple(theirs[k].shape) != tuple(v.shape)
    ]
    return problems


def check_resumed_model_matches(
    model: nn.Module, checkpoint: Mapping[str, object], path: str, extra_checkpointables: Optional[Mapping[str, object]] = None
) -> None:
    """Raise :class:`ResumeMismatchError` when the checkpoint a run resumes from (``path``, loaded as
    ``checkpoint``: ``{"model": state_dict, <checkpointable name>: state, ...}``) was not written by
    ``model``: a key missing on either side or a parameter of another shape; and, for each of the
    model's ``extra_checkpointables`` (name -> object; e.g. ScaleKD's assistant), its state missing
    from the checkpoint or, where the object has a ``state_differences(state)`` method, not fitting.

    Detectron2 loads such a checkpoint with warnings only (and skips a checkpointable the checkpoint
    lacks), and since it restores the iteration too, a resumed run of a finished output directory
    would end at once and report the AP of a model with partly random weights (e.g. an output
    directory left by a run of another config), or train on with a freshly initialised assistant.
    """
    if not isinstance(checkpoint, Mapping) or "model" not in checkpoint:
        raise TypeError(f"check_resumed_model_matches: expected the loaded checkpoint, a dict with 'model', got {type(checkpoint).__name__}.")
    problems = state_dict_differences(model.state_dict(), checkpoint["model"])
    for name, obj in (extra_checkpointables or {}).items():
        if name not in checkpoint:
            problems.append(f"'{name}' ({type(obj).__name__}) is missing from the checkpoint")
        elif callable(getattr(obj, "state_differences", None)):
            problems += [f"{name}: {p}" for p in obj.state_differences(checkpoint[name])]
    if problems:
        shown = "; ".join(problems[:3]) + (f"; and {len(problems) - 3} more" if len(problems) > 3 else "")
        raise ResumeMismatchError(
            f"Cannot resume from {path}: it is a checkpoint of another model or config, or of this config before a code "
            f"change ({shown}). Resume with the config that wrote it, or set train.output_dir to a new directory "
            "(no checkpoint was changed)."
        )


class ClassHeadCheckpointer(DetectionCheckpointer):
    """``DetectionCheckpointer`` that raises :func:`check_class_head_shapes`' error, and on resume
    :func:`check_resumed_model_matches`' error.

    Detectron2 skips parameters whose shapes differ with only a warning, which for a class head
    silently yields a randomly initialized classifier (AP 0).

    Args:
        model, save_dir, checkpointables: as ``DetectionCheckpointer``.
        resume_checked: names of ``checkpointables`` that a checkpoint to resume from must hold
            (the model's extra state, e.g. ScaleKD's assistant), each checked with its
            ``state_differences(state)`` method where it has one; the trainer's state is not among them.
    """

    _resuming_from = ""

    def __init__(self, model: nn.Module, save_dir: str = "", *, resume_checked: Sequence[str] = (), **checkpointables):
        super().__init__(model, save_dir, **checkpointables)
        unknown = [n for n in resume_checked if n not in self.checkpointables]
        if unknown:
            raise KeyError(f"ClassHeadCheckpointer: resume_checked names {unknown}, which are not checkpointables.")
        self.resume_checked = tuple(resume_checked)

    def resume_or_load(self, path: str, *, resume: bool = True):
        self._resuming_from = self.get_checkpoint_file() if resume and self.has_checkpoint() else ""
        try:
            return super().resume_or_load(path, resume=resume)
        finally:
            self._resuming_from = ""

    def _load_model(self, checkpoint):
        if self._resuming_from:
            extra = {name: self.checkpointables[name] for name in self.resume_checked}
            check_resumed_model_matches(self.model, checkpoint, self._resuming_from, extra)
        check_class_head_shapes(self.model, checkpoint["model"])
        return super()._load_model(checkpoint)


class StudentCheckpointer(ClassHeadCheckpointer):
    """:class:`ClassHeadCheckpointer` of a student network alone: a distillation checkpoint gives it its
    student's tensors (``student.*``, the prefix removed; the distillers', an assistant's and any other
    KD-only tensors are left out, as ``tools/export_student.py`` does), any other checkpoint (an exported
    student, a plain detector) is loaded as it is."""

    def _load_file(self, filename: str):
        loaded = super()._load_file(filename)
        state = loaded.get("model", {})
        if any(k.startswith(STUDENT_PREFIX) or k.startswith("module." + STUDENT_PREFIX) for k in state):
            loaded["model"] = extract_student_state_dict(state)
        return loaded


def build_checkpointer(model: nn.Module, save_dir: str = "", **checkpointables) -> ClassHeadCheckpointer:
    """The checkpointer of ``model`` (DDP-wrapped or not) with the extra state its checkpoints hold:
    ``model.extra_checkpointables()`` when it has one (ScaleKD's assistant and its Adam state), so
    loading a checkpoint restores them too, plus ``checkpointables`` (e.g. ``trainer=``)."""
    from kd_core.engine import unwrap  # kd_core.engine imports nothing from here; keep it that way

    inner = unwrap(model)
    extra = inner.extra_checkpointables() if hasattr(inner, "extra_checkpointables") else {}
    return ClassHeadCheckpointer(model, save_dir, resume_checked=tuple(extra), **extra, **checkpointables)
