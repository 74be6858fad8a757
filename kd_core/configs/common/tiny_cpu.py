# Training settings shared by every tiny CPU config (teacher, student, distilled student) on the
# embedded synthetic dataset: AdamW 1e-3 (from scratch it reaches several times the AP of SGD in a
# few hundred iterations), 50-iteration warm-up, lr x0.1 at 75% and 90% of train.max_iter.
from kd_core.config import get_config

dataloader = get_config("common/data/kd_synthetic.py").dataloader
optimizer = get_config("common/optim.py").AdamW
optimizer.lr = 1e-3
optimizer.weight_decay = 1e-4
train = get_config("common/train.py").train
train.max_iter = 300
train.device = "cpu"
train.eval_period = 0
train.checkpointer.period = 100
train.log_period = 20
train.clip_grad.enabled = True
train.clip_grad.max_norm = 10.0
train.seed = 0
lr_multiplier = get_config("common/schedule.py").lr_multiplier
lr_multiplier.warmup_iters = 50
