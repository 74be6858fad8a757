# DETRDistill, AdaMixer: R101 teacher -> R18 student (paper Table 10: 38.3 -> 40.3).
from .adamixer_r101_r50_12ep import dataloader, lr_multiplier, model, optimizer, train

model.student.backbone.depth = 18
train.init_checkpoint = ""  # converted torchvision ResNet-18 weights
train.output_dir = "./output/detrdistill/adamixer_r101_r18_12ep"
