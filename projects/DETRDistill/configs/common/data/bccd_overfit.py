# Overfitting check on real images: the first 8 images of ../shared/datasets/bccd (bccd_train, 3
# classes, ~18 boxes per image), 160 px, flip + resize only (no crop), evaluated on the same 8 images
# with SubsetCOCOEvaluator (Detectron2's COCOEvaluator would score all 200+ images of the file).
# Change the images with dataloader.train.dataset.names=... / num_images=... (the test side follows).
from omegaconf import OmegaConf

from detectron2.config import LazyCall as L
from detectron2.data import build_detection_test_loader, build_detection_train_loader

import kd_core.data  # noqa: F401  (registers the shared datasets)
from detrdistill.data import DetrDatasetMapper, detr_test_augmentation, detr_train_augmentation
from kd_core.data import first_images
from kd_core.evaluation import SubsetCOCOEvaluator

dataloader = OmegaConf.create()

dataloader.train = L(build_detection_train_loader)(
    dataset=L(first_images)(names="bccd_train", num_images=8),
    mapper=L(DetrDatasetMapper)(
        is_train=True,
        augmentation=L(detr_train_augmentation)(short_edge_lengths=(160,), max_size=224),
        augmentation_with_crop=None,
        crop_probability=0.0,
        image_format="RGB",
    ),
    total_batch_size=4,
    num_workers=0,
)

dataloader.test = L(build_detection_test_loader)(
    # the same call as the train side (images without boxes dropped), so the same images
    dataset=L(first_images)(names="${...train.dataset.names}", num_images="${...train.dataset.num_images}"),
    mapper=L(DetrDatasetMapper)(
        is_train=False,
        augmentation=L(detr_test_augmentation)(short_edge_length=160, max_size=224),
        image_format="${...train.mapper.image_format}",
    ),
    num_workers=0,
)

dataloader.evaluator = L(SubsetCOCOEvaluator)(dataset_name="${..test.dataset.names}", max_dets_per_image=100)
