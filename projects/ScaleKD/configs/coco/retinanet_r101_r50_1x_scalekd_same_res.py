# ScaleKD "same resolution" mode: the RetinaNet R101 teacher sees the student's image (1x).
# Paper: 37.4 / 20.0 -> 41.7 / 24.8 (AP / APs).
from .retinanet_r101_r50_1x_scalekd import dataloader, lr_multiplier, model, optimizer, train

dataloader.train.mapper.teacher_scale = 1.0  # model.teacher_scale follows
train.output_dir = "output/coco/retinanet_r101_r50_1x_scalekd_same_res"
