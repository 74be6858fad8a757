# COCO loaders with the DETR augmentation (flip, multi-scale resize, alternative resize -> crop -> resize).
# Images are read as RGB to match torchvision-pretrained backbones (ImageNetPretrained/torchvision/R-50.pkl).
from omegaconf import OmegaConf

from detectron2.config import LazyCall as L
from detectron2.data import build_detection_test_loader, build_detection_train_loader, get_detection_dataset_dicts
from detectron2.evaluation import COCOEvaluator

from detrdistill.data import DetrDatasetMapper, detr_crop_augmentation, detr_test_augmentation, detr_train_augmentation

dataloader = OmegaConf.create()

dataloader.train = L(build_detection_train_loader)(
    dataset=L(get_detection_dataset_dicts)(names="coco_2017_train"),
    mapper=L(DetrDatasetMapper)(
        is_train=True,
        augmentation=L(detr_train_augmentation)(max_size=1333),
        augmentation_with_crop=L(detr_crop_augmentation)(max_size=1333),
        crop_probability=0.5,
        image_format="RGB",
    ),
    total_batch_size=16,
    num_workers=4,
)

dataloader.test = L(build_detection_test_loader)(
    dataset=L(get_detection_dataset_dicts)(names="coco_2017_val", filter_empty=False),
    mapper=L(DetrDatasetMapper)(
        is_train=False,
        augmentation=L(detr_test_augmentation)(short_edge_length=800, max_size=1333),
        image_format="${...train.mapper.image_format}",
    ),
    num_workers=4,
)

dataloader.evaluator = L(COCOEvaluator)(dataset_name="${..test.dataset.names}", max_dets_per_image=100)
