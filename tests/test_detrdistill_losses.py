"""DETRDistill distillation terms on tiny tensors, checked against values written out by hand."""

import math
import os
import tempfile

import pytest
import torch
import torch.multiprocessing as mp

from detrdistill.distill import (
    HungarianLogitsDistillation,
    QueryRelationDistillation,
    TargetAwareFeatureDistillation,
    build_layer_mapping,
    match_teacher_to_ground_truth,
    prefix_query_group_losses,
    query_group_indices,
    teacher_assignment_indices,
)
from kd_core.matching import HungarianMatcher


# ---------------------------------------------------------------- explicit formulas (no library code)
def sigmoid(x):
    return 1.0 / (1.0 + math.exp(-x))


def bce(logit, target):
    p = sigmoid(logit)
    return -(target * math.log(p) + (1.0 - target) * math.log(1.0 - p))


def entropy(p):
    return -(p * math.log(p) + (1.0 - p) * math.log(1.0 - p))


def to_xyxy(b):
    cx, cy, w, h = b
    return (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)


def iou_giou(a, b):
    a, b = to_xyxy(a), to_xyxy(b)
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    enc = (max(a[2], b[2]) - min(a[0], b[0])) * (max(a[3], b[3]) - min(a[1], b[1]))
    return inter / union, inter / union - (enc - union) / enc


def l1(a, b):
    return sum(abs(x - y) for x, y in zip(a, b))


# ---------------------------------------------------------------- layer mapping
def test_layer_mapping_modes():
    assert build_layer_mapping(3, 6, "grouped") == [(0, 0), (0, 1), (1, 2), (1, 3), (2, 4), (2, 5)]
    assert build_layer_mapping(3, 6, "auto") == build_layer_mapping(3, 6, "grouped")
    assert build_layer_mapping(6, 3, "grouped") == [(0, 0), (1, 0), (2, 1), (3, 1), (4, 2), (5, 2)]
    assert build_layer_mapping(4, 4, None) == [(0, 0), (1, 1), (2, 2), (3, 3)]
    assert build_layer_mapping(3, 6, "last") == [(0, 5), (1, 5), (2, 5)]
    with pytest.raises(ValueError, match="same_index"):
        build_layer_mapping(3, 6, "same_index")
    with pytest.raises(ValueError, match="multiple"):
        build_layer_mapping(4, 6, "grouped")
    with pytest.raises(ValueError, match="Unknown layer mapping"):
        build_layer_mapping(6, 6, "interleaved")


# ---------------------------------------------------------------- logits KD
S_LOGITS = [[2.0, -1.0, 0.5], [-0.5, 1.5, -2.0]]
S_BOXES = [[0.5, 0.5, 0.2, 0.2], [0.2, 0.3, 0.1, 0.2]]
# Teacher predictions in swapped order: teacher 0 resembles student 1 and vice versa.
T_LOGITS = [[-1.0, 1.0, -1.5], [1.0, -0.5, 0.0]]
T_BOXES = [[0.25, 0.3, 0.1, 0.2], [0.55, 0.5, 0.2, 0.2]]


def _t(x):
    return torch.tensor(x, dtype=torch.float32)[None, None]  # (L=1, B=1, Q, ...)


def test_logits_kd_code_mode_hand_value():
    kd = HungarianLogitsDistillation()
    s_logits, s_boxes = _t(S_LOGITS).requires_grad_(), _t(S_BOXES).requires_grad_()
    t_logits, t_boxes = _t(T_LOGITS), _t(T_BOXES)
    matching = kd.match(s_logits, s_boxes, t_logits, t_boxes)
    s_idx, t_idx = matching.indices[0][0]
    assert dict(zip(s_idx.tolist(), t_idx.tolist())) == {0: 1, 1: 0}

    pairs = [(0, 1), (1, 0)]
    cls = sum(bce(S_LOGITS[i][c], sigmoid(T_LOGITS[j][c])) for i, j in pairs for c in range(3)) / 2
    box = sum(l1(S_BOXES[i], T_BOXES[j]) for i, j in pairs) / 2
    giou = sum(1 - iou_giou(S_BOXES[i], T_BOXES[j])[1] for i, j in pairs) / 2
    # student 0 vs teacher 1: IoU = 0.03 / 0.05 = 0.6 and the boxes' union fills the enclosing box
    assert iou_giou(S_BOXES[0], T_BOXES[1])[1] == pytest.approx(0.6)

    losses = kd(s_logits, s_boxes, t_logits, t_boxes, matching=matching)
    assert set(losses) == {"loss_kd_logits_class", "loss_kd_logits_bbox", "loss_kd_logits_giou"}
    assert losses["loss_kd_logits_class"].item() == pytest.approx(1.0 * cls, rel=1e-5)
    assert losses["loss_kd_logits_bbox"].item() == pytest.approx(5.0 * box, rel=1e-5)
    assert losses["loss_kd_logits_giou"].item() == pytest.approx(2.0 * giou, rel=1e-5)
    # without a precomputed matching the same values come out
    again = kd(s_logits, s_boxes, t_logits, t_boxes)
    for k in losses:
        assert again[k].item() == pytest.approx(losses[k].item())


