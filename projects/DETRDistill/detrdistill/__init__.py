"""DETRDistill (ICCV 2023) on Detectron2: DETR-family detectors and their distillation.

Importing the package registers its meta-architectures in Detectron2's ``META_ARCH_REGISTRY``.
"""
from . import data, distill, modeling  # noqa: F401  (registration side effects)
from . import meta_arch  # noqa: F401  (registers DETRDistillDetector)
