"""Conditional DETR meta-architecture: outputs, extra query groups, training, inference, configs,
DC5 backbone and the detrex checkpoint converter (all tiny, CPU)."""

import os
import time

import pytest
import torch
from torch import nn

from detectron2.config import LazyConfig, instantiate
from detectron2.modeling import META_ARCH_REGISTRY
from detectron2.structures import Boxes, Instances

from detrdistill.converters.detrex import DetrexConversionError
from detrdistill.converters.detrex_conditional import (
    convert_detrex_conditional_detr_checkpoint,
    convert_detrex_conditional_detr_state_dict,
    to_detrex_conditional_detr_state_dict,
)
from detrdistill.modeling import DETROutputs, SetCriterion, make_resnet_backbone
from detrdistill.modeling.conditional_detr import ConditionalDETR, make_resnet_dc5_backbone
from kd_core.matching import HungarianMatcher
from detr_inputs import NUM_CLASSES, make_inputs, total_loss  # noqa: E402 (tests/ helper)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_DIR = os.path.join(REPO, "projects", "DETRDistill", "configs", "conditional_detr")
HIDDEN = 64
QUERIES = 20


def build_tiny(hidden_dim=HIDDEN, num_decoder_layers=2, **overrides):
    kwargs = dict(
        backbone=make_resnet_backbone(18, out_features=["res5"], freeze_at=0),
        criterion=SetCriterion(NUM_CLASSES, HungarianMatcher(2.0, 5.0, 2.0)),
        num_classes=NUM_CLASSES,
        num_queries=QUERIES,
        hidden_dim=hidden_dim,
        num_heads=8,
        num_encoder_layers=2,
        num_decoder_layers=num_decoder_layers,
        dim_feedforward=128,
        dropout=0.0,
        select_box_nums_for_evaluation=30,
    )
    kwargs.update(overrides)
    return ConditionalDETR(**kwargs)


def perturb_zero_init(model, std=0.05):
    """Give the zero-initialized box head non-trivial weights (so box outputs depend on the input)."""
    with torch.no_grad():
        for p in model.bbox_embed.layers[-1].parameters():
            p.normal_(0.0, std)


def test_registered_and_attributes():
    assert META_ARCH_REGISTRY.get("ConditionalDETR") is ConditionalDETR
    model = build_tiny()
    assert (model.num_classes, model.num_queries, model.hidden_dim, model.num_decoder_layers) == (
        NUM_CLASSES,
        QUERIES,
        HIDDEN,
        2,
    )
    assert isinstance(model.criterion, SetCriterion)
    # only the first decoder layer adds the positional query in cross-attention
    assert model.transformer.decoder_layers[0].cross_attn.query_pos_proj is not None
    assert model.transformer.decoder_layers[1].cross_attn.query_pos_proj is None


def test_run_outputs_and_training_losses():
    torch.manual_seed(0)
    model = build_tiny()
    model.train()
    inputs = make_inputs()
    images = model.preprocess_image(inputs)
    outputs = model.run(images)
    L, B, Q = 2, 2, QUERIES
    assert isinstance(outputs, DETROutputs)
    assert outputs.logits.shape == (L, B, Q, NUM_CLASSES)
    assert outputs.boxes.shape == (L, B, Q, 4)
    assert ((outputs.boxes > 0) & (outputs.boxes < 1)).all()
    assert outputs.hidden_states.shape == (L, B, Q, HIDDEN)
    assert outputs.query_embed is model.query_embed.weight and outputs.query_embed.shape == (Q, HIDDEN)
    assert len(outputs.features) == 1 and len(outputs.feature_masks) == 1
    feature, mask = outputs.features[0], outputs.feature_masks[0]
    assert feature.shape == (B, HIDDEN, 3, 4) and mask.shape == (B, 3, 4) and mask.dtype == torch.bool
    # the second (64x96) image is padded to 96x128: its last row and column are padding
    assert not mask[0].any() and mask[1, -1].all() and mask[1, :, -1].all() and not mask[1, 0, 0]
    assert outputs.image_sizes.tolist() == [[96, 128], [64, 96]]
    assert outputs.extra is None
    assert outputs.aux["reference_points"].shape == (B, Q, 2)

    losses = model(inputs)
    expected = {"loss_class", "loss_bbox", "loss_giou", "loss_class_0", "loss_bbox_0", "loss_giou_0"}
    assert set(losses) == expected
    assert all(torch.isfinite(v) and v.dim() == 0 for v in losses.values())


