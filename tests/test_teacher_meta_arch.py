"""Frozen teacher, recorders, adapters, the distillation meta-architecture and the FitNet baseline."""
import copy

import pytest
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import instantiate
from detectron2.modeling import META_ARCH_REGISTRY
from detectron2.utils.events import EventStorage

from kd_core.adapters import ChannelAdapter, align_spatial
from kd_core.config import apply_overrides_strict, get_config
from kd_core.feature_mimic import FeatureMimicDistiller
from kd_core.hooks import FeatureRecorder
from kd_core.meta_arch import DistillationDetector, get_num_classes
from kd_core.schedules import LossWeightSchedule
from kd_core.teacher import FrozenTeacher, TeacherCheckpointError, load_teacher_weights


@pytest.fixture(scope="module")
def tiny_cfg():
    return get_config("common/models/tiny.py")


def _build(cfg, num_classes=None):
    cfg = copy.deepcopy(cfg)
    if num_classes is not None:
        cfg.num_classes = num_classes
    torch.manual_seed(0)
    return instantiate(cfg)


def _batch(n=2, size=96, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    from detectron2.structures import Boxes, Instances

    for _ in range(n):
        inst = Instances((size, size))
        inst.gt_boxes = Boxes(torch.tensor([[10.0, 12.0, 30.0, 40.0], [50.0, 50.0, 90.0, 80.0]]))
        inst.gt_classes = torch.tensor([0, 2])
        out.append(
            {
                "image": torch.randint(0, 255, (3, size, size), generator=g, dtype=torch.uint8).float(),
                "instances": inst,
                "height": size,
                "width": size,
            }
        )
    return out


def _fitnet(student_cfg, teacher, weight=1.0):
    return DistillationDetector(
        student=_build(student_cfg),
        teacher=teacher,
        distillers={
            "feature_mimic": FeatureMimicDistiller(
                levels=["p3", "p4"], student_channels=[64, 64], teacher_channels=[64, 64], weight=weight
            )
        },
    )


@pytest.fixture(scope="module")
def teacher_ckpt(tmp_path_factory, tiny_cfg):
    d = tmp_path_factory.mktemp("teacher")
    model = _build(tiny_cfg.retinanet_r34)
    DetectionCheckpointer(model, str(d)).save("teacher")
    return str(d / "teacher.pth"), model


def test_teacher_loads_checkpoint_and_is_frozen(teacher_ckpt, tiny_cfg):
    path, reference = teacher_ckpt
    teacher = FrozenTeacher(instantiate(tiny_cfg.retinanet_r34), weights=path)
    for (k, a), b in zip(reference.state_dict().items(), teacher.model.state_dict().values()):
        assert torch.equal(a, b), k
    assert all(not p.requires_grad for p in teacher.model.parameters())
    assert not teacher.model.training
    teacher.train()
    assert not teacher.model.training


def test_teacher_checkpoint_errors(tmp_path, tiny_cfg, teacher_ckpt):
    with pytest.raises(TeacherCheckpointError, match="not found"):
        FrozenTeacher(instantiate(tiny_cfg.retinanet_r34), weights=str(tmp_path / "missing.pth"))
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"this is not a checkpoint")
    with pytest.raises(TeacherCheckpointError, match="could not be read"):
        FrozenTeacher(instantiate(tiny_cfg.retinanet_r34), weights=str(corrupt))
    # a checkpoint of another architecture: nothing matches
    other = tmp_path / "other.pth"
    torch.save({"model": {"foo.weight": torch.zeros(3)}}, other)
    with pytest.raises(TeacherCheckpointError, match="No parameter"):
        FrozenTeacher(instantiate(tiny_cfg.retinanet_r34), weights=str(other))
    # class-count mismatch between the teacher config and its checkpoint
    with pytest.raises(TeacherCheckpointError, match="class-count"):
        FrozenTeacher(_build(tiny_cfg.retinanet_r34, num_classes=7), weights=teacher_ckpt[0])
    with pytest.raises(TeacherCheckpointError, match="No teacher checkpoint"):
        FrozenTeacher(instantiate(tiny_cfg.retinanet_r34), weights="")


