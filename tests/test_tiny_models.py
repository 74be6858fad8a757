"""The tiny CPU models of kd_core/configs/common/models/tiny.py and the configs under configs/tiny/."""
import glob
import os
import sys

import pytest
import torch
from detectron2.config import LazyConfig, instantiate
from detectron2.modeling.backbone import ResNet

from kd_core.config import get_config
from kd_core.modeling import basic_block_resnet_stages

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_CONFIGS = sorted(glob.glob(os.path.join(ROOT, "configs", "tiny", "*.py")))


pytestmark = pytest.mark.usefixtures("one_intra_op_thread")


def _sequential(stages):
    return torch.nn.Sequential(*[torch.nn.Sequential(*blocks) for blocks in stages])


@pytest.mark.parametrize("depth", [18, 34])
def test_full_width_stages_are_detectron2s_default_stages(depth):
    torch.manual_seed(0)
    reference = _sequential(ResNet.make_default_stages(depth, norm="BN"))
    torch.manual_seed(0)
    ours = _sequential(basic_block_resnet_stages(depth, width=64, norm="BN"))
    assert str(ours) == str(reference)
    expected = reference.state_dict()
    got = ours.state_dict()
    assert list(got) == list(expected)
    assert all(torch.equal(got[k], expected[k]) for k in expected)


def test_stages_refuse_a_depth_without_basic_blocks():
    with pytest.raises(ValueError, match="depth must be 18 or 34, got 50"):
        basic_block_resnet_stages(50, width=32)


@pytest.mark.parametrize("depth", [18, 34])
def test_half_width_retinanet_has_half_the_channels_and_a_quarter_of_the_backbone(depth):
    tiny = get_config("common/models/tiny.py")
    full = instantiate(tiny[f"retinanet_r{depth}"])
    half = instantiate(tiny[f"retinanet_r{depth}_w32"])
    bottom_up = half.backbone.bottom_up
    assert {k: v.channels for k, v in bottom_up.output_shape().items()} == {"res3": 64, "res4": 128, "res5": 256}
    assert bottom_up.stem.conv1.out_channels == 32
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    ratio = count(half.backbone.bottom_up) / count(full.backbone.bottom_up)
    assert 0.24 < ratio < 0.26, ratio  # every conv has half the inputs and half the outputs
    # the FPN reads the narrower res3-res5 (P6 from res5); its own width, 64, and the head stay
    fpn = half.backbone
    assert [fpn.fpn_lateral3.in_channels, fpn.fpn_lateral4.in_channels, fpn.fpn_lateral5.in_channels] == [64, 128, 256]
    assert fpn.top_block.p6.in_channels == 256 and fpn.fpn_output3.out_channels == 64
    half.eval()
    with torch.no_grad():
        out = half([{"image": torch.randint(0, 255, (3, 96, 128), dtype=torch.uint8)}])
    assert len(out) == 1 and "instances" in out[0]


@pytest.mark.parametrize("path", TINY_CONFIGS, ids=os.path.basename)
def test_tiny_config_builds(path):
    cfg = LazyConfig.load(path)
    if "teacher" in cfg.model:
        cfg.model.teacher.weights = ""
        cfg.model.teacher.allow_random_init = True
    model = instantiate(cfg.model)
    width = 32 if "_w32_" in os.path.basename(path) else 64
    for net in [model.student, model.teacher.model] if "teacher" in cfg.model else [model]:
        assert net.backbone.bottom_up.stem.conv1.out_channels == width


_SCALEKD_TINY = "projects/ScaleKD/configs/tiny/"
KD_CONFIGS_AND_THEIR_TEACHERS = [
    ("configs/tiny/retinanet_r34_r18_fitnet_tiny_cpu.py", "configs/tiny/retinanet_r34_tiny_cpu.py"),
    ("configs/tiny/retinanet_r34_r18_w32_fitnet_tiny_cpu.py", "configs/tiny/retinanet_r34_w32_tiny_cpu.py"),
    ("configs/tiny/faster_rcnn_r34_r18_fitnet_tiny_cpu.py", _SCALEKD_TINY + "faster_rcnn_r34_tiny_cpu.py"),
    ("configs/tiny/fcos_r34_r18_fitnet_tiny_cpu.py", _SCALEKD_TINY + "fcos_r34_tiny_cpu.py"),
    (_SCALEKD_TINY + "retinanet_r34_r18_scalekd_tiny_cpu.py", "configs/tiny/retinanet_r34_tiny_cpu.py"),
    (_SCALEKD_TINY + "retinanet_r34_r18_w32_scalekd_tiny_cpu.py", "configs/tiny/retinanet_r34_w32_tiny_cpu.py"),
    (_SCALEKD_TINY + "faster_rcnn_r34_r18_scalekd_tiny_cpu.py", _SCALEKD_TINY + "faster_rcnn_r34_tiny_cpu.py"),
    (_SCALEKD_TINY + "fcos_r34_r18_scalekd_tiny_cpu.py", _SCALEKD_TINY + "fcos_r34_tiny_cpu.py"),
    (_SCALEKD_TINY + "cascade_rcnn_r34_r18_scalekd_tiny_cpu.py", _SCALEKD_TINY + "cascade_rcnn_r34_tiny_cpu.py"),
]


def test_every_tiny_cnn_kd_config_is_checked_against_its_teacher_config():
    """A new tiny FitNet / ScaleKD config must be added to KD_CONFIGS_AND_THEIR_TEACHERS (the DETRDistill
    ones are checked in tests/test_detr_tools.py)."""
    found = glob.glob(os.path.join(ROOT, "configs", "tiny", "*_r34_r18_*.py"))
    found += glob.glob(os.path.join(ROOT, _SCALEKD_TINY, "*_r34_r18_*.py"))
    assert found
    assert sorted(os.path.relpath(p, ROOT) for p in found) == sorted(kd for kd, _ in KD_CONFIGS_AND_THEIR_TEACHERS)


@pytest.mark.parametrize("kd_path,teacher_path", KD_CONFIGS_AND_THEIR_TEACHERS, ids=lambda p: os.path.basename(p))
def test_tiny_kd_config_reads_the_checkpoint_its_teacher_config_writes(kd_path, teacher_path):
    """Trained with its defaults, the teacher config writes the checkpoint that the KD config loads,
    and the KD config's teacher network is that config's model."""
    kd = LazyConfig.load(os.path.join(ROOT, kd_path))
    teacher = LazyConfig.load(os.path.join(ROOT, teacher_path))
    assert kd.model.teacher.weights == os.path.join(teacher.train.output_dir, "model_final.pth")
    assert LazyConfig.to_py(kd.model.teacher.model) == LazyConfig.to_py(teacher.model)


def test_benchmark_kd_configs_train_the_student_of_their_baseline():
    """For every tiny benchmark method (tools/benchmark_kd_gain.py), the distilled run's student, optimizer
    and schedule are its baseline config's, so the paired AP gain compares the same network and training."""
    sys.path.insert(0, os.path.join(ROOT, "tools"))
    import benchmark_kd_gain as bench

    for method, spec in bench.METHODS["tiny"].items():
        kd = LazyConfig.load(os.path.join(ROOT, spec.kd_config))
        student = LazyConfig.load(os.path.join(ROOT, spec.student_config))
        assert LazyConfig.to_py(kd.model.student) == LazyConfig.to_py(student.model), method
        for key in ("optimizer", "lr_multiplier"):
            assert LazyConfig.to_py(kd[key]) == LazyConfig.to_py(student[key]), (method, key)
        assert kd.train.max_iter == student.train.max_iter, method
