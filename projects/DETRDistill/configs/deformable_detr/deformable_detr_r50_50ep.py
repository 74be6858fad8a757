# Deformable DETR, ResNet-50, 50 epochs on COCO (Zhu et al. 2021; DETRDistill's student/teacher recipe):
# 4 levels, 300 queries, 6 + 6 layers, 256-d, focal 2 / L1 5 / GIoU 2 on every decoder layer,
# AdamW 2e-4 (x0.1 backbone, sampling offsets, reference points), wd 1e-4, clip 0.1, batch 16,
# lr x0.1 at epoch 40.
from detectron2.config import LazyCall as L

from detrdistill.modeling import DeformableDETR, SetCriterion, make_resnet_backbone
from kd_core.matching import HungarianMatcher

from ..common.data.coco_detr import dataloader
from ..common.optim import optimizer
from ..common.schedule import ITERS_50EP, lr_multiplier_50ep as lr_multiplier
from ..common.train import train

model = L(DeformableDETR)(
    backbone=L(make_resnet_backbone)(
        depth=50, out_features=["res3", "res4", "res5"], norm="FrozenBN", freeze_at=1, stride_in_1x1=False
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
    num_queries=300,
    hidden_dim=256,
    num_heads=8,
    num_encoder_layers=6,
    num_decoder_layers=6,
    dim_feedforward=1024,
    dropout=0.1,
    num_feature_levels=4,
    encoder_points=4,
    decoder_points=4,
    with_box_refine=False,
    as_two_stage=False,
    pixel_mean=[123.675, 116.280, 103.530],  # RGB, torchvision weights
    pixel_std=[58.395, 57.120, 57.375],
    select_box_nums_for_evaluation=100,
)

train.init_checkpoint = "detectron2://ImageNetPretrained/torchvision/R-50.pkl"
train.output_dir = "./output/deformable_detr_r50_50ep"
train.max_iter = ITERS_50EP
train.eval_period = 5 * ITERS_50EP // 50
train.checkpointer.period = 5 * ITERS_50EP // 50
train.device = "cuda"

dataloader.train.total_batch_size = 16