def test_boxes_are_relative_to_reference_points():
    """With a zero box head every layer's box is (reference point, 0.5, 0.5)."""
    torch.manual_seed(0)
    model = build_tiny().eval()
    with torch.no_grad():
        outputs = model.run(model.preprocess_image(make_inputs()))
    ref = outputs.aux["reference_points"]
    assert torch.allclose(outputs.boxes[..., :2], ref[None].expand_as(outputs.boxes[..., :2]), atol=1e-5)
    assert torch.allclose(outputs.boxes[..., 2:], torch.full_like(outputs.boxes[..., 2:], 0.5))



def assert_same_up_to_rounding(a, b):
    """Equal to float32 rounding: a leak between query groups changes outputs by >> 1e-5."""
    torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_extra_queries_group_is_isolated(mode):
    torch.manual_seed(0)
    model = build_tiny()
    perturb_zero_init(model)
    model.train(mode == "train")
    images = model.preprocess_image(make_inputs())
    extra = torch.randn(7, HIDDEN)
    with torch.no_grad():
        plain = model.run(images)
        grouped = model.run(images, extra_queries=extra)
    # main group: the same with and without the extra group, up to float rounding (the shared
    # linear layers run over more rows; CPU GEMM kernels may block them differently, ~1e-7)
    assert_same_up_to_rounding(plain.logits, grouped.logits)
    assert_same_up_to_rounding(plain.boxes, grouped.boxes)
    assert_same_up_to_rounding(plain.hidden_states, grouped.hidden_states)
    assert grouped.extra.logits.shape == (2, 2, 7, NUM_CLASSES)
    assert grouped.extra.boxes.shape == (2, 2, 7, 4)
    assert grouped.extra.hidden_states.shape == (2, 2, 7, HIDDEN)
    assert grouped.extra.query_embed is extra
    # the extra group behaves as if it were the model's only queries
    with torch.no_grad():
        model.query_embed = nn.Embedding.from_pretrained(extra, freeze=False)
        alone = model.run(images)
    assert torch.allclose(alone.logits, grouped.extra.logits, atol=1e-5)
    assert torch.allclose(alone.boxes, grouped.extra.boxes, atol=1e-6)


def test_extra_queries_per_image_and_gradients():
    torch.manual_seed(0)
    model = build_tiny().train()
    images = model.preprocess_image(make_inputs())
    extra = torch.randn(2, 5, HIDDEN, requires_grad=True)
    outputs = model.run(images, extra_queries=extra)
    assert outputs.extra.logits.shape == (2, 2, 5, NUM_CLASSES)
    outputs.extra.logits.sum().backward()
    assert extra.grad is not None and extra.grad.abs().sum() > 0
    # the main queries get no gradient from the extra group's outputs
    assert model.query_embed.weight.grad is None or model.query_embed.weight.grad.abs().sum() == 0
    with pytest.raises(ValueError, match="extra_queries"):
        model.run(images, extra_queries=torch.randn(5, HIDDEN + 1))


def test_training_reduces_loss():
    torch.manual_seed(0)
    model = build_tiny().train()
    inputs = make_inputs(sizes=((64, 96), (64, 96)))
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-4)
    history = []
    start = time.perf_counter()
    for _ in range(6):
        loss = total_loss(model(inputs))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        history.append(float(loss.detach()))
    print(f"tiny Conditional DETR losses: {[round(x, 3) for x in history]} ({time.perf_counter() - start:.1f}s)")
    assert history[-1] < 0.7 * history[0]


