# ScaleKD on COCO: RetinaNet R101 teacher at 2x -> RetinaNet ResNet-18 student, 1x.
# The student starts from torchvision's ImageNet ResNet-18 converted with Detectron2's
# tools/convert-torchvision-to-d2.py (RGB input, torchvision normalisation); the MSRA-initialised
# teacher keeps BGR, so the mapper gives it a BGR copy.
from ..common.coco import dataloader, lr_multiplier, optimizer, train
from ..common.models import retinanet, scalekd, torchvision_rgb

dataloader.train.mapper.image_format = "RGB"
dataloader.train.mapper.teacher_image_format = "BGR"
model = scalekd(
    student=torchvision_rgb(retinanet(18)),
    teacher=retinanet(101),
    teacher_weights="detectron2://COCO-Detection/retinanet_R_101_FPN_3x/190397697/model_final_971ab9.pkl",
    family="one_stage",
    student_c5_channels=512,
)
optimizer.lr = 0.01
train.init_checkpoint = "pretrained/R-18-torchvision.pkl"
train.output_dir = "output/coco/retinanet_r101_r18_1x_scalekd"
