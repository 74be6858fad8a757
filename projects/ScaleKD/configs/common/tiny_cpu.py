# The repository's shared tiny CPU training settings (kd_core/configs/common/tiny_cpu.py).
from kd_core.config import get_config

_tiny_cpu = get_config("common/tiny_cpu.py")
dataloader = _tiny_cpu.dataloader
optimizer = _tiny_cpu.optimizer
train = _tiny_cpu.train
lr_multiplier = _tiny_cpu.lr_multiplier
