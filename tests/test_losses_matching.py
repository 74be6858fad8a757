"""Loss primitives, Hungarian matching and schedules against hand-computed values."""
import math

import pytest
import torch

from kd_core.losses import (
    box_l1_loss,
    giou_loss,
    kl_div_with_temperature,
    quality_scores,
    soft_bce_with_logits,
    weighted_mse,
)
from kd_core.matching import HungarianMatcher, linear_sum_assignment_batch, soft_bce_class_cost
from kd_core.schedules import LossWeightSchedule, current_iteration


def _bce(p, t):
    return -(t * math.log(p) + (1 - t) * math.log(1 - p))


def test_soft_bce_hand_value():
    logits = torch.tensor([[0.0, 2.0]])
    target = torch.tensor([[0.25, 1.0]])
    expected = _bce(0.5, 0.25) + _bce(1 / (1 + math.exp(-2.0)), 1.0)
    assert soft_bce_with_logits(logits, target).item() == pytest.approx(expected, rel=1e-6)
    assert soft_bce_with_logits(logits, target, normalizer=2.0).item() == pytest.approx(expected / 2, rel=1e-6)
    # the minimum over student logits is the teacher's entropy, reached at logit(target)
    t = torch.tensor([[0.3, 0.9]])
    at_min = soft_bce_with_logits(torch.logit(t), t).item()
    entropy = _bce(0.3, 0.3) + _bce(0.9, 0.9)
    assert at_min == pytest.approx(entropy, rel=1e-5)


def test_kl_with_temperature_hand_value():
    s = torch.tensor([[0.0, 0.0]])
    t = torch.tensor([[math.log(3.0), 0.0]])  # softmax -> (0.75, 0.25)
    kl = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
    assert kl_div_with_temperature(s, t, 1.0).item() == pytest.approx(kl, rel=1e-6)
    # T=2: softmax(t/2) = (sqrt3/(1+sqrt3), 1/(1+sqrt3)); times T^2
    p = math.sqrt(3) / (1 + math.sqrt(3))
    kl2 = 4 * (p * math.log(p / 0.5) + (1 - p) * math.log((1 - p) / 0.5))
    assert kl_div_with_temperature(s, t, 2.0).item() == pytest.approx(kl2, rel=1e-6)
    assert kl_div_with_temperature(t, t, 3.0).item() == pytest.approx(0.0, abs=1e-7)


def test_weighted_mse_hand_value_and_shape_check():
    s = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    t = torch.zeros_like(s)
    m = torch.tensor([[[[1.0, 0.0], [0.5, 0.0]]]])
    assert weighted_mse(s, t).item() == pytest.approx((1 + 4 + 9 + 16) / 4)
    assert weighted_mse(s, t, m, reduction="sum").item() == pytest.approx(1 + 0.5 * 9)
    assert weighted_mse(s, t, m, reduction="sum", normalizer=2).item() == pytest.approx((1 + 4.5) / 2)
    with pytest.raises(ValueError, match="adapter"):
        weighted_mse(s, torch.zeros(1, 2, 2, 2))


def test_box_l1_and_giou_hand_values():
    a = torch.tensor([[0.5, 0.5, 0.2, 0.2]])
    b = torch.tensor([[0.6, 0.5, 0.2, 0.4]])
    assert box_l1_loss(a, b).item() == pytest.approx(0.1 + 0 + 0 + 0.2, rel=1e-5)
    # xyxy: a = [0.4,0.4,0.6,0.6], b=[0.5,0.3,0.7,0.7]; inter 0.1*0.2=0.02; union .04+.08-.02=.10
    # enclosing [0.4,0.3,0.7,0.7] = 0.12; giou = 0.2 - (0.12-0.10)/0.12
    giou = 0.2 - 0.02 / 0.12
    assert giou_loss(a, b).item() == pytest.approx(1 - giou, rel=1e-4)
    assert giou_loss(a, a).item() == pytest.approx(0.0, abs=1e-5)  # eps=1e-7 in the IoU
    # degenerate (zero width/height) boxes stay finite, also in the gradient
    d = torch.tensor([[0.5, 0.5, 0.0, 0.0]], requires_grad=True)
    loss = giou_loss(d, torch.tensor([[0.5, 0.5, 0.0, 0.1]]))
    loss.sum().backward()
    assert torch.isfinite(loss).all() and torch.isfinite(d.grad).all()


