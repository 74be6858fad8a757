# DETRDistill, Conditional DETR: R101 teacher -> R50 student, 50 epochs (paper Table 3: 40.7 -> 42.9).
from ..common.detrdistill import model
from ..conditional_detr.conditional_detr_r50_50ep import dataloader, lr_multiplier, optimizer, train
from ..conditional_detr.conditional_detr_r50_50ep import model as student
from ..conditional_detr.conditional_detr_r101_50ep import model as teacher

model.student = student
model.teacher.model = teacher
model.teacher.weights = "./output/conditional_detr_r101_50ep/model_final.pth"
train.init_checkpoint = "detectron2://ImageNetPretrained/torchvision/R-50.pkl"
train.output_dir = "./output/detrdistill/conditional_detr_r101_r50_50ep"