def test_images_without_boxes_train():
    torch.manual_seed(0)
    model = build_tiny().train()
    inputs = make_inputs(boxes=[torch.zeros(0, 4), torch.zeros(0, 4)])
    losses = model(inputs)
    assert all(torch.isfinite(v) for v in losses.values())
    assert losses["loss_bbox"].item() == 0.0 and losses["loss_class"].item() > 0
    total_loss(losses).backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def test_degenerate_boxes_give_no_nan():
    torch.manual_seed(0)
    model = build_tiny().train()
    boxes = [
        [[10.0, 10.0, 10.0, 50.0], [5.0, 5.0, 6.0, 6.0], [0.0, 0.0, 128.0, 96.0]],  # zero width, 1 px, whole image
        [[-20.0, -10.0, 200.0, 300.0], [30.0, 40.0, 30.0, 40.0]],  # outside the image, a point
    ]
    losses = model(make_inputs(boxes=boxes))
    assert all(torch.isfinite(v) for v in losses.values())
    total_loss(losses).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_inference_format_and_rescaling():
    torch.manual_seed(0)
    model = build_tiny().eval()
    perturb_zero_init(model)
    inputs = make_inputs()
    with torch.no_grad():
        results = model(inputs)
        outputs = model.run(model.preprocess_image(inputs))
    assert len(results) == 2
    for r, x in zip(results, inputs):
        inst = r["instances"]
        assert isinstance(inst, Instances) and inst.image_size == (x["height"], x["width"])
        assert len(inst) == 30 and inst.scores.shape == (30,) and inst.pred_classes.max() < NUM_CLASSES
        assert (inst.scores[:-1] >= inst.scores[1:]).all()
        box = inst.pred_boxes.tensor
        assert (box[:, 0] >= 0).all() and (box[:, 2] <= x["width"]).all()
    # the best detection of image 0 is the top (query, class) of the last layer, scaled to 2x input size
    probs = outputs.logits[-1, 0].sigmoid()
    q, c = divmod(int(probs.flatten().argmax()), NUM_CLASSES)
    assert int(results[0]["instances"].pred_classes[0]) == c
    cx, cy, w, h = outputs.boxes[-1, 0, q].tolist()
    expected = torch.tensor([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]) * torch.tensor([256.0, 192.0] * 2)
    expected = expected.clamp(min=0).minimum(torch.tensor([256.0, 192.0] * 2))
    assert torch.allclose(results[0]["instances"].pred_boxes.tensor[0], expected, atol=1e-3)


def test_bad_construction_errors():
    with pytest.raises(ValueError, match=r"no outputs \['res4'\]"):
        build_tiny(in_feature="res4")
    with pytest.raises(ValueError, match="divisible"):
        build_tiny(num_heads=7)
    with pytest.raises(ValueError, match="criterion.num_classes"):
        build_tiny(criterion=SetCriterion(3, HungarianMatcher()))


def test_dc5_backbone():
    backbone = make_resnet_dc5_backbone(50, out_features=["res5"], freeze_at=1)
    assert backbone.output_shape()["res5"].stride == 16
    assert backbone.res5[0].conv2.dilation == (2, 2) and backbone.res5[0].conv2.stride == (1, 1)
    reference = make_resnet_backbone(50, out_features=["res5"], freeze_at=1)
    assert set(backbone.state_dict()) == set(reference.state_dict())  # same ImageNet weights load
    with torch.no_grad():
        assert backbone(torch.zeros(1, 3, 64, 96))["res5"].shape == (1, 2048, 4, 6)
    with pytest.raises(ValueError, match="bottleneck"):
        make_resnet_dc5_backbone(18)


def test_configs_instantiate():
    for name in ("conditional_detr_r50_50ep.py", "conditional_detr_r101_50ep.py", "conditional_detr_tiny_cpu.py"):
        cfg = LazyConfig.load(os.path.join(CONFIG_DIR, name))
        assert cfg.model.num_classes == cfg.model.criterion.num_classes or "${" in str(cfg.model.criterion.num_classes)
    full = LazyConfig.load(os.path.join(CONFIG_DIR, "conditional_detr_r50_50ep.py"))
    assert (full.model.num_queries, full.model.hidden_dim, full.model.num_encoder_layers) == (300, 256, 6)
    assert (full.optimizer.lr, full.optimizer.weight_decay, full.train.clip_grad.max_norm) == (1e-4, 1e-4, 0.1)
    assert full.dataloader.train.total_batch_size == 16
    r101 = LazyConfig.load(os.path.join(CONFIG_DIR, "conditional_detr_r101_50ep.py"))
    assert r101.model.backbone.depth == 101

    tiny = LazyConfig.load(os.path.join(CONFIG_DIR, "conditional_detr_tiny_cpu.py"))
    assert tiny.train.device == "cpu" and tiny.model.hidden_dim == 64
    assert tiny.dataloader.train.dataset.names == "kd_synthetic_train"
    model = instantiate(tiny.model)
    assert isinstance(model, ConditionalDETR) and model.criterion.num_classes == model.num_classes == 4
    assert any(isinstance(m, torch.nn.GroupNorm) for m in model.backbone.modules())  # from scratch: GN

    def learning_rates(cfg):
        cfg.optimizer.params.model = model
        names = {id(p): n for n, p in model.named_parameters()}
        return {names[id(p)]: g["lr"] for g in instantiate(cfg.optimizer).param_groups for p in g["params"]}

    recipe = learning_rates(full)  # x0.1 for the backbone only
    assert recipe["backbone.res5.0.conv1.weight"] == pytest.approx(1e-5)
    assert recipe["transformer.ref_point_head.layers.0.weight"] == pytest.approx(1e-4)
    assert recipe["transformer.decoder_layers.0.cross_attn.query_pos_sine_proj.weight"] == pytest.approx(1e-4)
    assert set(learning_rates(tiny).values()) == {5e-4}  # from scratch: one rate for everything
    tiny.lr_multiplier.max_iter = 100
    scheduler = instantiate(tiny.lr_multiplier)
    assert scheduler(0.79) == pytest.approx(1.0) and scheduler(0.81) == pytest.approx(0.1)
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
    print(f"ConditionalDETR tiny (R18, 64-d, 2+2 layers, 30 queries) fwd+bwd, 2x3x256x320, CPU: {per_iter:.3f}s/iter")
    assert per_iter < 20.0