def test_giou_loss_equals_torchvisions_without_boolean_indexing():
    """kd_core's giou_loss gives torchvision's values and gradients (overlapping, disjoint and
    degenerate pairs, both formats) and dispatches no boolean indexing (a host sync on a GPU)."""
    from torch.utils._python_dispatch import TorchDispatchMode
    from torchvision.ops import box_convert, generalized_box_iou_loss

    g = torch.Generator().manual_seed(0)
    centers = torch.rand(500, 2, generator=g)
    sizes = torch.rand(500, 2, generator=g) * 0.3
    sizes[:20] = 0.0  # degenerate
    pred = torch.cat([centers, sizes], 1)
    target = torch.cat([centers + torch.randn(500, 2, generator=g) * 0.15, sizes.flip(1) + 0.01], 1)  # some disjoint

    class BooleanIndexing(TorchDispatchMode):
        found = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func.__name__.startswith(("index", "nonzero", "masked_select")):
                indices = args[1] if len(args) > 1 and isinstance(args[1], (list, tuple)) else []
                if "nonzero" in func.__name__ or "masked_select" in func.__name__ or any(
                    torch.is_tensor(i) and i.dtype == torch.bool for i in indices
                ):
                    self.found.append(func.__name__)
            return func(*args, **(kwargs or {}))

    for fmt, p, t in (("cxcywh", pred, target), ("xyxy", box_convert(pred, "cxcywh", "xyxy"), box_convert(target, "cxcywh", "xyxy"))):
        ours_in = p.clone().requires_grad_()
        with BooleanIndexing():
            ours = giou_loss(ours_in, t, box_format=fmt)
            ours.sum().backward()
        theirs_in = p.clone().requires_grad_()
        theirs = generalized_box_iou_loss(
            box_convert(theirs_in, fmt, "xyxy") if fmt != "xyxy" else theirs_in,
            box_convert(t, fmt, "xyxy") if fmt != "xyxy" else t,
            reduction="none",
            eps=1e-7,
        )
        theirs.sum().backward()
        assert (ours > 1).any() and (ours < 1).any()  # disjoint and overlapping pairs
        assert torch.allclose(ours, theirs, rtol=0, atol=1e-6)
        assert torch.allclose(ours_in.grad, theirs_in.grad, rtol=0, atol=1e-5)
    assert BooleanIndexing.found == []

def test_quality_scores():
    s = torch.tensor([0.64, 1.0])
    iou = torch.tensor([0.25, 0.0])
    assert quality_scores(s, iou, 0.5).tolist() == pytest.approx([0.8 * 0.5, 0.0])
    assert quality_scores(s, iou, 1.0).tolist() == pytest.approx([0.64, 1.0])


def test_soft_bce_cost_equals_explicit_sum():
    torch.manual_seed(0)
    logits, probs = torch.randn(5, 3), torch.rand(4, 3)
    explicit = torch.stack(
        [torch.stack([soft_bce_with_logits(logits[i], probs[j]) for j in range(4)]) for i in range(5)]
    )
    assert torch.allclose(soft_bce_class_cost(logits, probs), explicit, atol=1e-5)


def test_linear_sum_assignment_batch_known_solution_and_empty():
    cost = torch.tensor([[4.0, 1.0, 3.0], [2.0, 0.0, 5.0], [3.0, 2.0, 2.0]])
    (rows, cols), (r0, c0) = linear_sum_assignment_batch([cost, torch.zeros(3, 0)])
    assert rows.tolist() == [0, 1, 2] and cols.tolist() == [1, 0, 2]  # total 1+2+2 = 5 is optimal
    assert r0.numel() == 0 and c0.numel() == 0


