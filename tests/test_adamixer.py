"""AdaMixer meta-architecture and its operators: box algebra, 3D sampling, adaptive mixing (against
explicit loops), outputs, extra query groups, training, inference and configs (all tiny, CPU)."""

import math
import os
import time

import pytest
import torch
import torch.nn.functional as F

from detectron2.config import LazyConfig, instantiate
from detectron2.modeling import META_ARCH_REGISTRY
from detectron2.structures import Boxes, Instances

from detrdistill.modeling import DETROutputs, SetCriterion, make_resnet_backbone
from detrdistill.modeling.adamixer import (
    AdaMixer,
    AdaptiveMixing,
    cxcywh_from_xyzr,
    pairwise_iof_xyxy,
    refine_xyzr,
    sample_3d,
    sampling_points_3d,
    xyzr_from_cxcywh,
    xyzr_position_embedding,
)
from kd_core.matching import HungarianMatcher
from detr_inputs import NUM_CLASSES, make_inputs, total_loss  # noqa: E402 (tests/ helper)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_DIR = os.path.join(REPO, "projects", "DETRDistill", "configs", "adamixer")
HIDDEN = 64
QUERIES = 20
IN_FEATURES = ["res2", "res3", "res4", "res5"]


def build_tiny(**overrides):
    kwargs = dict(
        backbone=make_resnet_backbone(18, out_features=IN_FEATURES, freeze_at=0),
        in_features=IN_FEATURES,
        criterion=SetCriterion(NUM_CLASSES, HungarianMatcher(2.0, 5.0, 2.0)),
        num_classes=NUM_CLASSES,
        num_queries=QUERIES,
        hidden_dim=HIDDEN,
        num_stages=2,
        num_heads=8,
        dim_feedforward=128,
        in_points=8,
        out_points=16,
        num_groups=4,
        select_box_nums_for_evaluation=30,
    )
    kwargs.update(overrides)
    return AdaMixer(**kwargs)


def perturb_zero_init(model, std=0.05):
    """Non-trivial weights for the zero-initialized generators and box heads."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if any(k in name for k in ("bbox_embed", "sampling_offsets.weight", "parameter_generator.weight")):
                p.normal_(0.0, std)


# ------------------------------------------------------------------------------- operators
def test_box_algebra():
    boxes = torch.tensor([[50.0, 40.0, 20.0, 80.0], [10.0, 10.0, 4.0, 1.0]])
    xyzr = xyzr_from_cxcywh(boxes)
    assert torch.allclose(xyzr[0], torch.tensor([50.0, 40.0, math.log2(40.0), 2.0]))
    assert torch.allclose(cxcywh_from_xyzr(xyzr), boxes, atol=1e-5)
    # refinement: center moves by delta * 2^z, z and r add
    delta = torch.tensor([[0.1, -0.2, 0.5, -1.0], [0.0, 0.0, 0.0, 0.0]])
    refined = refine_xyzr(xyzr, delta)
    assert torch.allclose(refined[0], torch.tensor([50.0 + 4.0, 40.0 - 8.0, math.log2(40.0) + 0.5, 1.0]), atol=1e-5)
    assert torch.equal(refined[1], xyzr[1])
    # degenerate boxes stay finite
    assert torch.isfinite(xyzr_from_cxcywh(torch.tensor([[5.0, 5.0, 0.0, 3.0], [5.0, 5.0, 0.0, 0.0]]))).all()


def test_pairwise_iof():
    boxes = torch.tensor(
        [[[0.0, 0.0, 10.0, 10.0], [5.0, 0.0, 15.0, 10.0], [0.0, 0.0, 2.0, 2.0], [20.0, 20.0, 30.0, 30.0]]]
    )
    iof = pairwise_iof_xyxy(boxes)[0]
    assert iof[0, 1] == pytest.approx(0.5) and iof[1, 0] == pytest.approx(0.5)
    assert iof[0, 2] == pytest.approx(4 / 100) and iof[2, 0] == pytest.approx(1.0)  # over the first box's area
    assert iof[0, 3] == 0 and torch.allclose(iof.diagonal(), torch.ones(4))


def test_position_embedding_layout():
    xyzr = torch.tensor([[[500.0, 250.0, 6.0, -1.0]]])
    pe = xyzr_position_embedding(xyzr, 16)  # 4 coordinates x 4 features
    assert pe.shape == (1, 1, 16)
    f = 4
    for c, value in enumerate([0.5, 0.25, 6.0, -1.0]):
        for i in range(f):
            freq = 10000 ** (2 * (i // 2) / f)
            expected = math.sin(value / freq) if i % 2 == 0 else math.cos(value / freq)
            assert pe[0, 0, c * f + i].item() == pytest.approx(expected, abs=1e-6)


def test_sampling_points_3d():
    xyzr = xyzr_from_cxcywh(torch.tensor([[[100.0, 60.0, 40.0, 20.0]]]))  # (1, 1, 4)
    offsets = torch.zeros(1, 1, 2 * 3 * 3)
    offsets.view(2, 3, 3)[1, 2] = torch.tensor([0.5, -0.25, -1.0])  # group 1, point 2
    points = sampling_points_3d(offsets, xyzr, num_groups=2, num_points=3)
    assert points.shape == (1, 1, 2, 3, 3)
    z = 0.5 * math.log2(800.0)
    assert torch.allclose(points[0, 0, 0, 0], torch.tensor([100.0, 60.0, z]))
    assert torch.allclose(points[0, 0, 1, 2], torch.tensor([120.0, 55.0, z - 1.0]))


def _coordinate_pyramid(strides, size=(64, 96), channels=8):
    """Levels whose channel 0 is each pixel center's x and channel 1 its y (input pixels), channel c>=2 = c."""
    h, w = size
    features = []
    for s in strides:
        hs, ws = h // s, w // s
        f = torch.zeros(1, channels, hs, ws)
        f[0, 0] = ((torch.arange(ws) + 0.5) * s)[None, :].expand(hs, ws)
        f[0, 1] = ((torch.arange(hs) + 0.5) * s)[:, None].expand(hs, ws)
        for c in range(2, channels):
            f[0, c] = float(c)
        features.append(f)
    return features


