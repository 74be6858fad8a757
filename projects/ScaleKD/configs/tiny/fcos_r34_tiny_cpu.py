# Tiny FCOS ResNet-34: the teacher of the tiny FCOS pair (train it first), CPU.
from kd_core.config import get_config

from ..common.tiny_cpu import dataloader, lr_multiplier, optimizer, train

model = get_config("common/models/tiny.py").fcos_r34
train.output_dir = "output/tiny/fcos_r34"
