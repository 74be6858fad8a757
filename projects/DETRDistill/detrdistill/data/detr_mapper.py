"""DETR data augmentation as a Detectron2 dataset mapper.

Training (DETR / Deformable DETR recipe): random horizontal flip, then with probability
``1 - crop_probability`` a multi-scale shortest-edge resize, otherwise the alternative branch
resize(400-600) -> random crop (384-600 px) -> multi-scale resize. Test: one fixed resize.
"""
import copy
import logging
from typing import List, Optional, Sequence

import numpy as np
import torch

import detectron2.data.transforms as T
from detectron2.data import detection_utils as utils

__all__ = [
    "DetrDatasetMapper",
    "detr_train_augmentation",
    "detr_crop_augmentation",
    "detr_test_augmentation",
    "DETR_TRAIN_SHORT_EDGES",
]

logger = logging.getLogger(__name__)

#: Shortest-edge sizes of the DETR multi-scale training recipe.
DETR_TRAIN_SHORT_EDGES = (480, 512, 544, 576, 608, 640, 672, 704, 736, 768, 800)


def detr_train_augmentation(
    short_edge_lengths: Sequence[int] = DETR_TRAIN_SHORT_EDGES, max_size: int = 1333, flip: bool = True
) -> List[T.Augmentation]:
    """Flip + multi-scale resize (the plain branch of DETR training)."""
    augs = [T.RandomFlip()] if flip else []
    augs.append(T.ResizeShortestEdge(short_edge_length=tuple(short_edge_lengths), max_size=max_size, sample_style="choice"))
    return augs


def detr_crop_augmentation(
    short_edge_lengths: Sequence[int] = DETR_TRAIN_SHORT_EDGES,
    max_size: int = 1333,
    pre_crop_short_edge_lengths: Sequence[int] = (400, 500, 600),
    crop_size: Sequence[int] = (384, 600),
    flip: bool = True,
) -> List[T.Augmentation]:
    """Flip + resize -> random crop (side lengths in ``crop_size`` range, pixels) -> multi-scale resize."""
    augs = [T.RandomFlip()] if flip else []
    augs += [
        T.ResizeShortestEdge(short_edge_length=tuple(pre_crop_short_edge_lengths), sample_style="choice"),
        T.RandomCrop(crop_type="absolute_range", crop_size=tuple(crop_size)),
        T.ResizeShortestEdge(short_edge_length=tuple(short_edge_lengths), max_size=max_size, sample_style="choice"),
    ]
    return augs


def detr_test_augmentation(short_edge_length: int = 800, max_size: int = 1333) -> List[T.Augmentation]:
    """Single-scale resize for evaluation."""
    return [T.ResizeShortestEdge(short_edge_length=short_edge_length, max_size=max_size)]


class DetrDatasetMapper:
    """Maps a Detectron2 dataset dict to the model input of the DETR models.

    Output dict: ``"image"`` (3, H, W) uint8 tensor in ``image_format``; ``"height"``/``"width"``
    (original size, used to rescale predictions); in training ``"instances"`` with ``gt_boxes``
    (absolute xyxy in the augmented image) and ``gt_classes``. Crowd and empty (zero-area after
    augmentation) boxes are dropped; images without any box yield empty ``Instances``.
    """

    def __init__(
        self,
        is_train: bool,
        augmentation: Sequence[T.Augmentation],
        augmentation_with_crop: Optional[Sequence[T.Augmentation]] = None,
        crop_probability: float = 0.5,
        image_format: str = "RGB",
    ):
        """
        Args:
            is_train: training mode (keep annotations, random augmentations).
            augmentation: the default augmentation list.
            augmentation_with_crop: alternative list, chosen with ``crop_probability`` in
                training; None disables it.
            crop_probability: probability of the alternative (crop) branch.
            image_format: format passed to ``detection_utils.read_image`` ("RGB" for
                torchvision-pretrained backbones).
        """
        if not 0.0 <= crop_probability <= 1.0:
            raise ValueError(f"DetrDatasetMapper: crop_probability must be in [0, 1], got {crop_probability}.")
        self.is_train = is_train
        self.augmentation = T.AugmentationList(list(augmentation))
        self.augmentation_with_crop = (
            T.AugmentationList(list(augmentation_with_crop)) if augmentation_with_crop is not None else None
        )
        self.crop_probability = crop_probability
        self.image_format = image_format
        mode = "training" if is_train else "inference"
        logger.info(
            f"[DetrDatasetMapper] {mode}: augmentation {augmentation}, "
            f"with crop (p={crop_probability}) {augmentation_with_crop}"
        )

    def _choose_augmentation(self) -> T.AugmentationList:
        if self.is_train and self.augmentation_with_crop is not None and np.random.rand() < self.crop_probability:
            return self.augmentation_with_crop
        return self.augmentation

    def __call__(self, dataset_dict: dict) -> dict:
        dataset_dict = copy.deepcopy(dataset_dict)  # modified below
        if "image" in dataset_dict and dataset_dict.get("file_name") is None:
            # In-memory image (H, W, 3) uint8 numpy array already in ``image_format``.
            image = np.asarray(dataset_dict["image"])
        else:
            image = utils.read_image(dataset_dict["file_name"], format=self.image_format)
        utils.check_image_size(dataset_dict, image)
        dataset_dict.setdefault("height", image.shape[0])
        dataset_dict.setdefault("width", image.shape[1])

        aug_input = T.AugInput(image)
        transforms = self._choose_augmentation()(aug_input)
        image = aug_input.image
        image_shape = image.shape[:2]  # h, w
        dataset_dict["image"] = torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)))

        if not self.is_train:
            dataset_dict.pop("annotations", None)
            return dataset_dict

        annos = [
            utils.transform_instance_annotations(_strip_unused(obj), transforms, image_shape)
            for obj in dataset_dict.pop("annotations", [])
            if obj.get("iscrowd", 0) == 0
        ]
        instances = utils.annotations_to_instances(annos, image_shape)
        dataset_dict["instances"] = utils.filter_empty_instances(instances)
        return dataset_dict


def _strip_unused(obj: dict) -> dict:
    obj = dict(obj)
    obj.pop("segmentation", None)
    obj.pop("keypoints", None)
    return obj
