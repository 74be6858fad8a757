# Tiny RetinaNet ResNet-34 (the teacher of the tiny pair) on the embedded synthetic dataset, CPU.
from kd_core.config import get_config

dataloader = get_config("common/data/kd_synthetic.py").dataloader
model = get_config("common/models/tiny.py").retinanet_r34
optimizer = get_config("common/optim.py").SGD
optimizer.lr = 0.01
train = get_config("common/train.py").train
train.max_iter = 600
train.device = "cpu"
train.eval_period = 0
train.checkpointer.period = 200
train.log_period = 20
train.output_dir = "output/tiny/retinanet_r34"
train.clip_grad.enabled = True
train.clip_grad.max_norm = 10.0
train.seed = 0
lr_multiplier = get_config("common/schedule.py").lr_multiplier
lr_multiplier.warmup_iters = 50