def test_logits_kd_student_equals_teacher_gives_teacher_entropy():
    torch.manual_seed(0)
    logits = torch.randn(2, 2, 5, 3)  # L=2, B=2, Q=5, C=3
    boxes = torch.rand(2, 2, 5, 4) * 0.5 + 0.25
    losses = HungarianLogitsDistillation()(logits.clone(), boxes.clone(), logits, boxes)
    probs = logits.sigmoid().flatten().tolist()
    # per layer: sum of per-class entropies over B*Q pairs / (B*Q pairs); summed over 2 layers
    expected = sum(entropy(p) for p in probs) / (2 * 5)
    assert losses["loss_kd_logits_class"].item() == pytest.approx(expected, rel=1e-5)
    assert losses["loss_kd_logits_bbox"].item() == pytest.approx(0.0, abs=1e-6)
    assert losses["loss_kd_logits_giou"].item() == pytest.approx(0.0, abs=1e-5)


def test_logits_kd_unequal_query_counts():
    t_logits, t_boxes = _t(T_LOGITS), _t(T_BOXES)
    # Qs = 3 > Qt = 2: copies of teacher 1 and 0 at student positions 0 and 2, junk at 1.
    s_logits = torch.tensor([[T_LOGITS[1], [5.0, 5.0, 5.0], T_LOGITS[0]]])[None].requires_grad_()
    s_boxes = torch.tensor([[T_BOXES[1], [0.9, 0.9, 0.05, 0.05], T_BOXES[0]]])[None].requires_grad_()
    kd = HungarianLogitsDistillation()
    matching = kd.match(s_logits, s_boxes, t_logits, t_boxes)
    s_idx, t_idx = matching.indices[0][0]
    assert dict(zip(s_idx.tolist(), t_idx.tolist())) == {0: 1, 2: 0}
    losses = kd(s_logits, s_boxes, t_logits, t_boxes, matching=matching)
    expected = sum(entropy(sigmoid(v)) for row in T_LOGITS for v in row) / 2  # 2 pairs, not 3
    assert losses["loss_kd_logits_class"].item() == pytest.approx(expected, rel=1e-5)
    assert losses["loss_kd_logits_bbox"].item() == pytest.approx(0.0, abs=1e-6)
    # move the matched queries off the optimum: they get gradients, the unmatched query none
    shifted_logits = (s_logits.detach() + 0.3).requires_grad_()
    shifted_boxes = (s_boxes.detach() + 0.01).requires_grad_()
    sum(kd(shifted_logits, shifted_boxes, t_logits, t_boxes, matching=matching).values()).backward()
    assert torch.all(shifted_logits.grad[0, 0, 1] == 0) and torch.all(shifted_boxes.grad[0, 0, 1] == 0)
    assert shifted_logits.grad[0, 0, 0].abs().sum() > 0 and shifted_boxes.grad[0, 0, 2].abs().sum() > 0

    # Qs = 2 < Qt = 3: every student query matched, normalizer 2.
    t3_logits = torch.tensor([[T_LOGITS[0], [-4.0, -4.0, -4.0], T_LOGITS[1]]])[None]
    t3_boxes = torch.tensor([[T_BOXES[0], [0.1, 0.9, 0.05, 0.05], T_BOXES[1]]])[None]
    s2_logits, s2_boxes = _t([T_LOGITS[1], T_LOGITS[0]]), _t([T_BOXES[1], T_BOXES[0]])
    matching = kd.match(s2_logits, s2_boxes, t3_logits, t3_boxes)
    s_idx, t_idx = matching.indices[0][0]
    assert dict(zip(s_idx.tolist(), t_idx.tolist())) == {0: 2, 1: 0}
    losses = kd(s2_logits, s2_boxes, t3_logits, t3_boxes)
    assert losses["loss_kd_logits_class"].item() == pytest.approx(expected, rel=1e-5)


