# Tiny Faster R-CNN ResNet-34: the teacher of the tiny two-stage pair (train it first), CPU.
from ..common.tiny_cpu import dataloader, lr_multiplier, optimizer, train
from ..common.tiny_models import faster_rcnn

model = faster_rcnn(34)
train.output_dir = "output/tiny/faster_rcnn_r34"
