"""COCO-style evaluation with VisDrone-DET's protocol.

Differences from Detectron2's ``COCOEvaluator``, after the official VisDrone-DET toolkit:

* ignored regions (``record["ignore_regions"]``, XYXY_ABS): ground-truth boxes and
  detections whose area lies at least ``ignore_threshold`` (0.5) inside the union of an
  image's ignored regions are removed before matching (toolkit's ``dropObjectsInIgr``),
  so detections there are never false positives;
* ground truth with ``iscrowd=1`` (VisDrone ``score == 0``) is COCO's crowd/ignore box;
* ``maxDets = (1, 10, 100, 500)``; AP, AP50, AP75, APs/m/l use 500 detections per image,
  and each image's detections are first cut to its 500 highest-scoring ones over all
  classes (as the toolkit keeps the first 500 lines of an image's result file);
  reported AR1, AR10, AR100, AR500.

AP uses COCO's 101-point interpolated precision (the toolkit integrates the precision
envelope exactly; the two differ by a fraction of a point). Scores are in percent.
"""

from __future__ import annotations

import contextlib
import copy
import io
import itertools
import json
import logging
import os
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

import detectron2.utils.comm as comm
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation import DatasetEvaluator
from detectron2.evaluation.coco_evaluation import instances_to_coco_json
from detectron2.structures import BoxMode
from detectron2.utils.file_io import PathManager
from detectron2.utils.logger import create_small_table

try:
    from detectron2.evaluation.fast_eval_api import COCOeval_opt
except ImportError:  # pragma: no cover - depends on the detectron2 build
    COCOeval_opt = COCOeval

__all__ = ["VisDroneEvaluator", "ignored_fraction", "dataset_dicts_to_coco_gt"]

logger = logging.getLogger(__name__)


