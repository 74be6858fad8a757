# Overfitting check of the tiny AdaMixer on real images: the first 8 images of bccd_train
# (../shared/datasets/bccd), 160 px, evaluated every 100 iterations on the same 8 images.
# AdamW 5e-4 for every parameter (no backbone factor), 1000 iterations, batch 4, grad clip 1.0, the
# 12-epoch step schedule of the recipe (lr x0.1 at 2/3 and x0.01 at 11/12 of the run), 20-iteration warm-up.
#   python tools/lazyconfig_train_net.py --config-file projects/DETRDistill/configs/adamixer/adamixer_overfit_bccd_cpu.py
from ..common.data.bccd_overfit import dataloader
from .adamixer_tiny_cpu import lr_multiplier, model, optimizer, train

model.num_classes = 3
optimizer.lr = 5e-4
optimizer.params.lr_factor_func = None

train.output_dir = "./output/adamixer_overfit_bccd_cpu"
train.max_iter = 1000
train.eval_period = 100
train.checkpointer.period = 1000
train.log_period = 50
