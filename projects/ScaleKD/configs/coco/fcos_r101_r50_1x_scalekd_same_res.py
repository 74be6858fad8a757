# ScaleKD "same resolution" mode for FCOS. Paper: 38.5 / 21.9 -> 42.7 / 27.8 (AP / APs).
from .fcos_r101_r50_1x_scalekd import dataloader, lr_multiplier, model, optimizer, train

dataloader.train.mapper.teacher_scale = 1.0
train.output_dir = "output/coco/fcos_r101_r50_1x_scalekd_same_res"
