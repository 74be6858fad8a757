"""The frozen teacher.

:class:`FrozenTeacher` is deliberately *not* an ``nn.Module``: stored as an attribute of the
distillation model it is kept out of module registration (as mmdetection's KD detector
does), so it never appears in the student's ``state_dict``, in the optimizer's parameters,
in DDP's buckets, or in ``model.train()``/``model.to()`` propagation. It follows the student's
device lazily and always runs in eval mode under ``torch.no_grad()``.
"""
import contextlib
import logging
import os
from typing import Callable, Optional, Sequence

import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import LazyConfig, instantiate
from detectron2.utils.file_io import PathManager
from torch import nn

__all__ = ["FrozenTeacher", "load_teacher_weights", "model_from_config", "TeacherCheckpointError"]

logger = logging.getLogger(__name__)


class TeacherCheckpointError(RuntimeError):
    """The teacher's checkpoint is missing, unreadable or does not fit the teacher model."""


def model_from_config(config_file: str, overrides: Sequence[str] = ()) -> nn.Module:
    """Instantiate ``cfg.model`` of another LazyConfig file (e.g. the teacher's own training config).

    Args:
        config_file: path to a LazyConfig ``.py``/``.yaml`` file that defines ``model``.
        overrides: ``key=value`` strings applied to that config (as on the command line).
    """
    if not os.path.isfile(config_file):
        raise FileNotFoundError(f"Teacher config file not found: '{config_file}'.")
    cfg = LazyConfig.load(config_file)
    if overrides:
        from .config import apply_overrides_strict

        cfg = apply_overrides_strict(cfg, overrides)
    if "model" not in cfg:
        raise KeyError(f"Teacher config file '{config_file}' defines no 'model'.")
    return instantiate(cfg.model)


def _resolve_local(path: str) -> str:
    """A local file for ``path`` (downloads/caches ``detectron2://`` and http URLs via PathManager)."""
    if "://" in path:
        try:
            return PathManager.get_local_path(path)
        except Exception as e:  # network errors, unknown handler
            raise TeacherCheckpointError(f"Could not fetch teacher checkpoint '{path}': {e}") from e
    if not os.path.isfile(path):
        raise TeacherCheckpointError(
            f"Teacher checkpoint not found: '{path}'. Set model.teacher.weights to a trained teacher "
            "checkpoint (.pth/.pkl) or a detectron2:// model-zoo URL."
        )
    return path


class _ReportingCheckpointer(DetectionCheckpointer):
    """DetectionCheckpointer that keeps the incompatible-keys report of the last load."""

    def _load_model(self, checkpoint):
        model_state = checkpoint.get("model")
        if not isinstance(model_state, dict):
            raise TypeError("the file holds no 'model' state dict")
        self.checkpoint_keys = set(model_state.keys())
        checkpoint = _RecordsPoppedModel(checkpoint)
        self.incompatible = super()._load_model(checkpoint)
        # fvcore pops the (possibly renamed) state dict and drops wrongly shaped tensors from it in
        # place: what is left is exactly what was copied into the model.
        self.loaded_keys = set(checkpoint.popped_model) & set(self.model.state_dict().keys())
        return self.incompatible


class _RecordsPoppedModel(dict):
    popped_model = {}

    def pop(self, key, *default):
        value = super().pop(key, *default)
        if key == "model":
            self.popped_model = value
        return value


