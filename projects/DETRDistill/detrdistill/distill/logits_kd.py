"""Hungarian-matching logits distillation (DETRDistill Sec. 3.2), stage by stage.

Student decoder layer predictions are matched one-to-one to teacher decoder layer predictions
with the DETR matching cost, and the matched student predictions are trained towards the teacher's
class probabilities and boxes.

Conventions: logits are raw sigmoid-classifier scores (no background column); boxes are
normalized cxcywh in [0, 1] (x / image width, y / image height). GIoU is computed on the
normalized boxes: IoU and GIoU are invariant to per-axis scaling, so this equals the official
code's pixel-space GIoU.
"""

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from kd_core.distributed import mean_across_processes
from kd_core.losses import box_l1_loss, giou_loss, pairwise_giou_cxcywh, soft_bce_with_logits
from kd_core.matching import (
    PendingAssignments,
    linear_sum_assignment_batch,
    linear_sum_assignment_batch_async,
    soft_bce_class_cost,
)

from .layer_mapping import build_layer_mapping, resolve_layer_mapping_mode

__all__ = [
    "HungarianLogitsDistillation",
    "LogitsMatching",
    "reduce_normalizers",
]

# (pred_idx, gt_idx) per image: the format of DETR matchers and of SetCriterion's indices.
ImageIndices = Tuple[torch.Tensor, torch.Tensor]


def reduce_normalizers(counts: torch.Tensor) -> torch.Tensor:
    """Average per-process counts over all processes (when torch.distributed is initialized), clamp >= 1.

    Every process must call this the same number of times (it is called once per loss forward).

    Args:
        counts: (K,) float tensor of local counts on the loss device.
    Returns:
        (K,) counts averaged across processes and clamped to at least 1, as DETR's ``num_boxes``.
    """
    return mean_across_processes(counts).clamp(min=1.0)


@dataclass
class LogitsMatching:
    """Result of matching student to teacher predictions for every mapped layer pair.

    Attributes:
        layer_pairs: ``(student_layer, teacher_layer)`` pairs (0-based), one per matched stage.
        indices: per pair, per image, ``(student_query_idx, teacher_query_idx)`` int64 tensors of
            equal length: student queries trained towards the teacher prediction's class
            probabilities and box ("code" mode: all matched pairs; "paper" mode: the positives).
        background_indices: "paper" mode only (else None): per pair, per image, the student
            query indices trained towards background (all-zero class target, no box terms).
    """

    layer_pairs: List[Tuple[int, int]]
    indices: List[List[ImageIndices]]
    background_indices: Optional[List[List[torch.Tensor]]] = None


