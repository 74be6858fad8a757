"""VisDrone-DET (object detection in images) in Detectron2's dataset format.

VisDrone-DET ships one text file per image, ``annotations/<image stem>.txt``, with one
line per box::

    <bbox_left>,<bbox_top>,<bbox_width>,<bbox_height>,<score>,<category>,<truncation>,<occlusion>

Ground-truth ``score`` is 1 (evaluated) or 0 (ignored). ``category`` 0 marks *ignored
regions*, 1..10 the classes of :data:`VISDRONE_CLASSES`, 11 "others".

Treatment, following the official VisDrone-DET toolkit:

* category 0 (ignored region): not an object. Recorded per image in
  ``record["ignore_regions"]``, a float32 array (M, 4) in XYXY_ABS pixels.
  :class:`kd_core.evaluation.VisDroneEvaluator` drops detections and ground-truth boxes
  that lie at least 50% inside them, as the toolkit does.
* category 11 (others): not ground truth, dropped.
* categories 1..10 -> contiguous ``category_id`` 0..9; boxes with ``score == 0`` are
  kept as ``iscrowd=1`` (the toolkit's "ignore" flag: neither a hit nor a miss; the
  Detectron2 training mapper skips crowd boxes).
* zero-size boxes are dropped with a warning; negative sizes, unknown categories or
  malformed lines raise :class:`VisDroneAnnotationError` naming the file and line.

Ignored regions are kept out of ``annotations`` because they are class-agnostic while a
COCO crowd box only ignores detections of its own class; the evaluator applies them.
"""

from __future__ import annotations

import logging
import os
from typing import List, Optional

import numpy as np
from detectron2.structures import BoxMode
from PIL import Image

from .builtin import _register

__all__ = [
    "VISDRONE_CLASSES",
    "VisDroneAnnotationError",
    "parse_visdrone_annotation",
    "load_visdrone",
    "register_visdrone",
]

logger = logging.getLogger(__name__)

VISDRONE_CLASSES = (
    "pedestrian",
    "people",
    "bicycle",
    "car",
    "van",
    "truck",
    "tricycle",
    "awning-tricycle",
    "bus",
    "motor",
)
IGNORED_REGION_CATEGORY = 0
OTHERS_CATEGORY = 11
_IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")


class VisDroneAnnotationError(ValueError):
    """A VisDrone annotation file is malformed."""


def parse_visdrone_annotation(txt_file: str) -> np.ndarray:
    """Read one VisDrone-DET annotation file.

    Returns:
        float64 array (N, 8): ``x, y, w, h, score, category, truncation, occlusion``
        (boxes XYWH_ABS). Empty lines and trailing commas are accepted; lines with 6 or 7
        values get truncation / occlusion 0.
    """
    rows = []
    with open(txt_file) as f:
        for line_no, line in enumerate(f, 1):
            line = line.strip().rstrip(",")
            if not line:
                continue
            fields = line.split(",")
            if not 6 <= len(fields) <= 8:
                raise VisDroneAnnotationError(
                    f"{txt_file}, line {line_no}: expected 8 comma-separated values "
                    f"x,y,w,h,score,category,truncation,occlusion, got {len(fields)}: {line!r}"
                )
            try:
                values = [float(v) for v in fields] + [0.0] * (8 - len(fields))
            except ValueError:
                raise VisDroneAnnotationError(
                    f"{txt_file}, line {line_no}: non-numeric value in {line!r}"
                )
            if not np.isfinite(values).all():
                raise VisDroneAnnotationError(
                    f"{txt_file}, line {line_no}: non-finite value in {line!r}"
                )
            category = values[5]
            if category != int(category) or not 0 <= category <= OTHERS_CATEGORY:
                raise VisDroneAnnotationError(
                    f"{txt_file}, line {line_no}: category {values[5]:g} is not an integer in "
                    f"[0, {OTHERS_CATEGORY}]"
                )
            if values[2] < 0 or values[3] < 0:
                raise VisDroneAnnotationError(
                    f"{txt_file}, line {line_no}: negative box size w={values[2]:g}, h={values[3]:g}"
                )
            rows.append(values)
    return np.asarray(rows, dtype=np.float64).reshape(-1, 8)


