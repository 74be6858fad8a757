# Training settings shared by the tiny CPU configs (embedded synthetic dataset, small images),
# the same as configs/tiny/retinanet_r34_tiny_cpu.py of the repository.
from kd_core.config import get_config

dataloader = get_config("common/data/kd_synthetic.py").dataloader
optimizer = get_config("common/optim.py").SGD
optimizer.lr = 0.01
train = get_config("common/train.py").train
train.max_iter = 600
train.device = "cpu"
train.eval_period = 0
train.checkpointer.period = 200
train.log_period = 20
train.clip_grad.enabled = True
train.clip_grad.max_norm = 10.0
train.seed = 0
lr_multiplier = get_config("common/schedule.py").lr_multiplier
lr_multiplier.warmup_iters = 50