def test_logits_kd_grouped_three_student_six_teacher_layers():
    torch.manual_seed(1)
    s_logits, s_boxes = torch.randn(3, 2, 4, 3), torch.rand(3, 2, 4, 4) * 0.5 + 0.2
    t_logits, t_boxes = torch.randn(6, 2, 4, 3), torch.rand(6, 2, 4, 4) * 0.5 + 0.2
    kd = HungarianLogitsDistillation()  # auto -> grouped
    matching = kd.match(s_logits, s_boxes, t_logits, t_boxes)
    assert matching.layer_pairs == [(0, 0), (0, 1), (1, 2), (1, 3), (2, 4), (2, 5)]
    losses = kd(s_logits, s_boxes, t_logits, t_boxes)
    # equals the sum of the six single-layer-pair losses
    for key in losses:
        total = sum(
            kd(s_logits[s : s + 1], s_boxes[s : s + 1], t_logits[t : t + 1], t_boxes[t : t + 1])[key]
            for s, t in matching.layer_pairs
        )
        assert losses[key].item() == pytest.approx(total.item(), rel=1e-5)
    last = HungarianLogitsDistillation(layer_mapping="last").match(s_logits, s_boxes, t_logits, t_boxes)
    assert last.layer_pairs == [(0, 5), (1, 5), (2, 5)]


def test_logits_kd_rejects_class_mismatch_and_bad_shapes():
    kd = HungarianLogitsDistillation()
    with pytest.raises(ValueError, match="Class-count mismatch"):
        kd(torch.zeros(1, 1, 2, 3), torch.rand(1, 1, 2, 4), torch.zeros(1, 1, 2, 4), torch.rand(1, 1, 2, 4))
    with pytest.raises(ValueError, match="Batch-size mismatch"):
        kd(torch.zeros(1, 2, 2, 3), torch.rand(1, 2, 2, 4), torch.zeros(1, 1, 2, 3), torch.rand(1, 1, 2, 4))
    with pytest.raises(ValueError, match="same_index"):
        HungarianLogitsDistillation(layer_mapping="same_index")(
            torch.zeros(2, 1, 2, 3), torch.rand(2, 1, 2, 4), torch.zeros(3, 1, 2, 3), torch.rand(3, 1, 2, 4)
        )
    with pytest.raises(ValueError, match="mode"):
        HungarianLogitsDistillation(mode="both")
    with pytest.raises(ValueError, match="teacher_gt_indices"):
        HungarianLogitsDistillation(mode="paper")(
            torch.zeros(1, 1, 2, 3), torch.rand(1, 1, 2, 4), torch.zeros(1, 1, 2, 3), torch.rand(1, 1, 2, 4)
        )


@pytest.mark.parametrize("mode", ["code", "paper"])
def test_logits_kd_gradients_reach_student_only(mode):
    torch.manual_seed(2)
    s_logits = torch.randn(2, 2, 4, 3, requires_grad=True)
    s_boxes = (torch.rand(2, 2, 4, 4) * 0.5 + 0.2).requires_grad_()
    t_logits = torch.randn(2, 2, 4, 3, requires_grad=True)
    t_boxes = (torch.rand(2, 2, 4, 4) * 0.5 + 0.2).requires_grad_()
    gt_idx = [[(torch.tensor([1]), torch.tensor([0])), (torch.tensor([0, 3]), torch.tensor([1, 0]))]] * 2
    losses = HungarianLogitsDistillation(mode=mode)(s_logits, s_boxes, t_logits, t_boxes, teacher_gt_indices=gt_idx)
    sum(losses.values()).backward()
    assert s_logits.grad is not None and s_logits.grad.abs().sum() > 0
    assert s_boxes.grad is not None and s_boxes.grad.abs().sum() > 0
    assert t_logits.grad is None and t_boxes.grad is None


