# ScaleKD, tiny Cascade R-CNN: ResNet-34 teacher at 2x input resolution -> ResNet-18 student, CPU.
# Train the teacher first with projects/ScaleKD/configs/tiny/cascade_rcnn_r34_tiny_cpu.py.
#   model.csa_cascade_stages="all": the assistant mimics every stage (default: the last one)
from ..common.tiny_models import cascade_rcnn
from .faster_rcnn_r34_r18_scalekd_tiny_cpu import dataloader, lr_multiplier, model, optimizer, train

model.student = cascade_rcnn(18)
model.teacher.model = cascade_rcnn(34)
model.teacher.weights = "output/tiny/cascade_rcnn_r34/model_final.pth"
model.csa_cascade_stages = "last"
train.output_dir = "output/tiny/cascade_rcnn_r34_r18_scalekd"
