# ScaleKD on COCO: Faster R-CNN R101-FPN 3x teacher (Detectron2 model zoo) at 2x input resolution ->
# Faster R-CNN R50-FPN student, 1x. Two-stage weights: alpha 0.07, beta 0.5, gamma 0.2.
from ..common.coco import dataloader, lr_multiplier, optimizer, train
from ..common.models import faster_rcnn, scalekd

model = scalekd(
    student=faster_rcnn(50),
    teacher=faster_rcnn(101),
    teacher_weights="detectron2://COCO-Detection/faster_rcnn_R_101_FPN_3x/137851257/model_final_f6e8b1.pkl",
    family="two_stage",
)
optimizer.lr = 0.02
train.output_dir = "output/coco/faster_rcnn_r101_r50_1x_scalekd"