def load_teacher_weights(model: nn.Module, weights: str, strict: bool = False):
    """Load ``weights`` into ``model`` with :class:`DetectionCheckpointer` and check the result.

    Model-zoo ``.pkl`` files (Caffe2/Detectron naming) are converted by DetectionCheckpointer.

    Raises:
        TeacherCheckpointError: the file is missing or unreadable; no parameter matched; a
            parameter has a different shape (e.g. a class-count mismatch); or, with
            ``strict=True``, any model parameter is missing from the checkpoint.
    Returns:
        fvcore's ``_IncompatibleKeys`` (missing_keys, unexpected_keys, incorrect_shapes).
    """
    local = _resolve_local(weights)
    checkpointer = _ReportingCheckpointer(model)
    try:
        checkpointer.load(local, checkpointables=[])
    except Exception as e:
        raise TeacherCheckpointError(
            f"Teacher checkpoint '{weights}' could not be read (corrupt or not a checkpoint): "
            f"{type(e).__name__}: {e}"
        ) from e
    model_keys = set(model.state_dict().keys())
    ckpt_keys = checkpointer.checkpoint_keys
    incompatible = checkpointer.incompatible
    if incompatible.incorrect_shapes:
        details = ", ".join(f"{k}: checkpoint {tuple(a)} vs model {tuple(b)}" for k, a, b in incompatible.incorrect_shapes[:8])
        raise TeacherCheckpointError(
            f"Teacher checkpoint '{weights}' does not fit the teacher model ({details}). A class-count "
            "mismatch shows up here: check the teacher's num_classes against the checkpoint's."
        )
    missing = set(incompatible.missing_keys)
    loaded = checkpointer.loaded_keys
    # Checkpoints converted by DetectionCheckpointer may rename keys, so count on the model side.
    if not loaded:
        raise TeacherCheckpointError(
            f"No parameter of the teacher model was found in '{weights}' "
            f"({len(model_keys)} model keys, {len(ckpt_keys)} checkpoint keys, e.g. "
            f"{sorted(ckpt_keys)[:3]}). Is it a checkpoint of a different architecture, or a KD "
            "checkpoint that needs tools/export_student.py first?"
        )
    if missing:
        msg = f"Teacher: {len(missing)} of {len(model_keys)} parameters not in the checkpoint, e.g. {sorted(missing)[:5]}"
        if strict:
            raise TeacherCheckpointError(msg + " (strict loading).")
        logger.warning(msg)
    if incompatible.unexpected_keys:
        logger.warning(
            f"Teacher: {len(incompatible.unexpected_keys)} checkpoint keys unused, e.g. {sorted(incompatible.unexpected_keys)[:5]}"
        )
    logger.info(f"Teacher: loaded {len(loaded)}/{len(model_keys)} tensors from '{weights}'.")
    return incompatible


class FrozenTeacher:
    """A teacher model that is frozen, eval-only and kept out of module registration.

    Args:
        model: the teacher detector (an ``nn.Module``, e.g. instantiated from a LazyConfig).
        weights: checkpoint path or URL (``detectron2://...``) loaded with DetectionCheckpointer.
            Required unless ``allow_random_init=True`` (tests and benchmarks only).
        strict: fail when any teacher parameter is missing from the checkpoint.
        autocast_dtype: e.g. ``torch.float16``/``torch.bfloat16`` to run the teacher under
            autocast on CUDA; ``None`` runs it in the ambient precision.
        allow_random_init: permit ``weights=""`` (a random teacher); a warning is logged.
    """

    def __init__(
        self,
        model: nn.Module,
        weights: str = "",
        strict: bool = False,
        autocast_dtype: Optional[torch.dtype] = None,
        allow_random_init: bool = False,
    ):
        if not isinstance(model, nn.Module):
            raise TypeError(f"FrozenTeacher needs an nn.Module, got {type(model).__name__}.")
        self.model = model
        self.weights = weights
        self.autocast_dtype = autocast_dtype
        if weights:
            load_teacher_weights(model, weights, strict=strict)
        elif not allow_random_init:
            raise TeacherCheckpointError(
                "No teacher checkpoint given (model.teacher.weights is empty). Distilling from a randomly "
                "initialised teacher is almost certainly a mistake; pass allow_random_init=True if intended."
            )
        else:
            logger.warning("Teacher runs with random weights (allow_random_init=True).")
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.model.eval()

    @property
    def device(self) -> torch.device:
        for p in self.model.parameters():
            return p.device
        return torch.device("cpu")

    def to(self, device) -> "FrozenTeacher":
        device = torch.device(device)
        if self.device != device:
            self.model.to(device)
        return self

    def train(self, mode: bool = True) -> "FrozenTeacher":
        """The teacher always stays in eval mode; ``train()`` is accepted and ignored."""
        self.model.eval()
        return self

    def eval(self) -> "FrozenTeacher":
        self.model.eval()
        return self

    @contextlib.contextmanager
    def _context(self):
        self.model.eval()  # also after anyone called .train() on it
        with torch.no_grad():
            if self.autocast_dtype is not None and self.device.type == "cuda":
                with torch.autocast("cuda", dtype=self.autocast_dtype):
                    yield
            else:
                yield

    def __call__(self, *args, **kwargs):
        """The teacher model's own forward (eval mode: its inference outputs), without autograd."""
        with self._context():
            return self.model(*args, **kwargs)

    def run(self, fn: Callable, *args, **kwargs):
        """``fn(teacher_model, *args, **kwargs)`` under eval mode, no_grad and the autocast setting.

        Used for partial forwards, e.g. backbone features or a DETR model's raw decoder outputs.
        """
        with self._context():
            return fn(self.model, *args, **kwargs)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def __repr__(self):
        return f"FrozenTeacher(model={type(self.model).__name__}, weights='{self.weights}')"
