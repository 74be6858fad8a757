# Tiny Cascade R-CNN ResNet-34: the teacher of the tiny cascade pair (train it first), CPU.
from ..common.tiny_cpu import dataloader, lr_multiplier, optimizer, train
from ..common.tiny_models import cascade_rcnn

model = cascade_rcnn(34)
train.output_dir = "output/tiny/cascade_rcnn_r34"
