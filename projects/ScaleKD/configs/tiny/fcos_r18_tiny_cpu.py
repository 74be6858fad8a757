# Tiny FCOS ResNet-18 trained alone: the baseline of the tiny FCOS pair, CPU.
from kd_core.config import get_config

from ..common.tiny_cpu import dataloader, lr_multiplier, optimizer, train

model = get_config("common/models/tiny.py").fcos_r18
train.output_dir = "output/tiny/fcos_r18"
