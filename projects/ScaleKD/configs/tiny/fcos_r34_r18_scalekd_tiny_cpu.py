# ScaleKD, tiny FCOS: ResNet-34 teacher at 2x input resolution -> ResNet-18 student, CPU.
# Train the teacher first with projects/ScaleKD/configs/tiny/fcos_r34_tiny_cpu.py.
from .retinanet_r34_r18_scalekd_tiny_cpu import dataloader, lr_multiplier, model, optimizer, tiny, train

model.student = tiny.fcos_r18
model.teacher.model = tiny.fcos_r34
model.teacher.weights = "output/tiny/fcos_r34/model_final.pth"
train.output_dir = "output/tiny/fcos_r34_r18_scalekd"
