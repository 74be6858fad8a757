"""Deformable DETR meta-architecture: training, inference, extra query groups, checkpoints,
configs and the detrex checkpoint converter (all tiny, CPU)."""
import copy
import importlib.util
import os
import re
import time

import pytest
import torch
from torch import nn

from detectron2.config import LazyConfig, instantiate
from detectron2.modeling import META_ARCH_REGISTRY
from detectron2.structures import Boxes, Instances

from detrdistill.converters.detrex import DetrexConversionError, convert_detrex_state_dict
from detrdistill.modeling import (
    DeformableDETR,
    DETROutputs,
    MobileNetV2Backbone,
    SetCriterion,
    make_resnet_backbone,
)
from kd_core.checkpoint import ClassHeadCheckpointer
from kd_core.matching import HungarianMatcher
from detr_inputs import NUM_CLASSES, make_inputs, total_loss  # noqa: E402 (tests/ helper)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_DIR = os.path.join(REPO, "projects", "DETRDistill", "configs", "deformable_detr")
HIDDEN = 64


def build_tiny(backbone=None, in_features=("res3", "res4", "res5"), **overrides):
    kwargs = dict(
        backbone=backbone if backbone is not None else make_resnet_backbone(18, freeze_at=0),
        in_features=list(in_features),
        criterion=SetCriterion(NUM_CLASSES, HungarianMatcher(2.0, 5.0, 2.0)),
        num_classes=NUM_CLASSES,
        num_queries=20,
        hidden_dim=HIDDEN,
        num_heads=8,
        num_encoder_layers=2,
        num_decoder_layers=2,
        dim_feedforward=128,
        dropout=0.0,
    )
    kwargs.update(overrides)
    return DeformableDETR(**kwargs)


def test_registered_and_attributes():
    assert META_ARCH_REGISTRY.get("DeformableDETR") is DeformableDETR
    model = build_tiny()
    assert (model.num_classes, model.num_queries, model.hidden_dim, model.num_decoder_layers) == (
        NUM_CLASSES,
        20,
        HIDDEN,
        2,
    )
    assert isinstance(model.criterion, SetCriterion)


@pytest.mark.parametrize(
    "variant", [dict(), dict(with_box_refine=True), dict(as_two_stage=True, with_box_refine=True)], ids=str
)
def test_run_outputs_and_training_losses(variant):
    torch.manual_seed(0)
    model = build_tiny(**variant)
    model.train()
    inputs = make_inputs()
    images = model.preprocess_image(inputs)
    outputs = model.run(images)
    L, B, Q = 2, 2, 20
    assert isinstance(outputs, DETROutputs)
    assert outputs.logits.shape == (L, B, Q, NUM_CLASSES)
    assert outputs.boxes.shape == (L, B, Q, 4)
    assert outputs.hidden_states.shape == (L, B, Q, HIDDEN)
    assert len(outputs.features) == 4 and len(outputs.feature_masks) == 4
    for f, m in zip(outputs.features, outputs.feature_masks):
        assert f.shape[:2] == (B, HIDDEN) and m.shape == (B,) + f.shape[-2:] and m.dtype == torch.bool
    # the smaller second image is padded: its finest mask has padding, the first has none
    assert not outputs.feature_masks[0][0].any() and outputs.feature_masks[0][1].any()
    assert outputs.image_sizes.tolist() == [[96, 128], [64, 96]]
    assert outputs.extra is None
    detached = outputs.detach()
    assert not detached.logits.requires_grad and not detached.features[0].requires_grad
    assert torch.equal(detached.boxes, outputs.boxes) and outputs.logits.requires_grad
    if variant.get("as_two_stage"):
        assert outputs.query_embed.shape == (B, Q, 2 * HIDDEN + 4)
        assert outputs.enc_outputs["logits"].shape[-1] == NUM_CLASSES
    else:
        assert outputs.query_embed.shape == (Q, 2 * HIDDEN)

    targets = model.prepare_targets(inputs)
    assert torch.allclose(targets[0]["boxes"][0], torch.tensor([35 / 128, 50 / 96, 50 / 128, 60 / 96]))
    losses, indices = model.compute_losses(outputs, targets)
    expected = {"loss_class", "loss_bbox", "loss_giou", "loss_class_0", "loss_bbox_0", "loss_giou_0"}
    if variant.get("as_two_stage"):
        expected |= {f"{k}_enc" for k in ("loss_class", "loss_bbox", "loss_giou")}
    assert set(losses) == expected
    assert len(indices) == L and all(len(per_layer) == B for per_layer in indices)
    assert [len(p) for p, _ in indices[-1]] == [1, 2]
    loss = total_loss(model(inputs))
    assert torch.isfinite(loss)
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads if g is not None)
    assert model.class_embed[0].weight.grad is not None