def test_logits_kd_paper_mode_hand_value():
    # Teacher: 3 predictions, only prediction 1 is positive (matched to GT by the teacher).
    t_logits = [[-3.0, -2.0, -3.0], [2.0, -1.0, -2.0], [-1.0, -2.5, -3.5]]
    t_boxes = [[0.2, 0.2, 0.1, 0.1], [0.5, 0.5, 0.2, 0.2], [0.8, 0.7, 0.2, 0.1]]
    # Student: query 2 resembles the positive; queries 0 and 1 have low scores (cheap background).
    s_logits = [[-2.0, -3.0, -1.0], [-4.0, -1.0, -2.0], [1.5, -0.5, -1.0]]
    s_boxes = [[0.7, 0.2, 0.1, 0.3], [0.3, 0.7, 0.2, 0.2], [0.55, 0.5, 0.2, 0.2]]
    gt_idx = [[(torch.tensor([1]), torch.tensor([0]))]]
    kd = HungarianLogitsDistillation(mode="paper")
    args = (_t(s_logits), _t(s_boxes), _t(t_logits), _t(t_boxes))
    matching = kd.match(*args, teacher_gt_indices=gt_idx)
    s_idx, t_idx = matching.indices[0][0]
    assert s_idx.tolist() == [2] and t_idx.tolist() == [1]
    # 2 negatives -> the 2 student queries with the lowest sum_c softplus(s_c), i.e. queries 0 and 1
    assert sorted(matching.background_indices[0][0].tolist()) == [0, 1]
    losses = kd(*args, teacher_gt_indices=gt_idx, matching=matching)
    pos_cls = sum(bce(s_logits[2][c], sigmoid(t_logits[1][c])) for c in range(3))
    neg_cls = sum(bce(s_logits[i][c], 0.0) for i in (0, 1) for c in range(3))
    assert losses["loss_kd_logits_class"].item() == pytest.approx((pos_cls + neg_cls) / 3, rel=1e-5)
    assert losses["loss_kd_logits_bbox"].item() == pytest.approx(5.0 * l1(s_boxes[2], t_boxes[1]), rel=1e-5)
    assert losses["loss_kd_logits_giou"].item() == pytest.approx(
        2.0 * (1 - iou_giou(s_boxes[2], t_boxes[1])[1]), rel=1e-5
    )


@pytest.mark.parametrize("mode", ["code", "paper"])
def test_logits_kd_degenerate_boxes_and_no_ground_truth(mode):
    s_logits = torch.zeros(1, 2, 3, 2, requires_grad=True)
    s_boxes = torch.tensor([[0.5, 0.5, 0.0, 0.0], [0.5, 0.5, 0.0, 0.0], [0.2, 0.2, 0.0, 0.1]]).expand(1, 2, 3, 4)
    s_boxes = s_boxes.clone().requires_grad_()
    t_logits = torch.zeros(1, 2, 3, 2)
    t_boxes = torch.tensor([[0.5, 0.5, 0.0, 0.0], [0.3, 0.3, 0.0, 0.0], [0.2, 0.2, 0.0, 0.1]]).expand(1, 2, 3, 4)
    empty = torch.zeros(0, dtype=torch.int64)
    gt_idx = [[(empty, empty), (empty, empty)]]  # no GT in either image
    losses = HungarianLogitsDistillation(mode=mode)(s_logits, s_boxes, t_logits, t_boxes, teacher_gt_indices=gt_idx)
    total = sum(losses.values())
    total.backward()
    assert torch.isfinite(total)
    assert torch.isfinite(s_logits.grad).all() and torch.isfinite(s_boxes.grad).all()
    if mode == "paper":  # no positives: box terms are 0, every student query gets background
        assert losses["loss_kd_logits_bbox"].item() == 0.0
        assert losses["loss_kd_logits_class"].item() == pytest.approx(2 * math.log(2.0), rel=1e-5)


def _distributed_worker(rank, world_size, init_file, out_dir):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    torch.manual_seed(rank)
    bs = 1 if rank == 0 else 3  # 2 and 6 matched pairs: averaged normalizer 4 on both ranks
    logits, boxes = torch.randn(1, bs, 2, 3), torch.rand(1, bs, 2, 4) * 0.5 + 0.2
    losses = HungarianLogitsDistillation()(logits.clone(), boxes.clone(), logits, boxes)
    local_entropy_sum = sum(entropy(p) for p in logits.sigmoid().flatten().tolist())
    torch.save(
        {"class": losses["loss_kd_logits_class"].item(), "entropy_sum": local_entropy_sum}, f"{out_dir}/{rank}.pt"
    )
    dist.destroy_process_group()


