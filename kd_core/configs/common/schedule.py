from detectron2.config import LazyCall as L

from kd_core.solver import multistep_lr_multiplier

# Milestones are fractions of train.max_iter, resolved when the scheduler is instantiated.
lr_multiplier = L(multistep_lr_multiplier)(max_iter="${train.max_iter}", steps=(0.75, 0.9), warmup_iters=0)

# COCO "1x" (90k iterations at batch 16: steps at 60k, 80k; 1k warm-up), "2x", "3x".
lr_multiplier_1x = L(multistep_lr_multiplier)(max_iter=90000, steps=(60 / 90, 80 / 90), warmup_iters=1000)
lr_multiplier_2x = L(multistep_lr_multiplier)(max_iter=180000, steps=(120 / 180, 160 / 180), warmup_iters=1000)
lr_multiplier_3x = L(multistep_lr_multiplier)(max_iter=270000, steps=(210 / 270, 250 / 270), warmup_iters=1000)
