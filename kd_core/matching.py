"""Hungarian matching with a weighted, vectorized cost.

The cost matrix for the whole batch is computed in one vectorized pass on the
tensors' device; only the assignment itself runs on CPU, because
``scipy.optimize.linear_sum_assignment`` needs it (one device->host copy per call, and one
host->device copy of all the indices). Large matrices are solved in parallel threads (scipy releases
the GIL while it solves): DETRDistill matches 300 student to 300 teacher queries per decoder stage and
image, 12 such problems a step at batch 2, 3-4 ms each on one core (tools/benchmark_matching.py), time in
which a GPU waits unless the caller uses ``linear_sum_assignment_batch_async`` and issues other work meanwhile.
"""
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import nn

from .losses import pairwise_giou_cxcywh

__all__ = [
    "HungarianMatcher",
    "PendingAssignments",
    "default_matching_workers",
    "linear_sum_assignment_batch",
    "linear_sum_assignment_batch_async",
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


def default_matching_workers(leave_free: int = 0) -> int:
    """Threads of :func:`linear_sum_assignment_batch`: the CPUs this process may run on, less
    ``leave_free`` (the asynchronous variant leaves one to the caller), at least 1, at most 8."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    return max(1, min(8, cpus - leave_free))


class PendingAssignments:
    """Assignments that a background thread is solving: :meth:`result` waits for them.

    Made by :func:`linear_sum_assignment_batch_async`. ``then(fn)`` gives a pending ``fn(result())``
    (e.g. a matching built from the assignments) without waiting."""

    def __init__(self, get: Callable[[], object]):
        self._get = get
        self._value = None
        self._has_value = False

    @classmethod
    def finished(cls, value) -> "PendingAssignments":
        """An already computed value (what a synchronous path returns through the same interface)."""
        return cls(lambda: value)

    def result(self):
        """The value, computed (and the thread waited for) on the first call only; the thread's
        exception (e.g. ``FloatingPointError`` for a non-finite cost) is raised here."""
        if not self._has_value:
            self._value = self._get()
            self._has_value = True
            self._get = None
        return self._value

    def then(self, fn: Callable) -> "PendingAssignments":
        return PendingAssignments(lambda: fn(self.result()))


_BACKGROUND: Tuple[int, Optional[ThreadPoolExecutor]] = (-1, None)


def _background() -> ThreadPoolExecutor:
    """One thread per process that waits for the cost copies and solves them (fanning large matrices
    out to solver threads); made again in a forked child, which inherits the object but not the thread."""
    global _BACKGROUND
    pid, pool = _BACKGROUND
    if pool is None or pid != os.getpid():
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kd_matching")
        _BACKGROUND = (os.getpid(), pool)
    return pool


def _stage_costs(costs: Sequence[torch.Tensor]):
    """Start the one device->host copy of all cost matrices (flattened, concatenated, float32).
    Returns (host tensor, CUDA event to wait for or None, shapes)."""
    sizes = [tuple(c.shape) for c in costs]
    flat = torch.cat([c.detach().float().reshape(-1) for c in costs])
    if flat.is_cuda:  # asynchronous copy into pinned memory; the event marks its end
        host = torch.empty(flat.shape, dtype=flat.dtype, pin_memory=True)
        host.copy_(flat, non_blocking=True)  # on the current stream of the costs' device
        event = torch.cuda.Event(blocking=True)  # a waiting thread sleeps rather than spins
        event.record(torch.cuda.current_stream(flat.device))
        return host, event, sizes
    return flat.cpu(), None, sizes


def _solve_staged(host: torch.Tensor, event, sizes, max_workers: Optional[int]) -> Tuple[np.ndarray, List[int]]:
    """Wait for the copy (the event's wait releases the GIL), solve every matrix; returns all
    (rows, cols) pairs concatenated and each pair's length."""
    if event is not None:
        # under the event's device: a thread that never chose one would make a CUDA context on
        # GPU 0 (each DDP rank's background thread would then hold memory there)
        with torch.cuda.device(event.device):
            event.synchronize()
    flat = host.numpy()
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
    lengths = [len(rows) for rows, _ in solutions]
    indices = np.concatenate([np.concatenate([rows, cols]) for rows, cols in solutions]).astype(np.int64)
    return indices, lengths


def _to_device(solved: Tuple[np.ndarray, List[int]], device: torch.device) -> List[Tuple[torch.Tensor, torch.Tensor]]:
    # One transfer back: every (rows, cols) pair concatenated, then split into views on the device.
    indices, lengths = solved
    host = torch.from_numpy(indices)
    if device.type == "cuda":  # from pageable memory a "non-blocking" copy may wait for the stream
        host = host.pin_memory()
    on_device = host.to(device, non_blocking=True)
    return [(pair[:n], pair[n:]) for pair, n in zip(on_device.split([2 * n for n in lengths]), lengths)]


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
    return _to_device(_solve_staged(*_stage_costs(costs), max_workers), costs[0].device)


def linear_sum_assignment_batch_async(
    costs: Sequence[torch.Tensor], max_workers: Optional[int] = None
) -> PendingAssignments:
    """:func:`linear_sum_assignment_batch` solved in a background thread while the caller goes on.

    The costs' device->host copy is queued here (non-blocking on CUDA); a background thread waits for
    it and solves, so the calling thread can issue further device work (other losses) in the
    meantime instead of waiting for the GPU and then for scipy. ``result()`` returns what
    :func:`linear_sum_assignment_batch` would (the same solutions), with the indices' host->device
    copy issued by the calling thread, on its current stream. An error of the solving thread (a
    non-finite cost) is raised by ``result()``; a result never asked for is dropped with it.
    ``max_workers=None`` solves in
    :func:`default_matching_workers` ``(leave_free=1)`` threads: one CPU stays with the caller."""
    if len(costs) == 0:
        return PendingAssignments.finished([])
    device = costs[0].device
    if max_workers is None:  # the caller goes on working: leave it a CPU
        max_workers = default_matching_workers(leave_free=1)
    future = _background().submit(_solve_staged, *_stage_costs(costs), max_workers)
    return PendingAssignments(lambda: _to_device(future.result(), device))


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
        return self._match(pred_logits, pred_boxes, targets, linear_sum_assignment_batch)

    @torch.no_grad()
    def start(self, pred_logits: torch.Tensor, pred_boxes: torch.Tensor, targets: Sequence[dict]) -> PendingAssignments:
        """:meth:`forward` with the assignments solved in the background thread
        (:func:`linear_sum_assignment_batch_async`): the costs are computed and their copy queued
        here; ``.result()`` gives what :meth:`forward` returns. (It does not go through
        ``forward``: a subclass that changes the matching overrides :meth:`_match`.)"""
        return self._match(pred_logits, pred_boxes, targets, linear_sum_assignment_batch_async)

    def _match(self, pred_logits: torch.Tensor, pred_boxes: torch.Tensor, targets: Sequence[dict], solve: Callable):
        """The costs of :meth:`forward`'s inputs, solved by ``solve`` (:func:`linear_sum_assignment_batch`
        or its asynchronous variant, whose kind of result this returns)."""
        bs, num_queries = pred_logits.shape[:2]
        sizes = [len(t["boxes"]) for t in targets]
        if sum(sizes) == 0:
            empty = torch.zeros(0, dtype=torch.int64, device=pred_logits.device)
            out = [(empty, empty) for _ in range(bs)]
            return out if solve is linear_sum_assignment_batch else PendingAssignments.finished(out)
        tgt_cls = torch.cat([t["labels"] for t in targets])
        tgt_box = torch.cat([t["boxes"] for t in targets])
        cost = self.cost_matrix(pred_logits.flatten(0, 1), pred_boxes.flatten(0, 1), tgt_cls, tgt_box)
        cost = cost.view(bs, num_queries, -1)
        per_image = [c[i] for i, c in enumerate(cost.split(sizes, dim=-1))]
        return solve(per_image)
