# Tiny Conditional DETR with a ResNet-34 backbone: the teacher of the tiny DETRDistill pair (CPU).
#   python tools/lazyconfig_train_net.py --config-file projects/DETRDistill/configs/conditional_detr/conditional_detr_r34_tiny_cpu.py
from .conditional_detr_tiny_cpu import dataloader, lr_multiplier, model, optimizer, train

model.backbone.depth = 34
train.output_dir = "./output/conditional_detr_r34_tiny_cpu"
