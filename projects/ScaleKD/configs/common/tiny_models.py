# Tiny two-stage detectors for CPU tests (kd_core's tiny Faster R-CNN, plus Cascade and Mask R-CNN
# variants built from it).
import copy

from detectron2.config import LazyCall as L
from detectron2.layers import ShapeSpec
from detectron2.modeling.box_regression import Box2BoxTransform
from detectron2.modeling.matcher import Matcher
from detectron2.modeling.poolers import ROIPooler
from detectron2.modeling.roi_heads import (
    CascadeROIHeads,
    FastRCNNConvFCHead,
    FastRCNNOutputLayers,
    MaskRCNNConvUpsampleHead,
)

from kd_core.config import get_config

_tiny = get_config("common/models/tiny.py")
FPN_CHANNELS = 64
FC_DIM = 256


def faster_rcnn(depth: int):
    return copy.deepcopy(_tiny[f"faster_rcnn_r{depth}"])


def cascade_rcnn(depth: int):
    model = faster_rcnn(depth)
    for k in ("box_head", "box_predictor", "proposal_matcher"):
        model.roi_heads.pop(k)
    model.roi_heads.update(
        _target_=CascadeROIHeads,
        box_heads=[
            L(FastRCNNConvFCHead)(input_shape=ShapeSpec(channels=FPN_CHANNELS, height=7, width=7), conv_dims=[], fc_dims=[FC_DIM, FC_DIM])
            for _ in range(3)
        ],
        box_predictors=[
            L(FastRCNNOutputLayers)(
                input_shape=ShapeSpec(channels=FC_DIM),
                test_score_thresh=0.05,
                box2box_transform=L(Box2BoxTransform)(weights=(w1, w1, w2, w2)),
                cls_agnostic_bbox_reg=True,
                num_classes="${...num_classes}",
            )
            for (w1, w2) in [(10, 5), (20, 10), (30, 15)]
        ],
        proposal_matchers=[L(Matcher)(thresholds=[th], labels=[0, 1], allow_low_quality_matches=False) for th in [0.5, 0.6, 0.7]],
    )
    return model


def mask_rcnn(depth: int):
    model = faster_rcnn(depth)
    model.roi_heads.mask_in_features = ["p2", "p3", "p4", "p5"]
    model.roi_heads.mask_pooler = L(ROIPooler)(
        output_size=14, scales=(1.0 / 4, 1.0 / 8, 1.0 / 16, 1.0 / 32), sampling_ratio=0, pooler_type="ROIAlignV2"
    )
    model.roi_heads.mask_head = L(MaskRCNNConvUpsampleHead)(
        input_shape=ShapeSpec(channels=FPN_CHANNELS, width=14, height=14),
        num_classes="${..num_classes}",
        conv_dims=[FPN_CHANNELS, FPN_CHANNELS],
    )
    return model