def test_sample_3d_interpolates_positions_and_blends_levels():
    strides = [4, 8, 16]
    features = _coordinate_pyramid(strides)
    # points well inside every level (bilinear interpolation of a linear ramp is exact there)
    xy = torch.tensor([[33.0, 21.0], [50.5, 30.0], [40.0, 35.5]])
    z = torch.tensor([2.0, 3.4, 10.0])
    points = torch.cat([xy, z[:, None]], -1).view(1, 3, 1, 1, 3).expand(1, 3, 2, 1, 3).reshape(1, 3, 2, 1, 3)
    out = sample_3d(points, features, strides)  # 2 groups of 4 channels
    assert out.shape == (1, 3, 2, 1, 4)
    assert torch.allclose(out[0, :, 0, 0, 0], xy[:, 0], atol=1e-4)
    assert torch.allclose(out[0, :, 0, 0, 1], xy[:, 1], atol=1e-4)
    assert torch.allclose(out[0, :, 1, 0], torch.tensor([4.0, 5.0, 6.0, 7.0]).expand(3, 4), atol=1e-5)

    # level weights: softmax(-(z - log2 stride)^2 / 2); levels distinguished by scaling level l by 10^l
    scaled = [f * 10.0**l for l, f in enumerate(features)]
    out = sample_3d(points, scaled, strides)[0, :, 1, 0, 0]  # constant channel 4
    for i in range(3):
        w = torch.softmax(-((z[i] - torch.tensor([2.0, 3.0, 4.0])) ** 2) / 2.0, 0)
        assert out[i].item() == pytest.approx(4.0 * float((w * torch.tensor([1.0, 10.0, 100.0])).sum()), rel=1e-5)

    # outside the image: zeros
    far = torch.tensor([[-200.0, -200.0, 3.0]]).view(1, 1, 1, 1, 3).expand(1, 1, 2, 1, 3)
    assert sample_3d(far, features, strides).abs().max() == 0


