"""Query-prior assignment distillation helpers (DETRDistill Sec. 3.4, Eq. 10).

The teacher's queries are run through the student decoder as an extra query group (Qt queries,
in the teacher's query order). Its outputs are supervised with ground truth by the detector's own
``SetCriterion``; these helpers provide the assignment to use:

* ``assignment="teacher"`` (Eq. 10, the fix): the group's prediction i is matched to the GT box
  that the teacher's own Hungarian matching gave to teacher query i at the corresponding
  teacher decoder stage (``sigma^T``).
* ``assignment="fresh"`` (what the official code actually does, its assignment being dropped):
  no indices, the criterion matches the group to GT itself.

Loss keys of the group are prefixed with ``loss_kd_query_`` (:func:`prefix_query_group_losses`).
"""

from typing import Dict, List, Optional, Sequence, Tuple

import torch

from kd_core.matching import HungarianMatcher, linear_sum_assignment_batch

from .layer_mapping import build_layer_mapping

__all__ = [
    "QUERY_GROUP_ASSIGNMENTS",
    "QUERY_KD_LOSS_PREFIX",
    "match_teacher_to_ground_truth",
    "prefix_query_group_losses",
    "query_group_indices",
    "teacher_assignment_indices",
]

QUERY_KD_LOSS_PREFIX = "loss_kd_query_"
QUERY_GROUP_ASSIGNMENTS = ("teacher", "fresh")

ImageIndices = Tuple[torch.Tensor, torch.Tensor]


@torch.no_grad()
def match_teacher_to_ground_truth(
    matcher: HungarianMatcher,
    teacher_logits: torch.Tensor,
    teacher_boxes: torch.Tensor,
    targets: Sequence[dict],
) -> List[List[ImageIndices]]:
    """The teacher's own Hungarian assignment to ground truth, for every decoder layer at once.

    One cost evaluation for all layers and one host transfer for all assignments.

    Args:
        matcher: a :class:`kd_core.matching.HungarianMatcher` with the teacher's DETR costs
            (e.g. focal 2 / L1 5 / GIoU 2).
        teacher_logits: (L, B, Q, C); teacher_boxes: (L, B, Q, 4) normalized cxcywh.
        targets: B dicts with "labels" (M_i,) int64 and "boxes" (M_i, 4) normalized cxcywh.
    Returns:
        per layer, per image, ``(pred_idx, gt_idx)`` int64 tensors (length min(Q, M_i)).
    """
    if teacher_logits.dim() != 4 or teacher_boxes.shape != (*teacher_logits.shape[:3], 4):
        raise ValueError(
            f"teacher_logits must be (L, B, Q, C) and teacher_boxes (L, B, Q, 4), got "
            f"{tuple(teacher_logits.shape)} and {tuple(teacher_boxes.shape)}."
        )
    num_layers, bs, num_queries = teacher_logits.shape[:3]
    if len(targets) != bs:
        raise ValueError(f"Got {len(targets)} targets for a batch of {bs} images.")
    sizes = [len(t["boxes"]) for t in targets]
    device = teacher_logits.device
    if sum(sizes) == 0:
        empty = torch.zeros(0, dtype=torch.int64, device=device)
        return [[(empty, empty) for _ in range(bs)] for _ in range(num_layers)]
    tgt_labels = torch.cat([t["labels"] for t in targets]).to(device)
    tgt_boxes = torch.cat([t["boxes"] for t in targets]).to(device)
    cost = matcher.cost_matrix(teacher_logits.flatten(0, 2), teacher_boxes.flatten(0, 2), tgt_labels, tgt_boxes)
    cost = cost.view(num_layers, bs, num_queries, -1)
    per_image_cols = cost.split(sizes, dim=-1)  # B chunks of (L, B, Q, M_i)
    flat = linear_sum_assignment_batch([per_image_cols[b][l, b] for l in range(num_layers) for b in range(bs)])
    return [flat[l * bs : (l + 1) * bs] for l in range(num_layers)]


def teacher_assignment_indices(
    teacher_gt_indices: Sequence[Sequence[ImageIndices]],
    num_student_layers: int,
    layer_mapping: Optional[str] = None,
) -> List[List[ImageIndices]]:
    """Indices for ``SetCriterion`` on the student's teacher-query group, one entry per student layer.

    Query i of the group is the teacher's query i, so the teacher's ``(pred_idx, gt_idx)`` can be
    used unchanged. With the layer mapping of :func:`build_layer_mapping`, a student layer mapped
    to several teacher layers (``"grouped"``, e.g. 3 student / 6 teacher) uses the assignment of
    the deepest of them (student stage j <- teacher stage 2j, 1-based), the stage its group ends with.

    Args:
        teacher_gt_indices: per teacher layer, per image, ``(pred_idx, gt_idx)``.
        num_student_layers: decoder layers of the student.
        layer_mapping: "same_index", "last", "grouped" or None/"auto".
    Returns:
        per student layer, per image, ``(pred_idx, gt_idx)`` (the teacher's tensors, not copies).
    """
    num_teacher_layers = len(teacher_gt_indices)
    if num_teacher_layers == 0:
        raise ValueError("teacher_gt_indices is empty: expected one entry per teacher decoder layer.")
    pairs = build_layer_mapping(num_student_layers, num_teacher_layers, layer_mapping)
    teacher_of_student = {}
    for s, t in pairs:
        teacher_of_student[s] = max(t, teacher_of_student.get(s, t))
    return [list(teacher_gt_indices[teacher_of_student[s]]) for s in range(num_student_layers)]


def query_group_indices(
    assignment: str,
    teacher_gt_indices: Optional[Sequence[Sequence[ImageIndices]]],
    num_student_layers: int,
    layer_mapping: Optional[str] = None,
) -> Optional[List[List[ImageIndices]]]:
    """The ``indices`` argument of ``SetCriterion`` for the teacher-query group.

    Args:
        assignment: "teacher" (the teacher's per-stage assignment, Eq. 10) or "fresh" (None: the
            criterion matches the group to ground truth itself, as the official code does).
        teacher_gt_indices: per teacher layer, per image, ``(pred_idx, gt_idx)``; required for "teacher".
        num_student_layers, layer_mapping: see :func:`teacher_assignment_indices`.
    """
    if assignment not in QUERY_GROUP_ASSIGNMENTS:
        raise ValueError(f"Unknown query-group assignment '{assignment}', expected one of {QUERY_GROUP_ASSIGNMENTS}.")
    if assignment == "fresh":
        return None
    if teacher_gt_indices is None:
        raise ValueError("query-group assignment 'teacher' needs the teacher's per-layer GT assignment.")
    return teacher_assignment_indices(teacher_gt_indices, num_student_layers, layer_mapping)


def prefix_query_group_losses(losses: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Rename the criterion's loss keys for the teacher-query group.

    "loss_xxx" -> "loss_kd_query_xxx"; any other key "k" -> "loss_kd_query_k".
    """
    out = {}
    for key, value in losses.items():
        name = key[len("loss_") :] if key.startswith("loss_") else key
        out[QUERY_KD_LOSS_PREFIX + name] = value
    return out
