"""Target-aware feature distillation (DETRDistill Sec. 3.3).

The teacher's decoder queries, weighted by their prediction quality, say where the objects are in
the multi-scale features fed to the transformer; the student's features are trained towards the
teacher's there.

Conventions: features are (B, D, H_l, W_l) per level; ``feature_masks`` are (B, H_l, W_l) bool with
True = padding; boxes are normalized cxcywh; ``targets`` is a list (one per image) of dicts with
"boxes" ((M_i, 4) normalized cxcywh, same normalization as the predicted boxes).
"""

from typing import Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from kd_core.adapters import build_channel_adapters
from kd_core.losses import pairwise_iou_cxcywh, quality_scores


__all__ = ["TargetAwareFeatureDistillation", "max_iou_with_ground_truth"]


def max_iou_with_ground_truth(pred_boxes: torch.Tensor, targets: Sequence[dict]) -> torch.Tensor:
    """Largest IoU of every predicted box with any ground-truth box of its image.

    Args:
        pred_boxes: (S, B, K, 4) normalized cxcywh boxes (S stages, B images, K boxes).
        targets: B dicts with "boxes" (M_i, 4) normalized cxcywh.
    Returns:
        (S, B, K) max IoU; 0 for images without ground truth.
    """
    if len(targets) != pred_boxes.shape[1]:
        raise ValueError(f"Got {len(targets)} targets for a batch of {pred_boxes.shape[1]} images.")
    sizes = [len(t["boxes"]) for t in targets]
    if max(sizes, default=0) == 0:
        return pred_boxes.new_zeros(pred_boxes.shape[:3], dtype=torch.float32)
    gt = torch.nn.utils.rnn.pad_sequence(
        [t["boxes"].to(pred_boxes.device, torch.float32) for t in targets], batch_first=True
    )  # (B, M, 4); padded rows are zero boxes
    valid = torch.arange(gt.shape[1], device=gt.device)[None, :] < torch.as_tensor(sizes).to(gt.device, non_blocking=True)[:, None]
    ious = pairwise_iou_cxcywh(pred_boxes.float(), gt[None])  # (S, B, K, M)
    return ious.masked_fill(~valid[None, :, None, :], 0.0).amax(-1)


