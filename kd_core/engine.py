"""Training-loop pieces used by ``tools/lazyconfig_train_net.py``.

Everything here plugs into Detectron2's trainers and hooks; nothing replaces them.
"""
import logging
import os
from typing import Dict

import torch
from detectron2.engine import AMPTrainer, HookBase, SimpleTrainer
from detectron2.utils import comm
from torch.nn.parallel import DistributedDataParallel

__all__ = [
    "GradientClipHook",
    "KDSimpleTrainer",
    "KDAMPTrainer",
    "build_trainer",
    "create_ddp_model",
    "check_output_dir",
    "unwrap",
]

logger = logging.getLogger(__name__)


def unwrap(model):
    """The model inside a DDP wrapper (or the model itself)."""
    return model.module if isinstance(model, DistributedDataParallel) else model


def _nonfinite_error(err: FloatingPointError, loss_dict: Dict[str, torch.Tensor], iteration: int) -> FloatingPointError:
    """Name the non-finite loss terms (only computed on the failure path: no extra sync per step)."""
    bad = [k for k, v in loss_dict.items() if not torch.isfinite(v.detach()).all()]
    kd = [k for k in bad if k.startswith("loss_kd")]
    kind = "KD loss term" if kd else "loss term"
    return FloatingPointError(
        f"Non-finite {kind}(s) {bad} at iteration {iteration}; the optimizer step was skipped and "
        f"checkpoints already written are untouched. ({err})"
    )


class _NamedNonFiniteMixin:
    """Re-raise Detectron2's 'Loss became infinite or NaN' with the names of the bad terms."""

    def _write_metrics(self, loss_dict, data_time, prefix="", iter=None):
        try:
            super()._write_metrics(loss_dict, data_time, prefix=prefix, iter=iter)
        except FloatingPointError as e:
            raise _nonfinite_error(e, loss_dict, self.iter if iter is None else iter) from None


class KDSimpleTrainer(_NamedNonFiniteMixin, SimpleTrainer):
    pass


class KDAMPTrainer(_NamedNonFiniteMixin, AMPTrainer):
    pass


def build_trainer(model, data_loader, optimizer, amp_enabled: bool):
    """AMP trainer on CUDA when asked; on CPU AMP is not available in Detectron2's AMPTrainer, so
    fall back to fp32 with a warning instead of crashing."""
    if amp_enabled and not torch.cuda.is_available():
        logger.warning("train.amp.enabled=True but CUDA is not available: training in fp32 on CPU.")
        amp_enabled = False
    cls = KDAMPTrainer if amp_enabled else KDSimpleTrainer
    return cls(model, data_loader, optimizer)


class GradientClipHook(HookBase):
    """Clip the total gradient norm after backward and before the optimizer step.

    With AMP the gradients are unscaled first (``GradScaler.unscale_``), so ``max_norm`` is in
    true gradient units. The norm is logged as ``grad_norm`` without a host sync.
    """

    def __init__(self, max_norm: float, norm_type: float = 2.0):
        self.max_norm = max_norm
        self.norm_type = norm_type

    def after_backward(self):
        trainer = self.trainer
        scaler = getattr(trainer, "grad_scaler", None)
        if scaler is not None and scaler.is_enabled():
            scaler.unscale_(trainer.optimizer)
        params = [p for group in trainer.optimizer.param_groups for p in group["params"] if p.grad is not None]
        if params:
            norm = torch.nn.utils.clip_grad_norm_(params, self.max_norm, self.norm_type)
            trainer.storage.put_scalar("grad_norm", norm.detach(), smoothing_hint=True)


def create_ddp_model(model, *, fp16_compression=False, **kwargs):
    """Detectron2's ``create_ddp_model`` that also works on CPU (gloo): no ``device_ids`` there.

    Only registered modules go into DDP; the frozen teacher is a plain attribute and stays out.
    """
    if comm.get_world_size() == 1:
        return model
    if "device_ids" not in kwargs:
        kwargs["device_ids"] = [comm.get_local_rank()] if next(model.parameters()).is_cuda else None
    ddp = DistributedDataParallel(model, **kwargs)
    if fp16_compression:
        from torch.distributed.algorithms.ddp_comm_hooks import default as comm_hooks

        ddp.register_comm_hook(state=None, hook=comm_hooks.fp16_compress_hook)
    return ddp


def check_output_dir(output_dir: str, resume: bool) -> None:
    """Refuse to start a fresh run over an existing run's checkpoints (it would overwrite them)."""
    marker = os.path.join(output_dir, "last_checkpoint")
    if not resume and os.path.isfile(marker):
        raise FileExistsError(
            f"train.output_dir '{output_dir}' already holds a training run (last_checkpoint). "
            "Pass --resume to continue it, or set train.output_dir to a new directory; "
            "nothing was written."
        )

