"""Distillers: the trainable, training-only parts that turn teacher/student records into KD losses."""
from typing import Dict, Mapping, Optional, Sequence, Union

import torch
from torch import nn

from .schedules import LossWeightSchedule

__all__ = ["Distiller", "as_schedule"]


def as_schedule(weight: Union[float, LossWeightSchedule]) -> LossWeightSchedule:
    return weight if isinstance(weight, LossWeightSchedule) else LossWeightSchedule(float(weight))


class Distiller(nn.Module):
    """Base class of a KD term computed from recorded module outputs.

    Subclasses name the modules to record (dotted names in the student / teacher detector),
    and implement :meth:`losses`, returning unweighted terms whose keys start with ``loss_kd_``.
    The distillation meta-architecture records those modules during the forward passes, calls
    the distiller and multiplies every returned term by ``schedule(iteration)``.

    Args:
        student_modules, teacher_modules: module names to record (e.g. "backbone",
            "backbone.bottom_up.res5").
        weight: a float or :class:`LossWeightSchedule` (warm-up start iteration, linear ramp).
    """

    def __init__(
        self,
        student_modules: Sequence[str] = (),
        teacher_modules: Sequence[str] = (),
        weight: Union[float, LossWeightSchedule] = 1.0,
    ):
        super().__init__()
        self.student_modules = list(student_modules)
        self.teacher_modules = list(teacher_modules)
        self.schedule = as_schedule(weight)

    def losses(
        self, student_records: Mapping[str, object], teacher_records: Mapping[str, object], batched_inputs
    ) -> Dict[str, torch.Tensor]:
        raise NotImplementedError

    def forward(self, student_records, teacher_records, batched_inputs, iteration: int) -> Dict[str, torch.Tensor]:
        """Weighted KD terms for this iteration.

        Before the schedule starts (weight 0) the terms are not computed; zeros tied to the
        distiller's parameters are returned instead, so logging stays regular and DDP sees a
        gradient (of zero) for every parameter.
        """
        w = self.schedule(iteration)
        if w == 0.0:
            zero = sum((p.sum() * 0.0 for p in self.parameters()), torch.zeros(()))
            return {k: zero for k in self.loss_names()}
        return {k: v * w for k, v in self.losses(student_records, teacher_records, batched_inputs).items()}

    def teacher_record_keys(self) -> Dict[str, Optional[Sequence[str]]]:
        """Per recorded teacher module whose output is a dict of features, the keys :meth:`losses`
        reads; None = all of them (the default). A teacher output cache stores only these."""
        return {m: None for m in self.teacher_modules}

    def loss_names(self) -> Sequence[str]:
        """Keys that :meth:`losses` returns (used for zero terms during warm-up)."""
        raise NotImplementedError