def test_images_without_boxes_train():
    torch.manual_seed(0)
    model = build_tiny()
    model.train()
    inputs = make_inputs(boxes=[torch.zeros(0, 4), torch.zeros(0, 4)])
    losses = model(inputs)
    for k, v in losses.items():
        assert torch.isfinite(v), k
    assert losses["loss_bbox"].item() == 0.0 and losses["loss_class"].item() > 0
    total_loss(losses).backward()
    # one image with boxes, one without
    losses = model(make_inputs(boxes=[[[10, 10, 50, 60]], torch.zeros(0, 4)]))
    assert all(torch.isfinite(v) for v in losses.values())


def test_degenerate_boxes_give_no_nan():
    torch.manual_seed(0)
    model = build_tiny()
    model.train()
    degenerate = [[[10, 10, 10, 60], [20, 30, 70, 30], [5, 5, 40, 40]], [[50, 50, 50, 50]]]
    inputs = make_inputs(boxes=degenerate)
    targets = model.prepare_targets(inputs)
    assert [len(t["boxes"]) for t in targets] == [1, 0]  # zero-width/height boxes dropped
    losses = model(inputs)
    assert all(torch.isfinite(v) for v in losses.values())
    loss = total_loss(losses)
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_class_ids_outside_num_classes_raise():
    model = build_tiny()
    model.train()
    inputs = make_inputs()
    inputs[1]["instances"].gt_classes = torch.tensor([0, NUM_CLASSES])
    with pytest.raises(ValueError, match="num_classes=5"):
        model(inputs)


def test_training_reduces_loss():
    torch.manual_seed(0)
    # Frozen backbone (freeze_at=5) keeps the test fast; input projection, transformer and heads train.
    model = build_tiny(backbone=make_resnet_backbone(18, freeze_at=5), num_queries=10)
    model.train()
    inputs = make_inputs(sizes=((64, 96), (64, 96)), boxes=[[[10, 20, 60, 50]], [[30, 10, 90, 40], [5, 5, 30, 30]]])
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=1e-4)
    history = []
    start = time.perf_counter()
    for _ in range(8):
        loss = total_loss(model(inputs))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 0.1)
        opt.step()
        history.append(float(loss.detach()))
    print(f"tiny Deformable DETR losses: {[round(x, 3) for x in history]} ({time.perf_counter() - start:.1f}s)")
    assert min(history[-3:]) < 0.8 * history[0]


def test_inference_format_and_rescaling():
    torch.manual_seed(0)
    model = build_tiny(select_box_nums_for_evaluation=30)
    model.eval()
    inputs = make_inputs()
    with torch.no_grad():
        results = model(inputs)
    assert len(results) == 2
    for r, x in zip(results, inputs):
        inst = r["instances"]
        assert inst.image_size == (x["height"], x["width"])
        assert len(inst) == 30
        assert inst.pred_classes.max() < NUM_CLASSES
        assert (inst.scores[:-1] >= inst.scores[1:]).all()
        b = inst.pred_boxes.tensor
        assert (b[:, 0] >= 0).all() and (b[:, 2] <= x["width"]).all() and (b[:, 3] <= x["height"]).all()


