"""SetCriterion: loss values, per-layer naming and weighting, given assignments, empty targets,
and the cross-process box normalizer."""
import math
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torchvision.ops import box_convert, generalized_box_iou

from detrdistill.modeling.criterion import SetCriterion, num_boxes_across_processes
from kd_core.matching import HungarianMatcher


class _NoMatcher(torch.nn.Module):
    def forward(self, *args, **kwargs):
        raise AssertionError("matcher must not be called when indices are given")


def _focal_term(p, target, alpha=0.25, gamma=2.0):
    if target:
        return -alpha * (1 - p) ** gamma * math.log(p)
    return -(1 - alpha) * p**gamma * math.log(1 - p)


def test_known_values_single_layer():
    crit = SetCriterion(3, _NoMatcher(), weight_dict={"loss_class": 2.0, "loss_bbox": 5.0, "loss_giou": 2.0})
    logits = torch.zeros(1, 1, 2, 3)  # p = 0.5 everywhere
    pred = torch.tensor([[0.5, 0.5, 0.2, 0.2], [0.3, 0.3, 0.2, 0.4]])
    boxes = pred.view(1, 1, 2, 4)
    gt = torch.tensor([[0.35, 0.3, 0.2, 0.2]])
    targets = [{"labels": torch.tensor([2]), "boxes": gt}]
    indices = [[(torch.tensor([1]), torch.tensor([0]))]]
    losses, used = crit(logits, boxes, targets, indices=indices)
    assert used is indices
    assert set(losses) == {"loss_class", "loss_bbox", "loss_giou"}
    expected_class = _focal_term(0.5, True) + 5 * _focal_term(0.5, False)  # one positive, five negatives
    assert losses["loss_class"].item() == pytest.approx(2.0 * expected_class, rel=1e-5)
    assert losses["loss_bbox"].item() == pytest.approx(5.0 * (0.05 + 0 + 0 + 0.2), rel=1e-5)
    giou = generalized_box_iou(box_convert(pred[1:], "cxcywh", "xyxy"), box_convert(gt, "cxcywh", "xyxy"))[0, 0]
    assert losses["loss_giou"].item() == pytest.approx(2.0 * (1 - giou.item()), rel=1e-5)


def _per_layer_reference(logits, boxes, targets, indices, alpha=0.25, gamma=2.0):
    """Independent per-layer, per-image computation (unweighted)."""
    num_boxes = max(sum(len(t["boxes"]) for t in targets), 1)
    out = []
    for layer, per_image in enumerate(indices):
        cls = l1 = giou = 0.0
        for b, (p, t) in enumerate(per_image):
            onehot = torch.zeros_like(logits[layer, b])
            onehot[p, targets[b]["labels"][t]] = 1
            prob = logits[layer, b].sigmoid()
            ce = torch.nn.functional.binary_cross_entropy_with_logits(logits[layer, b], onehot, reduction="none")
            p_t = prob * onehot + (1 - prob) * (1 - onehot)
            a_t = alpha * onehot + (1 - alpha) * (1 - onehot)
            cls += (a_t * ce * (1 - p_t) ** gamma).sum()
            src, tgt = boxes[layer, b, p], targets[b]["boxes"][t]
            l1 += (src - tgt).abs().sum()
            g = generalized_box_iou(box_convert(src, "cxcywh", "xyxy"), box_convert(tgt, "cxcywh", "xyxy"))
            giou += (1 - g.diag()).sum()
        out.append({"loss_class": cls / num_boxes, "loss_bbox": l1 / num_boxes, "loss_giou": giou / num_boxes})
    return out


