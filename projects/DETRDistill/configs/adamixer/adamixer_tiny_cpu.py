# Tiny AdaMixer for CPU smoke runs on the embedded synthetic dataset (4 classes, ~256 px):
# ResNet-18 (GroupNorm) C2..C5 from scratch, 64-d, 2 stages, 30 queries, 8 -> 16 sampling points, 4 groups.
#   python tools/lazyconfig_train_net.py --config-file projects/DETRDistill/configs/adamixer/adamixer_tiny_cpu.py
from ..common.data.kd_synthetic_detr import dataloader
from .adamixer_r50_12ep import lr_multiplier, model, optimizer, train

model.backbone.depth = 18
model.backbone.freeze_at = 0
model.backbone.norm = "GN"  # trained from scratch: FrozenBN would leave the ResNet unnormalized
model.num_classes = 4
model.num_queries = 30
model.hidden_dim = 64
model.num_stages = 2
model.num_heads = 8
model.dim_feedforward = 256
model.in_points = 8
model.out_points = 16
model.num_groups = 4
model.select_box_nums_for_evaluation = 50

optimizer.lr = 1e-4  # from scratch, a few hundred iterations: larger than the recipe's 2.5e-5
lr_multiplier.warmup_iters = 20

train.init_checkpoint = ""
train.output_dir = "./output/adamixer_tiny_cpu"
train.device = "cpu"
train.max_iter = 300
train.eval_period = 300
train.checkpointer.period = 300
train.log_period = 20

dataloader.train.total_batch_size = 2
