# Deformable DETR, ResNet-18, 50 epochs on COCO (DETRDistill's lightweight student, channels [128, 256, 512]).
# ImageNet weights: convert torchvision's resnet18 to Detectron2 naming offline
# (detectron2/tools/convert-torchvision-to-d2.py) and set train.init_checkpoint to the result.
from .deformable_detr_r50_50ep import dataloader, lr_multiplier, model, optimizer, train

model.backbone.depth = 18
train.init_checkpoint = ""
train.output_dir = "./output/deformable_detr_r18_50ep"
