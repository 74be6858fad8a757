# Tiny DETRDistill on CPU: Deformable DETR R34 teacher -> R18 student (64-d, 2+2 layers) on the embedded
# synthetic dataset. Train the teacher first:
#   python tools/lazyconfig_train_net.py --config-file projects/DETRDistill/configs/deformable_detr/deformable_detr_r34_tiny_cpu.py
from ..common.detrdistill import model
from ..deformable_detr.deformable_detr_r34_tiny_cpu import model as teacher
from ..deformable_detr.deformable_detr_tiny_cpu import dataloader, lr_multiplier, optimizer, train
from ..deformable_detr.deformable_detr_tiny_cpu import model as student

model.student = student
model.teacher.model = teacher
model.teacher.weights = "./output/deformable_detr_r34_tiny_cpu/model_final.pth"
model.feature_kd.num_topk = 50
train.output_dir = "./output/detrdistill/deformable_detr_r34_r18_tiny_cpu"
