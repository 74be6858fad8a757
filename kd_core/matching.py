"""Hungarian matching with a weighted, vectorized cost.

The cost matrix for the whole batch is computed in one vectorized pass on the
tensors' device; only the assignment itself runs on CPU, because
``scipy.optimize.linear_sum_assignment`` needs it (one device->host copy per call, and one
host->device copy of all the indices). Large matrices are solved in parallel threads (scipy releases
the GIL while it solves): DETRDistill matches 300 student to 300 teacher queries per decoder stage and
image, 12 such problems a step at batch 2, 3-4 ms each on one core (tools/benchmark_matching.py), time in
which a GPU waits.
"""
import os
from concurrent.futures import ThreadPoolExecutor
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import nn

from .losses import pairwise_giou_cxcywh

__all__ = [
    "HungarianMatcher",
    "default_matching_workers",
    "linear_sum_assignment_batch",
    "focal_class_cost",
    "soft_bce_class_cost",
]


def focal_class_cost(logits: torch.Tensor, labels: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0):
    """Deformable-DETR focal classification cost.

    Args:
        logits: (N, C) sigmoid logits of N predictions.
        labels: (M,) int64 class ids of M targets.
    Returns:
        (N, M) cost; lower is a better match.
    """
    prob = logits.sigmoid()
    neg = (1 - alpha) * prob.pow(gamma) * -(1 - prob + 1e-8).log()
    pos = alpha * (1 - prob).pow(gamma) * -(prob + 1e-8).log()
    return pos[:, labels] - neg[:, labels]


def soft_bce_class_cost(logits: torch.Tensor, target_probs: torch.Tensor):
    """Soft-BCE classification cost summed over classes (DETRDistill logits KD).

    ``cost[i, j] = sum_c BCE(sigmoid(logits[i, c]), target_probs[j, c])``, computed as
    ``softplus(logits).sum(-1)[:, None] - logits @ target_probs.T`` (no (N, M, C) tensor).

    Args:
        logits: (..., N, C) student logits (leading batch dimensions allowed).
        target_probs: (..., M, C) teacher probabilities.
    Returns:
        (..., N, M) cost.
    """
    return F.softplus(logits).sum(-1, keepdim=True) - logits @ target_probs.transpose(-1, -2)


# Matrices with fewer entries are solved in the calling thread: handing them to a thread costs more
# than solving them (a 300 x 15 query-to-GT matrix takes ~0.03 ms).
PARALLEL_MIN_ENTRIES = 10_000