# ---------------------------------------------------------------------------------- converter
def synthetic_detrex_state_dict(dim, ffn_dim, num_queries, num_classes, num_encoder_layers, num_decoder_layers):
    """A detrex ``ConditionalDETR`` state dict written from detrex's module structure (random values).

    detrex: ``transformer.encoder.layers.i`` = BaseTransformerLayer(attentions=[MultiheadAttention
    wrapping nn.MultiheadAttention as ``.attn``], ffns=[FFN: layers.0.0 Linear, layers.1 Linear],
    norms=[2 LayerNorms]); decoder layers: attentions=[ConditionalSelfAttention,
    ConditionalCrossAttention (query_pos_proj only in layer 0)], 3 norms; decoder-level
    query_scale / ref_point_head MLPs and post_norm_layer; heads and input_proj at the top.
    The backbone is left out (identical names, tested separately).
    """
    g = torch.Generator().manual_seed(0)
    sd = {}

    def add(key, *shape):
        sd[key] = torch.randn(*shape, generator=g)

    def linear(prefix, i, o):
        add(prefix + ".weight", o, i)
        add(prefix + ".bias", o)

    add("input_proj.weight", dim, 512, 1, 1)
    add("input_proj.bias", dim)
    add("query_embed.weight", num_queries, dim)
    linear("class_embed", dim, num_classes)
    for j in range(3):
        linear(f"bbox_embed.layers.{j}", dim, 4 if j == 2 else dim)
    for i in range(num_encoder_layers):
        p = f"transformer.encoder.layers.{i}."
        add(p + "attentions.0.attn.in_proj_weight", 3 * dim, dim)
        add(p + "attentions.0.attn.in_proj_bias", 3 * dim)
        linear(p + "attentions.0.attn.out_proj", dim, dim)
        linear(p + "ffns.0.layers.0.0", dim, ffn_dim)
        linear(p + "ffns.0.layers.1", ffn_dim, dim)
        for n in range(2):
            add(p + f"norms.{n}.weight", dim)
            add(p + f"norms.{n}.bias", dim)
    for i in range(num_decoder_layers):
        p = f"transformer.decoder.layers.{i}."
        for name in (
            "query_content_proj",
            "query_pos_proj",
            "key_content_proj",
            "key_pos_proj",
            "value_proj",
            "out_proj",
        ):
            linear(p + "attentions.0." + name, dim, dim)
        cross = [
            "query_content_proj",
            "query_pos_sine_proj",
            "key_content_proj",
            "key_pos_proj",
            "value_proj",
            "out_proj",
        ]
        if i == 0:
            cross.append("query_pos_proj")
        for name in cross:
            linear(p + "attentions.1." + name, dim, dim)
        linear(p + "ffns.0.layers.0.0", dim, ffn_dim)
        linear(p + "ffns.0.layers.1", ffn_dim, dim)
        for n in range(3):
            add(p + f"norms.{n}.weight", dim)
            add(p + f"norms.{n}.bias", dim)
    for j in range(2):
        linear(f"transformer.decoder.query_scale.layers.{j}", dim, dim)
        linear(f"transformer.decoder.ref_point_head.layers.{j}", dim, 2 if j == 1 else dim)
    add("transformer.decoder.post_norm_layer.weight", dim)
    add("transformer.decoder.post_norm_layer.bias", dim)
    return sd


