"""DetrDatasetMapper: DETR augmentation on Detectron2 dataset dicts."""
import os

import numpy as np
import pytest
import torch
from PIL import Image

from detectron2.config import LazyConfig, instantiate
from detectron2.structures import BoxMode

from detrdistill.data import (
    DetrDatasetMapper,
    detr_crop_augmentation,
    detr_test_augmentation,
    detr_train_augmentation,
)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def record(tmp_path):
    h, w = 120, 160
    image = np.zeros((h, w, 3), dtype=np.uint8)
    image[:, : w // 2, 0] = 255  # left half red: a flip is visible
    path = str(tmp_path / "img.png")
    Image.fromarray(image).save(path)
    annotations = [
        {"bbox": [10, 20, 40, 30], "bbox_mode": BoxMode.XYWH_ABS, "category_id": 1, "iscrowd": 0},
        {"bbox": [100, 60, 50, 50], "bbox_mode": BoxMode.XYWH_ABS, "category_id": 2, "iscrowd": 0},
        {"bbox": [0, 0, 160, 120], "bbox_mode": BoxMode.XYWH_ABS, "category_id": 0, "iscrowd": 1},
    ]
    return {"file_name": path, "height": h, "width": w, "image_id": 1, "annotations": annotations}


def test_train_resize_and_flip(record):
    mapper = DetrDatasetMapper(
        is_train=True, augmentation=detr_train_augmentation(short_edge_lengths=(240,), max_size=1000), image_format="RGB"
    )
    np.random.seed(0)
    seen_flip = seen_plain = False
    for _ in range(12):
        out = mapper(record)
        image, inst = out["image"], out["instances"]
        assert image.shape == (3, 240, 320) and image.dtype == torch.uint8
        assert inst.image_size == (240, 320)
        assert inst.gt_classes.tolist() == [1, 2]  # crowd box dropped
        left_red = image[0, :, :160].float().mean() > 128
        box0 = inst.gt_boxes.tensor[0]
        if left_red:
            seen_plain = True
            assert torch.allclose(box0, torch.tensor([20.0, 40.0, 100.0, 100.0]))
        else:
            seen_flip = True
            assert torch.allclose(box0, torch.tensor([320 - 100.0, 40.0, 320 - 20.0, 100.0]))
        assert (out["height"], out["width"]) == (120, 160)
    assert seen_flip and seen_plain
    assert "annotations" in record  # the input dict is not modified


def test_crop_branch_and_box_filtering(record):
    mapper = DetrDatasetMapper(
        is_train=True,
        augmentation=detr_train_augmentation(short_edge_lengths=(240,), max_size=1000),
        augmentation_with_crop=detr_crop_augmentation(
            short_edge_lengths=(200,), max_size=1000, pre_crop_short_edge_lengths=(120,), crop_size=(40, 60), flip=False
        ),
        crop_probability=1.0,
    )
    np.random.seed(1)
    counts = set()
    for _ in range(15):
        out = mapper(record)
        inst = out["instances"]
        h, w = inst.image_size
        assert min(h, w) == 200 and out["image"].shape[1:] == (h, w)
        b = inst.gt_boxes.tensor
        assert ((b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])).all()
        assert (b >= 0).all() and (b[:, 2] <= w).all() and (b[:, 3] <= h).all()
        counts.add(len(inst))
    assert 0 in counts or 1 in counts  # 40-60 px crops of a 120x160 image lose boxes


def test_images_without_boxes_pass_through(record):
    mapper = DetrDatasetMapper(is_train=True, augmentation=detr_train_augmentation(short_edge_lengths=(240,)))
    empty = dict(record, annotations=[])
    out = mapper(empty)
    assert len(out["instances"]) == 0 and out["instances"].gt_boxes.tensor.shape == (0, 4)
    no_key = {k: v for k, v in record.items() if k != "annotations"}
    assert len(mapper(no_key)["instances"]) == 0


def test_test_mode_drops_annotations(record):
    mapper = DetrDatasetMapper(is_train=False, augmentation=detr_test_augmentation(short_edge_length=300, max_size=1333))
    out = mapper(record)
    assert out["image"].shape == (3, 300, 400)
    assert "annotations" not in out and "instances" not in out
    with pytest.raises(ValueError, match="crop_probability"):
        DetrDatasetMapper(is_train=True, augmentation=[], crop_probability=1.5)


@pytest.mark.parametrize("config", ["deformable_detr_r50_50ep.py", "deformable_detr_tiny_cpu.py"])
def test_config_mappers_instantiate(config, record):
    cfg = LazyConfig.load(os.path.join(REPO, "projects", "DETRDistill", "configs", "deformable_detr", config))
    train_mapper = instantiate(cfg.dataloader.train.mapper)
    test_mapper = instantiate(cfg.dataloader.test.mapper)
    assert isinstance(train_mapper, DetrDatasetMapper) and train_mapper.augmentation_with_crop is not None
    assert train_mapper.image_format == test_mapper.image_format == "RGB"
    np.random.seed(0)
    out = train_mapper(record)
    assert out["image"].shape[0] == 3 and len(out["instances"]) >= 0
    assert "instances" not in test_mapper(record)
