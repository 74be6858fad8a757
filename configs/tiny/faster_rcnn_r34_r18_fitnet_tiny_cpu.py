# FitNet-style feature mimicking (MSE on P2-P5, the levels the box head pools from): tiny Faster R-CNN
# R34 teacher -> R18 student, CPU. The control for ScaleKD on the same pair: plain feature KD with the
# same teacher, student, data and schedule (tools/benchmark_kd_gain.py --methods fitnet_faster_rcnn).
# Train the teacher first with projects/ScaleKD/configs/tiny/faster_rcnn_r34_tiny_cpu.py.
from kd_core.config import get_config

from .retinanet_r34_r18_fitnet_tiny_cpu import dataloader, lr_multiplier, model, optimizer, train

tiny = get_config("common/models/tiny.py")
model.student = tiny.faster_rcnn_r18
model.teacher.model = tiny.faster_rcnn_r34
model.teacher.weights = "output/tiny/faster_rcnn_r34/model_final.pth"
model.distillers.feature_mimic.levels = ["p2", "p3", "p4", "p5"]
model.distillers.feature_mimic.student_channels = [64, 64, 64, 64]
model.distillers.feature_mimic.teacher_channels = [64, 64, 64, 64]
# 0.005, not RetinaNet's 1.0: this teacher's FPN maps give an MSE of ~160-200 at the student's initialisation;
# at 0.005 its gradient on the student's backbone is 0.13x the detection losses' (tools/kd_gradient_share.py),
# the share of ScaleKD's SDF at alpha 0.003 on the same batch
model.distillers.feature_mimic.weight.weight = 0.005
train.output_dir = "output/tiny/faster_rcnn_r34_r18_fitnet"