def test_adaptive_mixing_matches_a_per_query_loop():
    torch.manual_seed(0)
    mixing = AdaptiveMixing(feature_dim=8, query_dim=12, in_points=3, out_points=5, num_groups=2)
    with torch.no_grad():
        mixing.parameter_generator.weight.normal_(0, 0.3)
    sampled = torch.randn(2, 4, 2, 3, 4)
    query = torch.randn(2, 4, 12)
    out = mixing(sampled, query)
    expected = torch.empty_like(out)
    for b in range(2):
        for q in range(4):
            params = mixing.parameter_generator(query[b, q]).view(2, -1)
            mixed = []
            for g in range(2):
                m = params[g, :16].view(4, 4)
                s = params[g, 16:].view(5, 3)
                x = sampled[b, q, g] @ m  # (3, 4)
                x = F.relu(F.layer_norm(x, x.shape))
                x = s @ x  # (5, 4)
                mixed.append(F.relu(F.layer_norm(x, x.shape)).flatten())
            expected[b, q] = query[b, q] + mixing.out_proj(torch.cat(mixed))
    assert torch.allclose(out, expected, atol=1e-5)
    with pytest.raises(ValueError, match="sampled features"):
        mixing(torch.randn(2, 4, 2, 4, 4), query)


# ---------------------------------------------------------------------------------- model
def test_registered_and_attributes():
    assert META_ARCH_REGISTRY.get("AdaMixer") is AdaMixer
    model = build_tiny()
    assert (model.num_classes, model.num_queries, model.hidden_dim, model.num_decoder_layers) == (
        NUM_CLASSES,
        QUERIES,
        HIDDEN,
        2,
    )
    assert model.feature_strides == [4, 8, 16, 32]
    assert isinstance(model.criterion, SetCriterion)
    assert "initial_boxes" in model.state_dict() and "initial_boxes" not in dict(model.named_parameters())


