"""DETR-family models and their shared building blocks.

Importing this package registers every DETR meta-architecture of the project in Detectron2's
``META_ARCH_REGISTRY`` (DeformableDETR, ConditionalDETR, AdaMixer).
"""
from .adamixer import AdaMixer
from .conditional_detr import ConditionalDETR, ConditionalTransformer, make_resnet_dc5_backbone
from .backbones import MobileNetV2Backbone, MultiLevelProjection, make_resnet_backbone
from .criterion import SetCriterion, num_boxes_across_processes
from .deformable_detr import DeformableDETR, DeformableTransformer, group_self_attention_mask
from .detr_base import MLP, DETRBase, ParamNameLRFactor, inverse_sigmoid
from .ms_deform_attn import (
    MultiScaleDeformableAttention,
    multi_scale_deformable_attention,
    multi_scale_deformable_attention_reference,
)
from .outputs import DETROutputs
from .position_encoding import PositionEmbeddingSine, sine_embedding_of_coordinates
