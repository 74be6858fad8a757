# The embedded default dataset (procedurally generated, see kd_core/data/synthetic.py): small images,
# many small objects, runs on CPU. Any registered COCO-format dataset works by overriding the names,
# e.g. dataloader.train.dataset.names=coco128_train dataloader.test.dataset.names=coco128_val.
from omegaconf import OmegaConf

import detectron2.data.transforms as T
from detectron2.config import LazyCall as L
from detectron2.data import DatasetMapper, build_detection_test_loader, build_detection_train_loader
from detectron2.data import get_detection_dataset_dicts
from detectron2.evaluation import COCOEvaluator

import kd_core.data  # noqa: F401  (registers kd_synthetic_* and the shared real datasets)

dataloader = OmegaConf.create()

dataloader.train = L(build_detection_train_loader)(
    dataset=L(get_detection_dataset_dicts)(names="kd_synthetic_train", filter_empty=False),
    mapper=L(DatasetMapper)(
        is_train=True,
        augmentations=[
            L(T.ResizeShortestEdge)(short_edge_length=(224, 256, 288), sample_style="choice", max_size=512),
            L(T.RandomFlip)(horizontal=True),
        ],
        image_format="BGR",
    ),
    total_batch_size=4,
    num_workers=0,
)

dataloader.test = L(build_detection_test_loader)(
    dataset=L(get_detection_dataset_dicts)(names="kd_synthetic_val", filter_empty=False),
    mapper=L(DatasetMapper)(
        is_train=False,
        augmentations=[L(T.ResizeShortestEdge)(short_edge_length=256, max_size=512)],
        image_format="${...train.mapper.image_format}",
    ),
    num_workers=0,
)

dataloader.evaluator = L(COCOEvaluator)(dataset_name="${..test.dataset.names}", max_dets_per_image=100)