def _random_batch(num_layers=3, bs=2, queries=6, classes=4, counts=(2, 3), seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(num_layers, bs, queries, classes, generator=g)
    boxes = torch.cat(
        [torch.rand(num_layers, bs, queries, 2, generator=g) * 0.6 + 0.2, torch.rand(num_layers, bs, queries, 2, generator=g) * 0.3 + 0.05],
        -1,
    )
    targets = []
    for m in counts:
        xy = torch.rand(m, 2, generator=g) * 0.6 + 0.2
        wh = torch.rand(m, 2, generator=g) * 0.3 + 0.05
        targets.append({"labels": torch.randint(0, classes, (m,), generator=g), "boxes": torch.cat([xy, wh], -1)})
    return logits, boxes, targets


def test_all_layers_match_independent_reference_and_naming():
    logits, boxes, targets = _random_batch()
    weights = {"loss_class": 2.0, "loss_bbox": 5.0, "loss_giou": 2.0}
    crit = SetCriterion(4, HungarianMatcher(2.0, 5.0, 2.0), weight_dict=weights)
    losses, indices = crit(logits, boxes, targets, prefix="group_")
    assert set(losses) == {
        f"group_{name}{suffix}" for name in weights for suffix in ("_0", "_1", "")
    }
    assert len(indices) == 3 and all(len(x) == 2 for x in indices)
    for per_layer in indices:
        assert [len(p) for p, _ in per_layer] == [2, 3]
    # matching of each layer equals the matcher run on that layer alone
    matcher = HungarianMatcher(2.0, 5.0, 2.0)
    for layer in range(3):
        alone = matcher(logits[layer], boxes[layer], targets)
        for (p1, t1), (p2, t2) in zip(alone, indices[layer]):
            assert torch.equal(p1, p2) and torch.equal(t1, t2)
    ref = _per_layer_reference(logits, boxes, targets, indices)
    for layer in range(3):
        suffix = "" if layer == 2 else f"_{layer}"
        for name, w in weights.items():
            assert losses[f"group_{name}{suffix}"].item() == pytest.approx(w * ref[layer][name].item(), rel=1e-5)


def test_given_indices_are_used_instead_of_matching():
    logits, boxes, targets = _random_batch(num_layers=2)
    matched, indices = SetCriterion(4, HungarianMatcher())(logits, boxes, targets)
    # a different (teacher-style) assignment: reversed query order
    reassigned = [[(5 - p, t) for p, t in per_layer] for per_layer in indices]
    losses, used = SetCriterion(4, _NoMatcher())(logits, boxes, targets, indices=reassigned)
    assert used is reassigned
    assert losses["loss_bbox"].item() != pytest.approx(matched["loss_bbox"].item())
    with pytest.raises(ValueError, match="indices must be a list over 2 layers"):
        SetCriterion(4, _NoMatcher())(logits, boxes, targets, indices=reassigned[:1])


def test_no_ground_truth_gives_class_loss_only():
    logits, boxes, _ = _random_batch(num_layers=2)
    logits.requires_grad_(True)
    empty = [{"labels": torch.zeros(0, dtype=torch.int64), "boxes": torch.zeros(0, 4)} for _ in range(2)]
    losses, indices = SetCriterion(4, HungarianMatcher())(logits, boxes, empty)
    assert all(len(p) == 0 for per_layer in indices for p, _ in per_layer)
    assert losses["loss_bbox"].item() == 0.0 and losses["loss_giou"].item() == 0.0
    assert losses["loss_class"].item() > 0 and torch.isfinite(losses["loss_class"])
    sum(losses.values()).backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


def test_weights_and_errors():
    logits, boxes, targets = _random_batch(num_layers=1)
    only_class, _ = SetCriterion(4, HungarianMatcher(), weight_dict={"loss_class": 1.0})(logits, boxes, targets)
    assert set(only_class) == {"loss_class"}
    with pytest.raises(ValueError, match="unknown losses"):
        SetCriterion(4, HungarianMatcher(), weight_dict={"loss_ce": 1.0})
    with pytest.raises(ValueError, match="criterion expects 5"):
        SetCriterion(5, HungarianMatcher())(logits, boxes, targets)
    with pytest.raises(ValueError, match=r"\(L, B, Q, C\)"):
        SetCriterion(4, HungarianMatcher())(logits[0], boxes[0], targets)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank, world_size, port, counts, results):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        targets = [{"labels": torch.zeros(counts[rank], dtype=torch.int64), "boxes": torch.zeros(counts[rank], 4)}]
        results[rank] = float(num_boxes_across_processes(targets, "cpu"))
    finally:
        dist.destroy_process_group()


def test_num_boxes_is_averaged_across_processes():
    assert float(num_boxes_across_processes([{"boxes": torch.zeros(0, 4)}], "cpu")) == 1.0  # clamped
    ctx = mp.get_context("fork")
    manager = ctx.Manager()
    results = manager.dict()
    port = _free_port()
    procs = [ctx.Process(target=_worker, args=(r, 2, port, (1, 6), results)) for r in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert all(p.exitcode == 0 for p in procs)
    assert dict(results) == {0: 3.5, 1: 3.5}
