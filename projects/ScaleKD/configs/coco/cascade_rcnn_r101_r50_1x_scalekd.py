# ScaleKD on COCO: Cascade R-CNN R101-FPN teacher at 2x -> Cascade R-CNN R50-FPN student, 1x.
# Detectron2's model zoo has no box-only Cascade R-CNN R101: train one first and set
# model.teacher.weights. The CSA mimics the last stage (model.csa_cascade_stages="all": every stage).
from ..common.coco import dataloader, lr_multiplier, optimizer, train
from ..common.models import cascade_rcnn, scalekd

model = scalekd(
    student=cascade_rcnn(50),
    teacher=cascade_rcnn(101),
    teacher_weights="output/coco/cascade_rcnn_r101_3x/model_final.pth",
    family="two_stage",
)
model.csa_cascade_stages = "last"
optimizer.lr = 0.02
train.output_dir = "output/coco/cascade_rcnn_r101_r50_1x_scalekd"
