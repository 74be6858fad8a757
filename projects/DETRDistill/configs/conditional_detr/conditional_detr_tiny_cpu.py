# Tiny Conditional DETR for CPU smoke runs on the embedded synthetic dataset (4 classes, ~256 px):
# ResNet-18 (GroupNorm) C5 from scratch, 64-d, 2 + 2 layers, 30 queries.
#   python tools/lazyconfig_train_net.py --config-file projects/DETRDistill/configs/conditional_detr/conditional_detr_tiny_cpu.py
from ..common.data.kd_synthetic_detr import dataloader
from .conditional_detr_r50_50ep import lr_multiplier, model, optimizer, train

model.backbone.depth = 18
model.backbone.freeze_at = 0
model.backbone.norm = "GN"  # trained from scratch: FrozenBN would leave the ResNet unnormalized
model.num_classes = 4
model.num_queries = 30
model.hidden_dim = 64
model.num_heads = 8
model.num_encoder_layers = 2
model.num_decoder_layers = 2
model.dim_feedforward = 256
model.dropout = 0.0
model.select_box_nums_for_evaluation = 50

# From scratch: every parameter, the backbone included, at the full rate.
optimizer.lr = 5e-4
optimizer.params.lr_factor_func = None

train.init_checkpoint = ""
train.output_dir = "./output/conditional_detr_tiny_cpu"
train.device = "cpu"
train.max_iter = 300
train.eval_period = 300
train.checkpointer.period = 300
train.log_period = 20

dataloader.train.total_batch_size = 2
