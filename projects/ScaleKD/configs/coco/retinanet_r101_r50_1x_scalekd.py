# ScaleKD on COCO: RetinaNet R101-FPN 3x teacher (Detectron2 model zoo) at 2x input resolution ->
# RetinaNet R50-FPN student, 1x schedule. Paper: 37.4 / 20.0 -> 42.8 / 25.9 (AP / APs).
from ..common.coco import dataloader, lr_multiplier, optimizer, train
from ..common.models import retinanet, scalekd

model = scalekd(
    student=retinanet(50),
    teacher=retinanet(101),
    teacher_weights="detectron2://COCO-Detection/retinanet_R_101_FPN_3x/190397697/model_final_971ab9.pkl",
    family="one_stage",
)
optimizer.lr = 0.01
train.output_dir = "output/coco/retinanet_r101_r50_1x_scalekd"