@pytest.mark.parametrize(
    "variant", [dict(), dict(with_box_refine=True), dict(as_two_stage=True, with_box_refine=True)], ids=str
)
def test_extra_queries_group_is_isolated(variant):
    torch.manual_seed(0)
    model = build_tiny(**variant)
    teacher = build_tiny(**variant)  # same architecture, other weights
    model.eval()
    teacher.eval()
    inputs = make_inputs(sizes=((64, 96), (64, 64)))
    with torch.no_grad():
        images = model.preprocess_image(inputs)
        plain = model.run(images)
        teacher_queries = teacher.run(images).query_embed
        grouped = model.run(images, extra_queries=teacher_queries)
        # Same queries as an extra group: block-diagonal attention gives the same predictions.
        own = model.run(images, extra_queries=plain.query_embed)
    L, B, Q = 2, 2, 20
    assert grouped.extra.logits.shape == (L, B, Q, NUM_CLASSES)
    assert grouped.extra.boxes.shape == (L, B, Q, 4)
    assert grouped.extra.hidden_states.shape == (L, B, Q, HIDDEN)
    diff = max(
        (grouped.logits - plain.logits).abs().max().item(),
        (grouped.boxes - plain.boxes).abs().max().item(),
        (grouped.hidden_states - plain.hidden_states).abs().max().item(),
    )
    own_diff = (own.extra.logits - plain.logits).abs().max().item()
    print(f"main-group change with extra queries: {diff:.2e}; own queries as extra group vs main: {own_diff:.2e}")
    assert diff < 1e-5
    assert own_diff < 1e-4
    assert not torch.allclose(grouped.extra.logits, plain.logits)
    if variant.get("as_two_stage"):
        bad = teacher_queries[:, :, :-4]
    else:
        bad = teacher_queries[:, :HIDDEN]
    with pytest.raises(ValueError, match="extra_queries"):
        model.run(images, extra_queries=bad)


def test_extra_queries_of_other_count_and_gradients():
    torch.manual_seed(0)
    model = build_tiny()
    teacher = build_tiny(num_queries=7)
    model.train()
    inputs = make_inputs()
    images = model.preprocess_image(inputs)
    queries = teacher.query_embed.weight.detach()
    out = model.run(images, extra_queries=queries)
    assert out.extra.logits.shape[2] == 7 and out.logits.shape[2] == 20
    losses, _ = model.criterion(out.extra.logits, out.extra.boxes, model.prepare_targets(inputs), prefix="group_")
    assert set(losses) >= {"group_loss_class", "group_loss_class_0"}
    total_loss(losses).backward()
    assert model.query_embed.weight.grad is None or model.query_embed.weight.grad.abs().sum() == 0
    assert model.class_embed[0].weight.grad.abs().sum() > 0


def test_mobilenet_v2_backbone_model():
    torch.manual_seed(0)
    backbone = MobileNetV2Backbone(out_features=["stage2", "stage4", "stage7"])
    assert [s.channels for s in backbone.output_shape().values()] == [32, 96, 1280]
    model = build_tiny(backbone=backbone, in_features=["stage2", "stage4", "stage7"])
    model.train()
    losses = model(make_inputs())
    assert all(torch.isfinite(v) for v in losses.values())


def test_checkpoint_class_count_mismatch_is_a_clear_error(tmp_path):
    torch.manual_seed(0)
    source = build_tiny()
    path = str(tmp_path / "model.pth")
    torch.save({"model": source.state_dict()}, path)

    same = build_tiny()
    ClassHeadCheckpointer(same).load(path)
    assert torch.equal(same.class_embed[0].weight, source.class_embed[0].weight)
    assert torch.equal(same.transformer.level_embed, source.transformer.level_embed)

    other = DeformableDETR(
        **{**_tiny_kwargs(), "num_classes": 3, "criterion": SetCriterion(3, HungarianMatcher(2.0, 5.0, 2.0))}
    )
    with pytest.raises(ValueError, match=r"class_embed\.0\.weight.*5 classes.*num_classes=3"):
        ClassHeadCheckpointer(other).load(path)


def _tiny_kwargs():
    return dict(
        backbone=make_resnet_backbone(18, freeze_at=0),
        in_features=["res3", "res4", "res5"],
        criterion=SetCriterion(NUM_CLASSES, HungarianMatcher(2.0, 5.0, 2.0)),
        num_classes=NUM_CLASSES,
        num_queries=20,
        hidden_dim=HIDDEN,
        num_encoder_layers=2,
        num_decoder_layers=2,
        dim_feedforward=128,
        dropout=0.0,
    )


def test_bad_construction_errors():
    with pytest.raises(ValueError, match="no outputs"):
        build_tiny(in_features=["res2", "res9"])
    with pytest.raises(ValueError, match="criterion.num_classes"):
        DeformableDETR(**{**_tiny_kwargs(), "num_classes": 7})