class TargetAwareFeatureDistillation(nn.Module):
    """Feature KD weighted by the teacher's object queries.

    ``mode="code"`` (default, the official code), for every selected teacher decoder stage s:

    1. top-``num_topk`` (query, class) pairs of the flattened Q x C sigmoid score grid;
    2. quality q_n = class prob x max IoU of the query's box with any GT box (class prob alone
       for an image without GT);
    3. query vectors = teacher decoder-layer-s outputs of those queries, L2-normalized;
    4. per level: ``mask = clamp(sum_n q_n cos(query_n, F_T), min=mask_min) / spatial max``
       (B, 1, H, W), with padded pixels set to 0 (before taking the max, so padding never
       counts); loss = ``MSE_mean(mask * F_T, mask * phi(F_S))`` over (B, D, H, W);
    5. summed over levels and stages.

    ``mode="paper"`` (Eq. 7-9), for every selected stage, over all M = Q teacher queries:
    ``L = mean_b sum_i q_i / (M d H W) * || psi_i (.) (F_T - phi(F_S)) ||^2`` with
    ``psi_i = F_T . Q_i`` (raw dot product of the teacher feature at each pixel with the teacher
    decoder output Q_i, as Eq. 7 writes it; its scale grows with |F_T|^2 |Q_i|^2, so tune
    ``loss_weight``), ``q_i = c_i^gamma * IoU_i^(1-gamma)`` (:func:`kd_core.losses.quality_scores`),
    c_i = the query's highest class probability, IoU_i = its max IoU with any GT box (0 without GT,
    so images without GT add nothing when gamma < 1). Padding pixels are excluded (psi set to 0).
    Computed without forming per-query maps: ``sum_i q_i psi_i^2 = F^T A F`` with
    ``A = sum_i q_i Q_i Q_i^T``.

    ``phi`` is a per-level 1x1 conv adapter (:func:`kd_core.adapters.build_channel_adapters`), built
    when ``student_channels`` and ``teacher_channels`` are given (identity where they match).
    Without adapters the student and teacher channels must match (checked, in both modes). The
    teacher decoder width must equal the teacher feature channels (queries are compared to features).

    Args:
        mode: "code" or "paper".
        num_topk: (query, class) pairs per image and stage in "code" mode (official: 100).
        gamma: quality exponent in "paper" mode.
        student_channels, teacher_channels: per-level channel counts; build the adapters.
        stages: teacher decoder stages to use (0-based; negative allowed); None = all.
        mask_min: lower clamp of the "code" mask before normalization (official: 0.01).
        loss_weight: multiplies the total.
    """

    LOSS_NAMES = ("loss_kd_feature",)

    def __init__(
        self,
        *,
        mode: str = "code",
        num_topk: int = 100,
        gamma: float = 0.5,
        student_channels: Optional[Sequence[int]] = None,
        teacher_channels: Optional[Sequence[int]] = None,
        stages: Optional[Sequence[int]] = None,
        mask_min: float = 0.01,
        loss_weight: float = 1.0,
    ):
        super().__init__()
        if mode not in ("code", "paper"):
            raise ValueError(f"TargetAwareFeatureDistillation: mode must be 'code' or 'paper', got '{mode}'.")
        if num_topk < 1:
            raise ValueError(f"num_topk must be >= 1, got {num_topk}.")
        if (student_channels is None) != (teacher_channels is None):
            raise ValueError("Give both student_channels and teacher_channels (to build adapters) or neither.")
        self.mode = mode
        self.num_topk = num_topk
        self.gamma = gamma
        self.stages = None if stages is None else [int(s) for s in stages]
        self.mask_min = mask_min
        self.loss_weight = loss_weight
        self.adapters = (
            build_channel_adapters(list(student_channels), list(teacher_channels), kind="conv")
            if student_channels is not None
            else None
        )

    def extra_repr(self) -> str:
        return f"mode={self.mode}, num_topk={self.num_topk}, gamma={self.gamma}, stages={self.stages}"

    # ------------------------------------------------------------------ checks
    def _check_inputs(
        self, student_features, teacher_features, feature_masks, teacher_logits, teacher_boxes, teacher_hidden
    ):
        if student_features is not None and len(student_features) != len(teacher_features):
            raise ValueError(
                f"{len(student_features)} student feature levels vs {len(teacher_features)} teacher levels."
            )
        if feature_masks is not None and len(feature_masks) != len(teacher_features):
            raise ValueError(f"{len(feature_masks)} feature masks for {len(teacher_features)} feature levels.")
        if self.adapters is not None and len(self.adapters) != len(teacher_features):
            raise ValueError(f"{len(self.adapters)} adapters configured for {len(teacher_features)} feature levels.")
        if teacher_logits.dim() != 4 or teacher_boxes.shape != (*teacher_logits.shape[:3], 4):
            raise ValueError(
                f"teacher_logits must be (L, B, Q, C) and teacher_boxes (L, B, Q, 4), got "
                f"{tuple(teacher_logits.shape)} and {tuple(teacher_boxes.shape)}."
            )
        if teacher_hidden.dim() != 4 or teacher_hidden.shape[:3] != teacher_logits.shape[:3]:
            raise ValueError(
                f"teacher_hidden must be (L, B, Q, D) matching teacher_logits {tuple(teacher_logits.shape)}, "
                f"got {tuple(teacher_hidden.shape)}."
            )
        bs, dim = teacher_logits.shape[1], teacher_hidden.shape[-1]
        for lvl, f_t in enumerate(teacher_features):
            if f_t.dim() != 4 or f_t.shape[0] != bs:
                raise ValueError(f"teacher feature level {lvl} must be (B={bs}, D, H, W), got {tuple(f_t.shape)}.")
            if f_t.shape[1] != dim:
                raise ValueError(
                    f"teacher feature level {lvl} has {f_t.shape[1]} channels but the teacher decoder width is "
                    f"{dim}; the target-aware mask compares queries with features of the same width."
                )
            if feature_masks is not None and feature_masks[lvl].shape != (bs, *f_t.shape[-2:]):
                raise ValueError(
                    f"feature mask level {lvl} must be (B, H, W) = {(bs, *f_t.shape[-2:])}, got "
                    f"{tuple(feature_masks[lvl].shape)}."
                )
            if student_features is None:
                continue
            f_s = student_features[lvl]
            if f_s.dim() != 4 or f_s.shape[0] != bs or f_s.shape[-2:] != f_t.shape[-2:]:
                raise ValueError(
                    f"student feature level {lvl} {tuple(f_s.shape)} does not match teacher {tuple(f_t.shape)} in "
                    "batch or spatial size."
                )
            if self.adapters is None and f_s.shape[1] != f_t.shape[1]:
                raise ValueError(
                    f"Feature level {lvl}: student has {f_s.shape[1]} channels, teacher {f_t.shape[1]}; configure "
                    "student_channels/teacher_channels so that a 1x1 conv adapter is built."
                )

    def _select_stages(self, num_layers: int) -> List[int]:
        if self.stages is None:
            return list(range(num_layers))
        for s in self.stages:
            if not -num_layers <= s < num_layers:
                raise ValueError(f"Feature-KD stage {s} out of range for {num_layers} teacher decoder layers.")
        return [s % num_layers for s in self.stages]

    # ------------------------------------------------------------------ maps
    @torch.no_grad()
    def _stage_maps(
        self, teacher_features, feature_masks, teacher_logits, teacher_boxes, teacher_hidden, targets, stages
    ):
        """Per level, (S, B, H, W) spatial weights from the teacher, no gradient.

        "code": the normalized mask m (the loss multiplies features by m, i.e. errors by m^2).
        "paper": ``sum_i q_i psi_i^2`` (multiplies the squared channel error directly).
        """
        logits = teacher_logits.detach()[stages].float()  # (S, B, Q, C)
        boxes = teacher_boxes.detach()[stages].float()
        hidden = teacher_hidden.detach()[stages].float()  # (S, B, Q, D)
        num_classes = logits.shape[-1]
        has_gt = torch.as_tensor([len(t["boxes"]) > 0 for t in targets]).to(logits.device, non_blocking=True)

        if self.mode == "code":
            scores, flat_idx = (
                logits.sigmoid().flatten(2).topk(min(self.num_topk, logits.shape[2] * num_classes), dim=-1)
            )
            query_idx = flat_idx // num_classes  # (S, B, k)
            sel_boxes = torch.gather(boxes, 2, query_idx[..., None].expand(-1, -1, -1, 4))
            quality = torch.where(has_gt[None, :, None], scores * max_iou_with_ground_truth(sel_boxes, targets), scores)
            sel_hidden = torch.gather(hidden, 2, query_idx[..., None].expand(-1, -1, -1, hidden.shape[-1]))
            # sum_n q_n cos(query_n, f) = (sum_n q_n query_n / |query_n|) . f / |f|
            weighted_query = torch.einsum("sbk,sbkd->sbd", quality, F.normalize(sel_hidden, dim=-1))
            maps = []
            for lvl, f_t in enumerate(teacher_features):
                m = torch.einsum("sbd,bdhw->sbhw", weighted_query, F.normalize(f_t.detach().float(), dim=1))
                m = m.clamp(min=self.mask_min)
                if feature_masks is not None:
                    m = m.masked_fill(feature_masks[lvl][None].to(torch.bool), 0.0)
                maps.append(m / m.flatten(2).amax(-1).clamp(min=1e-12)[..., None, None])
            return maps

        # paper mode: all queries, Eq. 8 quality
        class_prob = logits.sigmoid().amax(-1)  # (S, B, Q)
        quality = quality_scores(class_prob, max_iou_with_ground_truth(boxes, targets), self.gamma)
        second_moment = torch.einsum("sbq,sbqd,sbqe->sbde", quality, hidden, hidden)  # (S, B, D, D)
        maps = []
        for lvl, f_t in enumerate(teacher_features):
            f_t = f_t.detach().float()
            if feature_masks is not None:
                f_t = f_t.masked_fill(feature_masks[lvl][:, None].to(torch.bool), 0.0)
            per_stage = [(f_t * torch.einsum("bde,behw->bdhw", a, f_t)).sum(1) for a in second_moment]
            maps.append(torch.stack(per_stage))  # (S, B, H, W)
        return maps

    @torch.no_grad()
    def masks(
        self,
        teacher_features: Sequence[torch.Tensor],
        feature_masks: Optional[Sequence[torch.Tensor]],
        teacher_logits: torch.Tensor,
        teacher_boxes: torch.Tensor,
        teacher_hidden: torch.Tensor,
        targets: Sequence[dict],
        stage: int = -1,
    ) -> List[torch.Tensor]:
        """Distillation masks of one teacher decoder stage, for visualisation.

        Returns:
            per level a (B, 1, H, W) map in [0, 1]: in "code" mode exactly the mask the loss uses;
            in "paper" mode ``sum_i q_i psi_i^2`` divided by its per-image spatial max. Padding is 0.
        """
        self._check_inputs(None, teacher_features, feature_masks, teacher_logits, teacher_boxes, teacher_hidden)
        num_layers = teacher_logits.shape[0]
        if not -num_layers <= stage < num_layers:
            raise ValueError(f"stage {stage} out of range for {num_layers} teacher decoder layers.")
        maps = self._stage_maps(
            teacher_features,
            feature_masks,
            teacher_logits,
            teacher_boxes,
            teacher_hidden,
            targets,
            [stage % num_layers],
        )
        out = []
        for m in maps:
            m = m[0]
            if self.mode == "paper":
                m = m / m.flatten(1).amax(-1).clamp(min=1e-12)[:, None, None]
            out.append(m[:, None])
        return out

    # ------------------------------------------------------------------ loss
    def forward(
        self,
        student_features: Sequence[torch.Tensor],
        teacher_features: Sequence[torch.Tensor],
        feature_masks: Optional[Sequence[torch.Tensor]],
        teacher_logits: torch.Tensor,
        teacher_boxes: torch.Tensor,
        teacher_hidden: torch.Tensor,
        targets: Sequence[dict],
    ) -> Dict[str, torch.Tensor]:
        """Feature-KD loss.

        Args:
            student_features: per level (B, Ds_l, H_l, W_l) student transformer inputs.
            teacher_features: per level (B, D, H_l, W_l) teacher transformer inputs (detached here).
            feature_masks: per level (B, H_l, W_l) bool, True = padding; None = no padding.
            teacher_logits: (L, B, Q, C); teacher_boxes: (L, B, Q, 4) normalized cxcywh;
            teacher_hidden: (L, B, Q, D) teacher decoder outputs per layer.
            targets: per image {"boxes": (M_i, 4) normalized cxcywh, ...}.
        Returns:
            {"loss_kd_feature": scalar}.
        """
        self._check_inputs(
            student_features, teacher_features, feature_masks, teacher_logits, teacher_boxes, teacher_hidden
        )
        if len(targets) != teacher_logits.shape[1]:
            raise ValueError(f"Got {len(targets)} targets for a batch of {teacher_logits.shape[1]} images.")
        stages = self._select_stages(teacher_logits.shape[0])
        maps = self._stage_maps(
            teacher_features, feature_masks, teacher_logits, teacher_boxes, teacher_hidden, targets, stages
        )
        num_queries = teacher_logits.shape[2]
        total = student_features[0].new_zeros((), dtype=torch.float32)
        for lvl, (f_s, f_t, m) in enumerate(zip(student_features, teacher_features, maps)):
            if self.adapters is not None:
                f_s = self.adapters[lvl](f_s)
            f_t = f_t.detach().float()
            # Per-pixel squared error summed over channels: (B, H, W).
            sq_err = (f_t - f_s.float()).pow(2).sum(1)
            bs, dim, h, w = f_t.shape
            if self.mode == "code":
                # MSE_mean(m * F_T, m * F_S) = sum(m^2 * err^2) / (B D H W), per stage, summed over stages.
                total = total + (m.pow(2) * sq_err[None]).sum() / (bs * dim * h * w)
            else:
                total = total + (m * sq_err[None]).sum() / (bs * num_queries * dim * h * w)
        return {"loss_kd_feature": self.loss_weight * total}
