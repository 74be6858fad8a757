"""Helpers for tests and benchmarks: random detection batches and the tiny ScaleKD models."""
import os
from typing import List, Sequence, Tuple

import torch
from detectron2.config import LazyConfig, instantiate
from detectron2.structures import Boxes, Instances

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
    """Dataset-mapper-like inputs: uint8 (3, H, W) images, ``instances`` with XYXY pixel boxes
    and classes, and ``teacher_image`` at ``teacher_scale`` (omitted at 1.0)."""
    g = torch.Generator().manual_seed(seed)
    h, w = size
    batch = []
    for _ in range(num_images):
        image = torch.randint(0, 256, (3, h, w), generator=g, dtype=torch.uint8)
        inst = Instances((h, w))
        xy = torch.rand(num_boxes, 2, generator=g) * torch.tensor([w * 0.6, h * 0.6])
        wh = 8 + torch.rand(num_boxes, 2, generator=g) * torch.tensor([w * 0.35, h * 0.35])
        inst.gt_boxes = Boxes(torch.cat([xy, xy + wh], dim=1))
        inst.gt_classes = torch.randint(0, num_classes, (num_boxes,), generator=g)
        d = {"image": image, "instances": inst, "height": h, "width": w}
        if teacher_scale != 1.0:
            d[TEACHER_IMAGE_KEY] = make_teacher_image(image, teacher_scale)
        batch.append(d)
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
