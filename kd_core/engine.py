"""Training-loop pieces used by ``tools/lazyconfig_train_net.py``.

Everything here plugs into Detectron2's trainers and hooks; nothing replaces them.
"""
import logging
import os
import time
from typing import Dict, Optional

import numpy as np
import torch
from detectron2.engine import AMPTrainer, HookBase, SimpleTrainer
from detectron2.utils import comm
from torch.nn.parallel import DistributedDataParallel

__all__ = [
    "GradientClipHook",
    "KDLossShareHook",
    "KDSimpleTrainer",
    "KDAMPTrainer",
    "KDCPUAMPTrainer",
    "build_trainer",
    "check_amp_support",
    "cpu_has_native_bf16",
    "to_channels_last",
    "create_ddp_model",
    "check_output_dir",
    "SavedRunConfig",
    "seed_training_rng",
    "unwrap",
]

logger = logging.getLogger(__name__)


def unwrap(model):
    """The model inside a DDP wrapper (or the model itself)."""
    return model.module if isinstance(model, DistributedDataParallel) else model


def seed_training_rng(seed: int) -> Optional[int]:
    """Re-seed torch's RNG (CPU and CUDA) once the model is built, from ``train.seed`` and the process rank.

    A distillation model builds more than its student alone (teacher, adapters, ScaleKD's assistant),
    and each of those draws from torch's RNG when it is initialised. Without a re-seed the student alone
    and its distilled runs of one seed would then train on different random draws (Faster R-CNN's RPN
    and RoI sampling, dropout), so their per-seed AP difference would mix distillation with sampling
    noise. After it, both start training from the same RNG state. Python's and NumPy's RNGs (data
    order, augmentations) are left alone: building a model does not draw from them.

    Returns the seed used, or None for ``seed < 0`` (a randomly seeded run: nothing to pair).
    """
    if seed is None or seed < 0:
        return None
    # a stream of its own: not the one the model's initialisation drew from (default_setup's seed + rank)
    derived = int(np.random.SeedSequence([int(seed), comm.get_rank(), 1]).generate_state(1)[0])
    torch.manual_seed(derived)
    return derived


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


