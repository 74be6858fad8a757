# ScaleKD on VisDrone-DET: RetinaNet R101 teacher at 2x -> RetinaNet MobileNetV2 student.
# Paper: AP 21.73 -> 26.08. Train the teacher on VisDrone first (e.g. this file's teacher model
# trained alone) and set model.teacher.weights.
# Data: $KD_DATASETS/VisDrone/VisDrone2019-DET-{train,val}/{images,annotations} (VisDrone's layout),
# or set VISDRONE_ROOT in the environment.
import os

import detectron2.data.transforms as T
from detectron2.config import LazyCall as L

from kd_core.data.visdrone import VISDRONE_CLASSES, register_visdrone
from kd_core.evaluation import VisDroneEvaluator

from ..common.models import mobilenet_v2_retinanet, retinanet, scalekd
from ..coco.retinanet_r101_r18_1x_scalekd import dataloader, lr_multiplier, optimizer, train

VISDRONE_ROOT = os.environ.get("VISDRONE_ROOT") or os.path.join(os.environ.get("KD_DATASETS", "datasets"), "VisDrone")
for _split in ("train", "val"):
    _dir = os.path.join(VISDRONE_ROOT, f"VisDrone2019-DET-{_split}")
    register_visdrone(f"visdrone_{_split}", os.path.join(_dir, "images"), os.path.join(_dir, "annotations"))

NUM_CLASSES = len(VISDRONE_CLASSES)
teacher = retinanet(101)
teacher.num_classes = NUM_CLASSES
student = mobilenet_v2_retinanet()
student.num_classes = NUM_CLASSES
student.max_detections_per_image = 500  # VisDrone reports AR500
model = scalekd(
    student=student,
    teacher=teacher,
    teacher_weights="output/visdrone/retinanet_r101/model_final.pth",
    family="one_stage",
    student_c5_channels=320,
    student_c5="stage6",
)

dataloader.train.dataset.names = "visdrone_train"
dataloader.train.mapper.augmentations = [
    L(T.ResizeShortestEdge)(short_edge_length=(640, 672, 704, 736, 768, 800), sample_style="choice", max_size=1333),
    L(T.RandomFlip)(horizontal=True),
]
dataloader.test.dataset.names = "visdrone_val"
dataloader.evaluator = L(VisDroneEvaluator)(dataset_name="${..test.dataset.names}")
train.init_checkpoint = "pretrained/mobilenet_v2-torchvision.pkl"
train.output_dir = "output/visdrone/retinanet_r101_mbv2_scalekd"
