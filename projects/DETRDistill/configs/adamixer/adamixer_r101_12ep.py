# AdaMixer, ResNet-101, 12 epochs on COCO (DETRDistill's teacher).
from .adamixer_r50_12ep import dataloader, lr_multiplier, model, optimizer, train

model.backbone.depth = 101
train.init_checkpoint = "detectron2://ImageNetPretrained/torchvision/R-101.pkl"
train.output_dir = "./output/adamixer_r101_12ep"
