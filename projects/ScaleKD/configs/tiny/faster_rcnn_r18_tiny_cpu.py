# Tiny Faster R-CNN ResNet-18 trained alone: the baseline of the tiny two-stage pair, CPU.
from ..common.tiny_cpu import dataloader, lr_multiplier, optimizer, train
from ..common.tiny_models import faster_rcnn

model = faster_rcnn(18)
train.output_dir = "output/tiny/faster_rcnn_r18"
