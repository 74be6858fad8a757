# Tiny Deformable DETR with a ResNet-34 backbone: the teacher of the tiny DETRDistill pair (CPU).
#   python tools/lazyconfig_train_net.py --config-file projects/DETRDistill/configs/deformable_detr/deformable_detr_r34_tiny_cpu.py
from .deformable_detr_tiny_cpu import dataloader, lr_multiplier, model, optimizer, train

model.backbone.depth = 34
train.output_dir = "./output/deformable_detr_r34_tiny_cpu"
