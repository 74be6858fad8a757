import torch

from detectron2.config import LazyCall as L
from detectron2.solver.build import get_default_optimizer_params

# params.model is set to the (distillation) model by the training script. The frozen teacher is not
# a registered module, so it never reaches the optimizer.
# fused=True: PyTorch's single-kernel update (CPU and CUDA; the same update as the default
# implementation up to float rounding). On the tiny CPU models AdamW's step() is about 3x faster,
# 2.5-8% of a training step (docs/results.md); optimizer.fused=False restores the default kernel.
SGD = L(torch.optim.SGD)(
    params=L(get_default_optimizer_params)(weight_decay_norm=0.0),
    lr=0.02,
    momentum=0.9,
    weight_decay=1e-4,
    fused=True,
)

AdamW = L(torch.optim.AdamW)(
    params=L(get_default_optimizer_params)(base_lr="${..lr}", weight_decay_norm=0.0),
    lr=1e-4,
    betas=(0.9, 0.999),
    weight_decay=1e-4,
    fused=True,
)
