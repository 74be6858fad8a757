# Tiny CNN detectors for CPU tests and the quickstart (ResNet-18/34 + narrow FPN, trained from scratch
# on small images). Built from Detectron2's own model configs, so the code paths are Detectron2's.
import copy

from detectron2.config import LazyCall as L
from detectron2.layers import ShapeSpec
from detectron2.model_zoo import get_config
from detectron2.modeling.backbone import ResNet

from kd_core.modeling import FCOSWithFloat32Losses, basic_block_resnet_stages

NUM_CLASSES = 4  # kd_synthetic classes; override model.num_classes for other data
FPN_CHANNELS = 64
IMAGENET_BGR_MEAN = [103.530, 116.280, 123.675]
IMAGENET_BGR_STD = [57.375, 57.120, 58.395]


def _resnet_stages(depth, norm="BN"):
    return L(ResNet.make_default_stages)(depth=depth, norm=norm)


def _half_width_retinanet(depth):
    """The tiny RetinaNet with its ResNet at half width: stem and res2-res5 with 32, 32, 64, 128, 256
    channels (the standard ResNet-18/34 has 64-512); the FPN and head keep their width."""
    model = _retinanet(depth)
    bottom_up = model.backbone.bottom_up
    bottom_up.stem.out_channels = 32
    bottom_up.stages = L(basic_block_resnet_stages)(depth=depth, width=32, norm="BN")
    model.backbone.top_block.in_channels = 256  # P6 is computed from res5
    return model


def _small_anchor_sizes(base=(16, 32, 64, 128, 256)):
    return [[x, x * 2 ** (1.0 / 3), x * 2 ** (2.0 / 3)] for x in base]


def _retinanet(depth):
    model = copy.deepcopy(get_config("common/models/retinanet.py").model)
    bottom_up = model.backbone.bottom_up
    bottom_up.stem.norm = "BN"
    bottom_up.stages = _resnet_stages(depth)
    model.backbone.out_channels = FPN_CHANNELS
    model.backbone.top_block.in_channels = 512  # res5 of ResNet-18/34
    model.head.input_shape = [ShapeSpec(channels=FPN_CHANNELS)] * 5
    model.head.conv_dims = [FPN_CHANNELS, FPN_CHANNELS]
    model.anchor_generator.sizes = _small_anchor_sizes()
    model.num_classes = NUM_CLASSES
    model.pixel_mean = IMAGENET_BGR_MEAN
    model.pixel_std = IMAGENET_BGR_STD
    return model


def _fcos(depth):
    model = copy.deepcopy(get_config("common/models/fcos.py").model)
    model._target_ = FCOSWithFloat32Losses  # trains under train.amp.enabled too
    bottom_up = model.backbone.bottom_up
    bottom_up.stem.norm = "BN"
    bottom_up.stages = _resnet_stages(depth)
    model.backbone.out_channels = FPN_CHANNELS
    model.backbone.top_block.in_channels = FPN_CHANNELS
    model.head.input_shape = [ShapeSpec(channels=FPN_CHANNELS)] * 5
    model.head.conv_dims = [FPN_CHANNELS, FPN_CHANNELS]
    model.num_classes = NUM_CLASSES
    model.pixel_mean = IMAGENET_BGR_MEAN
    model.pixel_std = IMAGENET_BGR_STD
    return model


def _faster_rcnn(depth):
    model = copy.deepcopy(get_config("common/models/mask_rcnn_fpn.py").model)
    model.roi_heads.mask_in_features = None
    model.roi_heads.mask_pooler = None
    model.roi_heads.mask_head = None
    bottom_up = model.backbone.bottom_up
    bottom_up.stem.norm = "BN"
    bottom_up.stages = _resnet_stages(depth)
    model.backbone.out_channels = FPN_CHANNELS
    model.proposal_generator.head.in_channels = FPN_CHANNELS
    model.proposal_generator.anchor_generator.sizes = [[16], [32], [64], [128], [256]]
    model.proposal_generator.pre_nms_topk = (1000, 500)
    model.proposal_generator.post_nms_topk = (500, 250)
    model.roi_heads.batch_size_per_image = 128
    model.roi_heads.box_head.input_shape = ShapeSpec(channels=FPN_CHANNELS, height=7, width=7)
    model.roi_heads.box_head.fc_dims = [256, 256]
    model.roi_heads.box_predictor.input_shape = ShapeSpec(channels=256)
    model.roi_heads.num_classes = NUM_CLASSES
    model.pixel_mean = IMAGENET_BGR_MEAN
    model.pixel_std = IMAGENET_BGR_STD
    return model


retinanet_r18 = _retinanet(18)
retinanet_r34 = _retinanet(34)
# Half-width ResNets (3.3M / 5.8M parameters instead of 11.9M / 22.0M): the quickstart's pair.
retinanet_r18_w32 = _half_width_retinanet(18)
retinanet_r34_w32 = _half_width_retinanet(34)
fcos_r18 = _fcos(18)
fcos_r34 = _fcos(34)
faster_rcnn_r18 = _faster_rcnn(18)
faster_rcnn_r34 = _faster_rcnn(34)
