# Conditional DETR, ResNet-101, 50 epochs on COCO (DETRDistill's teacher).
from .conditional_detr_r50_50ep import dataloader, lr_multiplier, model, optimizer, train

model.backbone.depth = 101
train.init_checkpoint = "detectron2://ImageNetPretrained/torchvision/R-101.pkl"
train.output_dir = "./output/conditional_detr_r101_50ep"
