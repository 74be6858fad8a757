# DETRDistill, Deformable DETR: R101 teacher -> R18 student (paper Table 10: 40.0 -> 43.3).
from ..deformable_detr.deformable_detr_r18_50ep import model as student
from .deformable_detr_r101_r50_50ep import dataloader, lr_multiplier, model, optimizer, train

model.student = student
train.init_checkpoint = ""  # set to converted torchvision ResNet-18 weights (see the student config)
train.output_dir = "./output/detrdistill/deformable_detr_r101_r18_50ep"
