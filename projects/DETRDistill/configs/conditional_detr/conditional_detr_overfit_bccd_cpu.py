# Overfitting check of the tiny Conditional DETR on real images: the first 8 images of bccd_train
# (../shared/datasets/bccd), 160 px, evaluated every 200 iterations on the same 8 images.
# AdamW 5e-4 for every parameter (no backbone factor), batch 4, 2000 iterations (lr x0.1 at 1600):
# single-scale C5 at 160 px is a 5x7 grid, and it converges more slowly than the multi-scale models.
#   python tools/lazyconfig_train_net.py --config-file projects/DETRDistill/configs/conditional_detr/conditional_detr_overfit_bccd_cpu.py
from ..common.data.bccd_overfit import dataloader
from .conditional_detr_tiny_cpu import lr_multiplier, model, optimizer, train

model.num_classes = 3
optimizer.lr = 5e-4
optimizer.params.lr_factor_func = None

train.output_dir = "./output/conditional_detr_overfit_bccd_cpu"
train.max_iter = 2000
train.eval_period = 200
train.checkpointer.period = 2000
train.log_period = 50
