# ScaleKD on COCO: FCOS R101-FPN teacher at 2x input resolution -> FCOS R50-FPN student, 1x.
# Paper: APs 21.9 -> 29.1. Detectron2's model zoo has no FCOS R101 checkpoint: train one first
# (e.g. Detectron2's COCO-Detection/fcos_R_50_FPN_1x.py with depth 101, 3x) and set
# model.teacher.weights to it.
from ..common.coco import dataloader, lr_multiplier, optimizer, train
from ..common.models import fcos, scalekd

model = scalekd(
    student=fcos(50),
    teacher=fcos(101),
    teacher_weights="output/coco/fcos_r101_3x/model_final.pth",
    family="one_stage",
)
optimizer.lr = 0.01
train.output_dir = "output/coco/fcos_r101_r50_1x_scalekd"
