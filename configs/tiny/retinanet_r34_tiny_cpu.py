# Tiny RetinaNet ResNet-34 (the teacher of the tiny pair) on the embedded synthetic dataset, CPU.
from kd_core.config import get_config

_tiny_cpu = get_config("common/tiny_cpu.py")
dataloader = _tiny_cpu.dataloader
optimizer = _tiny_cpu.optimizer
train = _tiny_cpu.train
lr_multiplier = _tiny_cpu.lr_multiplier
model = get_config("common/models/tiny.py").retinanet_r34
train.output_dir = "output/tiny/retinanet_r34"
