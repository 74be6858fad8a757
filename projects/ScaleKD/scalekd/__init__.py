"""ScaleKD (Zhu et al., CVPR 2023, "Distilling Scale-Aware Knowledge in Small Object Detector") on Detectron2.

* :class:`SDFDistiller` - Scale-Decoupled Feature distillation (``loss_kd_sdf``);
* :class:`MultiScaleCrossAttention`, :class:`CrossScaleAssistant`, :class:`AssistantTrainer` -
  the Cross-Scale Assistant, trained on ground truth with its own Adam optimizer;
* :class:`ScaleKDDetector` - the meta-architecture (registered in ``META_ARCH_REGISTRY``);
* :class:`ScaleKDDatasetMapper` - adds the high-resolution teacher image;
* :class:`AssistantDetector` - the trained assistant as a detector, for evaluation.
"""
from .assistant_detector import AssistantDetector
from .csa import (
    DEFAULT_LEVEL_RATES,
    AssistantTrainer,
    CrossScaleAssistant,
    MultiScaleCrossAttention,
    RoIBoxAssistantHead,
    ScaleReduction,
    copy_module_with_weights,
)
from .data import ScaleKDDatasetMapper, make_teacher_image, teacher_view_transforms
from .meta_arch import ScaleKDDetector, default_level_pairs, detector_kind
from .sdf import ScaleDecoupledEmbedding, SDFDistiller, SharedDilatedBottleneck

__all__ = [
    "AssistantDetector",
    "AssistantTrainer",
    "CrossScaleAssistant",
    "DEFAULT_LEVEL_RATES",
    "MultiScaleCrossAttention",
    "RoIBoxAssistantHead",
    "ScaleDecoupledEmbedding",
    "ScaleKDDatasetMapper",
    "ScaleKDDetector",
    "ScaleReduction",
    "SDFDistiller",
    "SharedDilatedBottleneck",
    "copy_module_with_weights",
    "default_level_pairs",
    "detector_kind",
    "make_teacher_image",
    "teacher_view_transforms",
]
