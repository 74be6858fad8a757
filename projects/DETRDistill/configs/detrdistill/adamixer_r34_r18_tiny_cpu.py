# Tiny DETRDistill on CPU for adamixer: R34 teacher -> R18 student on the embedded synthetic dataset.
from ..adamixer.adamixer_tiny_cpu import dataloader, lr_multiplier, optimizer, train
from ..adamixer.adamixer_tiny_cpu import model as student
from ..adamixer.adamixer_tiny_cpu import model as teacher
from ..common.detrdistill import model

model.student = student
model.teacher.model = teacher
model.teacher.model.backbone.depth = 34
model.teacher.weights = "./output/adamixer_r34_tiny_cpu/model_final.pth"
model.feature_kd.num_topk = 30
train.output_dir = "./output/detrdistill/adamixer_r34_r18_tiny_cpu"
