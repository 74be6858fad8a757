# FitNet-style feature mimicking with the half-width tiny RetinaNets (the quickstart's pair): ResNet-34 w32
# teacher -> ResNet-18 w32 student, CPU. Train the teacher first with configs/tiny/retinanet_r34_w32_tiny_cpu.py.
from kd_core.config import get_config

from .retinanet_r34_r18_fitnet_tiny_cpu import dataloader, lr_multiplier, model, optimizer, train

tiny = get_config("common/models/tiny.py")
model.student = tiny.retinanet_r18_w32
model.teacher.model = tiny.retinanet_r34_w32
model.teacher.weights = "output/tiny/retinanet_r34_w32/model_final.pth"
train.output_dir = "output/tiny/retinanet_r34_r18_w32_fitnet"