def default_matching_workers() -> int:
    """Threads of :func:`linear_sum_assignment_batch`: the CPUs this process may run on, at most 8."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    return max(1, min(8, cpus))


def linear_sum_assignment_batch(
    costs: Sequence[torch.Tensor], max_workers: Optional[int] = None
) -> List[Tuple[torch.Tensor, torch.Tensor]]:
    """Solve one assignment per cost matrix.

    Args:
        costs: per image, an (N_i, M_i) cost matrix (any device). Empty matrices are allowed.
        max_workers: threads that solve the matrices of at least ``PARALLEL_MIN_ENTRIES`` entries
            concurrently (scipy releases the GIL while solving); None: :func:`default_matching_workers`;
            1: one after another. The solutions do not depend on it.
    Returns:
        per image, ``(row_idx, col_idx)`` int64 tensors on the costs' device, each of length
        ``min(N_i, M_i)``; ``row_idx`` indexes predictions, ``col_idx`` targets (views of one tensor).
    """
    if len(costs) == 0:
        return []
    device = costs[0].device
    # One transfer for the whole batch: concatenate flattened matrices, copy once, split on host.
    sizes = [tuple(c.shape) for c in costs]
    flat = torch.cat([c.detach().float().reshape(-1) for c in costs]).cpu().numpy()
    if not np.isfinite(flat).all():
        raise FloatingPointError("Hungarian matching received a non-finite cost matrix.")
    blocks = []
    offset = 0
    for n, m in sizes:
        blocks.append(flat[offset : offset + n * m].reshape(n, m))
        offset += n * m
    solutions: List[Optional[Tuple[np.ndarray, np.ndarray]]] = [None] * len(blocks)
    large = [i for i, block in enumerate(blocks) if block.size >= PARALLEL_MIN_ENTRIES]
    workers = min(len(large), max_workers if max_workers is not None else default_matching_workers())
    if workers > 1:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for i, solution in zip(large, pool.map(linear_sum_assignment, [blocks[i] for i in large])):
                solutions[i] = solution
    empty = np.zeros(0, dtype=np.int64)
    for i, block in enumerate(blocks):
        if solutions[i] is None:
            solutions[i] = linear_sum_assignment(block) if block.size else (empty, empty)
    # One transfer back: every (rows, cols) pair concatenated, then split into views on the device.
    lengths = [len(rows) for rows, _ in solutions]
    indices = np.concatenate([np.concatenate([rows, cols]) for rows, cols in solutions]).astype(np.int64)
    on_device = torch.from_numpy(indices).to(device, non_blocking=True)
    return [(pair[:n], pair[n:]) for pair, n in zip(on_device.split([2 * n for n in lengths]), lengths)]


class HungarianMatcher(nn.Module):
    """One-to-one matching of predictions to targets with a weighted cost.

    ``cost = cost_class * C_cls + cost_bbox * L1(cxcywh) + cost_giou * (-GIoU)``.

    Targets are either hard labels (``class_cost_type="focal"``, the DETR loss) or soft
    class-probability vectors (``class_cost_type="soft_bce"``, teacher predictions in KD).
    """

    def __init__(
        self,
        cost_class: float = 2.0,
        cost_bbox: float = 5.0,
        cost_giou: float = 2.0,
        class_cost_type: str = "focal",
        focal_alpha: float = 0.25,
        focal_gamma: float = 2.0,
    ):
        super().__init__()
        if class_cost_type not in ("focal", "soft_bce"):
            raise ValueError(f"class_cost_type must be 'focal' or 'soft_bce', got '{class_cost_type}'.")
        self.cost_class = cost_class
        self.cost_bbox = cost_bbox
        self.cost_giou = cost_giou
        self.class_cost_type = class_cost_type
        self.focal_alpha = focal_alpha
        self.focal_gamma = focal_gamma

    @torch.no_grad()
    def cost_matrix(self, logits, boxes, tgt_classes, tgt_boxes):
        """Cost (N, M) between N predictions and M targets of one image or a whole batch.

        Args:
            logits: (N, C) prediction logits.
            boxes: (N, 4) predicted normalized cxcywh boxes.
            tgt_classes: (M,) int64 labels ("focal") or (M, C) probabilities ("soft_bce").
            tgt_boxes: (M, 4) normalized cxcywh target boxes.
        """
        logits = logits.float()
        boxes = boxes.float()
        tgt_boxes = tgt_boxes.float()
        if self.class_cost_type == "focal":
            c_cls = focal_class_cost(logits, tgt_classes, self.focal_alpha, self.focal_gamma)
        else:
            c_cls = soft_bce_class_cost(logits, tgt_classes.float())
        c_l1 = torch.cdist(boxes, tgt_boxes, p=1)
        c_giou = -pairwise_giou_cxcywh(boxes, tgt_boxes)
        return self.cost_class * c_cls + self.cost_bbox * c_l1 + self.cost_giou * c_giou

    @torch.no_grad()
    def forward(
        self,
        pred_logits: torch.Tensor,
        pred_boxes: torch.Tensor,
        targets: Sequence[dict],
    ) -> List[Tuple[torch.Tensor, torch.Tensor]]:
        """Match a batch.

        Args:
            pred_logits: (B, N, C) logits.
            pred_boxes: (B, N, 4) normalized cxcywh boxes.
            targets: per image a dict with "labels" ((M_i,) int64, or (M_i, C) probabilities
                for "soft_bce") and "boxes" ((M_i, 4) normalized cxcywh).
        Returns:
            per image ``(pred_idx, tgt_idx)`` int64 tensors of length min(N, M_i).
        """
        bs, num_queries = pred_logits.shape[:2]
        sizes = [len(t["boxes"]) for t in targets]
        if sum(sizes) == 0:
            empty = torch.zeros(0, dtype=torch.int64, device=pred_logits.device)
            return [(empty, empty) for _ in range(bs)]
        tgt_cls = torch.cat([t["labels"] for t in targets])
        tgt_box = torch.cat([t["boxes"] for t in targets])
        cost = self.cost_matrix(pred_logits.flatten(0, 1), pred_boxes.flatten(0, 1), tgt_cls, tgt_box)
        cost = cost.view(bs, num_queries, -1)
        per_image = [c[i] for i, c in enumerate(cost.split(sizes, dim=-1))]
        return linear_sum_assignment_batch(per_image)