class KDCPUAMPTrainer(KDSimpleTrainer):
    """Mixed precision on CPU, which Detectron2's ``AMPTrainer`` (CUDA only) does not offer.

    The forward pass (the model and its losses; a distillation model's teacher runs in it too)
    runs under ``torch.autocast("cpu", dtype=precision)``; backward and the optimizer step run
    outside it on the fp32 parameters. bfloat16 has float32's exponent range, so no gradient
    scaling is needed. Convolutions and matrix products then use the CPU's bf16 units (AMX or
    AVX512-BF16) where it has them; without them bf16 is emulated and slower than fp32
    (:func:`cpu_has_native_bf16`).
    """

    def __init__(self, model, data_loader, optimizer, precision: torch.dtype = torch.bfloat16):
        super().__init__(model, data_loader, optimizer)
        self.precision = precision

    def run_step(self):
        # SimpleTrainer.run_step with the forward under CPU autocast (as AMPTrainer does on CUDA)
        assert self.model.training, "[KDCPUAMPTrainer] model was changed to eval mode!"
        start = time.perf_counter()
        data = next(self._data_loader_iter)
        data_time = time.perf_counter() - start
        if self.zero_grad_before_forward:
            self.optimizer.zero_grad()
        with torch.autocast("cpu", dtype=self.precision):
            loss_dict = self.model(data)
            if isinstance(loss_dict, torch.Tensor):
                losses, loss_dict = loss_dict, {"total_loss": loss_dict}
            else:
                losses = sum(loss_dict.values())
        if not self.zero_grad_before_forward:
            self.optimizer.zero_grad()
        losses.backward()
        self.after_backward()
        if self.async_write_metrics:
            self.concurrent_executor.submit(self._write_metrics, loss_dict, data_time, iter=self.iter)
        else:
            self._write_metrics(loss_dict, data_time)
        self.optimizer.step()


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 in hardware (AMX tiles or AVX512-BF16), where CPU AMP
    (:class:`KDCPUAMPTrainer`) is faster than fp32."""
    checks = [getattr(torch.cpu, name, None) for name in ("_is_amx_tile_supported", "_is_avx512_bf16_supported")]
    return any(check() for check in checks if check is not None)


def to_channels_last(model: torch.nn.Module) -> torch.nn.Module:
    """Store every 4-D parameter and buffer (conv weights) of ``model`` in channels_last (NHWC)
    memory format, and those of the networks it keeps out of its module tree (a distillation
    model's frozen teacher, ScaleKD's assistant: ``unregistered_modules()``). Convolutions with
    NHWC weights produce NHWC activations, which oneDNN (CPU) and cuDNN (CUDA) run faster.
    Parameters stay the same objects (optimizers built earlier keep working); values and
    ``state_dict`` keys are unchanged. Returns ``model``."""
    inner = unwrap(model)
    for module in [inner] + list(getattr(inner, "unregistered_modules", lambda: [])()):
        module.to(memory_format=torch.channels_last)
    return model


def check_amp_support(model: torch.nn.Module) -> None:
    """Raise a clear error for models known to fail under autocast, before any step runs.

    Detectron2's own FCOS: its GIoU box loss decodes the predicted deltas in the autocast dtype
    and fvcore's ``giou_loss`` then writes fp32 values into a bf16/fp16 tensor (``index_put``
    dtype error at the first step; seen with CPU bf16, the dtype mismatch does not depend on the
    device). :class:`kd_core.modeling.FCOSWithFloat32Losses` (this repository's FCOS configs)
    trains under autocast.
    """
    from detectron2.modeling.meta_arch.fcos import FCOS

    # the trained networks only (a frozen FCOS teacher never computes the loss), and only FCOS
    # classes that keep Detectron2's losses
    if any(isinstance(m, FCOS) and type(m).losses is FCOS.losses for m in unwrap(model).modules()):
        raise ValueError(
            "train.amp.enabled=True: Detectron2's FCOS cannot train under autocast (its GIoU loss mixes the "
            "autocast dtype with float32 in fvcore's giou_loss). Set the model's _target_ to "
            "kd_core.modeling.FCOSWithFloat32Losses (same parameters and checkpoints), as this repository's "
            "FCOS configs do, or train with train.amp.enabled=False."
        )


def build_trainer(model, data_loader, optimizer, amp_enabled: bool):
    """The training loop: fp32 (``KDSimpleTrainer``), or with ``train.amp.enabled`` Detectron2's
    fp16 AMP on CUDA (``KDAMPTrainer``) and bfloat16 autocast on CPU (``KDCPUAMPTrainer``).
    Models known to fail under autocast are refused first (:func:`check_amp_support`)."""
    if not amp_enabled:
        return KDSimpleTrainer(model, data_loader, optimizer)
    check_amp_support(model)
    if next(iter(unwrap(model).parameters())).is_cuda:
        return KDAMPTrainer(model, data_loader, optimizer)
    if cpu_has_native_bf16():
        logger.info("train.amp.enabled=True on CPU: the forward pass runs under bfloat16 autocast.")
    else:
        logger.warning(
            "train.amp.enabled=True on CPU: the forward pass runs under bfloat16 autocast, but this CPU has no "
            "native bf16 (AMX / AVX512-BF16), so it is emulated and likely slower than fp32 (train.amp.enabled=False)."
        )
    return KDCPUAMPTrainer(model, data_loader, optimizer)


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


class KDLossShareHook(HookBase):
    """Log ``kd_loss_share``: the distillation terms' share of the loss the student is trained on,
    ``sum(loss_kd_*) / sum(loss_*)``, after every step.

    The figure to watch when setting a KD loss weight (the ScaleKD spec: compare alpha * L_feat
    with L_det and recalibrate). It is computed from the loss values the trainer has just put in
    the event storage (host floats already), so it adds no device sync; steps without ``loss_kd_*``
    terms (a student trained alone, processes that do not write metrics, iterations skipped by a
    trainer's ``gather_metric_period``) log nothing. Register it before the ``PeriodicWriter`` so the
    value is written with the step's losses; the console printer lists it among the losses (its name
    contains "loss").
    """

    def __init__(self, kd_prefix: str = "loss_kd_"):
        self.kd_prefix = kd_prefix

    def after_step(self):
        storage = self.trainer.storage
        losses = {k: v for k, (v, it) in storage.latest().items() if k.startswith("loss_") and it == storage.iter}
        kd = [v for k, v in losses.items() if k.startswith(self.kd_prefix)]
        total = sum(losses.values())
        if kd and total > 0:
            storage.put_scalar("kd_loss_share", sum(kd) / total)


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


class SavedRunConfig:
    """The config files a run saved in ``output_dir`` (Detectron2's ``default_setup`` writes
    ``config.yaml``, and ``config.yaml.pkl`` when the config must be pickled), read before a new
    run's ``default_setup`` overwrites them, so that :meth:`restore` can put them back as they were
    (rewritten, or removed where there was none) if the new run stops before it loaded its checkpoint.
    """

    NAMES = ("config.yaml", "config.yaml.pkl")

    def __init__(self, output_dir: str):
        self.output_dir = output_dir
        self.contents: Dict[str, Optional[bytes]] = {}
        for name in self.NAMES:
            path = os.path.join(output_dir, name)
            if os.path.isfile(path):
                with open(path, "rb") as f:
                    self.contents[name] = f.read()
            else:
                self.contents[name] = None

    def restore(self) -> None:
        """Write each file back (atomically), or remove it where there was none."""
        for name, content in self.contents.items():
            path = os.path.join(self.output_dir, name)
            if content is None:
                if os.path.isfile(path):
                    os.remove(path)
                continue
            tmp = path + ".restoring"
            try:
                with open(tmp, "wb") as f:
                    f.write(content)
                os.replace(tmp, path)
            finally:
                if os.path.exists(tmp):
                    os.remove(tmp)