def test_converter_round_trip_on_synthetic_detrex_state_dict(tmp_path):
    model = build_tiny(num_decoder_layers=3, dim_feedforward=96)
    detrex_sd = synthetic_detrex_state_dict(HIDDEN, 96, QUERIES, NUM_CLASSES, 2, 3)
    converted = convert_detrex_conditional_detr_state_dict({"module." + k: v for k, v in detrex_sd.items()})
    backbone = {k: v for k, v in model.state_dict().items() if k.startswith("backbone.")}
    result = model.load_state_dict({**converted, **backbone}, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    # values land where they should
    t = model.transformer
    assert torch.equal(
        t.decoder_layers[2].cross_attn.query_pos_sine_proj.weight,
        detrex_sd["transformer.decoder.layers.2.attentions.1.query_pos_sine_proj.weight"],
    )
    assert torch.equal(
        t.decoder_layers[0].cross_attn.query_pos_proj.bias,
        detrex_sd["transformer.decoder.layers.0.attentions.1.query_pos_proj.bias"],
    )
    assert torch.equal(
        t.decoder_layers[1].self_attn.key_pos_proj.weight,
        detrex_sd["transformer.decoder.layers.1.attentions.0.key_pos_proj.weight"],
    )
    assert torch.equal(
        t.decoder_layers[1].cross_attn_norm.weight, detrex_sd["transformer.decoder.layers.1.norms.1.weight"]
    )
    assert torch.equal(
        t.decoder_layers[1].ffn.linear2.weight, detrex_sd["transformer.decoder.layers.1.ffns.0.layers.1.weight"]
    )
    assert torch.equal(
        t.encoder_layers[1].self_attn.in_proj_weight,
        detrex_sd["transformer.encoder.layers.1.attentions.0.attn.in_proj_weight"],
    )
    assert torch.equal(t.encoder_layers[0].ffn_norm.bias, detrex_sd["transformer.encoder.layers.0.norms.1.bias"])
    assert torch.equal(t.decoder_norm.weight, detrex_sd["transformer.decoder.post_norm_layer.weight"])
    assert torch.equal(t.query_scale.layers[1].weight, detrex_sd["transformer.decoder.query_scale.layers.1.weight"])
    # and back
    back = to_detrex_conditional_detr_state_dict(converted)
    assert set(back) == set(detrex_sd) and all(torch.equal(back[k], detrex_sd[k]) for k in detrex_sd)
    # checkpoint file form
    src, dst = tmp_path / "detrex.pth", tmp_path / "ours.pth"
    torch.save({"model": detrex_sd, "iteration": 7}, src)
    convert_detrex_conditional_detr_checkpoint(str(src), str(dst))
    saved = torch.load(dst, map_location="cpu")["model"]
    assert set(saved) == set(converted)


def test_converter_rejects_unknown_and_unsupported_keys():
    sd = synthetic_detrex_state_dict(HIDDEN, 96, QUERIES, NUM_CLASSES, 1, 1)
    with pytest.raises(DetrexConversionError, match="no mapping.*transformer.decoder.bbox_embed"):
        convert_detrex_conditional_detr_state_dict(
            {**sd, "transformer.decoder.bbox_embed.layers.0.weight": torch.zeros(1)}
        )
    with pytest.raises(DetrexConversionError, match="PReLU"):
        convert_detrex_conditional_detr_state_dict(
            {**sd, "transformer.encoder.layers.0.ffns.0.layers.0.1.weight": torch.zeros(1)}
        )
    with pytest.raises(DetrexConversionError, match="post-norm"):
        convert_detrex_conditional_detr_state_dict(
            {**sd, "transformer.encoder.post_norm_layer.weight": torch.zeros(HIDDEN)}
        )


def _import_detrex_conditional_detr():
    try:
        import detrex  # noqa: F401
        from detrex.layers import PositionEmbeddingSine
        from projects.conditional_detr.modeling import (
            ConditionalDETR as DetrexConditionalDETR,
            ConditionalDetrTransformer,
            ConditionalDetrTransformerDecoder,
            ConditionalDetrTransformerEncoder,
        )
    except Exception as e:  # noqa: BLE001 (any import failure means: not available here)
        pytest.skip(
            f"detrex's Conditional DETR is not importable ({type(e).__name__}: {e}); put detrex and its "
            "projects/conditional_detr on PYTHONPATH to compare outputs"
        )
    return (
        DetrexConditionalDETR,
        ConditionalDetrTransformer,
        ConditionalDetrTransformerEncoder,
        ConditionalDetrTransformerDecoder,
        PositionEmbeddingSine,
    )


def test_converted_detrex_model_gives_the_same_outputs():
    """detrex model with random weights -> convert -> same raw outputs (hidden_dim 256, as detrex requires)."""
    DxModel, DxTransformer, DxEncoder, DxDecoder, DxPosition = _import_detrex_conditional_detr()
    dim, heads, ffn, queries = 256, 8, 96, 12
    torch.manual_seed(0)
    detrex_model = DxModel(
        backbone=make_resnet_backbone(18, out_features=["res5"]),
        in_features=["res5"],
        in_channels=512,
        position_embedding=DxPosition(num_pos_feats=dim // 2, temperature=10000, normalize=True),
        transformer=DxTransformer(
            encoder=DxEncoder(embed_dim=dim, num_heads=heads, feedforward_dim=ffn, activation=nn.ReLU(), num_layers=2),
            decoder=DxDecoder(embed_dim=dim, num_heads=heads, feedforward_dim=ffn, activation=nn.ReLU(), num_layers=3),
        ),
        embed_dim=dim,
        num_classes=NUM_CLASSES,
        num_queries=queries,
        criterion=None,
        select_box_nums_for_evaluation=20,
        device="cpu",
    ).eval()
    with torch.no_grad():
        for p in detrex_model.parameters():
            p.normal_(0.0, 0.2)
    ours = build_tiny(
        hidden_dim=dim,
        num_decoder_layers=3,
        dim_feedforward=ffn,
        num_queries=queries,
        select_box_nums_for_evaluation=20,
    ).eval()
    ours.load_state_dict(convert_detrex_conditional_detr_state_dict(detrex_model.state_dict()), strict=True)

    inputs = [{"image": torch.randint(0, 256, (3, 128, 160)).float()}]  # a multiple of 32: no padding
    with torch.no_grad():
        outputs = ours.run(ours.preprocess_image(inputs))
        images = ours.preprocess_image(inputs)
        feature = detrex_model.input_proj(detrex_model.backbone(images.tensor)["res5"])
        mask = torch.zeros(1, *feature.shape[-2:], dtype=torch.bool)
        hidden, reference = detrex_model.transformer(
            feature, mask, detrex_model.query_embed.weight, detrex_model.position_embedding(mask)
        )
        detrex_results = detrex_model(inputs)[0]["instances"]
        our_results = ours(inputs)[0]["instances"]
    assert torch.allclose(hidden, outputs.hidden_states, atol=1e-4)
    assert torch.allclose(reference, outputs.aux["reference_points"], atol=1e-6)
    detrex_boxes = detrex_model.bbox_embed(hidden)
    detrex_boxes = torch.cat([detrex_boxes[..., :2] + torch.logit(reference), detrex_boxes[..., 2:]], -1).sigmoid()
    assert torch.allclose(detrex_boxes, outputs.boxes, atol=1e-5)
    assert torch.allclose(detrex_model.class_embed(hidden), outputs.logits, atol=1e-4)
    assert torch.allclose(detrex_results.scores, our_results.scores, atol=1e-5)


def test_query_prior_carries_the_teachers_reference_points():
    """Decoding a teacher's query_prior uses the teacher's reference points; the bare positional
    queries go through the receiver's own ref_point_head."""
    torch.manual_seed(0)
    student, teacher = build_tiny(num_queries=6).eval(), build_tiny(num_queries=6).eval()
    with torch.no_grad():
        images = teacher.preprocess_image(make_inputs(sizes=((64, 96), (64, 64))))
        t_out = teacher.run(images)
        prior = teacher.query_prior(t_out)
        with_prior = student.run(images, extra_queries=prior)
        bare = student.run(images, extra_queries=t_out.query_embed)
        plain = student.run(images)
    d = student.hidden_dim
    assert prior.shape == (2, 6, d + 2)
    assert torch.equal(prior[..., d:], t_out.aux["reference_points"])
    assert torch.allclose(with_prior.extra.aux["reference_points"], t_out.aux["reference_points"])
    student_refs = student.transformer.ref_point_head(t_out.query_embed).sigmoid()
    assert torch.allclose(bare.extra.aux["reference_points"], student_refs.expand(2, -1, -1))
    assert_same_up_to_rounding(with_prior.logits, plain.logits)  # the main group is untouched
    with pytest.raises(ValueError, match="extra_queries"):
        student.run(images, extra_queries=prior[..., : d + 1])