class HungarianLogitsDistillation(nn.Module):
    """Hungarian-matching logits KD between student and teacher decoder layers.

    ``mode="code"`` (default, the official code): per mapped layer pair and image, all student
    queries are matched to all teacher predictions with
    ``cost = cost_class * softBCE_sum_c(s, sigmoid(t)) + cost_bbox * L1 + cost_giou * (-GIoU)``.
    Every matched pair (``min(Qs, Qt)`` per image) gets the losses: soft BCE-with-logits towards
    the teacher's sigmoid probabilities summed over classes, L1 on normalized cxcywh and 1 - GIoU,
    each summed over pairs and divided by the number of pairs averaged over processes (the same
    normalizer for class and box terms; the official code does not all-reduce the class one).
    With unequal query counts, the ``|Qs - Qt|`` unmatched queries get no target at all:
    surplus student queries receive no KD loss, surplus teacher predictions are not distilled.

    ``mode="paper"``: the teacher predictions of a teacher layer are split by the teacher's own
    Hungarian assignment to ground truth (``teacher_gt_indices``) into positives (matched to a
    GT box) and negatives (the rest). Two separate matchings to the student:

    * positives: Hungarian matching with the cost above restricted to the positive columns;
      matched pairs get the soft class target (teacher probabilities) and the L1 + GIoU terms.
    * negatives: the matching loss has no box terms and a background class target (all zeros),
      so its cost ``sum_c softplus(s_ic)`` does not depend on which negative is the partner;
      the Hungarian solution therefore picks the ``min(Qs, N_neg)`` student queries with the
      lowest background cost (computed exactly by sorting). Those queries get the all-zero
      class target, no box terms.

    The two matchings are separate (paper Eq. 4/5), so a student query can receive both a
    positive and a background target. Normalizers: class term = positive + background pairs,
    box terms = positive pairs, each averaged over processes and clamped >= 1.

    Layer pairs come from :func:`build_layer_mapping`; the losses are summed over pairs (each
    pair normalized by its own number of pairs).

    Args:
        cost_class, cost_bbox, cost_giou: matching cost weights (official: 1, 5, 2).
        loss_class_weight, loss_bbox_weight, loss_giou_weight: loss weights (official: 1, 5, 2).
        layer_mapping: "same_index", "last", "grouped" or None/"auto" (same_index for equal
            depths, grouped otherwise).
        mode: "code" or "paper" (see above).
    """

    LOSS_NAMES = ("loss_kd_logits_class", "loss_kd_logits_bbox", "loss_kd_logits_giou")

    def __init__(
        self,
        *,
        cost_class: float = 1.0,
        cost_bbox: float = 5.0,
        cost_giou: float = 2.0,
        loss_class_weight: float = 1.0,
        loss_bbox_weight: float = 5.0,
        loss_giou_weight: float = 2.0,
        layer_mapping: Optional[str] = None,
        mode: str = "code",
    ):
        super().__init__()
        if mode not in ("code", "paper"):
            raise ValueError(f"HungarianLogitsDistillation: mode must be 'code' or 'paper', got '{mode}'.")
        resolve_layer_mapping_mode(layer_mapping, 1, 1)  # validates the name early
        self.cost_class = cost_class
        self.cost_bbox = cost_bbox
        self.cost_giou = cost_giou
        self.loss_class_weight = loss_class_weight
        self.loss_bbox_weight = loss_bbox_weight
        self.loss_giou_weight = loss_giou_weight
        self.layer_mapping = layer_mapping
        self.mode = mode

    def extra_repr(self) -> str:
        return f"mode={self.mode}, layer_mapping={self.layer_mapping}"

    @staticmethod
    def _check_inputs(student_logits, student_boxes, teacher_logits, teacher_boxes):
        for name, x, last in (
            ("student_logits", student_logits, None),
            ("student_boxes", student_boxes, 4),
            ("teacher_logits", teacher_logits, None),
            ("teacher_boxes", teacher_boxes, 4),
        ):
            if x.dim() != 4 or (last is not None and x.shape[-1] != last):
                want = "(L, B, Q, 4)" if last else "(L, B, Q, C)"
                raise ValueError(f"HungarianLogitsDistillation: {name} must have shape {want}, got {tuple(x.shape)}.")
        if student_logits.shape[:3] != student_boxes.shape[:3]:
            raise ValueError(
                f"student_logits {tuple(student_logits.shape)} and student_boxes {tuple(student_boxes.shape)} "
                "disagree on (L, B, Q)."
            )
        if teacher_logits.shape[:3] != teacher_boxes.shape[:3]:
            raise ValueError(
                f"teacher_logits {tuple(teacher_logits.shape)} and teacher_boxes {tuple(teacher_boxes.shape)} "
                "disagree on (L, B, Q)."
            )
        if student_logits.shape[-1] != teacher_logits.shape[-1]:
            raise ValueError(
                f"Class-count mismatch: student predicts {student_logits.shape[-1]} classes, teacher "
                f"{teacher_logits.shape[-1]}; logits KD needs the same label space."
            )
        if student_logits.shape[1] != teacher_logits.shape[1]:
            raise ValueError(
                f"Batch-size mismatch: student {student_logits.shape[1]} vs teacher {teacher_logits.shape[1]} images."
            )

    @torch.no_grad()
    def match(
        self,
        student_logits: torch.Tensor,
        student_boxes: torch.Tensor,
        teacher_logits: torch.Tensor,
        teacher_boxes: torch.Tensor,
        teacher_gt_indices: Optional[Sequence[Sequence[ImageIndices]]] = None,
    ) -> LogitsMatching:
        """Match student to teacher predictions for every mapped layer pair (one host transfer).

        Args:
            student_logits: (Ls, B, Qs, C); student_boxes: (Ls, B, Qs, 4) normalized cxcywh.
            teacher_logits: (Lt, B, Qt, C); teacher_boxes: (Lt, B, Qt, 4) normalized cxcywh.
            teacher_gt_indices: "paper" mode only: per teacher layer (Lt entries), per image,
                ``(pred_idx, gt_idx)`` of the teacher's own assignment to ground truth.
        """
        inputs = (student_logits, student_boxes, teacher_logits, teacher_boxes, teacher_gt_indices)
        return self._match(*inputs, solve=linear_sum_assignment_batch).result()

    @torch.no_grad()
    def start_match(self, student_logits, student_boxes, teacher_logits, teacher_boxes, teacher_gt_indices=None) -> PendingAssignments:
        """:meth:`match` (same arguments) with the "code" mode's assignments solved in a background
        thread (``kd_core.matching.linear_sum_assignment_batch_async``): the costs are computed and
        their copy queued here, and ``.result()`` gives the :class:`LogitsMatching`. The caller can
        issue other losses in between; the GPU then runs them while the host solves. "paper" mode
        is matched here (it needs the teacher's assignment on the host first)."""
        inputs = (student_logits, student_boxes, teacher_logits, teacher_boxes, teacher_gt_indices)
        return self._match(*inputs, solve=linear_sum_assignment_batch_async)

    def _match(self, student_logits, student_boxes, teacher_logits, teacher_boxes, teacher_gt_indices, solve) -> PendingAssignments:
        """:meth:`match`'s costs, the "code" mode's assignments solved by ``solve``
        (``linear_sum_assignment_batch`` or its asynchronous variant); the result as pending."""
        self._check_inputs(student_logits, student_boxes, teacher_logits, teacher_boxes)
        num_s, bs, num_qs = student_logits.shape[:3]
        num_t, _, num_qt = teacher_logits.shape[:3]
        pairs = build_layer_mapping(num_s, num_t, self.layer_mapping)
        device = student_logits.device
        s_layers = torch.as_tensor([p[0] for p in pairs]).to(device, non_blocking=True)
        t_layers = torch.as_tensor([p[1] for p in pairs]).to(device, non_blocking=True)

        s_logits = student_logits.detach()[s_layers].float()  # (P, B, Qs, C)
        s_boxes = student_boxes.detach()[s_layers].float()
        t_probs = teacher_logits.detach()[t_layers].float().sigmoid()  # (P, B, Qt, C)
        t_boxes = teacher_boxes.detach()[t_layers].float()
        cost = (
            self.cost_class * soft_bce_class_cost(s_logits, t_probs)
            + self.cost_bbox
            * torch.cdist(s_boxes.flatten(0, 1), t_boxes.flatten(0, 1), p=1).view(len(pairs), bs, num_qs, num_qt)
            - self.cost_giou * pairwise_giou_cxcywh(s_boxes, t_boxes)
        )  # (P, B, Qs, Qt)

        if self.mode == "code":
            solved = solve([cost[p, b] for p in range(len(pairs)) for b in range(bs)])
            pending = solved if isinstance(solved, PendingAssignments) else PendingAssignments.finished(solved)
            return pending.then(
                lambda flat: LogitsMatching(layer_pairs=pairs, indices=[flat[p * bs : (p + 1) * bs] for p in range(len(pairs))])
            )

        # paper mode
        if teacher_gt_indices is None:
            raise ValueError(
                "HungarianLogitsDistillation(mode='paper') needs teacher_gt_indices: per teacher layer, per "
                "image, (pred_idx, gt_idx) of the teacher's assignment to ground truth."
            )
        if len(teacher_gt_indices) != num_t or any(len(per_layer) != bs for per_layer in teacher_gt_indices):
            raise ValueError(
                f"teacher_gt_indices must hold {num_t} teacher layers x {bs} images of (pred_idx, gt_idx); got "
                f"{len(teacher_gt_indices)} layers with {[len(x) for x in teacher_gt_indices]} images."
            )
        pos_cols = [[teacher_gt_indices[t][b][0].to(device) for b in range(bs)] for _, t in pairs]
        flat = linear_sum_assignment_batch(
            [cost[p, b][:, pos_cols[p][b]] for p in range(len(pairs)) for b in range(bs)]
        )
        indices = []
        for p in range(len(pairs)):
            per_image = []
            for b in range(bs):
                rows, cols = flat[p * bs + b]
                per_image.append((rows, pos_cols[p][b][cols]))
            indices.append(per_image)
        # Negatives: identical cost columns sum_c softplus(s_ic) -> the lowest-cost student queries.
        background_cost = F.softplus(s_logits).sum(-1)  # (P, B, Qs)
        order = background_cost.argsort(dim=-1)
        background = [
            [order[p, b, : min(num_qs, num_qt - len(pos_cols[p][b]))] for b in range(bs)] for p in range(len(pairs))
        ]
        return PendingAssignments.finished(LogitsMatching(layer_pairs=pairs, indices=indices, background_indices=background))

    def forward(
        self,
        student_logits: torch.Tensor,
        student_boxes: torch.Tensor,
        teacher_logits: torch.Tensor,
        teacher_boxes: torch.Tensor,
        teacher_gt_indices: Optional[Sequence[Sequence[ImageIndices]]] = None,
        matching: Optional[LogitsMatching] = None,
    ) -> Dict[str, torch.Tensor]:
        """Weighted logits-KD losses summed over mapped layer pairs.

        Args:
            student_logits: (Ls, B, Qs, C) raw logits; student_boxes: (Ls, B, Qs, 4) normalized cxcywh.
            teacher_logits: (Lt, B, Qt, C); teacher_boxes: (Lt, B, Qt, 4) (detached here).
            teacher_gt_indices: "paper" mode: per teacher layer, per image, (pred_idx, gt_idx).
                Ignored in "code" mode.
            matching: a precomputed :meth:`match` result (e.g. shared with the relation loss);
                computed here when None.
        Returns:
            {"loss_kd_logits_class", "loss_kd_logits_bbox", "loss_kd_logits_giou"}: scalars.
        """
        if matching is None:
            matching = self.match(student_logits, student_boxes, teacher_logits, teacher_boxes, teacher_gt_indices)
        else:
            self._check_inputs(student_logits, student_boxes, teacher_logits, teacher_boxes)
        teacher_logits = teacher_logits.detach()
        teacher_boxes = teacher_boxes.detach()
        device = student_logits.device
        pairs = matching.layer_pairs
        num_pairs = len(pairs)
        s_layer_of_pair = torch.as_tensor([p[0] for p in pairs]).to(device, non_blocking=True)
        t_layer_of_pair = torch.as_tensor([p[1] for p in pairs]).to(device, non_blocking=True)

        # Flatten all (pair, image, match) triples: (pair id, image id, student query, teacher query).
        pair_ids, image_ids, s_queries, t_queries = [], [], [], []
        box_counts = []
        for p in range(num_pairs):
            count = 0
            for b, (s_q, t_q) in enumerate(matching.indices[p]):
                pair_ids.append(torch.full_like(s_q, p))
                image_ids.append(torch.full_like(s_q, b))
                s_queries.append(s_q)
                t_queries.append(t_q)
                count += len(s_q)
            box_counts.append(count)
        empty = torch.zeros(0, dtype=torch.int64, device=device)
        pair_id = torch.cat(pair_ids).to(device) if pair_ids else empty
        image_id = torch.cat(image_ids).to(device) if image_ids else empty
        s_query = torch.cat(s_queries).to(device) if s_queries else empty
        t_query = torch.cat(t_queries).to(device) if t_queries else empty
        s_layer = s_layer_of_pair[pair_id]
        t_layer = t_layer_of_pair[pair_id]

        src_logits = student_logits[s_layer, image_id, s_query].float()  # (N, C)
        src_boxes = student_boxes[s_layer, image_id, s_query].float()  # (N, 4)
        tgt_probs = teacher_logits[t_layer, image_id, t_query].float().sigmoid()
        tgt_boxes = teacher_boxes[t_layer, image_id, t_query].float()

        class_per_match = soft_bce_with_logits(src_logits, tgt_probs, reduction="none").sum(-1)  # (N,)
        class_sums = torch.zeros(num_pairs, device=device).index_add(0, pair_id, class_per_match)
        l1_sums = torch.zeros(num_pairs, device=device).index_add(0, pair_id, box_l1_loss(src_boxes, tgt_boxes))
        giou_sums = torch.zeros(num_pairs, device=device).index_add(0, pair_id, giou_loss(src_boxes, tgt_boxes))
        class_counts = list(box_counts)

        if matching.background_indices is not None:
            bg_pair, bg_image, bg_query = [], [], []
            for p in range(num_pairs):
                for b, s_q in enumerate(matching.background_indices[p]):
                    bg_pair.append(torch.full_like(s_q, p))
                    bg_image.append(torch.full_like(s_q, b))
                    bg_query.append(s_q)
                    class_counts[p] += len(s_q)
            if bg_pair:
                bg_pair_id = torch.cat(bg_pair).to(device)
                bg_logits = student_logits[
                    s_layer_of_pair[bg_pair_id], torch.cat(bg_image).to(device), torch.cat(bg_query).to(device)
                ].float()
                bg_loss = soft_bce_with_logits(bg_logits, torch.zeros_like(bg_logits), reduction="none").sum(-1)
                class_sums = class_sums.index_add(0, bg_pair_id, bg_loss)

        normalizers = reduce_normalizers(torch.as_tensor(class_counts + box_counts, dtype=torch.float32).to(device, non_blocking=True))
        class_norm, box_norm = normalizers[:num_pairs], normalizers[num_pairs:]
        return {
            "loss_kd_logits_class": self.loss_class_weight * (class_sums / class_norm).sum(),
            "loss_kd_logits_bbox": self.loss_bbox_weight * (l1_sums / box_norm).sum(),
            "loss_kd_logits_giou": self.loss_giou_weight * (giou_sums / box_norm).sum(),
        }
