# DETRDistill, AdaMixer: R101 teacher -> R50 student, 12 epochs (paper Table 3: 42.3 -> 44.7).
# AdaMixer is encoder-free: feature KD uses the projected pyramid features its decoder samples from.
from ..adamixer.adamixer_r50_12ep import dataloader, lr_multiplier, optimizer, train
from ..adamixer.adamixer_r50_12ep import model as student
from ..adamixer.adamixer_r101_12ep import model as teacher
from ..common.detrdistill import model

model.student = student
model.teacher.model = teacher
model.teacher.weights = "./output/adamixer_r101_12ep/model_final.pth"
train.init_checkpoint = "detectron2://ImageNetPretrained/torchvision/R-50.pkl"
train.output_dir = "./output/detrdistill/adamixer_r101_r50_12ep"
