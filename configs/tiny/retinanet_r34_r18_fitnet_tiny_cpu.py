# FitNet-style feature mimicking (adapter + MSE on P3-P5): tiny RetinaNet R34 teacher -> R18 student, CPU.
# Train the teacher first with configs/tiny/retinanet_r34_tiny_cpu.py (or point model.teacher.weights elsewhere).
from detectron2.config import LazyCall as L

from kd_core.config import get_config
from kd_core.feature_mimic import FeatureMimicDistiller
from kd_core.meta_arch import DistillationDetector
from kd_core.schedules import LossWeightSchedule
from kd_core.teacher import FrozenTeacher

from .retinanet_r18_tiny_cpu import dataloader, lr_multiplier, optimizer, train

tiny = get_config("common/models/tiny.py")
model = L(DistillationDetector)(
    student=tiny.retinanet_r18,
    teacher=L(FrozenTeacher)(model=tiny.retinanet_r34, weights="output/tiny/retinanet_r34/model_final.pth"),
    distillers={
        "feature_mimic": L(FeatureMimicDistiller)(
            levels=["p3", "p4", "p5"],
            student_channels=[64, 64, 64],
            teacher_channels=[64, 64, 64],
            weight=L(LossWeightSchedule)(weight=1.0, start_iter=0, ramp_iters=0),
        )
    },
)
train.output_dir = "output/tiny/retinanet_r34_r18_fitnet"
