# FitNet-style feature mimicking (MSE on P3-P7, the levels the FCOS head reads): tiny FCOS R34 teacher -> R18
# student, CPU. The control for ScaleKD on the same pair: plain feature KD with the same teacher, student,
# data and schedule (tools/benchmark_kd_gain.py --methods fitnet_fcos).
# Train the teacher first with projects/ScaleKD/configs/tiny/fcos_r34_tiny_cpu.py.
from kd_core.config import get_config

from .retinanet_r34_r18_fitnet_tiny_cpu import dataloader, lr_multiplier, model, optimizer, train

tiny = get_config("common/models/tiny.py")
model.student = tiny.fcos_r18
model.teacher.model = tiny.fcos_r34
model.teacher.weights = "output/tiny/fcos_r34/model_final.pth"
model.distillers.feature_mimic.levels = ["p3", "p4", "p5", "p6", "p7"]
model.distillers.feature_mimic.student_channels = [64] * 5
model.distillers.feature_mimic.teacher_channels = [64] * 5
# 0.006, not RetinaNet's 1.0: this teacher's P3-P7 maps give an MSE of ~3000 at the student's initialisation; at
# 0.006 its gradient on the student's backbone matches that of ScaleKD's SDF at the spec's one-stage alpha (0.01)
# on the same batch, 1.8x the detection losses' (tools/kd_gradient_share.py)
model.distillers.feature_mimic.weight.weight = 0.006
train.output_dir = "output/tiny/fcos_r34_r18_fitnet"