def test_configs_instantiate():
    r50 = LazyConfig.load(os.path.join(CONFIG_DIR, "deformable_detr_r50_50ep.py"))
    assert r50.model.num_queries == 300 and r50.model.hidden_dim == 256
    assert r50.model.num_encoder_layers == 6 and r50.model.num_decoder_layers == 6
    assert r50.optimizer.lr == 2e-4 and r50.optimizer.weight_decay == 1e-4
    assert r50.train.clip_grad == {"enabled": True, "max_norm": 0.1, "norm_type": 2.0}
    assert r50.dataloader.train.total_batch_size == 16
    assert r50.train.init_checkpoint.endswith("R-50.pkl")
    assert r50.dataloader.train.dataset.names == "coco_2017_train"
    r101 = LazyConfig.load(os.path.join(CONFIG_DIR, "deformable_detr_r101_50ep.py"))
    assert r101.model.backbone.depth == 101 and r101.train.init_checkpoint.endswith("R-101.pkl")
    assert r50.model.backbone.depth == 50  # loading r101 does not leak into r50

    tiny = LazyConfig.load(os.path.join(CONFIG_DIR, "deformable_detr_tiny_cpu.py"))
    assert tiny.train.device == "cpu"
    assert tiny.dataloader.train.dataset.names == "kd_synthetic_train"
    model = instantiate(tiny.model)
    assert isinstance(model, DeformableDETR) and model.criterion.num_classes == model.num_classes == 4
    assert any(isinstance(m, torch.nn.GroupNorm) for m in model.backbone.modules())  # from scratch: GN

    def learning_rates(cfg):
        cfg.optimizer.params.model = model
        names = {id(p): n for n, p in model.named_parameters()}
        return {names[id(p)]: g["lr"] for g in instantiate(cfg.optimizer).param_groups for p in g["params"]}

    recipe = learning_rates(r50)  # x0.1 for the backbone, sampling offsets and reference points
    assert recipe["transformer.encoder_layers.0.self_attn.sampling_offsets.weight"] == pytest.approx(2e-5)
    assert recipe["transformer.reference_points.weight"] == pytest.approx(2e-5)
    assert recipe["backbone.res5.0.conv1.weight"] == pytest.approx(2e-5)
    assert recipe["transformer.encoder_layers.0.self_attn.value_proj.weight"] == pytest.approx(2e-4)
    from_scratch = learning_rates(tiny)  # the tiny backbone learns at the full rate
    assert from_scratch["transformer.encoder_layers.0.self_attn.sampling_offsets.weight"] == pytest.approx(5e-5)
    assert from_scratch["backbone.res5.0.conv1.weight"] == pytest.approx(5e-4)
    assert from_scratch["transformer.encoder_layers.0.self_attn.value_proj.weight"] == pytest.approx(5e-4)
    tiny.lr_multiplier.max_iter = 100
    scheduler = instantiate(tiny.lr_multiplier)
    assert scheduler(0.79) == pytest.approx(1.0) and scheduler(0.81) == pytest.approx(0.1)


def test_forward_backward_timing():
    """Smoke timing (printed): tiny model on two 128x160 images, CPU."""
    torch.manual_seed(0)
    model = build_tiny(num_queries=50)
    model.train()
    inputs = make_inputs(sizes=((128, 160), (128, 160)))
    total_loss(model(inputs)).backward()  # warm-up
    model.zero_grad()
    start = time.perf_counter()
    total_loss(model(inputs)).backward()
    per_iter = time.perf_counter() - start
    print(f"DeformableDETR tiny (R18, 64-d, 2+2 layers, 50 queries) fwd+bwd, 2x3x128x160, CPU: {per_iter:.3f}s/iter")
    assert per_iter < 10.0


# ---------------------------------------------------------------------------------- converter
def _to_detrex_key(key: str) -> str:
    """Our key -> detrex key (independent inverse table, used to build synthetic checkpoints)."""
    enc = {"self_attn.": "attentions.0.", "self_attn_norm.": "norms.0.", "ffn_norm.": "norms.1.",
           "ffn.linear1.": "ffns.0.layers.0.0.", "ffn.linear2.": "ffns.0.layers.1."}  # fmt: skip
    dec = {"self_attn.": "attentions.0.attn.", "cross_attn.": "attentions.1.", "self_attn_norm.": "norms.0.",
           "cross_attn_norm.": "norms.1.", "ffn_norm.": "norms.2.", "ffn.linear1.": "ffns.0.layers.0.0.",
           "ffn.linear2.": "ffns.0.layers.1."}  # fmt: skip
    m = re.match(r"transformer\.(encoder|decoder)_layers\.(\d+)\.(.+)$", key)
    if m:
        table = enc if m.group(1) == "encoder" else dec
        for ours in sorted(table, key=len, reverse=True):
            if m.group(3).startswith(ours):
                return f"transformer.{m.group(1)}.layers.{m.group(2)}.{table[ours]}{m.group(3)[len(ours):]}"
        raise AssertionError(key)
    m = re.match(r"input_proj\.levels\.(\d+)\.([01])\.(.+)$", key)
    if m:
        level = int(m.group(1))
        part = "conv" if m.group(2) == "0" else "norm"
        name = f"convs.{level}" if level < 3 else f"extra_convs.{level - 3}"
        return f"neck.{name}.{part}.{m.group(3)}"
    if key == "query_embed.weight":
        return "query_embedding.weight"
    if key == "transformer.level_embed":
        return "transformer.level_embeds"
    return key


