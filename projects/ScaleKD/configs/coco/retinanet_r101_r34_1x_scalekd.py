# ScaleKD on COCO: RetinaNet R101 teacher at 2x -> RetinaNet ResNet-34 student, 1x (see the R18 config).
from ..common.models import retinanet, torchvision_rgb
from .retinanet_r101_r18_1x_scalekd import dataloader, lr_multiplier, model, optimizer, train

model.student = torchvision_rgb(retinanet(34))
train.init_checkpoint = "pretrained/R-34-torchvision.pkl"
train.output_dir = "output/coco/retinanet_r101_r34_1x_scalekd"