def ignored_fraction(boxes: np.ndarray, regions: np.ndarray, height: int, width: int) -> np.ndarray:
    """Fraction of each box's area inside the union of ``regions``.

    Args:
        boxes: (N, 4) XYXY_ABS.
        regions: (M, 4) XYXY_ABS ignored regions of the same image.
        height, width: image size; the union is rasterized on this pixel grid.

    Returns:
        float64 (N,): covered pixels of the box (rounded to the grid, clipped to the
        image) divided by the rounded box area, as in the VisDrone toolkit.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    regions = np.asarray(regions, dtype=np.float64).reshape(-1, 4)
    if len(boxes) == 0 or len(regions) == 0:
        return np.zeros(len(boxes))
    # union of the regions: 2-D difference array, then prefix sums
    r = np.round(regions).astype(np.int64)
    rx = np.clip(r[:, [0, 2]], 0, width)
    ry = np.clip(r[:, [1, 3]], 0, height)
    diff = np.zeros((height + 1, width + 1), dtype=np.int32)
    np.add.at(diff, (ry[:, 0], rx[:, 0]), 1)
    np.add.at(diff, (ry[:, 0], rx[:, 1]), -1)
    np.add.at(diff, (ry[:, 1], rx[:, 0]), -1)
    np.add.at(diff, (ry[:, 1], rx[:, 1]), 1)
    inside = diff.cumsum(axis=0).cumsum(axis=1)[:height, :width] > 0
    integral = np.zeros((height + 1, width + 1), dtype=np.int64)
    integral[1:, 1:] = inside.cumsum(axis=0).cumsum(axis=1)

    b = np.round(boxes).astype(np.int64)
    area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    x0, x1 = np.clip(b[:, 0], 0, width), np.clip(b[:, 2], 0, width)
    y0, y1 = np.clip(b[:, 1], 0, height), np.clip(b[:, 3], 0, height)
    x1, y1 = np.maximum(x1, x0), np.maximum(y1, y0)
    covered = integral[y1, x1] - integral[y0, x1] - integral[y1, x0] + integral[y0, x0]
    return covered / np.maximum(area, 1)


def dataset_dicts_to_coco_gt(
    dataset_dicts: List[dict],
    contiguous_to_dataset_id: Dict[int, int],
    class_names: Sequence[str],
    ignore_threshold: float = 0.5,
) -> COCO:
    """In-memory COCO ground truth from dataset dicts, minus boxes in ignored regions.

    Boxes (any ``bbox_mode``) become XYWH with ``area = w * h``; ``iscrowd`` is kept;
    boxes at least ``ignore_threshold`` inside ``record["ignore_regions"]`` are dropped.
    Category ids are the dataset ids given by ``contiguous_to_dataset_id``.
    """
    images, annotations = [], []
    for record in dataset_dicts:
        height, width = int(record["height"]), int(record["width"])
        images.append({"id": record["image_id"], "height": height, "width": width})
        annos = record.get("annotations", [])
        if not annos:
            continue
        boxes = np.array(
            [BoxMode.convert(list(a["bbox"]), a["bbox_mode"], BoxMode.XYXY_ABS) for a in annos],
            dtype=np.float64,
        )
        regions = record.get("ignore_regions")
        keep = np.ones(len(annos), dtype=bool)
        if regions is not None and len(regions):
            keep = ignored_fraction(boxes, regions, height, width) < ignore_threshold
        for anno, box in zip(itertools.compress(annos, keep), boxes[keep]):
            w, h = box[2] - box[0], box[3] - box[1]
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": record["image_id"],
                    "category_id": contiguous_to_dataset_id[anno["category_id"]],
                    "bbox": [float(box[0]), float(box[1]), float(w), float(h)],
                    "area": float(w * h),
                    "iscrowd": int(anno.get("iscrowd", 0)),
                }
            )
    categories = [{"id": contiguous_to_dataset_id[i], "name": n} for i, n in enumerate(class_names)]
    coco = COCO()
    coco.dataset = {"images": images, "annotations": annotations, "categories": categories}
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


class VisDroneEvaluator(DatasetEvaluator):
    """Bounding-box AP / AR with VisDrone-DET's ignored regions and maxDets.

    Works on any registered dataset with ``thing_classes`` metadata; records may carry
    ``ignore_regions`` (float (M, 4) XYXY_ABS), as :func:`kd_core.data.load_visdrone`
    produces. ``evaluate()`` returns ``{"bbox": {"AP", "AP50", "AP75", "APs", "APm",
    "APl", "AR1", "AR10", "AR100", "AR500", "AP-<class>", ...}}`` in percent.
    """

    def __init__(
        self,
        dataset_name: str,
        distributed: bool = True,
        output_dir: Optional[str] = None,
        *,
        max_dets_per_image: Sequence[int] = (1, 10, 100, 500),
        ignore_threshold: float = 0.5,
        use_fast_impl: bool = True,
    ):
        """
        Args:
            dataset_name: registered dataset to evaluate on (its dicts are loaded now).
            distributed: gather predictions from all ranks and evaluate on rank 0.
            output_dir: if set, ``coco_instances_results.json`` (kept detections, COCO
                result format) is written there.
            max_dets_per_image: increasing COCOeval ``maxDets``; the last one is the
                per-image detection budget used for AP.
            ignore_threshold: minimum fraction of a box inside ignored regions for it to
                be dropped.
            use_fast_impl: Detectron2's C++ COCOeval when built, else pycocotools.
        """
        max_dets = [int(m) for m in max_dets_per_image]
        if len(max_dets) < 3 or sorted(max_dets) != max_dets:
            raise ValueError(
                f"max_dets_per_image must be >= 3 increasing values, got {max_dets_per_image}"
            )
        if not 0.0 < ignore_threshold <= 1.0:
            raise ValueError(f"ignore_threshold must be in (0, 1], got {ignore_threshold}")
        self._dataset_name = dataset_name
        self._distributed = distributed
        self._output_dir = output_dir
        self._max_dets = max_dets
        self._ignore_threshold = ignore_threshold
        self._cocoeval_cls = COCOeval_opt if use_fast_impl else COCOeval
        self._cpu_device = torch.device("cpu")

        metadata = MetadataCatalog.get(dataset_name)
        self._class_names = list(metadata.thing_classes)
        id_map = metadata.get("thing_dataset_id_to_contiguous_id")
        if id_map is None:
            id_map = {i + 1: i for i in range(len(self._class_names))}
        self._contiguous_to_dataset_id = {v: k for k, v in id_map.items()}

        dataset_dicts = DatasetCatalog.get(dataset_name)
        self._coco_gt = dataset_dicts_to_coco_gt(
            dataset_dicts, self._contiguous_to_dataset_id, self._class_names, ignore_threshold
        )
        # image_id -> (regions (M, 4) XYXY_ABS, height, width), images with regions only
        self._ignore_regions: Dict[object, Tuple[np.ndarray, int, int]] = {
            r["image_id"]: (np.asarray(r["ignore_regions"]), int(r["height"]), int(r["width"]))
            for r in dataset_dicts
            if r.get("ignore_regions") is not None and len(r["ignore_regions"])
        }
        self.reset()

    def reset(self):
        self._predictions: List[dict] = []  # COCO result dicts (dataset category ids)

    def process(self, inputs, outputs):
        """``inputs``: model inputs with ``image_id``; ``outputs``: dicts with
        ``instances`` (``pred_boxes`` XYXY_ABS in original image pixels, ``scores``,
        ``pred_classes`` contiguous ids)."""
        for inp, out in zip(inputs, outputs):
            image_id = inp["image_id"]
            instances = out["instances"].to(self._cpu_device)
            if len(instances) > self._max_dets[-1]:
                top = instances.scores.argsort(descending=True)[: self._max_dets[-1]]
                instances = instances[top]
            if image_id in self._ignore_regions and len(instances):
                regions, height, width = self._ignore_regions[image_id]
                fraction = ignored_fraction(
                    instances.pred_boxes.tensor.numpy(), regions, height, width
                )
                instances = instances[torch.from_numpy(fraction < self._ignore_threshold)]
            for result in instances_to_coco_json(instances, image_id):
                result["category_id"] = self._contiguous_to_dataset_id[result["category_id"]]
                self._predictions.append(result)

    def evaluate(self):
        if self._distributed:
            comm.synchronize()
            predictions = list(itertools.chain(*comm.gather(self._predictions, dst=0)))
            if not comm.is_main_process():
                return {}
        else:
            predictions = self._predictions

        if self._output_dir:
            PathManager.mkdirs(self._output_dir)
            with PathManager.open(
                os.path.join(self._output_dir, "coco_instances_results.json"), "w"
            ) as f:
                json.dump(predictions, f)

        names = ["AP", "AP50", "AP75", "APs", "APm", "APl"] + [f"AR{m}" for m in self._max_dets]
        if not predictions:
            logger.warning(
                "[VisDroneEvaluator] no detection on %s: all scores are 0.", self._dataset_name
            )
            results = {name: 0.0 for name in names}
            results.update({f"AP-{c}": 0.0 for c in self._class_names})
            return OrderedDict(bbox=results)

        with contextlib.redirect_stdout(io.StringIO()):
            coco_dt = self._coco_gt.loadRes(copy.deepcopy(predictions))
            coco_eval = self._cocoeval_cls(self._coco_gt, coco_dt, "bbox")
            coco_eval.params.maxDets = list(self._max_dets)
            coco_eval.evaluate()
            coco_eval.accumulate()
        results = self._summarize(coco_eval, names)
        logger.info(
            "VisDrone evaluation of %s:\n%s",
            self._dataset_name,
            create_small_table({k: results[k] for k in names}),
        )
        return OrderedDict(bbox=results)

    def _summarize(self, coco_eval, names: List[str]) -> Dict[str, float]:
        """Scores in percent from ``coco_eval.eval``; NaN where nothing can be scored."""
        precision = coco_eval.eval["precision"]  # (T iou, R recall, K class, A area, M maxDets)
        recall = coco_eval.eval["recall"]  # (T, K, A, M)
        iou_thrs = coco_eval.params.iouThrs

        def mean(values):
            valid = values[values > -1]
            return float(valid.mean() * 100) if valid.size else float("nan")

        t50 = int(np.argmin(np.abs(iou_thrs - 0.5)))
        t75 = int(np.argmin(np.abs(iou_thrs - 0.75)))
        last = len(self._max_dets) - 1
        scores = [
            mean(precision[..., 0, last]),
            mean(precision[t50, :, :, 0, last]),
            mean(precision[t75, :, :, 0, last]),
            mean(precision[..., 1, last]),
            mean(precision[..., 2, last]),
            mean(precision[..., 3, last]),
        ] + [mean(recall[:, :, 0, m]) for m in range(len(self._max_dets))]
        results = dict(zip(names, scores))
        for k, name in enumerate(self._class_names):
            results[f"AP-{name}"] = mean(precision[:, :, k, 0, last])
        return results