def test_linear_sum_assignment_batch_threads_give_scipy_solutions():
    """The large matrices (DETRDistill's 300 x 300 student-to-teacher shape, here smaller) solved in
    threads give scipy's own solutions, in order, whatever the number of threads; the small and
    empty ones are solved in the calling thread; a non-finite cost is refused."""
    from scipy.optimize import linear_sum_assignment

    from kd_core.matching import PARALLEL_MIN_ENTRIES

    g = torch.Generator().manual_seed(0)
    shapes = [(120, 110), (7, 3), (110, 120), (0, 5), (150, 150), (130, 100)]
    assert sum(n * m >= PARALLEL_MIN_ENTRIES for n, m in shapes) == 4
    costs = [torch.rand(n, m, generator=g) for n, m in shapes]
    serial = linear_sum_assignment_batch(costs, max_workers=1)
    for workers in (None, 2, 4):
        threaded = linear_sum_assignment_batch(costs, max_workers=workers)
        assert all(torch.equal(a, c) and torch.equal(b, d) for (a, b), (c, d) in zip(serial, threaded))
    for cost, (rows, cols) in zip(costs, serial):
        ref_rows, ref_cols = linear_sum_assignment(cost.numpy())
        assert rows.dtype == torch.int64 and rows.tolist() == ref_rows.tolist() and cols.tolist() == ref_cols.tolist()
        assert len(rows) == min(cost.shape)
    bad = [c.clone() for c in costs]
    bad[4][3, 7] = float("nan")
    with pytest.raises(FloatingPointError, match="non-finite"):
        linear_sum_assignment_batch(bad, max_workers=4)


def test_linear_sum_assignment_batch_async_solves_in_the_background(monkeypatch):
    """The asynchronous variant returns before anything is solved (the solver here waits for the
    caller to go on), solves in the background thread, gives the synchronous solutions, raises a
    non-finite cost's error at result(), and a forked child gets a thread of its own."""
    import threading

    from kd_core import matching

    g = torch.Generator().manual_seed(0)
    costs = [torch.rand(n, m, generator=g) for n, m in ((120, 110), (7, 3), (0, 5), (150, 150))]
    expected = linear_sum_assignment_batch(costs, max_workers=1)
    scipy_solver = matching.linear_sum_assignment
    caller_went_on = threading.Event()
    threads = set()

    def waiting_solver(block):
        threads.add(threading.current_thread().name)
        assert caller_went_on.wait(30), "the caller was blocked until the assignments were solved"
        return scipy_solver(block)

    monkeypatch.setattr(matching, "linear_sum_assignment", waiting_solver)
    pending = matching.linear_sum_assignment_batch_async(costs, max_workers=1)
    caller_went_on.set()
    solved = pending.result()
    assert pending.result() is solved  # solved once
    assert all(torch.equal(a, c) and torch.equal(b, d) for (a, b), (c, d) in zip(expected, solved))
    assert threads and all(name.startswith("kd_matching") for name in threads), threads
    assert matching.linear_sum_assignment_batch_async([]).result() == []
    chained = matching.linear_sum_assignment_batch_async(costs[:2]).then(len)
    assert chained.result() == 2

    bad = [c.clone() for c in costs]
    bad[0][3, 7] = float("inf")
    pending = matching.linear_sum_assignment_batch_async(bad)  # no error yet: it is raised where the result is read
    with pytest.raises(FloatingPointError, match="non-finite"):
        pending.result()

    pool = matching._background()
    assert matching._background() is pool
    monkeypatch.setattr(matching, "_BACKGROUND", (-1, pool))  # as a forked child sees its parent's pool
    assert matching._background() is not pool


