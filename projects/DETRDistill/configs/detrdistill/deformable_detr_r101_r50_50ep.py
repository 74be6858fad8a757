# DETRDistill, Deformable DETR: R101 teacher -> R50 student, 50 epochs on COCO (paper Table 3: 44.1 -> 46.6).
# Teacher weights: a Deformable DETR R101 trained with ../deformable_detr/deformable_detr_r101_50ep.py, or a
# detrex checkpoint converted with tools/convert_detrex_checkpoint.py; set model.teacher.weights.
from ..common.detrdistill import model
from ..deformable_detr.deformable_detr_r50_50ep import dataloader, lr_multiplier, optimizer, train
from ..deformable_detr.deformable_detr_r50_50ep import model as student
from ..deformable_detr.deformable_detr_r101_50ep import model as teacher

model.student = student
model.teacher.model = teacher
model.teacher.weights = "./output/deformable_detr_r101_50ep/model_final.pth"

# ImageNet weights of the student's backbone (keys matched by DetectionCheckpointer's heuristics).
train.init_checkpoint = "detectron2://ImageNetPretrained/torchvision/R-50.pkl"
train.output_dir = "./output/detrdistill/deformable_detr_r101_r50_50ep"
