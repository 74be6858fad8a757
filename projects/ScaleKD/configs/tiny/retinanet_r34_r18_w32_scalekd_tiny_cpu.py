# ScaleKD with the half-width tiny RetinaNets (the quickstart's pair): ResNet-34 w32 teacher -> ResNet-18 w32
# student, CPU. Train the teacher first: python tools/lazyconfig_train_net.py --config-file configs/tiny/retinanet_r34_w32_tiny_cpu.py
from kd_core.config import get_config

from .retinanet_r34_r18_scalekd_tiny_cpu import dataloader, lr_multiplier, model, optimizer, train

tiny = get_config("common/models/tiny.py")
model.student = tiny.retinanet_r18_w32
model.teacher.model = tiny.retinanet_r34_w32
model.teacher.weights = "output/tiny/retinanet_r34_w32/model_final.pth"
model.distillers.sdf.student_channels = 256  # res5 of the half-width ResNet-18/34
model.distillers.sdf.teacher_channels = 256
train.output_dir = "output/tiny/retinanet_r34_r18_w32_scalekd"
