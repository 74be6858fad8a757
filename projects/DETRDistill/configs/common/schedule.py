# Epoch-based step schedules of the DETR recipes, expressed in iterations.
# COCO train2017 has 117,266 images with annotations (Detectron2 drops the empty ones for training).
import math

from detectron2.config import LazyCall as L

from kd_core.solver import multistep_lr_multiplier

COCO_TRAIN_IMAGES = 117266


def epochs_to_iters(epochs: float, batch_size: int = 16, num_images: int = COCO_TRAIN_IMAGES) -> int:
    """Iterations of ``epochs`` passes over ``num_images`` at ``batch_size`` images per iteration."""
    return int(round(epochs * math.ceil(num_images / batch_size)))


# 50 epochs, lr x0.1 after epoch 40, no warm-up (Deformable DETR, Conditional DETR).
# Milestones are fractions of train.max_iter, so changing max_iter keeps the 40/50 ratio.
ITERS_50EP = epochs_to_iters(50)
lr_multiplier_50ep = L(multistep_lr_multiplier)(max_iter="${train.max_iter}", steps=(40 / 50,), warmup_iters=0)

# 12 epochs, MMDetection's "1x": lr x0.1 after epochs 8 and 11 (AdaMixer).
ITERS_12EP = epochs_to_iters(12)
lr_multiplier_12ep = L(multistep_lr_multiplier)(max_iter="${train.max_iter}", steps=(8 / 12, 11 / 12), warmup_iters=0)
