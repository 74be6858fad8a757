# DETRDistill, Conditional DETR: R101 teacher -> MobileNetV2 student (paper Table 10: 33.7 -> 36.4).
# Single-scale C5 of MobileNetV2 (stage7, 1280 channels, stride 32).
from detectron2.config import LazyCall as L

from detrdistill.modeling import MobileNetV2Backbone

from .conditional_detr_r101_r50_50ep import dataloader, lr_multiplier, model, optimizer, train

model.student.backbone = L(MobileNetV2Backbone)(out_features=["stage7"], norm="FrozenBN", freeze_at=1)
model.student.in_feature = "stage7"
train.init_checkpoint = ""  # torchvision MobileNetV2 weights
train.output_dir = "./output/detrdistill/conditional_detr_r101_mbv2_50ep"
