# AdaMixer, ResNet-50, 12 epochs on COCO (Gao et al. 2022, the official 1x recipe; DETRDistill Table 3):
# encoder-free, C2..C5 projected to 256-d, 100 queries, 6 stages, 32 -> 128 sampling points, 4 groups,
# focal 2 / L1 5 / GIoU 2 on every stage; single-scale 800 px training with flip;
# AdamW 2.5e-5 (no backbone factor), wd 1e-4, clip 1.0, batch 16, 500-iteration linear warm-up,
# lr x0.1 after epochs 8 and 11.
from detectron2.config import LazyCall as L

from detrdistill.data import detr_train_augmentation
from detrdistill.modeling import SetCriterion, make_resnet_backbone
from detrdistill.modeling.adamixer import AdaMixer
from kd_core.matching import HungarianMatcher

from ..common.data.coco_detr import dataloader
from ..common.optim import optimizer
from ..common.schedule import ITERS_12EP, lr_multiplier_12ep as lr_multiplier
from ..common.train import train

model = L(AdaMixer)(
    # MMDetection's frozen_stages=1 (stem + res2) is Detectron2's freeze_at=2.
    backbone=L(make_resnet_backbone)(
        depth=50, out_features=["res2", "res3", "res4", "res5"], norm="FrozenBN", freeze_at=2, stride_in_1x1=False
    ),
    in_features="${.backbone.out_features}",
    criterion=L(SetCriterion)(
        num_classes="${..num_classes}",
        matcher=L(HungarianMatcher)(cost_class=2.0, cost_bbox=5.0, cost_giou=2.0, class_cost_type="focal"),
        weight_dict={"loss_class": 2.0, "loss_bbox": 5.0, "loss_giou": 2.0},
        focal_alpha=0.25,
        focal_gamma=2.0,
    ),
    num_classes=80,
    num_queries=100,
    hidden_dim=256,
    num_stages=6,
    num_heads=8,
    dim_feedforward=2048,
    dropout=0.0,
    in_points=32,
    out_points=128,
    num_groups=4,
    sampling_tau=2.0,
    pixel_mean=[123.675, 116.280, 103.530],  # RGB, torchvision weights
    pixel_std=[58.395, 57.120, 57.375],
    select_box_nums_for_evaluation=100,
)

# The 1x recipe: one scale, flip, no crop.
dataloader.train.mapper.augmentation = L(detr_train_augmentation)(short_edge_lengths=(800,), max_size=1333)
dataloader.train.mapper.augmentation_with_crop = None

optimizer.lr = 2.5e-5
optimizer.params.lr_factor_func = None

lr_multiplier.warmup_iters = 500

train.init_checkpoint = "detectron2://ImageNetPretrained/torchvision/R-50.pkl"
train.output_dir = "./output/adamixer_r50_12ep"
train.max_iter = ITERS_12EP
train.eval_period = ITERS_12EP // 12
train.checkpointer.period = ITERS_12EP // 12
train.clip_grad.max_norm = 1.0
train.device = "cuda"

dataloader.train.total_batch_size = 16