def load_visdrone(
    image_dir: str, annotation_dir: str, dataset_name: Optional[str] = None
) -> List[dict]:
    """Load a VisDrone-DET split as Detectron2 dataset dicts.

    Args:
        image_dir: folder of the images (``.jpg``, ``.jpeg``, ``.png``, ``.bmp``).
        annotation_dir: folder of the ``<image stem>.txt`` files; every image needs one.
        dataset_name: only used in log messages.

    Returns:
        one dict per image, sorted by file name, with ``file_name``, ``height``,
        ``width``, ``image_id`` (index in that order), ``annotations`` (``bbox``
        XYWH_ABS, ``bbox_mode``, ``category_id`` in 0..9, ``iscrowd``, ``truncation``,
        ``occlusion``) and ``ignore_regions`` (float32 (M, 4), XYXY_ABS). Images without
        objects are kept.
    """
    if not os.path.isdir(image_dir):
        raise FileNotFoundError(f"VisDrone image folder {image_dir} does not exist")
    if not os.path.isdir(annotation_dir):
        raise FileNotFoundError(f"VisDrone annotation folder {annotation_dir} does not exist")
    file_names = sorted(f for f in os.listdir(image_dir) if f.lower().endswith(_IMAGE_EXTENSIONS))
    if not file_names:
        raise FileNotFoundError(f"No images ({', '.join(_IMAGE_EXTENSIONS)}) in {image_dir}")

    dataset_dicts = []
    num_zero_size = 0
    for image_id, file_name in enumerate(file_names):
        image_path = os.path.join(image_dir, file_name)
        txt_file = os.path.join(annotation_dir, os.path.splitext(file_name)[0] + ".txt")
        if not os.path.isfile(txt_file):
            raise FileNotFoundError(
                f"Annotation file {txt_file} for image {image_path} does not exist"
            )
        rows = parse_visdrone_annotation(txt_file)
        with Image.open(image_path) as image:  # reads the header only
            width, height = image.size

        category = rows[:, 5].astype(np.int64)
        regions = rows[category == IGNORED_REGION_CATEGORY, :4].astype(np.float32)
        regions[:, 2:] += regions[:, :2]  # XYWH -> XYXY
        is_object = (category >= 1) & (category <= len(VISDRONE_CLASSES))
        zero_size = is_object & ((rows[:, 2] == 0) | (rows[:, 3] == 0))
        num_zero_size += int(zero_size.sum())
        annotations = [
            {
                "bbox": row[:4].tolist(),
                "bbox_mode": BoxMode.XYWH_ABS,
                "category_id": int(row[5]) - 1,
                "iscrowd": int(row[4] == 0),
                "truncation": int(row[6]),
                "occlusion": int(row[7]),
            }
            for row in rows[is_object & ~zero_size]
        ]
        dataset_dicts.append(
            {
                "file_name": image_path,
                "height": height,
                "width": width,
                "image_id": image_id,
                "annotations": annotations,
                "ignore_regions": regions,
            }
        )
    if num_zero_size:
        logger.warning(
            "%s: dropped %d zero-size box(es) in %s",
            dataset_name or "VisDrone",
            num_zero_size,
            annotation_dir,
        )
    logger.info("Loaded %d VisDrone images from %s", len(dataset_dicts), image_dir)
    return dataset_dicts


def register_visdrone(
    name: str, image_dir: str, annotation_dir: str, *, replace: bool = False
) -> bool:
    """Register a VisDrone-DET split under ``name`` (lazy: nothing is read now).

    Metadata: ``thing_classes`` (:data:`VISDRONE_CLASSES`),
    ``thing_dataset_id_to_contiguous_id`` ({1: 0, ..., 10: 9}, the VisDrone category
    ids), ``image_root``, ``annotation_dir`` and ``evaluator_type="visdrone"`` (use
    :class:`kd_core.evaluation.VisDroneEvaluator`). Idempotent for identical arguments;
    other folders under the same name need ``replace=True``.
    """
    image_dir = os.path.abspath(os.fspath(image_dir))
    annotation_dir = os.path.abspath(os.fspath(annotation_dir))
    metadata = {
        "thing_classes": list(VISDRONE_CLASSES),
        "thing_dataset_id_to_contiguous_id": {i + 1: i for i in range(len(VISDRONE_CLASSES))},
        "image_root": image_dir,
        "annotation_dir": annotation_dir,
        "evaluator_type": "visdrone",
    }
    return _register(
        name, lambda: load_visdrone(image_dir, annotation_dir, name), metadata, replace
    )
