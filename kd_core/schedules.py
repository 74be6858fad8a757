"""Loss-weight schedules driven by the trainer's iteration.

The iteration is read from Detectron2's :class:`EventStorage` (``storage.iter``), which
the trainer restores on ``--resume``; a resumed run therefore continues the same schedule.
"""
from typing import Optional

from detectron2.utils.events import get_event_storage

__all__ = ["LossWeightSchedule", "current_iteration"]


def current_iteration(default: int = 0) -> int:
    """The trainer's current iteration, or ``default`` outside a training loop."""
    try:
        return get_event_storage().iter
    except AssertionError:  # no EventStorage in use (e.g. a unit test calling the model directly)
        return default


class LossWeightSchedule:
    """Weight ``w(it)`` of a loss term.

    * ``it < start_iter``: 0 (the term is off, e.g. ScaleKD's 30k-iteration warm-up);
    * ``start_iter <= it < start_iter + ramp_iters``: linear ramp from 0 to ``weight``;
    * afterwards: ``weight``;
    * ``it >= end_iter`` (when given): 0 again (the term is switched off for the rest of training).
    """

    def __init__(self, weight: float = 1.0, start_iter: int = 0, ramp_iters: int = 0, end_iter: Optional[int] = None):
        if start_iter < 0 or ramp_iters < 0:
            raise ValueError(f"start_iter ({start_iter}) and ramp_iters ({ramp_iters}) must be >= 0.")
        if end_iter is not None and end_iter <= start_iter:
            raise ValueError(f"end_iter ({end_iter}) must be after start_iter ({start_iter}).")
        self.weight = float(weight)
        self.start_iter = int(start_iter)
        self.ramp_iters = int(ramp_iters)
        self.end_iter = None if end_iter is None else int(end_iter)

    def __call__(self, iteration: int) -> float:
        if iteration < self.start_iter or (self.end_iter is not None and iteration >= self.end_iter):
            return 0.0
        if self.ramp_iters > 0:
            return self.weight * min(1.0, (iteration - self.start_iter + 1) / self.ramp_iters)
        return self.weight

    def is_active(self, iteration: int) -> bool:
        return self(iteration) != 0.0

    def __repr__(self):
        return (
            f"LossWeightSchedule(weight={self.weight}, start_iter={self.start_iter}, "
            f"ramp_iters={self.ramp_iters}, end_iter={self.end_iter})"
        )