def test_logits_kd_normalizer_is_averaged_across_processes():
    with tempfile.TemporaryDirectory() as tmp:
        mp.spawn(_distributed_worker, args=(2, os.path.join(tmp, "init"), tmp), nprocs=2, join=True)
        for rank in range(2):
            out = torch.load(f"{tmp}/{rank}.pt")
            assert out["class"] == pytest.approx(out["entropy_sum"] / 4.0, rel=1e-5)


# ---------------------------------------------------------------- feature KD
def _feature_case():
    """B=1, D=2, H=1, W=2; one stage, Q=2 queries, C=1 class, one GT box."""
    f_t = torch.tensor([[[[1.0, 0.0]], [[0.0, 1.0]]]])  # pixel 0: (1, 0), pixel 1: (0, 1)
    f_s = torch.tensor([[[[0.5, 0.2]], [[0.1, -0.3]]]])
    hidden = torch.tensor([[[[2.0, 0.0], [1.0, 1.0]]]])  # (L=1, B=1, Q=2, D=2)
    logits = torch.tensor([[[[1.0], [0.0]]]])  # probs sigmoid(1), 0.5
    gt = [0.5, 0.5, 0.2, 0.2]
    boxes = torch.tensor([[[gt, [0.55, 0.5, 0.2, 0.2]]]])  # IoU 1 and 0.6 with the GT
    targets = [{"boxes": torch.tensor([gt]), "labels": torch.tensor([0])}]
    return f_s, f_t, hidden, logits, boxes, targets


def test_feature_kd_code_mode_hand_value():
    f_s, f_t, hidden, logits, boxes, targets = _feature_case()
    q0, q1 = sigmoid(1.0) * 1.0, 0.5 * 0.6
    # cos(query, pixel): query 0 = (1, 0) direction, query 1 = (1, 1)/sqrt(2)
    m = [q0 * 1.0 + q1 / math.sqrt(2), q0 * 0.0 + q1 / math.sqrt(2)]
    m = [max(v, 0.01) for v in m]
    m = [v / max(m) for v in m]
    ft = [[1.0, 0.0], [0.0, 1.0]]  # [channel][pixel]
    fs = [[0.5, 0.2], [0.1, -0.3]]
    expected = sum((m[p] * (ft[c][p] - fs[c][p])) ** 2 for c in range(2) for p in range(2)) / 4
    kd = TargetAwareFeatureDistillation(num_topk=2)
    loss = kd([f_s], [f_t], None, logits, boxes, hidden, targets)["loss_kd_feature"]
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    mask = kd.masks([f_t], None, logits, boxes, hidden, targets)[0]
    assert mask.shape == (1, 1, 1, 2)
    assert mask.flatten().tolist() == pytest.approx(m, rel=1e-5)
    # student == teacher -> 0
    assert kd([f_t.clone()], [f_t], None, logits, boxes, hidden, targets)["loss_kd_feature"].item() == 0.0


def test_feature_kd_without_ground_truth_uses_class_probability():
    f_s, f_t, hidden, logits, boxes, _ = _feature_case()
    q0, q1 = sigmoid(1.0), 0.5
    m = [q0 + q1 / math.sqrt(2), q1 / math.sqrt(2)]
    m = [v / max(m) for v in m]
    kd = TargetAwareFeatureDistillation(num_topk=2)
    no_gt = [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}]
    mask = kd.masks([f_t], None, logits, boxes, hidden, no_gt)[0]
    assert mask.flatten().tolist() == pytest.approx(m, rel=1e-5)
    loss = kd([f_s], [f_t], None, logits, boxes, hidden, no_gt)["loss_kd_feature"]
    assert torch.isfinite(loss) and loss.item() > 0


def test_feature_kd_topk_selects_query_class_pairs():
    f_s, f_t, hidden, logits, boxes, targets = _feature_case()
    # top-1 keeps only (query 0, class 0)
    kd = TargetAwareFeatureDistillation(num_topk=1)
    mask = kd.masks([f_t], None, logits, boxes, hidden, targets)[0].flatten().tolist()
    assert mask == pytest.approx([1.0, 0.01 / (sigmoid(1.0) * 1.0)], rel=1e-5)


