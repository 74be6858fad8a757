"""FitNet-style feature mimicking: adapter + MSE on chosen feature levels (the papers' baseline row)."""
from typing import Dict, Sequence, Union

import torch

from .adapters import align_spatial, build_channel_adapters
from .distiller import Distiller
from .losses import weighted_mse
from .schedules import LossWeightSchedule

__all__ = ["FeatureMimicDistiller"]


class FeatureMimicDistiller(Distiller):
    """``sum_l MSE(adapter_l(F^S_l), F^T_l)`` over chosen levels of a backbone/FPN output dict.

    Args:
        levels: feature names in the recorded output dict, e.g. ["p3", "p4", "p5"].
        student_channels, teacher_channels: channels per level; a 1x1 conv adapter is used where
            they differ (identity where equal).
        student_module, teacher_module: recorded modules whose output is a dict of features
            ("backbone" for Detectron2 detectors).
        spatial_align: how a teacher map of another size (e.g. a 2x-resolution teacher) is
            brought to the student's size ("avgpool", "bilinear", "nearest").
        weight: loss weight (float or :class:`LossWeightSchedule`).
    Loss key: ``loss_kd_feature_mimic``.
    """

    def __init__(
        self,
        *,
        levels: Sequence[str],
        student_channels: Sequence[int],
        teacher_channels: Sequence[int],
        student_module: str = "backbone",
        teacher_module: str = "backbone",
        spatial_align: str = "avgpool",
        weight: Union[float, LossWeightSchedule] = 1.0,
    ):
        super().__init__([student_module], [teacher_module], weight)
        if not (len(levels) == len(student_channels) == len(teacher_channels)):
            raise ValueError(
                f"levels {list(levels)}, student_channels {list(student_channels)} and teacher_channels "
                f"{list(teacher_channels)} must have the same length."
            )
        self.levels = list(levels)
        self.adapters = build_channel_adapters(student_channels, teacher_channels, kind="conv")
        self.spatial_align = spatial_align

    def loss_names(self):
        return ["loss_kd_feature_mimic"]

    def teacher_record_keys(self):
        return {self.teacher_modules[0]: list(self.levels)}

    def losses(self, student_records, teacher_records, batched_inputs) -> Dict[str, torch.Tensor]:
        s_feats = student_records[self.student_modules[0]]
        t_feats = teacher_records[self.teacher_modules[0]]
        missing = [l for l in self.levels if l not in s_feats or l not in t_feats]
        if missing:
            raise KeyError(
                f"FeatureMimicDistiller: levels {missing} not in student {sorted(s_feats)} / teacher {sorted(t_feats)}."
            )
        total = 0.0
        for level, adapter in zip(self.levels, self.adapters):
            s = adapter(s_feats[level])
            t = align_spatial(t_feats[level].detach(), s.shape[-2:], self.spatial_align)
            total = total + weighted_mse(s, t.to(s.dtype))
        return {"loss_kd_feature_mimic": total}
