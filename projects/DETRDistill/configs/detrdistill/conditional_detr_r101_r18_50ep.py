# DETRDistill, Conditional DETR: R101 teacher -> R18 student (paper Table 10: 35.8 -> 37.9).
from .conditional_detr_r101_r50_50ep import dataloader, lr_multiplier, model, optimizer, train

model.student.backbone.depth = 18
train.init_checkpoint = ""  # converted torchvision ResNet-18 weights
train.output_dir = "./output/detrdistill/conditional_detr_r101_r18_50ep"