def test_strict_teacher_loading_reports_missing_keys(tmp_path, tiny_cfg, teacher_ckpt):
    sd = torch.load(teacher_ckpt[0], weights_only=False)["model"]
    partial = {k: v for i, (k, v) in enumerate(sd.items()) if i % 2 == 0}
    p = tmp_path / "partial.pth"
    torch.save({"model": partial}, p)
    inc = load_teacher_weights(instantiate(tiny_cfg.retinanet_r34), str(p))
    assert len(inc.missing_keys) > 0
    with pytest.raises(TeacherCheckpointError, match="strict"):
        load_teacher_weights(instantiate(tiny_cfg.retinanet_r34), str(p), strict=True)


def test_teacher_kept_out_of_registration(teacher_ckpt, tiny_cfg):
    teacher = FrozenTeacher(instantiate(tiny_cfg.retinanet_r34), weights=teacher_ckpt[0])
    model = _fitnet(tiny_cfg.retinanet_r18, teacher)
    keys = model.state_dict().keys()
    assert all(k.startswith(("student.", "distillers.")) for k in keys)
    teacher_params = {id(p) for p in teacher.model.parameters()}
    assert not teacher_params & {id(p) for p in model.parameters()}
    model.train()
    assert model.student.training and not teacher.model.training
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    assert not teacher_params & {id(p) for g in opt.param_groups for p in g["params"]}
    # the teacher as a detector for --eval-teacher: the teacher itself, still outside the student's modules
    detector = model.teacher_detector()
    assert detector.model is teacher.model and not detector.training
    assert "teacher" not in dict(model.named_children())
    assert META_ARCH_REGISTRY.get("DistillationDetector") is DistillationDetector


def test_class_count_mismatch_between_teacher_and_student(tiny_cfg):
    teacher = FrozenTeacher(_build(tiny_cfg.retinanet_r34, num_classes=5), allow_random_init=True)
    assert get_num_classes(teacher.model) == 5
    with pytest.raises(ValueError, match="Class-count mismatch"):
        _fitnet(tiny_cfg.retinanet_r18, teacher)


def test_fitnet_training_step_gradients_and_eval(tiny_cfg, teacher_ckpt):
    teacher = FrozenTeacher(instantiate(tiny_cfg.retinanet_r34), weights=teacher_ckpt[0])
    model = _fitnet(tiny_cfg.retinanet_r18, teacher)
    model.train()
    with EventStorage(0):
        losses = model(_batch())
    assert {"loss_cls", "loss_box_reg", "loss_kd_feature_mimic"} <= set(losses)
    assert all(torch.isfinite(v) for v in losses.values())
    losses["loss_kd_feature_mimic"].backward()
    assert len(list(model.distillers.parameters())) == 0  # equal widths: identity adapters
    assert model.student.backbone.bottom_up.stem.conv1.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in teacher.model.parameters())
    # inference is the student alone
    model.eval()
    with torch.no_grad():
        out = model(_batch(1))
        ref = model.student(_batch(1))
    assert torch.equal(out[0]["instances"].scores, ref[0]["instances"].scores)


def test_teacher_of_the_other_channel_order_needs_its_own_view(tiny_cfg):
    # an RGB teacher for a BGR student: training on the student's images alone is an error (any distiller)
    rgb = copy.deepcopy(tiny_cfg.retinanet_r34)
    rgb.input_format = "RGB"
    model = _fitnet(tiny_cfg.retinanet_r18, FrozenTeacher(instantiate(rgb), allow_random_init=True))
    model.train()
    with EventStorage(0), pytest.raises(ValueError, match="teacher reads RGB images and the student BGR.*teacher_image_format='RGB'"):
        model(_batch())
    batch = [{**x, "teacher_image": x["image"].flip(0)} for x in _batch()]  # the teacher's own view
    with EventStorage(0):
        assert torch.isfinite(model(batch)["loss_kd_feature_mimic"])


