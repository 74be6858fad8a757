# AdamW of the Deformable DETR / DETRDistill recipe: lr 2e-4, weight decay 1e-4 on every parameter
# (norms included, as the original and the official DETRDistill code), lr x0.1 for the backbone, the
# deformable sampling offsets and the reference-point head.
import torch

from detectron2.config import LazyCall as L
from detectron2.solver.build import get_default_optimizer_params

from detrdistill.modeling import ParamNameLRFactor

# The training script sets optimizer.params.model to the model before instantiating.
optimizer = L(torch.optim.AdamW)(
    params=L(get_default_optimizer_params)(
        base_lr="${..lr}",
        weight_decay_norm=None,
        lr_factor_func=L(ParamNameLRFactor)(
            keywords=["backbone", "sampling_offsets", "reference_points"], factor=0.1
        ),
    ),
    lr=2e-4,
    betas=(0.9, 0.999),
    weight_decay=1e-4,
    fused=True,  # PyTorch's single-kernel AdamW, as kd_core's configs/common/optim.py
)
