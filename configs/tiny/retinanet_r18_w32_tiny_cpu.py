# Half-width tiny RetinaNet ResNet-18 (stem and res2-res5 with 32-256 channels, FPN 64 as the other tiny models): the quickstart's student, CPU.
from kd_core.config import get_config

from .retinanet_r18_tiny_cpu import dataloader, lr_multiplier, optimizer, train

model = get_config("common/models/tiny.py").retinanet_r18_w32
train.output_dir = "output/tiny/retinanet_r18_w32"
