"""Evaluators of the KD toolkit (Detectron2 ``DatasetEvaluator`` subclasses)."""

from .subset_coco_evaluation import SubsetCOCOEvaluator
from .visdrone_evaluation import VisDroneEvaluator, dataset_dicts_to_coco_gt, ignored_fraction

__all__ = ["SubsetCOCOEvaluator", "VisDroneEvaluator", "dataset_dicts_to_coco_gt", "ignored_fraction"]
