# DETRDistill, Deformable DETR: R101 teacher -> MobileNetV2 student (paper Table 10: 38.8 -> 42.3).
from ..deformable_detr.deformable_detr_mbv2_50ep import model as student
from .deformable_detr_r101_r50_50ep import dataloader, lr_multiplier, model, optimizer, train

model.student = student
train.init_checkpoint = ""  # set to torchvision MobileNetV2 weights (see the student config)
train.output_dir = "./output/detrdistill/deformable_detr_r101_mbv2_50ep"
