# DETRDistill self-distillation: a trained Deformable DETR R50 teaches a fresh R50 of the same architecture.
from ..deformable_detr.deformable_detr_r50_50ep import model as teacher
from .deformable_detr_r101_r50_50ep import dataloader, lr_multiplier, model, optimizer, train

model.teacher.model = teacher
model.teacher.weights = "./output/deformable_detr_r50_50ep/model_final.pth"
train.output_dir = "./output/detrdistill/deformable_detr_r50_r50_self_50ep"
