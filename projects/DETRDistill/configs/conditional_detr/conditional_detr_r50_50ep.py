# Conditional DETR, ResNet-50, 50 epochs on COCO (Meng et al. 2021; detrex's recipe, DETRDistill Table 3):
# single-scale C5, 300 queries, 6 + 6 layers, 256-d, FFN 2048, dropout 0.1, focal 2 / L1 5 / GIoU 2 on every
# decoder layer, AdamW 1e-4 (x0.1 backbone), wd 1e-4, clip 0.1, batch 16, lr x0.1 at epoch 40.
# DC5: model.backbone = L(make_resnet_dc5_backbone)(depth=50, out_features=["res5"], freeze_at=1).
from detectron2.config import LazyCall as L

from detrdistill.modeling import SetCriterion, make_resnet_backbone
from detrdistill.modeling.conditional_detr import ConditionalDETR
from kd_core.matching import HungarianMatcher

from ..common.data.coco_detr import dataloader
from ..common.optim import optimizer
from ..common.schedule import ITERS_50EP, lr_multiplier_50ep as lr_multiplier
from ..common.train import train

model = L(ConditionalDETR)(
    backbone=L(make_resnet_backbone)(
        depth=50, out_features=["res5"], norm="FrozenBN", freeze_at=1, stride_in_1x1=False
    ),
    in_feature="res5",
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
    dim_feedforward=2048,
    dropout=0.1,
    pixel_mean=[123.675, 116.280, 103.530],  # RGB, torchvision weights
    pixel_std=[58.395, 57.120, 57.375],
    select_box_nums_for_evaluation=300,
)

optimizer.lr = 1e-4
optimizer.params.lr_factor_func.keywords = ["backbone"]

train.init_checkpoint = "detectron2://ImageNetPretrained/torchvision/R-50.pkl"
train.output_dir = "./output/conditional_detr_r50_50ep"
train.max_iter = ITERS_50EP
train.eval_period = 5 * ITERS_50EP // 50
train.checkpointer.period = 5 * ITERS_50EP // 50
train.device = "cuda"

dataloader.train.total_batch_size = 16