def test_feature_kd_excludes_padding():
    f_s, f_t, hidden, logits, boxes, targets = _feature_case()
    pad = [torch.tensor([[[False, True]]])]
    kd = TargetAwareFeatureDistillation(num_topk=2)
    mask = kd.masks([f_t], pad, logits, boxes, hidden, targets)[0].flatten().tolist()
    assert mask == [1.0, 0.0]
    loss_a = kd([f_s], [f_t], pad, logits, boxes, hidden, targets)["loss_kd_feature"]
    f_s2 = f_s.clone()
    f_s2[..., 1] = 100.0  # changes only the padded pixel
    loss_b = kd([f_s2], [f_t], pad, logits, boxes, hidden, targets)["loss_kd_feature"]
    assert loss_a.item() == pytest.approx(loss_b.item())
    expected = ((1.0 - 0.5) ** 2 + (0.0 - 0.1) ** 2) / 4  # pixel 0 only, mask 1
    assert loss_a.item() == pytest.approx(expected, rel=1e-5)
    paper = TargetAwareFeatureDistillation(mode="paper")
    assert paper([f_s], [f_t], pad, logits, boxes, hidden, targets)["loss_kd_feature"].item() == pytest.approx(
        paper([f_s2], [f_t], pad, logits, boxes, hidden, targets)["loss_kd_feature"].item()
    )


def test_feature_kd_paper_mode_hand_value():
    f_s, f_t, hidden, logits, boxes, targets = _feature_case()
    gamma = 0.5
    c = [sigmoid(1.0), 0.5]
    iou = [1.0, 0.6]
    q = [c[i] ** gamma * iou[i] ** (1 - gamma) for i in range(2)]
    queries = [[2.0, 0.0], [1.0, 1.0]]
    ft = [[1.0, 0.0], [0.0, 1.0]]  # [channel][pixel]
    fs = [[0.5, 0.2], [0.1, -0.3]]
    m_q, d, h, w = 2, 2, 1, 2
    expected = 0.0
    for i in range(2):
        for p in range(2):
            psi = sum(ft[ch][p] * queries[i][ch] for ch in range(2))
            expected += q[i] / (m_q * d * h * w) * sum((psi * (ft[ch][p] - fs[ch][p])) ** 2 for ch in range(2))
    kd = TargetAwareFeatureDistillation(mode="paper", gamma=gamma)
    loss = kd([f_s], [f_t], None, logits, boxes, hidden, targets)["loss_kd_feature"]
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    mask = kd.masks([f_t], None, logits, boxes, hidden, targets)[0].flatten()
    weights = [sum(q[i] * sum(ft[ch][p] * queries[i][ch] for ch in range(2)) ** 2 for i in range(2)) for p in range(2)]
    assert mask.tolist() == pytest.approx([v / max(weights) for v in weights], rel=1e-5)


def test_feature_kd_channel_mismatch_and_adapter():
    torch.manual_seed(3)
    _, f_t, hidden, logits, boxes, targets = _feature_case()
    f_s = torch.randn(1, 3, 1, 2, requires_grad=True)
    with pytest.raises(ValueError, match="adapter"):
        TargetAwareFeatureDistillation()([f_s], [f_t], None, logits, boxes, hidden, targets)
    for mode in ("code", "paper"):
        kd = TargetAwareFeatureDistillation(mode=mode, student_channels=[3], teacher_channels=[2])
        loss = kd([f_s], [f_t], None, logits, boxes, hidden, targets)["loss_kd_feature"]
        loss.backward()
        assert kd.adapters[0].proj.weight.grad is not None and kd.adapters[0].proj.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="decoder width"):
        TargetAwareFeatureDistillation()([f_t], [f_t], None, logits, boxes, torch.zeros(1, 1, 2, 5), targets)


