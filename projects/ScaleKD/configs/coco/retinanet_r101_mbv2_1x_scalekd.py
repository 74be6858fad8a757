# ScaleKD on COCO: RetinaNet R101 teacher at 2x -> RetinaNet MobileNetV2 student, 1x.
# SDF pairs the student's last stage (stage6, 320 channels, stride 32) with the teacher's C5.
# The student starts from torchvision's ImageNet MobileNetV2 converted with
# projects/ScaleKD/tools/convert_torchvision_mobilenet_v2.py (RGB input).
from ..common.models import mobilenet_v2_retinanet
from .retinanet_r101_r18_1x_scalekd import dataloader, lr_multiplier, model, optimizer, train

model.student = mobilenet_v2_retinanet()
model.distillers.sdf.student_channels = 320
model.distillers.sdf.student_features = ["stage6"]
train.init_checkpoint = "pretrained/mobilenet_v2-torchvision.pkl"
train.output_dir = "output/coco/retinanet_r101_mbv2_1x_scalekd"
