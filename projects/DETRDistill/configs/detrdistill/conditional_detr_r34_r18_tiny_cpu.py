# Tiny DETRDistill on CPU for conditional_detr: R34 teacher -> R18 student on the embedded synthetic dataset.
from ..conditional_detr.conditional_detr_tiny_cpu import dataloader, lr_multiplier, optimizer, train
from ..conditional_detr.conditional_detr_tiny_cpu import model as student
from ..conditional_detr.conditional_detr_tiny_cpu import model as teacher
from ..common.detrdistill import model

model.student = student
model.teacher.model = teacher
model.teacher.model.backbone.depth = 34
model.teacher.weights = "./output/conditional_detr_r34_tiny_cpu/model_final.pth"
model.feature_kd.num_topk = 30
train.output_dir = "./output/detrdistill/conditional_detr_r34_r18_tiny_cpu"