def test_feature_kd_gradients_and_degenerate_inputs():
    torch.manual_seed(4)
    levels = [(4, 6), (2, 3)]
    f_t = [torch.randn(2, 8, h, w, requires_grad=True) for h, w in levels]
    f_s = [torch.randn(2, 8, h, w, requires_grad=True) for h, w in levels]
    pads = [torch.zeros(2, h, w, dtype=torch.bool) for h, w in levels]
    pads[0][1, :, 4:] = True
    pads[1][1, :, 2:] = True
    logits = torch.randn(3, 2, 5, 4, requires_grad=True)
    boxes = torch.rand(3, 2, 5, 4)
    boxes[:, :, :3, 2:] = 0.0  # degenerate predicted boxes
    boxes[:, 0, 4] = torch.tensor([0.32, 0.3, 0.2, 0.2])  # overlaps a GT box (paper quality > 0)
    hidden = torch.randn(3, 2, 5, 8, requires_grad=True)
    targets = [
        {"boxes": torch.tensor([[0.5, 0.5, 0.0, 0.0], [0.3, 0.3, 0.2, 0.2]]), "labels": torch.tensor([1, 2])},
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)},
    ]
    for mode in ("code", "paper"):
        kd = TargetAwareFeatureDistillation(mode=mode, num_topk=7)
        loss = kd(f_s, f_t, pads, logits, boxes, hidden, targets)["loss_kd_feature"]
        assert torch.isfinite(loss)
        loss.backward()
        assert all(torch.isfinite(f.grad).all() and f.grad.abs().sum() > 0 for f in f_s)
        assert all(f.grad is None for f in f_t) and logits.grad is None and hidden.grad is None
        masks = kd.masks(f_t, pads, logits, boxes, hidden, targets, stage=1)
        assert [tuple(m.shape) for m in masks] == [(2, 1, 4, 6), (2, 1, 2, 3)]
        assert all(torch.isfinite(m).all() and m.max() <= 1.0 + 1e-6 for m in masks)
        assert masks[0][1, 0, :, 4:].abs().sum() == 0
        for f in f_s:
            f.grad = None
    # selecting stages: stage subset equals the sum of single-stage losses
    kd_all = TargetAwareFeatureDistillation(num_topk=7)
    per_stage = [TargetAwareFeatureDistillation(num_topk=7, stages=[s]) for s in range(3)]
    total = kd_all(f_s, f_t, pads, logits, boxes, hidden, targets)["loss_kd_feature"]
    parts = sum(k(f_s, f_t, pads, logits, boxes, hidden, targets)["loss_kd_feature"] for k in per_stage)
    assert total.item() == pytest.approx(parts.item(), rel=1e-5)


# ---------------------------------------------------------------- relation KD
def test_relation_kd_hand_value_and_unequal_queries():
    torch.manual_seed(5)
    rel = QueryRelationDistillation(student_dim=6, teacher_dim=4, embed_dim=8)
    s_hidden = torch.randn(1, 2, 3, 6, requires_grad=True)  # Qs = 3
    t_hidden = torch.randn(1, 2, 2, 4, requires_grad=True)  # Qt = 2
    indices = [[(torch.tensor([0, 2]), torch.tensor([1, 0])), (torch.tensor([1, 2]), torch.tensor([0, 1]))]]
    loss = rel(s_hidden, t_hidden, [(0, 0)], indices)["loss_kd_relation"]
    # explicit InfoNCE on the 4 matched pairs (rows: teacher, columns: student)
    s_rows = torch.stack([s_hidden[0, 0, 0], s_hidden[0, 0, 2], s_hidden[0, 1, 1], s_hidden[0, 1, 2]])
    t_rows = torch.stack([t_hidden[0, 0, 1], t_hidden[0, 0, 0], t_hidden[0, 1, 0], t_hidden[0, 1, 1]])
    s_emb, t_emb = rel.student_proj(s_rows).tolist(), rel.teacher_proj(t_rows.detach()).tolist()
    expected = 0.0
    for i in range(4):
        sims = [sum(a * b for a, b in zip(t_emb[i], s_emb[j])) / 0.07 for j in range(4)]
        expected += -(sims[i] - math.log(sum(math.exp(v) for v in sims)))
    assert loss.item() == pytest.approx(0.2 * expected / 4, rel=1e-4)
    loss.backward()
    assert t_hidden.grad is None
    assert s_hidden.grad[0, 0, 1].abs().sum() == 0  # unmatched student query
    assert s_hidden.grad[0, 0, 0].abs().sum() > 0
    assert rel.teacher_proj.proj.weight.grad is not None


