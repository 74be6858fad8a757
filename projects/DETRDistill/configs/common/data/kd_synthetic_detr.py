# The embedded synthetic dataset (kd_core/data/synthetic.py: 256 px images, 4 classes) with the DETR
# augmentation scaled down for CPU runs. Any registered COCO-format dataset works by overriding names.
from omegaconf import OmegaConf

from detectron2.config import LazyCall as L
from detectron2.data import build_detection_test_loader, build_detection_train_loader, get_detection_dataset_dicts
from detectron2.evaluation import COCOEvaluator

import kd_core.data  # noqa: F401  (registers kd_synthetic_train / kd_synthetic_val)
from detrdistill.data import DetrDatasetMapper, detr_crop_augmentation, detr_test_augmentation, detr_train_augmentation

dataloader = OmegaConf.create()

dataloader.train = L(build_detection_train_loader)(
    dataset=L(get_detection_dataset_dicts)(names="kd_synthetic_train", filter_empty=False),
    mapper=L(DetrDatasetMapper)(
        is_train=True,
        augmentation=L(detr_train_augmentation)(short_edge_lengths=(224, 240, 256, 272, 288), max_size=512),
        augmentation_with_crop=L(detr_crop_augmentation)(
            short_edge_lengths=(224, 240, 256, 272, 288),
            max_size=512,
            pre_crop_short_edge_lengths=(200, 240),
            crop_size=(160, 240),
        ),
        crop_probability=0.5,
        image_format="RGB",
    ),
    total_batch_size=2,
    num_workers=0,
)

dataloader.test = L(build_detection_test_loader)(
    dataset=L(get_detection_dataset_dicts)(names="kd_synthetic_val", filter_empty=False),
    mapper=L(DetrDatasetMapper)(
        is_train=False,
        augmentation=L(detr_test_augmentation)(short_edge_length=256, max_size=512),
        image_format="${...train.mapper.image_format}",
    ),
    num_workers=0,
)

dataloader.evaluator = L(COCOEvaluator)(dataset_name="${..test.dataset.names}", max_dets_per_image=100)