def test_run_outputs_and_training_losses():
    torch.manual_seed(0)
    model = build_tiny().train()
    inputs = make_inputs()
    outputs = model.run(model.preprocess_image(inputs))
    L, B, Q = 2, 2, QUERIES
    assert isinstance(outputs, DETROutputs)
    assert outputs.logits.shape == (L, B, Q, NUM_CLASSES)
    assert outputs.boxes.shape == (L, B, Q, 4)
    assert outputs.hidden_states.shape == (L, B, Q, HIDDEN)
    assert outputs.query_embed.shape == (Q, HIDDEN + 4)
    assert len(outputs.features) == 4 and len(outputs.feature_masks) == 4
    for f, m, s in zip(outputs.features, outputs.feature_masks, (4, 8, 16, 32)):
        assert f.shape == (B, HIDDEN, 96 // s, 128 // s) and m.shape == (B, 96 // s, 128 // s)
    assert not outputs.feature_masks[0][0].any() and outputs.feature_masks[0][1].any()
    assert outputs.image_sizes.tolist() == [[96, 128], [64, 96]]
    assert outputs.aux["xyzr"].shape == (L, B, Q, 4)
    # zero-initialized box heads: every stage still predicts the initial whole-image box
    assert torch.allclose(outputs.boxes, torch.tensor([0.5, 0.5, 1.0, 1.0]).expand_as(outputs.boxes), atol=1e-5)

    losses = model(inputs)
    expected = {"loss_class", "loss_bbox", "loss_giou", "loss_class_0", "loss_bbox_0", "loss_giou_0"}
    assert set(losses) == expected
    total_loss(losses).backward()
    unused = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not unused, f"parameters without gradient (would break DDP without find_unused_parameters): {unused}"


def test_boxes_are_detached_between_stages():
    torch.manual_seed(0)
    model = build_tiny().train()
    perturb_zero_init(model)
    outputs = model.run(model.preprocess_image(make_inputs()))
    outputs.boxes[1].sum().backward()
    # the last stage's box loss reaches stage 0 only through the content, not through its boxes
    assert model.stages[0].bbox_embed.weight.grad is None or model.stages[0].bbox_embed.weight.grad.abs().sum() == 0
    assert model.stages[1].bbox_embed.weight.grad.abs().sum() > 0


def test_extra_queries_group_is_isolated():
    torch.manual_seed(0)
    model = build_tiny().eval()
    perturb_zero_init(model)
    images = model.preprocess_image(make_inputs())
    extra = torch.cat([torch.randn(7, HIDDEN), torch.rand(7, 2) * 0.6 + 0.2, torch.rand(7, 2) * 0.3 + 0.1], 1)
    with torch.no_grad():
        plain = model.run(images)
        grouped = model.run(images, extra_queries=extra)
    assert torch.equal(plain.logits, grouped.logits)
    assert torch.equal(plain.boxes, grouped.boxes)
    assert torch.equal(plain.hidden_states, grouped.hidden_states)
    assert grouped.extra.logits.shape == (2, 2, 7, NUM_CLASSES) and grouped.extra.boxes.shape == (2, 2, 7, 4)
    assert grouped.extra.query_embed is extra
    # the extra group behaves as the only queries of a model with the same weights
    state = dict(model.state_dict(), **{"query_content.weight": extra[:, :HIDDEN], "initial_boxes": extra[:, HIDDEN:]})
    alone_model = build_tiny(num_queries=7).eval()
    alone_model.load_state_dict(state)
    with torch.no_grad():
        alone = alone_model.run(images)
    assert torch.allclose(alone.logits, grouped.extra.logits, atol=1e-5)
    assert torch.allclose(alone.boxes, grouped.extra.boxes, atol=1e-5)


def test_extra_queries_per_image_and_gradients():
    torch.manual_seed(0)
    model = build_tiny().train()
    images = model.preprocess_image(make_inputs())
    extra = torch.cat([torch.randn(2, 5, HIDDEN), torch.full((2, 5, 4), 0.5)], -1).requires_grad_()
    outputs = model.run(images, extra_queries=extra)
    assert outputs.extra.logits.shape == (2, 2, 5, NUM_CLASSES)
    outputs.extra.logits.sum().backward()
    assert extra.grad[..., :HIDDEN].abs().sum() > 0
    assert extra.grad[..., HIDDEN:].abs().sum() == 0  # boxes are not learnable, as the official xyzr
    assert model.query_content.weight.grad is None or model.query_content.weight.grad.abs().sum() == 0
    with pytest.raises(ValueError, match="extra_queries"):
        model.run(images, extra_queries=torch.randn(5, HIDDEN))


def test_training_reduces_loss():
    torch.manual_seed(0)
    model = build_tiny().train()
    inputs = make_inputs(sizes=((64, 96), (64, 96)))
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    history = []
    start = time.perf_counter()
    for _ in range(5):
        loss = total_loss(model(inputs))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        history.append(float(loss.detach()))
    print(f"tiny AdaMixer losses: {[round(x, 3) for x in history]} ({time.perf_counter() - start:.1f}s)")
    assert history[-1] < 0.7 * history[0]


def test_images_without_boxes_train():
    torch.manual_seed(0)
    model = build_tiny().train()
    losses = model(make_inputs(boxes=[torch.zeros(0, 4), torch.zeros(0, 4)]))
    assert all(torch.isfinite(v) for v in losses.values())
    assert losses["loss_bbox"].item() == 0.0 and losses["loss_class"].item() > 0
    total_loss(losses).backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def test_degenerate_boxes_give_no_nan():
    torch.manual_seed(0)
    model = build_tiny().train()
    perturb_zero_init(model)
    boxes = [
        [[10.0, 10.0, 10.0, 50.0], [5.0, 5.0, 6.0, 6.0], [0.0, 0.0, 128.0, 96.0]],
        [[-20.0, -10.0, 200.0, 300.0], [30.0, 40.0, 30.0, 40.0]],
    ]
    losses = model(make_inputs(boxes=boxes))
    assert all(torch.isfinite(v) for v in losses.values())
    total_loss(losses).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    # degenerate extra-query boxes too
    extra = torch.cat(
        [torch.randn(3, HIDDEN), torch.tensor([[0.5, 0.5, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [1.0, 1.0, 0.0, 1.0]])], 1
    )
    with torch.no_grad():
        out = model.run(model.preprocess_image(make_inputs()), extra_queries=extra)
    assert torch.isfinite(out.extra.logits).all() and torch.isfinite(out.extra.boxes).all()


def test_inference_format_and_rescaling():
    torch.manual_seed(0)
    model = build_tiny().eval()
    perturb_zero_init(model, std=0.01)
    inputs = make_inputs()
    with torch.no_grad():
        results = model(inputs)
        outputs = model.run(model.preprocess_image(inputs))
    assert len(results) == 2
    for r, x in zip(results, inputs):
        inst = r["instances"]
        assert isinstance(inst, Instances) and inst.image_size == (x["height"], x["width"])
        # top 30 (query, class) pairs; detector_postprocess drops boxes that fall outside the image
        assert 0 < len(inst) <= 30 and inst.pred_classes.max() < NUM_CLASSES
        assert (inst.scores[:-1] >= inst.scores[1:]).all()
    probs = outputs.logits[-1, 1].sigmoid()
    q, c = divmod(int(probs.flatten().argmax()), NUM_CLASSES)
    assert int(results[1]["instances"].pred_classes[0]) == c
    assert results[1]["instances"].scores[0] == pytest.approx(float(probs.max()))
    cx, cy, w, h = outputs.boxes[-1, 1, q].tolist()
    size = torch.tensor([192.0, 128.0] * 2)  # image 1 is 64x96, reported at 2x
    expected = (torch.tensor([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]) * size).clamp(min=0).minimum(size)
    assert torch.allclose(results[1]["instances"].pred_boxes.tensor[0], expected, atol=1e-3)


def test_bad_construction_errors():
    with pytest.raises(ValueError, match="no outputs"):
        build_tiny(in_features=["res2", "p6"])
    with pytest.raises(ValueError, match="num_groups"):
        build_tiny(num_groups=3)
    with pytest.raises(ValueError, match="criterion.num_classes"):
        build_tiny(criterion=SetCriterion(3, HungarianMatcher()))


def test_configs_instantiate():
    for name in ("adamixer_r50_12ep.py", "adamixer_r101_12ep.py", "adamixer_tiny_cpu.py"):
        LazyConfig.load(os.path.join(CONFIG_DIR, name))
    full = LazyConfig.load(os.path.join(CONFIG_DIR, "adamixer_r50_12ep.py"))
    m = full.model
    assert (m.num_queries, m.num_stages, m.hidden_dim, m.in_points, m.out_points, m.num_groups) == (
        100,
        6,
        256,
        32,
        128,
        4,
    )
    assert (full.optimizer.lr, full.optimizer.weight_decay) == (2.5e-5, 1e-4)
    assert full.optimizer.params.lr_factor_func is None
    assert full.dataloader.train.total_batch_size == 16
    assert full.dataloader.train.mapper.augmentation_with_crop is None
    full.lr_multiplier.max_iter = 1200
    scheduler = instantiate(full.lr_multiplier)
    assert scheduler(0.0) == pytest.approx(0.001) and scheduler(0.5) == pytest.approx(1.0)
    assert scheduler(8.1 / 12) == pytest.approx(0.1) and scheduler(11.1 / 12) == pytest.approx(0.01)
    assert LazyConfig.load(os.path.join(CONFIG_DIR, "adamixer_r101_12ep.py")).model.backbone.depth == 101

    tiny = LazyConfig.load(os.path.join(CONFIG_DIR, "adamixer_tiny_cpu.py"))
    assert tiny.train.device == "cpu" and tiny.dataloader.train.dataset.names == "kd_synthetic_train"
    model = instantiate(tiny.model)
    assert isinstance(model, AdaMixer) and model.criterion.num_classes == model.num_classes == 4
    assert model.num_decoder_layers == 2 and model.hidden_dim == 64
    tiny.optimizer.params.model = model
    optimizer = instantiate(tiny.optimizer)
    assert {g["lr"] for g in optimizer.param_groups} == {1e-4}
    model.train()
    losses = model(make_inputs(sizes=((128, 160), (128, 128))))
    assert all(torch.isfinite(v) for v in losses.values())


def test_forward_backward_timing():
    """Smoke timing (printed): tiny model (30 queries) on two 256x320 images, CPU."""
    torch.manual_seed(0)
    model = build_tiny(num_queries=30).train()
    inputs = make_inputs(sizes=((256, 320), (256, 320)))
    total_loss(model(inputs)).backward()  # warm-up
    start = time.perf_counter()
    for _ in range(2):
        model.zero_grad()
        total_loss(model(inputs)).backward()
    per_iter = (time.perf_counter() - start) / 2
    print(
        f"AdaMixer tiny (R18, 64-d, 2 stages, 30 queries, 8->16 points) fwd+bwd, 2x3x256x320, CPU: {per_iter:.3f}s/iter"
    )
    assert per_iter < 20.0
