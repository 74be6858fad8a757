"""ScaleKD building blocks: SDF, multi-scale cross-attention, losses, the teacher-image mapper."""
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from scalekd import (
    AssistantTrainer,
    CrossScaleAssistant,
    MultiScaleCrossAttention,
    ScaleDecoupledEmbedding,
    ScaleKDDatasetMapper,
    SDFDistiller,
    SharedDilatedBottleneck,
    default_level_pairs,
    make_teacher_image,
    teacher_view_transforms,
)
from scalekd.losses import dense_cls_mimic_loss, roi_box_mimic_loss, roi_cls_mimic_loss


# ----------------------------------------------------------------------------- SDF

pytestmark = pytest.mark.usefixtures("one_intra_op_thread")

def test_sdf_embedding_shape_and_weight_sharing():
    emb = ScaleDecoupledEmbedding(32, embed_dims=(256, 256), dilations=(1, 2, 3))
    x = torch.randn(2, 32, 5, 7)
    out = emb(x)
    assert out.shape == (2, 35, 768)
    # one bottleneck and one MLP shared by the three branches
    convs = [m for m in emb.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 3
    branches = emb.bottleneck(x)
    assert len(branches) == 3 and all(b.shape == x.shape for b in branches)
    assert not torch.allclose(branches[0], branches[1])  # the dilation changes the branch
    with pytest.raises(ValueError, match="expects"):
        emb(torch.randn(2, 16, 5, 7))


def test_shared_bottleneck_branch_equals_dilated_conv():
    block = SharedDilatedBottleneck(8, dilations=(2,))
    x = torch.randn(1, 8, 6, 6)
    y = F.relu(block.conv1(x))
    z = F.conv2d(y, block.conv2.weight, block.conv2.bias, padding=2, dilation=2)
    expected = F.relu(x + block.conv3(F.relu(z)))
    assert torch.allclose(block(x)[0], expected, atol=1e-6)


def _records(student, teacher, module="backbone.bottom_up", s_name="res5", t_name="res5"):
    return {module: {s_name: student}}, {module: {t_name: teacher}}


def test_sdf_loss_value_frozen_block_and_detached_teacher():
    torch.manual_seed(0)
    d = SDFDistiller(student_channels=16, teacher_channels=32, weight=0.5)
    assert all(not p.requires_grad for p in d.embeddings.parameters())  # frozen random init
    assert all(p.requires_grad for p in d.adapters.parameters())
    s = torch.randn(2, 16, 4, 4, requires_grad=True)
    t = torch.randn(2, 32, 8, 8, requires_grad=True)  # a 2x teacher: pooled 2x2
    out = d(*_records(s, t), None, iteration=0)
    assert set(out) == {"loss_kd_sdf"}
    e_s = d.embeddings[0](d.adapters[0](s))
    e_t = d.embeddings[0](F.avg_pool2d(t, 2))
    expected = 0.5 * (e_s - e_t).pow(2).sum(-1).mean()
    assert torch.allclose(out["loss_kd_sdf"], expected, rtol=1e-5)
    out["loss_kd_sdf"].backward()
    assert t.grad is None  # teacher path detached
    assert s.grad is not None and d.adapters[0].proj.weight.grad is not None
    assert all(p.grad is None for p in d.embeddings.parameters())


def test_sdf_trainable_switch_and_mean_reduction():
    d = SDFDistiller(student_channels=8, teacher_channels=8, trainable=True, reduction="mean", weight=1.0)
    assert all(p.requires_grad for p in d.embeddings.parameters())
    s, t = torch.randn(1, 8, 3, 3), torch.randn(1, 8, 3, 3)
    e_s, e_t = d.embed_pair(0, s, t)
    assert e_s.shape == (1, 9, 768)
    loss = d.losses(*_records(s, t), None)["loss_kd_sdf"]
    assert torch.allclose(loss, (e_s - e_t).pow(2).mean())
    with pytest.raises(ValueError, match="reduction"):
        SDFDistiller(student_channels=8, teacher_channels=8, reduction="sum")


def test_sdf_student_c4_pairing_and_exact_alignment():
    # a 2x teacher's C5 has the size of the student's C4: pair them without pooling
    d = SDFDistiller(student_channels=16, teacher_channels=32, student_features=["res4"], spatial_align="exact")
    s, t = torch.randn(2, 16, 6, 6), torch.randn(2, 32, 6, 6)
    loss = d(*_records(s, t, s_name="res4"), None, iteration=0)["loss_kd_sdf"]
    assert torch.isfinite(loss)
    with pytest.raises(ValueError, match="exact"):
        d(*_records(s, torch.randn(2, 32, 12, 12), s_name="res4"), None, iteration=0)


def test_sdf_channel_mismatch_is_an_error():
    d = SDFDistiller(student_channels=16, teacher_channels=32)
    with pytest.raises(ValueError, match="input channels"):
        d(*_records(torch.randn(1, 24, 4, 4), torch.randn(1, 32, 4, 4)), None, iteration=0)
    with pytest.raises(ValueError, match="same length"):
        SDFDistiller(student_channels=16, teacher_channels=32, student_features=["res4", "res5"])


# ----------------------------------------------------------------------------- CSA attention
@pytest.mark.parametrize("level,size", [("p3", (13, 17)), ("p5", (4, 5)), ("p7", (1, 2))])
def test_msc_attention_shapes_with_other_teacher_width(level, size):
    attn = MultiScaleCrossAttention(embed_dim=64, teacher_dim=32, num_heads=8, num_groups=2, zero_init_residual=False)
    zs = torch.randn(2, 64, *size)
    zt = torch.randn(2, 32, *size)  # rates (8, 4) on a 13x17 map: padded to a multiple of the rate
    out = attn(zs, zt, level)
    assert out.shape == zs.shape and torch.isfinite(out).all()
    # keys/values may come from a map of another size (e.g. the teacher's coarsest level)
    assert attn(zs, torch.randn(2, 32, size[0] * 2, size[1] * 2), level).shape == zs.shape


def test_msc_attention_zero_init_is_identity_and_errors():
    attn = MultiScaleCrossAttention(embed_dim=32, teacher_dim=16, num_heads=4, num_groups=2)
    zs = torch.randn(1, 32, 6, 6)
    assert torch.allclose(attn(zs, torch.randn(1, 16, 6, 6), "p4"), zs)
    assert {k for k in attn.reductions} == {"group0_rate8", "group0_rate4", "group0_rate2", "group0_rate1",
                                             "group1_rate4", "group1_rate2", "group1_rate1"}
    with pytest.raises(ValueError, match="teacher maps"):
        attn(zs, torch.randn(1, 8, 6, 6), "p4")  # wrong teacher width: no silent broadcast
    with pytest.raises(KeyError, match="no rates"):
        attn(zs, torch.randn(1, 16, 6, 6), "p9")
    with pytest.raises(ValueError, match="divisible"):
        MultiScaleCrossAttention(embed_dim=30, teacher_dim=16, num_heads=4)
    with pytest.raises(ValueError, match="rates"):
        MultiScaleCrossAttention(embed_dim=32, teacher_dim=16, num_heads=4, num_groups=2, level_rates={"p3": (1,)})


def test_msc_attention_uses_grouped_rates():
    """Group g attends to MSC(Z^T, r_g): recompute head outputs by hand."""
    torch.manual_seed(0)
    attn = MultiScaleCrossAttention(embed_dim=16, teacher_dim=8, num_heads=4, num_groups=2,
                                    level_rates={"p4": (2, 1)}, zero_init_residual=False)
    zs, zt = torch.randn(1, 16, 4, 4), torch.randn(1, 8, 4, 4)
    tokens = zs.flatten(2).transpose(1, 2)
    q = attn.q_proj(attn.query_norm(tokens)).view(1, 16, 4, 4).transpose(1, 2)
    heads = []
    for g, r in enumerate((2, 1)):
        x = attn.reductions[f"group{g}_rate{r}"](zt)
        k, v = attn.kv_proj[g](x.flatten(2).transpose(1, 2)).chunk(2, -1)
        v = v + attn.value_pos[g](v.transpose(1, 2).reshape(1, 8, *x.shape[-2:])).flatten(2).transpose(1, 2)
        k = k.view(1, -1, 2, 4).transpose(1, 2)
        v = v.reshape(1, -1, 2, 4).transpose(1, 2)
        w = torch.softmax(q[:, 2 * g : 2 * g + 2] @ k.transpose(-1, -2) / 2.0, dim=-1)
        heads.append(w @ v)
        assert k.shape[2] == (16 // (r * r))  # 4x4 teacher tokens reduced by r x r
    y = tokens + attn.out_proj(torch.cat(heads, 1).transpose(1, 2).reshape(1, 16, 16))
    y = y + attn.ffn(attn.ffn_norm(y))
    assert torch.allclose(attn(zs, zt, "p4"), y.transpose(1, 2).reshape(1, 16, 4, 4), atol=1e-5)


def _msc_by_hand(attn, zs, zt, level):
    """MultiScaleCrossAttention's formula for one level, written out independently, any batch size."""
    b, c, h, w = zs.shape
    hg = attn.num_heads // attn.num_groups
    tokens = zs.flatten(2).transpose(1, 2)
    q = attn.q_proj(attn.query_norm(tokens)).view(b, h * w, attn.num_heads, attn.head_dim).transpose(1, 2)
    heads = []
    for g, r in enumerate(attn.level_rates[level]):
        x = attn.reductions[f"group{g}_rate{r}"](zt)
        k, v = attn.kv_proj[g](x.flatten(2).transpose(1, 2)).chunk(2, -1)
        v = v + attn.value_pos[g](v.transpose(1, 2).reshape(b, attn.group_dim, *x.shape[-2:])).flatten(2).transpose(1, 2)
        k = k.reshape(b, -1, hg, attn.head_dim).transpose(1, 2)
        v = v.reshape(b, -1, hg, attn.head_dim).transpose(1, 2)
        weights = torch.softmax(q[:, g * hg : (g + 1) * hg] @ k.transpose(-1, -2) / attn.head_dim**0.5, dim=-1)
        heads.append(weights @ v)
    y = tokens + attn.out_proj(torch.cat(heads, 1).transpose(1, 2).reshape(b, h * w, c))
    y = y + attn.ffn(attn.ffn_norm(y))
    return y.transpose(1, 2).reshape(b, c, h, w)


def test_msc_attention_all_levels_in_one_pass_equal_level_by_level():
    """forward_levels batches the token-wise parts over levels: same outputs and gradients as the
    formula applied level by level (batch of 2, levels of different sizes and rates)."""
    torch.manual_seed(0)
    attn = MultiScaleCrossAttention(embed_dim=16, teacher_dim=8, num_heads=4, num_groups=2, zero_init_residual=False)
    levels = ["p3", "p4", "p7"]
    students = [torch.randn(2, 16, h, w, requires_grad=True) for h, w in [(9, 11), (5, 6), (1, 2)]]
    teachers = [torch.randn(2, 8, h, w) for h, w in [(9, 11), (5, 6), (2, 3)]]

    def outputs_and_grads(outputs):
        attn.zero_grad()
        for s in students:
            s.grad = None
        sum((o * torch.linspace(0, 1, o.numel()).view_as(o)).sum() for o in outputs).backward()
        return outputs, [s.grad.clone() for s in students] + [None if p.grad is None else p.grad.clone() for p in attn.parameters()]

    together, grads_together = outputs_and_grads(attn.forward_levels(students, teachers, levels))
    by_hand, grads_by_hand = outputs_and_grads([_msc_by_hand(attn, s, t, l) for s, t, l in zip(students, teachers, levels)])
    for a, b in zip(together, by_hand):
        assert a.shape == b.shape and torch.allclose(a, b, atol=1e-5)
    assert [a is None for a in grads_together] == [b is None for b in grads_by_hand]  # p5's rate-2 reduction is unused
    for a, b in zip(grads_together, grads_by_hand):
        assert a is None or torch.allclose(a, b, atol=1e-4)
    assert torch.allclose(attn(students[1], teachers[1], "p4"), by_hand[1], atol=1e-5)  # forward = one level
    with pytest.raises(ValueError, match="one student map"):
        attn.forward_levels(students[:2], teachers, levels)
    with pytest.raises(ValueError, match="same batch size"):
        attn.forward_levels([students[0], students[1][:1]], teachers[:1] + [teachers[1][:1]], levels[:2])


def test_default_level_pairs():
    t = ["p3", "p4", "p5", "p6", "p7"]
    assert default_level_pairs(["p3", "p4", "p5", "p6", "p7"], t, 1) == {"p3": "p4", "p4": "p5", "p5": "p6", "p6": "p7", "p7": "p7"}
    assert default_level_pairs(["p3", "p7"], t, 0) == {"p3": "p3", "p7": "p7"}
    with pytest.raises(ValueError, match="needs teacher level 'p2'"):
        default_level_pairs(["p2", "p3"], t, 0)  # a two-stage student vs a RetinaNet teacher's levels
    with pytest.raises(ValueError, match="no FPN levels"):
        default_level_pairs(["p3"], ["res4", "res5"], 1)


def test_assistant_trainer_step_state_and_device():
    module = torch.nn.Linear(3, 2)
    trainer = AssistantTrainer(module, lr=0.1, weight_decay=0.0)
    before = module.weight.detach().clone()
    trainer.step(module(torch.randn(4, 3)).pow(2).sum())
    assert not torch.equal(before, module.weight) and module.weight.grad is None
    state = trainer.state_dict()
    assert set(state) == {"model", "optimizer", "settings"} and state["optimizer"]["state"]
    assert state["settings"] == {"optimizer": "adam", "lr": 0.1, "weight_decay": 0.0, "betas": [0.9, 0.999]}
    other = AssistantTrainer(torch.nn.Linear(3, 2))
    other.load_state_dict(state)
    assert torch.equal(other.module.weight, module.weight)
    assert torch.equal(other.optimizer.state_dict()["state"][0]["exp_avg"], state["optimizer"]["state"][0]["exp_avg"])
    with pytest.raises(KeyError, match="'model' and 'optimizer'"):
        other.load_state_dict({"model": state["model"]})


def test_assistant_state_differences_compare_the_settings_no_shape_shows():
    """Heads, rates, level pairs and the optimizer's settings keep every tensor's shape; the
    recorded settings catch them. A checkpoint from before settings were recorded is not compared."""

    def trainer(num_heads=4, rates=((2, 1), (1, 1)), pairs=("p4", "p4"), lr=1e-3, optimizer="adam"):
        attention = MultiScaleCrossAttention(8, 8, num_heads=num_heads, num_groups=2, level_rates={"p3": rates[0], "p4": rates[1]})
        module = CrossScaleAssistant(attention, torch.nn.Identity(), {"p3": pairs[0], "p4": pairs[1]})
        return AssistantTrainer(module, lr=lr, optimizer=optimizer)

    saved = trainer().state_dict()
    assert saved["settings"]["level_rates"] == {"p3": [2, 1], "p4": [1, 1]}
    assert trainer().state_differences(saved) == []
    assert trainer().state_differences({k: v for k, v in saved.items() if k != "settings"}) == []
    cases = {
        "num_heads": (trainer(num_heads=8), "'num_heads' is 4 in the checkpoint and 8 in this model"),
        "level_rates": (trainer(rates=((1, 1), (2, 1))), "'level_rates' is {'p3': [2, 1], 'p4': [1, 1]} in the checkpoint"),
        "level_pairs": (trainer(pairs=("p3", "p4")), "'level_pairs' is {'p3': 'p4', 'p4': 'p4'} in the checkpoint and {'p3': 'p3', 'p4': 'p4'}"),
        "lr": (trainer(lr=1e-4), "'lr' is 0.001 in the checkpoint and 0.0001 in this model"),
        "optimizer": (trainer(optimizer="adamw"), "'optimizer' is 'adam' in the checkpoint and 'adamw' in this model"),
    }
    for name, (other, message) in cases.items():
        problems = other.state_differences(saved)
        assert problems and all(p.startswith(f"the assistant's '{name}'") for p in problems), (name, problems)
        assert message in problems[0], (name, problems)


@pytest.mark.parametrize("optimizer", ["adam", "adamw"])
def test_assistant_fused_optimizer_is_the_same_update_in_one_kernel(optimizer):
    """The assistant's Adam is PyTorch's fused kernel by default: after 5 steps its weights equal
    the per-tensor implementation's up to float rounding, and one step dispatches a handful of
    operators instead of a loop over every parameter tensor. A state saved by the
    per-tensor kernel (a checkpoint from before the default) resumes with that kernel."""
    import importlib.util
    import os

    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools", "benchmark_overhead.py")
    spec = importlib.util.spec_from_file_location("benchmark_overhead", path)
    overhead = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(overhead)

    def make(fused):
        torch.manual_seed(0)
        module = torch.nn.Sequential(*[torch.nn.Linear(8, 8) for _ in range(6)])
        return AssistantTrainer(module, lr=1e-2, weight_decay=1e-4, optimizer=optimizer, fused=fused)

    fused, plain = make(True), make(False)
    assert fused.optimizer.defaults["fused"] is True and not plain.optimizer.defaults["fused"]
    x = torch.randn(4, 8)
    ops = {}
    for trainer in (fused, plain):
        for _ in range(4):
            trainer.step(trainer.module(x).pow(2).sum())
        trainer.optimizer.zero_grad(set_to_none=True)
        trainer.module(x).pow(2).sum().backward()
        ops[trainer is fused] = overhead.count_dispatched_ops(trainer.optimizer.step)
    for a, b in zip(fused.module.parameters(), plain.module.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert ops[True] <= 5 < 12 * 5 <= ops[False], ops  # 12 parameter tensors, each several ops unfused
    resumed = make(True)
    resumed.load_state_dict(plain.state_dict())
    assert not resumed.optimizer.param_groups[0]["fused"]
    resumed.step(resumed.module(x).pow(2).sum())


@pytest.mark.parametrize("fused", [True, False])
def test_assistant_prepare_moves_the_step_counters_where_the_kernel_reads_them(fused):
    """A resumed assistant's state is loaded on the host and moved by ``prepare``: the fused kernel
    reads Adam's ``step`` on the parameters' device, the per-tensor and foreach kernels on the host.
    ("meta" stands in for an accelerator: only where each tensor lands is checked.)"""
    module = torch.nn.Linear(3, 2)
    trainer = AssistantTrainer(module, fused=fused)
    trainer.step(module(torch.randn(4, 3)).sum())
    trainer.prepare("meta")
    assert module.weight.device.type == "meta"
    for state in trainer.optimizer.state.values():
        assert state["exp_avg"].device.type == state["exp_avg_sq"].device.type == "meta"
        assert state["step"].device.type == ("meta" if fused else "cpu")


@pytest.mark.parametrize("optimizer", ["adam", "adamw"])
def test_assistant_optimizer_weight_decay_on_a_parameter_without_loss_gradient(optimizer):
    # Adam adds weight_decay * w to the gradient and normalizes it: a parameter whose loss gradient is
    # 0 (the attention's query projection behind a zero-init output projection) moves ~lr per step
    # towards 0. AdamW's decoupled decay shrinks it by lr * weight_decay * w per step.
    module = torch.nn.Linear(3, 2)
    torch.nn.init.constant_(module.weight, 0.05)
    trainer = AssistantTrainer(module, lr=1e-3, weight_decay=1e-4, optimizer=optimizer)
    for _ in range(20):
        trainer.step((module.weight * 0.0).sum() + module.bias.sum())
    if optimizer == "adam":  # 0.05 - 20 steps of ~lr (a little less: the decay term shrinks with w)
        assert torch.allclose(module.weight, torch.full_like(module.weight, 0.03), atol=2e-3)
    else:
        assert torch.allclose(module.weight, torch.full_like(module.weight, 0.05 * (1 - 1e-3 * 1e-4) ** 20), atol=1e-7)
    with pytest.raises(ValueError, match="optimizer must be one of"):
        AssistantTrainer(module, optimizer="sgd")


# ----------------------------------------------------------------------------- losses
def test_dense_cls_mimic_is_kl_with_bce_gradient():
    s = torch.randn(2, 10, 3, requires_grad=True)
    a = torch.randn(2, 10, 3)
    loss = dense_cls_mimic_loss(s, a, normalizer=4.0)
    bce = F.binary_cross_entropy_with_logits(s, a.sigmoid(), reduction="sum") / 4.0
    g1 = torch.autograd.grad(loss, s)[0]
    g2 = torch.autograd.grad(bce, s)[0]
    assert torch.allclose(g1, g2, atol=1e-6) and loss > 0
    assert dense_cls_mimic_loss(a.clone(), a, 4.0).abs() < 1e-4
    # temperature: T^2 times the binary KL between sigmoid(a / T) and sigmoid(s / T)
    p, q = (a / 2).sigmoid(), (s / 2).sigmoid()
    kl = (p * (p.log() - q.log()) + (1 - p) * ((1 - p).log() - (1 - q).log())).sum() * 4 / 4.0
    assert torch.allclose(dense_cls_mimic_loss(s, a, 4.0, temperature=2.0), kl, atol=1e-5)


def test_roi_mimic_losses():
    r, k = 6, 3
    s_scores, a_scores = torch.randn(r, k + 1), torch.randn(r, k + 1)
    kl = roi_cls_mimic_loss(s_scores, a_scores, temperature=2.0)
    p_a = F.softmax(a_scores / 2, -1)
    expected = (p_a * (F.log_softmax(a_scores / 2, -1) - F.log_softmax(s_scores / 2, -1))).sum(-1).mean() * 4
    assert torch.allclose(kl, expected, atol=1e-6)
    s_d, a_d = torch.randn(r, k * 4), torch.randn(r, k * 4)
    gt = torch.tensor([0, 2, 3, 1, 3, 3])  # 3 = background
    fg = gt < k
    idx = torch.nonzero(fg).squeeze(1)
    sel_s = s_d.view(r, k, 4)[idx, gt[idx]]
    sel_a = a_d.view(r, k, 4)[idx, gt[idx]]
    expected = F.smooth_l1_loss(sel_s, sel_a, beta=1.0, reduction="sum") / r
    assert torch.allclose(roi_box_mimic_loss(s_d, a_d, gt, k, beta=1.0), expected, atol=1e-6)
    # class-agnostic deltas
    expected = F.l1_loss(s_d[:, :4][fg], a_d[:, :4][fg], reduction="sum") / r
    assert torch.allclose(roi_box_mimic_loss(s_d[:, :4], a_d[:, :4], gt, k, beta=0.0), expected, atol=1e-6)


# ----------------------------------------------------------------------------- mapper
def _dataset_dict(tmp_path, h=48, w=64):
    import cv2

    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    path = os.path.join(str(tmp_path), "img.png")
    cv2.imwrite(path, img)
    ann = {"bbox": [4, 6, 20, 18], "bbox_mode": 1, "category_id": 1, "iscrowd": 0}
    return {"file_name": path, "height": h, "width": w, "image_id": 0, "annotations": [ann]}


def test_mapper_adds_teacher_image_once_augmented(tmp_path):
    import detectron2.data.transforms as T

    augs = [T.ResizeShortestEdge(32, max_size=1000), T.RandomFlip(prob=1.0)]
    mapper = ScaleKDDatasetMapper(is_train=True, augmentations=augs, image_format="BGR", teacher_scale=2.0)
    out = mapper(_dataset_dict(tmp_path))
    img, teacher = out["image"], out["teacher_image"]
    assert img.shape == (3, 32, 43) and teacher.shape == (3, 64, 86) and teacher.dtype == torch.uint8
    # the teacher sees the same (flipped, resized) image: pooling it back gives the student's image
    pooled = F.avg_pool2d(teacher[None].float(), 2)[0]
    assert (pooled - img.float()).abs().mean() < 12
    flipped_back = F.avg_pool2d(teacher.flip(-1)[None].float(), 2)[0]
    assert (flipped_back - img.float()).abs().mean() > (pooled - img.float()).abs().mean() + 5
    assert out["instances"].gt_boxes.tensor.shape == (1, 4)


def _noise_dataset_dict(tmp_path, h, w):
    import cv2

    img = np.random.default_rng(1).integers(0, 256, (h, w, 3), dtype=np.uint8)
    path = os.path.join(str(tmp_path), "noise.png")
    cv2.imwrite(path, img)
    return img, {"file_name": path, "height": h, "width": w, "image_id": 0, "annotations": []}


def test_mapper_renders_a_low_resolution_students_teacher_from_the_original(tmp_path):
    """A student view smaller than the original: the 2x teacher view is the original resized (and
    flipped) directly, not the student's pixels upsampled, so it keeps the original's detail."""
    import detectron2.data.transforms as T

    original, d = _noise_dataset_dict(tmp_path, 64, 96)
    augs = [T.ResizeShortestEdge(16, max_size=1000), T.RandomFlip(prob=1.0)]
    out = ScaleKDDatasetMapper(is_train=True, augmentations=augs, image_format="BGR")(d)
    assert out["image"].shape == (3, 16, 24) and out["teacher_image"].shape == (3, 32, 48)
    expected = T.ResizeTransform(64, 96, 32, 48).apply_image(original)[:, ::-1]
    assert torch.equal(out["teacher_image"], torch.as_tensor(np.ascontiguousarray(expected.transpose(2, 0, 1))))
    upsampled = make_teacher_image(out["image"], 2.0)
    assert (upsampled.float() - out["teacher_image"].float()).abs().mean() > 10  # noise: the detail differs
    # switched off: the student's pixels upsampled (the same augmentation draw: a fixed size and flip)
    resized = ScaleKDDatasetMapper(is_train=True, augmentations=augs, image_format="BGR", render_teacher_from_original=False)(d)
    assert torch.equal(resized["image"], out["image"]) and torch.equal(resized["teacher_image"], upsampled)
    # an RGB teacher for a BGR student: the same view, channels reversed
    rgb = ScaleKDDatasetMapper(is_train=True, augmentations=augs, image_format="BGR", teacher_image_format="RGB")(d)
    assert torch.equal(rgb["teacher_image"], out["teacher_image"].flip(0))
    # a transform that cannot be replayed on the original: the student's image, resized
    rotated = ScaleKDDatasetMapper(is_train=True, augmentations=[T.RandomRotation([10, 10])], image_format="BGR")(d)
    assert torch.equal(rotated["teacher_image"], make_teacher_image(rotated["image"], 2.0))


def test_teacher_view_transforms_move_crops_pads_and_flips_to_the_teachers_grid():
    import detectron2.data.transforms as T

    original = np.random.default_rng(2).integers(0, 256, (64, 96, 3), dtype=np.uint8)

    def teacher(transforms, scale=2.0):
        return teacher_view_transforms(T.TransformList(transforms), (64, 96), scale).apply_image(original)

    # crop of the original, then a 2x downscale, then a flip: the teacher's view is that crop at full size, flipped
    view = teacher([T.CropTransform(8, 4, 40, 30, 96, 64), T.ResizeTransform(30, 40, 15, 20), T.HFlipTransform(20)])
    assert np.array_equal(view, original[4:34, 8:48][:, ::-1])
    # a crop after a 2x downscale lands on the doubled window of the original
    view = teacher([T.ResizeTransform(64, 96, 32, 48), T.CropTransform(5, 3, 20, 16, 48, 32), T.VFlipTransform(16)])
    assert np.array_equal(view, original[6:38, 10:50][::-1])
    # a crop window reaching past the image (FixedSizeCrop(pad=False)) is clipped like the student's
    view = teacher([T.ResizeTransform(64, 96, 32, 48), T.CropTransform(40, 20, 16, 16, 48, 32)])
    assert np.array_equal(view, original[40:64, 80:96])
    # padding (FixedSizeCrop) is doubled too, with the same value
    view = teacher([T.ResizeTransform(64, 96, 32, 48), T.PadTransform(0, 0, 8, 4, 48, 32, 128)])
    assert view.shape == (72, 112, 3) and np.array_equal(view[:64, :96], original)
    assert (view[64:] == 128).all() and (view[:, 96:] == 128).all()
    # no resize in the pipeline: a final one; pixel-wise colour changes are kept
    brighter = T.BlendTransform(src_image=0.0, src_weight=0.5, dst_weight=0.5)
    view = teacher([T.HFlipTransform(96), brighter], scale=1.5)
    assert view.shape == (96, 144, 3)
    # off the scaled grid, shape-dependent or unknown: None (the mapper resizes the student's image)
    crop = T.CropTransform(1, 1, 10, 10, 48, 32)
    assert teacher_view_transforms(T.TransformList([T.ResizeTransform(64, 96, 32, 48), crop]), (64, 96), 1.5) is None
    saturation = T.BlendTransform(src_image=original.mean(axis=2, keepdims=True), src_weight=0.5, dst_weight=0.5)
    assert teacher_view_transforms(T.TransformList([saturation]), (64, 96), 2.0) is None
    assert teacher_view_transforms(T.TransformList([T.RotationTransform(64, 96, 10)]), (64, 96), 2.0) is None


def test_mapper_same_resolution_and_format(tmp_path):
    same = ScaleKDDatasetMapper(is_train=True, augmentations=[], image_format="BGR", teacher_scale=1.0)
    assert "teacher_image" not in same(_dataset_dict(tmp_path))
    rgb = ScaleKDDatasetMapper(is_train=True, augmentations=[], image_format="BGR", teacher_scale=1.0, teacher_image_format="RGB")
    out = rgb(_dataset_dict(tmp_path))
    assert torch.equal(out["teacher_image"], out["image"].flip(0))
    with pytest.raises(ValueError, match="BGR and RGB"):
        ScaleKDDatasetMapper(is_train=True, augmentations=[], image_format="BGR", teacher_image_format="L")
    assert make_teacher_image(torch.zeros(3, 5, 7, dtype=torch.uint8), 2.0).shape == (3, 10, 14)
