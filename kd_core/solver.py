"""LR schedules whose milestones follow ``train.max_iter`` (so one override changes both)."""
from typing import Sequence

from detectron2.solver import WarmupParamScheduler
from fvcore.common.param_scheduler import ConstantParamScheduler, MultiStepParamScheduler

__all__ = ["multistep_lr_multiplier"]


def multistep_lr_multiplier(
    max_iter: int,
    steps: Sequence[float] = (0.75, 0.9),
    gamma: float = 0.1,
    warmup_iters: int = 0,
    warmup_factor: float = 0.001,
) -> WarmupParamScheduler:
    """Linear warm-up for ``warmup_iters``, then multiply the LR by ``gamma`` at each fraction in ``steps``.

    Args:
        max_iter: total training iterations (usually ``"${train.max_iter}"`` in a LazyConfig).
        steps: increasing fractions of ``max_iter`` in (0, 1).
    """
    if any(not 0 < s < 1 for s in steps) or list(steps) != sorted(steps):
        raise ValueError(f"steps must be increasing fractions in (0, 1), got {list(steps)}.")
    # Very short runs (tests, smoke runs) can collapse milestones: keep them distinct and < max_iter.
    milestones = sorted({int(max_iter * s) for s in steps} & set(range(1, max_iter)))
    if milestones:
        scheduler = MultiStepParamScheduler(
            values=[gamma**i for i in range(len(milestones) + 1)], milestones=milestones, num_updates=max_iter
        )
    else:
        scheduler = ConstantParamScheduler(1.0)
    return WarmupParamScheduler(
        scheduler,
        warmup_factor=warmup_factor,
        warmup_length=min(1.0, warmup_iters / max(max_iter, 1)),
        warmup_method="linear",
    )
