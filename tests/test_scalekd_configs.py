"""Every ScaleKD LazyConfig loads; the models build (random teacher weights, nothing downloaded)."""
import glob
import os

import pytest
from detectron2.config import LazyConfig, instantiate

from scalekd import ScaleKDDetector

CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "projects", "ScaleKD", "configs")
RUNNABLE = sorted(p for p in glob.glob(os.path.join(CONFIG_DIR, "*", "*.py")) if os.sep + "common" + os.sep not in p)
KD_CONFIGS = [p for p in RUNNABLE if "scalekd" in os.path.basename(p)]


pytestmark = pytest.mark.usefixtures("one_intra_op_thread")


@pytest.mark.parametrize("path", RUNNABLE, ids=lambda p: os.path.relpath(p, CONFIG_DIR))
def test_config_loads(path):
    cfg = LazyConfig.load(path)
    assert {"model", "dataloader", "optimizer", "lr_multiplier", "train"} <= set(cfg)


@pytest.mark.parametrize("path", KD_CONFIGS, ids=lambda p: os.path.relpath(p, CONFIG_DIR))
def test_scalekd_model_builds_with_spec_settings(path):
    cfg = LazyConfig.load(path)
    cfg.model.teacher.weights = ""
    cfg.model.teacher.allow_random_init = True
    model = instantiate(cfg.model)
    assert isinstance(model, ScaleKDDetector)
    scale = cfg.dataloader.train.mapper.teacher_scale
    assert model.teacher_scale == scale
    two_stage = model.kind in ("rcnn", "cascade")
    assert model.distillers["sdf"].schedule.weight == (0.07 if two_stage else 0.01)
    assert (model.cls_schedule.weight, model.bbox_schedule.weight) == ((0.5, 0.2) if two_stage else (0.2, 0.05))
    assert model.cls_schedule.start_iter == model.bbox_schedule.start_iter
    if "/coco/" in path or "/visdrone/" in path:
        assert model.cls_schedule.start_iter == 30000
    assert not model.distillers["sdf"].trainable
    assert model.assistant.optimizer.defaults["lr"] == 3e-4 and model.assistant.optimizer.defaults["weight_decay"] == 1e-4
    attention = model.assistant.module.attention
    assert attention.num_heads == 8 and attention.num_groups == 2
    offset = 1 if scale == 2.0 else 0
    first = model.student_levels()[0]
    assert model.assistant.module.level_pairs[first] == f"p{int(first[1:]) + offset}"
