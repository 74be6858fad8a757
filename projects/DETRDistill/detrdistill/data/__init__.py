"""Data pipeline of the DETR models (augmentation mapper)."""
from .detr_mapper import (
    DETR_TRAIN_SHORT_EDGES,
    DetrDatasetMapper,
    detr_crop_augmentation,
    detr_test_augmentation,
    detr_train_augmentation,
)

__all__ = [
    "DETR_TRAIN_SHORT_EDGES",
    "DetrDatasetMapper",
    "detr_crop_augmentation",
    "detr_test_augmentation",
    "detr_train_augmentation",
]
