# DETRDistill with the official code's content-query relation loss switched on (InfoNCE, T=0.07, weight 0.2).
from detectron2.config import LazyCall as L

from detrdistill.distill.relation_kd import QueryRelationDistillation

from .deformable_detr_r101_r50_50ep import dataloader, lr_multiplier, model, optimizer, train

model.relation_kd = L(QueryRelationDistillation)(student_dim=256, teacher_dim=256, embed_dim=512, temperature=0.07, loss_weight=0.2)
train.output_dir = "./output/detrdistill/deformable_detr_r101_r50_50ep_relation"
