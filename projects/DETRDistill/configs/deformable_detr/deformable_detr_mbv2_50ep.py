# Deformable DETR, MobileNetV2, 50 epochs on COCO (DETRDistill's lightweight student):
# MMDetection feature indices (2, 4, 7), channels [32, 96, 1280], strides 8 / 16 / 32.
# ImageNet weights: torchvision's mobilenet_v2 state dict without "classifier.*", keys prefixed with
# "backbone." (see MobileNetV2Backbone), set as train.init_checkpoint.
from detectron2.config import LazyCall as L

from detrdistill.modeling import MobileNetV2Backbone

from .deformable_detr_r50_50ep import dataloader, lr_multiplier, model, optimizer, train

model.backbone = L(MobileNetV2Backbone)(out_features=["stage2", "stage4", "stage7"], norm="FrozenBN", freeze_at=1)
train.init_checkpoint = ""
train.output_dir = "./output/deformable_detr_mbv2_50ep"
