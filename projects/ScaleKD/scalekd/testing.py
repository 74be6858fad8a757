"""Helpers for tests and benchmarks: random detection batches and the tiny ScaleKD models."""
import os
from typing import List, Sequence, Tuple

from detectron2.config import LazyConfig, instantiate

from kd_core.testing import random_detection_batch

from .data.mapper import TEACHER_IMAGE_KEY, make_teacher_image

__all__ = ["random_batch", "tiny_config_path", "tiny_models_path", "load_tiny_config", "build_tiny_scalekd"]

_CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "tiny")
TINY_CONFIGS = {
    "retinanet": "retinanet_r34_r18_scalekd_tiny_cpu.py",
    "fcos": "fcos_r34_r18_scalekd_tiny_cpu.py",
    "faster_rcnn": "faster_rcnn_r34_r18_scalekd_tiny_cpu.py",
    "cascade_rcnn": "cascade_rcnn_r34_r18_scalekd_tiny_cpu.py",
}


def random_batch(
    num_images: int = 2,
    size: Tuple[int, int] = (128, 160),
    teacher_scale: float = 2.0,
    num_boxes: int = 4,
    num_classes: int = 4,
    seed: int = 0,
) -> List[dict]:
    """``kd_core.testing.random_detection_batch`` plus, per image, ``teacher_image`` at
    ``teacher_scale`` (omitted at 1.0)."""
    batch = random_detection_batch(num_images, size, num_boxes, num_classes, seed)
    if teacher_scale != 1.0:
        for d in batch:
            d[TEACHER_IMAGE_KEY] = make_teacher_image(d["image"], teacher_scale)
    return batch


def tiny_config_path(kind: str) -> str:
    """Path of the tiny CPU ScaleKD config of ``kind`` ("retinanet", "fcos", "faster_rcnn", "cascade_rcnn")."""
    if kind not in TINY_CONFIGS:
        raise KeyError(f"No tiny ScaleKD config for '{kind}' (have {sorted(TINY_CONFIGS)}).")
    return os.path.join(_CONFIG_DIR, TINY_CONFIGS[kind])


def tiny_models_path() -> str:
    """Path of ``configs/common/tiny_models.py`` (tiny Faster/Cascade/Mask R-CNN config builders)."""
    return os.path.join(os.path.dirname(_CONFIG_DIR), "common", "tiny_models.py")


def load_tiny_config(kind: str, random_teacher: bool = True, warmup_iters: int = 0):
    """The tiny config; ``random_teacher`` swaps the teacher checkpoint for random weights."""
    cfg = LazyConfig.load(tiny_config_path(kind))
    if random_teacher:
        cfg.model.teacher.weights = ""
        cfg.model.teacher.allow_random_init = True
    cfg.model.csa_cls_weight.start_iter = warmup_iters
    return cfg


def build_tiny_scalekd(kind: str, overrides: Sequence[str] = (), random_teacher: bool = True, warmup_iters: int = 0):
    """Instantiate the tiny ScaleKD model (training mode) with ``key=value`` overrides of ``cfg.model``."""
    cfg = load_tiny_config(kind, random_teacher, warmup_iters)
    cfg = LazyConfig.apply_overrides(cfg, [f"model.{o}" for o in overrides])
    model = instantiate(cfg.model)
    model.train()
    return model
