# ScaleKD "same resolution" mode for Faster R-CNN.
from .faster_rcnn_r101_r50_1x_scalekd import dataloader, lr_multiplier, model, optimizer, train

dataloader.train.mapper.teacher_scale = 1.0
train.output_dir = "output/coco/faster_rcnn_r101_r50_1x_scalekd_same_res"
