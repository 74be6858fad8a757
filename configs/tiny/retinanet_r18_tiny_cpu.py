# Tiny RetinaNet ResNet-18 (the student of the tiny pair, trained alone: the baseline), CPU.
from .retinanet_r34_tiny_cpu import dataloader, lr_multiplier, optimizer, train
from kd_core.config import get_config

model = get_config("common/models/tiny.py").retinanet_r18
train.output_dir = "output/tiny/retinanet_r18"
