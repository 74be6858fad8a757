"""Evaluators of the KD toolkit (Detectron2 ``DatasetEvaluator`` subclasses)."""

from .visdrone_evaluation import VisDroneEvaluator, dataset_dicts_to_coco_gt, ignored_fraction

__all__ = ["VisDroneEvaluator", "dataset_dicts_to_coco_gt", "ignored_fraction"]
