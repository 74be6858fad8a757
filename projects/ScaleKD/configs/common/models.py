# Detector and ScaleKD model configs for the COCO / VisDrone recipes.
# Detectors are Detectron2's own LazyConfig models (common/models/*.py of its model zoo).
import copy

from detectron2.config import LazyCall as L
from detectron2.model_zoo import get_config as d2_config
from detectron2.modeling.backbone import FPN
from detectron2.modeling.backbone.fpn import LastLevelP6P7

from kd_core.modeling import FCOSWithFloat32Losses
from kd_core.schedules import LossWeightSchedule
from kd_core.teacher import FrozenTeacher
from scalekd import ScaleKDDetector, SDFDistiller

# Weights of the spec per detector family: alpha (SDF), beta (CSA cls), gamma (CSA box).
LOSS_WEIGHTS = {"one_stage": (0.01, 0.2, 0.05), "two_stage": (0.07, 0.5, 0.2)}
CSA_WARMUP_ITERS = 30000
# torchvision-style ImageNet normalisation (RGB), for students initialised from torchvision weights.
TORCHVISION_RGB_MEAN = [123.675, 116.28, 103.53]
TORCHVISION_RGB_STD = [58.395, 57.12, 57.375]


def _set_depth(model, depth: int):
    stages = model.backbone.bottom_up.stages
    stages.depth = depth
    if depth < 50:  # BasicBlock ResNets: no stride_in_1x1, res5 has 512 channels
        stages.pop("stride_in_1x1", None)
    return model


def retinanet(depth: int = 50):
    model = copy.deepcopy(d2_config("common/models/retinanet.py").model)
    model.backbone.bottom_up.freeze_at = 2
    _set_depth(model, depth)
    if depth < 50:
        model.backbone.top_block.in_channels = 512
    return model


def fcos(depth: int = 50):
    model = copy.deepcopy(d2_config("common/models/fcos.py").model)
    model._target_ = FCOSWithFloat32Losses  # trains under train.amp.enabled too
    model.backbone.bottom_up.freeze_at = 2
    return _set_depth(model, depth)


def mask_rcnn(depth: int = 50):
    model = copy.deepcopy(d2_config("common/models/mask_rcnn_fpn.py").model)
    model.backbone.bottom_up.freeze_at = 2
    return _set_depth(model, depth)


def faster_rcnn(depth: int = 50):
    model = mask_rcnn(depth)
    model.roi_heads.mask_in_features = None
    model.roi_heads.mask_pooler = None
    model.roi_heads.mask_head = None
    return model


def cascade_rcnn(depth: int = 50):
    model = copy.deepcopy(d2_config("common/models/cascade_rcnn.py").model)
    model.backbone.bottom_up.freeze_at = 2
    model.roi_heads.mask_in_features = None
    model.roi_heads.mask_pooler = None
    model.roi_heads.mask_head = None
    return _set_depth(model, depth)


def torchvision_rgb(model):
    """A student initialised from torchvision ImageNet weights: RGB input, torchvision normalisation."""
    model.pixel_mean = TORCHVISION_RGB_MEAN
    model.pixel_std = TORCHVISION_RGB_STD
    if "input_format" in model:
        model.input_format = "RGB"
    stages = model.backbone.bottom_up.get("stages")
    if stages is not None and "stride_in_1x1" in stages:
        stages.stride_in_1x1 = False
    return model


def mobilenet_v2_retinanet():
    """RetinaNet with a MobileNetV2 backbone (stages 2/4/6: 32/96/320 channels at strides
    8/16/32 -> FPN P3-P5, P6/P7 from stage6), RGB input with torchvision normalisation."""
    from detrdistill.modeling.backbones import MobileNetV2Backbone

    model = retinanet(50)
    model.backbone = L(FPN)(
        bottom_up=L(MobileNetV2Backbone)(out_features=["stage2", "stage4", "stage6"], norm="FrozenBN", freeze_at=1),
        in_features=["stage2", "stage4", "stage6"],
        out_channels=256,
        top_block=L(LastLevelP6P7)(in_channels=320, out_channels="${..out_channels}", in_feature="stage6"),
    )
    model.pixel_mean = TORCHVISION_RGB_MEAN
    model.pixel_std = TORCHVISION_RGB_STD
    model.input_format = "RGB"
    return model


def scalekd(
    student,
    teacher,
    teacher_weights: str,
    family: str,
    student_c5_channels: int = 2048,
    teacher_c5_channels: int = 2048,
    student_c5: str = "res5",
):
    """ScaleKDDetector config: SDF on C5 (frozen random SDF block), CSA with the spec's
    weights after a 30k-iteration warm-up, teacher scale taken from the train mapper."""
    alpha, beta, gamma = LOSS_WEIGHTS[family]
    return L(ScaleKDDetector)(
        student=student,
        teacher=L(FrozenTeacher)(model=teacher, weights=teacher_weights),
        distillers={
            "sdf": L(SDFDistiller)(
                student_channels=student_c5_channels,
                teacher_channels=teacher_c5_channels,
                student_features=[student_c5],
                teacher_features=["res5"],
                weight=alpha,
            ),
        },
        teacher_scale="${..dataloader.train.mapper.teacher_scale}",
        csa_cls_weight=L(LossWeightSchedule)(weight=beta, start_iter=CSA_WARMUP_ITERS),
        csa_bbox_weight=L(LossWeightSchedule)(weight=gamma, start_iter="${..csa_cls_weight.start_iter}"),
        metrics_period="${..train.log_period}",
    )