def _synthetic_detrex_state_dict(model: DeformableDETR):
    sd = {}
    for k, v in model.state_dict().items():
        sd[_to_detrex_key(k)] = v.clone()
    num_pred = model.num_decoder_layers + int(model.as_two_stage)
    if not model.with_box_refine:  # detrex repeats the shared heads once per prediction
        for head in ("class_embed", "bbox_embed"):
            for k in [k for k in sd if k.startswith(f"{head}.0.")]:
                for i in range(1, num_pred):
                    sd[k.replace(f"{head}.0.", f"{head}.{i}.", 1)] = sd[k]
    else:  # and aliases the refinement heads inside the decoder
        for k in [k for k in sd if k.startswith("bbox_embed.")]:
            sd["transformer.decoder." + k] = sd[k]
        if model.as_two_stage:
            for k in [k for k in sd if k.startswith("class_embed.")]:
                sd["transformer.decoder." + k] = sd[k]
    return {"module." + k: v for k, v in sd.items()}


@pytest.mark.parametrize(
    "variant", [dict(), dict(with_box_refine=True), dict(as_two_stage=True, with_box_refine=True)], ids=str
)
def test_converter_round_trip_on_synthetic_detrex_checkpoint(variant):
    torch.manual_seed(0)
    source = build_tiny(**variant)
    with torch.no_grad():
        for p in source.parameters():
            p.add_(0.01 * torch.randn_like(p))
    detrex_sd = _synthetic_detrex_state_dict(source)
    assert any(k.startswith("module.neck.extra_convs.0.conv.") for k in detrex_sd)
    converted = convert_detrex_state_dict(detrex_sd)
    expected = source.state_dict()
    assert set(converted) == set(expected)
    for k in expected:
        assert torch.equal(converted[k], expected[k]), k
    target = build_tiny(**variant)
    target.load_state_dict(converted, strict=True)
    source.eval()
    target.eval()
    inputs = make_inputs()
    with torch.no_grad():
        a = source.run(source.preprocess_image(inputs))
        b = target.run(target.preprocess_image(inputs))
    assert torch.equal(a.logits, b.logits) and torch.equal(a.boxes, b.boxes)


def test_converter_rejects_unknown_keys_and_unshared_heads():
    torch.manual_seed(0)
    sd = _synthetic_detrex_state_dict(build_tiny())
    with pytest.raises(DetrexConversionError, match="not part of a detrex Deformable DETR"):
        convert_detrex_state_dict({**sd, "module.roi_heads.box_predictor.weight": torch.zeros(1)})
    broken = dict(sd)
    broken["module.class_embed.1.bias"] = broken["module.class_embed.1.bias"] + 1
    with pytest.raises(DetrexConversionError, match="with_box_refine=True"):
        convert_detrex_state_dict(broken)


def _detrex_project_modules():
    """detrex's Deformable DETR modeling files (they live outside the installed package)."""
    try:
        import detrex  # noqa: F401
        from detrex.layers import PositionEmbeddingSine  # noqa: F401
        from detrex.modeling.neck import ChannelMapper  # noqa: F401
    except Exception as e:  # ImportError, or detrex installed without its compiled op
        pytest.skip(f"detrex is not installed: {type(e).__name__}: {e}")
    root = os.path.dirname(os.path.dirname(os.path.abspath(detrex.__file__)))
    folder = os.path.join(root, "projects", "deformable_detr", "modeling")
    if not os.path.isdir(folder):
        pytest.skip(f"detrex is installed without its projects/ folder (looked in {folder})")
    modules = {}
    for name in ("deformable_transformer", "deformable_detr", "deformable_criterion"):
        spec = importlib.util.spec_from_file_location(f"_detrex_{name}", os.path.join(folder, f"{name}.py"))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        modules[name] = module
    return modules