def test_hungarian_matcher_recovers_permutation_and_zero_gt():
    # three predictions are exact copies of three targets in shuffled order
    tgt_boxes = torch.tensor([[0.2, 0.2, 0.1, 0.1], [0.7, 0.6, 0.3, 0.2], [0.5, 0.5, 0.5, 0.5]])
    labels = torch.tensor([1, 0, 2])
    perm = torch.tensor([2, 0, 1])
    pred_boxes = tgt_boxes[perm][None]
    logits = torch.full((1, 3, 3), -5.0)
    logits[0, torch.arange(3), labels[perm]] = 5.0
    matcher = HungarianMatcher(cost_class=2, cost_bbox=5, cost_giou=2)
    (pi, ti), = matcher(logits, pred_boxes, [{"labels": labels, "boxes": tgt_boxes}])
    assert torch.equal(perm[pi], ti)
    out = matcher(logits, pred_boxes, [{"labels": torch.zeros(0, dtype=torch.long), "boxes": torch.zeros(0, 4)}])
    assert out[0][0].numel() == 0
    # soft targets (teacher probabilities)
    soft = HungarianMatcher(cost_class=1, cost_bbox=5, cost_giou=2, class_cost_type="soft_bce")
    (pi, ti), = soft(logits, pred_boxes, [{"labels": torch.sigmoid(logits[0, perm.argsort()]), "boxes": tgt_boxes}])
    assert torch.equal(perm[pi], ti)


def test_loss_weight_schedule():
    s = LossWeightSchedule(0.5, start_iter=10, ramp_iters=4)
    assert [s(i) for i in (0, 9, 10, 11, 13, 100)] == [0.0, 0.0, 0.125, 0.25, 0.5, 0.5]
    assert LossWeightSchedule(2.0)(0) == 2.0
    with pytest.raises(ValueError):
        LossWeightSchedule(1.0, start_iter=-1)
    off = LossWeightSchedule(0.5, start_iter=2, end_iter=5)  # on for iterations 2, 3, 4 only
    assert [off(i) for i in range(7)] == [0.0, 0.0, 0.5, 0.5, 0.5, 0.0, 0.0]
    assert not off.is_active(5)
    with pytest.raises(ValueError, match="end_iter"):
        LossWeightSchedule(1.0, start_iter=5, end_iter=5)


def test_current_iteration_reads_event_storage():
    from detectron2.utils.events import EventStorage

    assert current_iteration(default=-7) == -7
    with EventStorage(start_iter=123):
        assert current_iteration() == 123


def test_pairwise_iou_giou_batched_and_degenerate():
    from kd_core.losses import pairwise_giou_cxcywh, pairwise_iou_cxcywh

    a = torch.tensor([[0.5, 0.5, 0.2, 0.2], [0.5, 0.5, 0.0, 0.0]])
    b = torch.tensor([[0.6, 0.5, 0.2, 0.4], [0.5, 0.5, 0.0, 0.0]])
    iou, giou = pairwise_iou_cxcywh(a, b), pairwise_giou_cxcywh(a, b)
    assert iou[0, 0].item() == pytest.approx(0.2, rel=1e-4)
    assert giou[0, 0].item() == pytest.approx(0.2 - 0.02 / 0.12, rel=1e-4)
    assert torch.isfinite(giou).all() and torch.isfinite(iou).all()  # two zero-area boxes: finite
    batched = pairwise_giou_cxcywh(torch.stack([a, a]), torch.stack([b, b]))
    assert batched.shape == (2, 2, 2) and torch.allclose(batched[1], giou)


def test_matching_benchmark_tool_times_every_worker_count(capsys):
    """tools/benchmark_matching.py: one line per worker count, the first at 1.00x of itself (it checks
    that every count gives the one-thread assignment and exits otherwise)."""
    import os
    import sys

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools"))
    from benchmark_matching import main

    main(["--blocks", "3", "--rows", "120", "--cols", "100", "--gt-blocks", "2", "--repeats", "2", "--workers", "1", "3"])
    out = capsys.readouterr().out
    assert "3 x (120 x 100) + 2 x (120 x 20) cost matrices" in out
    assert "workers  1: median" in out and "1.00x vs 1 worker(s)" in out and "workers  3: median" in out

    threads = torch.get_num_threads()
    try:
        main(["--blocks", "2", "--rows", "120", "--cols", "100", "--gt-blocks", "0", "--repeats", "2", "--workers", "1", "--overlap-ops", "40", "--torch-threads", "1"])
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    assert "PyTorch threads 1" in out
    for order in ("ops alone", "matching, then ops", "ops during the matching"):
        assert f"{order:<24} (40 ops): median" in out
    assert "ops during / after the matching:" in out