def test_relation_kd_too_few_pairs_is_zero_with_graph():
    rel = QueryRelationDistillation(student_dim=4, teacher_dim=4, embed_dim=8)
    one = [[(torch.tensor([0]), torch.tensor([0]))]]
    loss = rel(torch.randn(1, 1, 2, 4), torch.randn(1, 1, 2, 4), [(0, 0)], one)["loss_kd_relation"]
    assert loss.item() == 0.0 and loss.requires_grad


def test_relation_kd_uses_logits_matching():
    torch.manual_seed(6)
    logits, boxes = torch.randn(2, 2, 4, 3), torch.rand(2, 2, 4, 4) * 0.5 + 0.2
    perm = torch.tensor([2, 0, 3, 1])
    kd = HungarianLogitsDistillation()
    matching = kd.match(logits[:, :, perm], boxes[:, :, perm], logits, boxes)
    for per_image in matching.indices:
        for s_idx, t_idx in per_image:
            assert torch.equal(perm[s_idx], t_idx)  # student query k holds teacher query perm[k]
    rel = QueryRelationDistillation(student_dim=8, teacher_dim=8, embed_dim=16)
    hidden = torch.randn(2, 2, 4, 8)
    out = rel(hidden[:, :, perm], hidden, matching.layer_pairs, matching.indices)
    assert torch.isfinite(out["loss_kd_relation"])


# ---------------------------------------------------------------- query prior
def _gt_indices(num_layers):
    return [
        [(torch.tensor([layer]), torch.tensor([0])), (torch.tensor([layer, 5]), torch.tensor([1, 0]))]
        for layer in range(num_layers)
    ]


def test_teacher_assignment_indices_layer_mapping():
    gt6 = _gt_indices(6)
    grouped = teacher_assignment_indices(gt6, 3)  # 3 student <- 6 teacher: stages 2j (1-based)
    assert [per_layer[0][0].item() for per_layer in grouped] == [1, 3, 5]
    same = teacher_assignment_indices(gt6, 6)
    assert [per_layer[0][0].item() for per_layer in same] == list(range(6))
    last = teacher_assignment_indices(gt6, 3, "last")
    assert [per_layer[0][0].item() for per_layer in last] == [5, 5, 5]
    assert query_group_indices("fresh", gt6, 6) is None
    assert query_group_indices("teacher", gt6, 6)[2][1][0].tolist() == [2, 5]
    with pytest.raises(ValueError, match="assignment"):
        query_group_indices("student", gt6, 6)
    with pytest.raises(ValueError, match="needs"):
        query_group_indices("teacher", None, 6)
    with pytest.raises(ValueError, match="multiple"):
        teacher_assignment_indices(gt6, 4)


def test_prefix_query_group_losses():
    out = prefix_query_group_losses({"loss_class": 1, "loss_bbox_0": 2, "num_boxes": 3})
    assert out == {"loss_kd_query_class": 1, "loss_kd_query_bbox_0": 2, "loss_kd_query_num_boxes": 3}


def test_match_teacher_to_ground_truth():
    torch.manual_seed(7)
    logits = torch.full((2, 2, 4, 3), -5.0)
    boxes = torch.rand(2, 2, 4, 4) * 0.2 + 0.1
    gt0 = torch.tensor([[0.7, 0.7, 0.2, 0.2]])
    boxes[:, 0, 2] = gt0[0]  # query 2 of image 0 predicts the GT exactly, with its class
    logits[:, 0, 2, 1] = 5.0
    targets = [
        {"boxes": gt0, "labels": torch.tensor([1])},
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)},
    ]
    matcher = HungarianMatcher(cost_class=2.0, cost_bbox=5.0, cost_giou=2.0)
    out = match_teacher_to_ground_truth(matcher, logits, boxes, targets)
    assert len(out) == 2 and all(len(per_layer) == 2 for per_layer in out)
    for per_layer in out:
        assert per_layer[0][0].tolist() == [2] and per_layer[0][1].tolist() == [0]
        assert per_layer[1][0].numel() == 0
    for layer in range(2):  # same as running the matcher layer by layer
        ref = matcher(logits[layer], boxes[layer], targets)
        for (a, b), (c, d) in zip(out[layer], ref):
            assert torch.equal(a, c) and torch.equal(b, d)