def test_kd_weight_schedule_warmup_gives_zero_terms(tiny_cfg):
    teacher = FrozenTeacher(instantiate(tiny_cfg.retinanet_r34), allow_random_init=True)
    model = _fitnet(tiny_cfg.retinanet_r18, teacher, weight=LossWeightSchedule(2.0, start_iter=5))
    model.train()
    with EventStorage(3):
        early = model(_batch(1))["loss_kd_feature_mimic"]
    with EventStorage(5):
        late = model(_batch(1))["loss_kd_feature_mimic"]
    assert early.item() == 0.0 and late.item() > 0.0


def test_feature_recorder_records_only_inside_block_and_removes():
    net = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.ReLU())
    rec = FeatureRecorder(net, ["0"])
    net(torch.ones(1, 2))
    assert rec._active is None
    with rec.record() as r:
        net(torch.ones(1, 2))
    assert r["0"].shape == (1, 3)
    rec.remove()
    with pytest.raises(RuntimeError, match="did not run"):
        with rec.record():
            net(torch.ones(1, 2))
    with pytest.raises(KeyError, match="close"):
        FeatureRecorder(net, ["O"])


def test_adapters_and_spatial_alignment():
    x = torch.arange(16.0).view(1, 1, 4, 4)
    assert align_spatial(x, (2, 2)).flatten().tolist() == [2.5, 4.5, 10.5, 12.5]
    assert align_spatial(x, (8, 8), "nearest").shape[-2:] == (8, 8)
    assert ChannelAdapter(3, 5)(torch.zeros(2, 3, 4, 4)).shape == (2, 5, 4, 4)
    assert ChannelAdapter(3, 5, "linear")(torch.zeros(7, 3)).shape == (7, 5)
    with pytest.raises(ValueError, match="input channels"):
        ChannelAdapter(3, 5)(torch.zeros(2, 4, 4, 4))
    with pytest.raises(ValueError, match="identity"):
        ChannelAdapter(3, 5, "identity")


def test_strict_overrides():
    from detectron2.config import LazyConfig

    cfg = LazyConfig.load("configs/tiny/retinanet_r18_tiny_cpu.py")
    cfg = apply_overrides_strict(cfg, ["train.max_iter=7", "+train.new_key=3"])
    assert cfg.train.max_iter == 7 and cfg.train.new_key == 3
    with pytest.raises(KeyError, match="Did you mean: train.max_iter"):
        apply_overrides_strict(cfg, ["train.max_iters=7"])
    with pytest.raises(ValueError, match="key=value"):
        apply_overrides_strict(cfg, ["train.max_iter"])


def test_feature_mimic_adapter_for_unequal_widths_and_2x_teacher():
    d = FeatureMimicDistiller(levels=["p3"], student_channels=[32], teacher_channels=[64])
    s = {"backbone": {"p3": torch.randn(2, 32, 8, 8, requires_grad=True)}}
    t = {"backbone": {"p3": torch.randn(2, 64, 16, 16, requires_grad=True)}}  # 2x-resolution teacher
    loss = d(s, t, None, iteration=0)["loss_kd_feature_mimic"]
    adapted = d.adapters[0](s["backbone"]["p3"])
    expected = ((adapted - torch.nn.functional.avg_pool2d(t["backbone"]["p3"], 2)) ** 2).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    loss.backward()
    assert d.adapters[0].proj.weight.grad.abs().sum() > 0 and s["backbone"]["p3"].grad is not None
    assert t["backbone"]["p3"].grad is None  # the teacher side is detached
    with pytest.raises(KeyError, match="levels"):
        d({"backbone": {"p4": s["backbone"]["p3"]}}, t, None, iteration=0)