def build_detrex_twin(modules, with_box_refine=False, as_two_stage=False, hidden=HIDDEN):
    from detectron2.layers import ShapeSpec
    from detrex.layers import PositionEmbeddingSine
    from detrex.modeling.neck import ChannelMapper

    tr = modules["deformable_transformer"]
    layer_kwargs = dict(embed_dim=hidden, num_heads=8, feedforward_dim=128, attn_dropout=0.0, ffn_dropout=0.0,
                        num_layers=2, num_feature_levels=4)  # fmt: skip
    transformer = tr.DeformableDetrTransformer(
        encoder=tr.DeformableDetrTransformerEncoder(post_norm=False, **layer_kwargs),
        decoder=tr.DeformableDetrTransformerDecoder(return_intermediate=True, **layer_kwargs),
        num_feature_levels=4,
        as_two_stage=as_two_stage,
        two_stage_num_proposals=20,
    )
    channels = {"res3": 128, "res4": 256, "res5": 512}
    return modules["deformable_detr"].DeformableDETR(
        backbone=make_resnet_backbone(18, freeze_at=0),
        position_embedding=PositionEmbeddingSine(num_pos_feats=hidden // 2, temperature=10000, normalize=True, offset=-0.5),
        neck=ChannelMapper(
            input_shapes={k: ShapeSpec(channels=c) for k, c in channels.items()},
            in_features=list(channels),
            out_channels=hidden,
            num_outs=4,
            kernel_size=1,
            norm_layer=nn.GroupNorm(num_groups=32, num_channels=hidden),
        ),
        transformer=transformer,
        embed_dim=hidden,
        num_classes=NUM_CLASSES,
        num_queries=20,
        criterion=None,
        pixel_mean=[123.675, 116.280, 103.530],
        pixel_std=[58.395, 57.120, 57.375],
        aux_loss=True,
        with_box_refine=with_box_refine,
        as_two_stage=as_two_stage,
        select_box_nums_for_evaluation=20,
        device="cpu",
    )


def compare_with_detrex(modules, with_box_refine=False, as_two_stage=False):
    """Max abs difference of last-layer logits and boxes, detrex model vs converted ours."""
    torch.manual_seed(0)
    # detrex's two-stage query embedding hard-codes 128 features per coordinate, i.e. 256-d.
    hidden = 256 if as_two_stage else HIDDEN
    theirs = build_detrex_twin(modules, with_box_refine, as_two_stage, hidden)
    with torch.no_grad():
        for p in theirs.parameters():
            p.add_(0.02 * torch.randn_like(p))
    theirs.eval()
    ours = build_tiny(with_box_refine=with_box_refine, as_two_stage=as_two_stage, hidden_dim=hidden)
    ours.load_state_dict(convert_detrex_state_dict(copy.deepcopy(theirs.state_dict())), strict=True)
    ours.eval()
    captured = {}
    original_inference = theirs.inference

    def capture(box_cls, box_pred, image_sizes):
        captured["logits"], captured["boxes"] = box_cls, box_pred
        return original_inference(box_cls, box_pred, image_sizes)

    theirs.inference = capture
    # Same-size images, multiples of 32: detrex evaluates without padding masks.
    inputs = make_inputs(sizes=((128, 160), (128, 160)))
    with torch.no_grad():
        theirs(inputs)
        out = ours.run(ours.preprocess_image(inputs))
    return (
        (out.logits[-1] - captured["logits"]).abs().max().item(),
        (out.boxes[-1] - captured["boxes"]).abs().max().item(),
    )


@pytest.mark.parametrize(
    "variant", [dict(), dict(with_box_refine=True), dict(as_two_stage=True, with_box_refine=True)], ids=str
)
def test_converter_matches_detrex_outputs(variant):
    modules = _detrex_project_modules()
    logit_diff, box_diff = compare_with_detrex(modules, **variant)
    print(f"detrex vs converted ({variant}): logits {logit_diff:.2e}, boxes {box_diff:.2e}")
    assert logit_diff < 1e-4 and box_diff < 1e-5


def test_losses_match_detrex_criterion():
    modules = _detrex_project_modules()
    from detrex.modeling.matcher import HungarianMatcher as DetrexMatcher

    torch.manual_seed(0)
    model = build_tiny(as_two_stage=True, with_box_refine=True)
    model.train()
    inputs = make_inputs(boxes=[[[10, 20, 60, 80], [40, 10, 120, 50]], [[30, 20, 90, 60]]])
    with torch.no_grad():
        outputs = model.run(model.preprocess_image(inputs))
    targets = model.prepare_targets(inputs)
    ours, _ = model.compute_losses(outputs, targets)
    weights = model.criterion.weight_dict
    criterion = modules["deformable_criterion"].DeformableCriterion(
        num_classes=NUM_CLASSES,
        matcher=DetrexMatcher(cost_class=2.0, cost_bbox=5.0, cost_giou=2.0, cost_class_type="focal_loss_cost"),
        weight_dict=dict(weights),
        loss_class_type="focal_loss",
    )
    detrex_outputs = {
        "pred_logits": outputs.logits[-1],
        "pred_boxes": outputs.boxes[-1],
        "aux_outputs": [{"pred_logits": a, "pred_boxes": b} for a, b in zip(outputs.logits[:-1], outputs.boxes[:-1])],
        "enc_outputs": {"pred_logits": outputs.enc_outputs["logits"], "pred_boxes": outputs.enc_outputs["boxes"]},
    }
    theirs = criterion(detrex_outputs, targets)
    assert set(ours) == set(theirs)
    for key, value in ours.items():
        base = re.sub(r"(_\d+|_enc)$", "", key)
        assert value.item() == pytest.approx(weights[base] * float(theirs[key]), rel=1e-4, abs=1e-6), key


def test_converter_cli_output_loads_with_checkpointer(tmp_path):
    torch.manual_seed(0)
    source = build_tiny(with_box_refine=True)
    src_path = str(tmp_path / "detrex.pth")
    torch.save({"model": _synthetic_detrex_state_dict(source), "iteration": 10}, src_path)
    spec = importlib.util.spec_from_file_location("_convert_cli", os.path.join(REPO, "tools", "convert_detrex_checkpoint.py"))
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    out_path = str(tmp_path / "out" / "ours.pth")
    cli.main(["--input", src_path, "--output", out_path])
    target = build_tiny(with_box_refine=True)
    ClassHeadCheckpointer(target).load(out_path)
    assert torch.equal(target.bbox_embed[1].layers[2].weight, source.bbox_embed[1].layers[2].weight)
    assert torch.equal(target.input_proj.levels[3][0].weight, source.input_proj.levels[3][0].weight)
    with pytest.raises(SystemExit, match="not found"):
        cli.main(["--input", str(tmp_path / "missing.pth"), "--output", out_path])


@pytest.mark.parametrize("variant", [dict(), dict(as_two_stage=True, with_box_refine=True)], ids=str)
def test_query_prior_carries_the_teachers_reference_points(variant):
    """A teacher's query_prior decoded by another model starts from the teacher's reference points
    (its first-layer boxes sit on them); the bare query_embed is mapped by the receiver's own layer."""
    torch.manual_seed(0)
    student, teacher = build_tiny(**variant).eval(), build_tiny(**variant).eval()
    with torch.no_grad():
        images = teacher.preprocess_image(make_inputs(sizes=((64, 96), (64, 64))))
        t_out = teacher.run(images)
        prior = teacher.query_prior(t_out)
        with_prior = student.run(images, extra_queries=prior)
    if variant.get("as_two_stage"):
        assert prior is t_out.query_embed
        return
    B, Q = 2, 20
    assert prior.shape == (B, Q, 2 * HIDDEN + 2)
    t_ref = teacher.transformer.reference_points(teacher.query_embed.weight[:, :HIDDEN]).sigmoid()
    assert torch.allclose(prior[..., -2:], t_ref.expand(B, -1, -1))
    # Without box refinement the boxes are sigmoid(delta + inverse_sigmoid(reference)): remove the
    # student's predicted offsets and the reference the student decoded from comes back.
    with torch.no_grad():
        bare = student.run(images, extra_queries=t_out.query_embed)
        deltas = student.bbox_embed[0](with_prior.extra.hidden_states[0])
    recovered = (torch.logit(with_prior.extra.boxes[0], eps=1e-6) - deltas)[..., :2].sigmoid()
    assert torch.allclose(recovered, t_ref.expand(B, -1, -1), atol=1e-4)
    assert not torch.allclose(bare.extra.boxes, with_prior.extra.boxes)
