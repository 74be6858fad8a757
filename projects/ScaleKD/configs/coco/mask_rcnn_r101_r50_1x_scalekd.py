# ScaleKD on the box branch of Mask R-CNN (the mask head trains normally): Mask R-CNN R101-FPN 3x
# teacher (Detectron2 model zoo) at 2x -> Mask R-CNN R50-FPN student, 1x. An extension: no paper numbers.
from ..common.coco import dataloader, lr_multiplier, optimizer, train
from ..common.models import mask_rcnn, scalekd

dataloader.train.mapper.use_instance_mask = True
model = scalekd(
    student=mask_rcnn(50),
    teacher=mask_rcnn(101),
    teacher_weights="detectron2://COCO-InstanceSegmentation/mask_rcnn_R_101_FPN_3x/138205316/model_final_a3ec72.pkl",
    family="two_stage",
)
optimizer.lr = 0.02
train.output_dir = "output/coco/mask_rcnn_r101_r50_1x_scalekd"
