"""Embedded default dataset: procedurally generated shapes in COCO format.

``generate_synthetic_dataset`` draws a small detection dataset that needs no download and
is reproducible byte for byte from a seed: four classes of visually distinct shapes
(filled circle, filled square, filled triangle, ring) with random colours on textured,
noisy backgrounds, plus clutter that is *not* annotated (lines, arcs, elongated ellipses,
thin rectangle outlines). Objects come at three COCO scales with most of them small
(box area < 32^2 px), and may partially occlude each other.

Layout written under ``root``::

    root/
      kd_synthetic_stamp.json          # generator version + parameters (written last)
      train/000000.png ...             # images of the train split
      val/000000.png ...
      annotations/instances_train.json # COCO instances json (bbox XYWH_ABS, area, iscrowd=0)
      annotations/instances_val.json

Default location: ``$KD_SYNTHETIC_ROOT`` if set, else ``~/.cache/kd_toolkit/kd_synthetic``
(see :func:`default_synthetic_root`). The dataset is written on first use, i.e. when
``kd_synthetic_train`` / ``kd_synthetic_val`` is first requested from ``DatasetCatalog``
(see ``kd_core.data.builtin``), or explicitly with
``python tools/make_synthetic_dataset.py --output DIR``.

Annotation conventions:

* ``bbox`` = ``[x, y, w, h]`` in absolute pixel-edge coordinates (pixel ``i`` spans
  ``[i, i + 1)``), the tight box of the object's pixels that other annotated objects
  drawn over it leave visible. Thin unannotated clutter drawn on top does not change it.
* ``area`` = box area ``w * h`` (no masks are produced), so COCO's small / medium / large
  split (< 32^2, < 96^2, >= 96^2) is the box-area split.
* ``visible_fraction`` (extra key): fraction of the object's pixels not hidden by other
  annotated objects (>= 0.6 by construction).
* every 20th image (index % 20 == 19) holds clutter only and has no annotation.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from typing import Dict, Optional, Sequence, Tuple, Union

import cv2
import numpy as np

__all__ = [
    "SYNTHETIC_CLASSES",
    "SYNTHETIC_GENERATOR_VERSION",
    "SYNTHETIC_STAMP_NAME",
    "DEFAULT_GENERATION_PARAMS",
    "SyntheticDatasetError",
    "default_synthetic_root",
    "synthetic_dataset_paths",
    "generate_synthetic_dataset",
    "normalize_generation_params",
    "render_synthetic_image",
    "box_size_statistics",
]

logger = logging.getLogger(__name__)

SYNTHETIC_CLASSES: Tuple[str, ...] = ("circle", "square", "triangle", "ring")
# Bump whenever the drawing code changes the output for a given seed: an existing dataset
# with another version is then reported as a parameter mismatch instead of being reused.
SYNTHETIC_GENERATOR_VERSION = 1
SYNTHETIC_STAMP_NAME = "kd_synthetic_stamp.json"
SYNTHETIC_ROOT_ENV = "KD_SYNTHETIC_ROOT"
SPLITS: Tuple[str, ...] = ("train", "val")

_GENERATOR_NAME = "kd_core.data.synthetic"
_EMPTY_IMAGE_PERIOD = 20  # image index % 20 == 19 -> background and clutter only
_MIN_VISIBLE_FRACTION = 0.6  # an occluded object keeps at least this share of its pixels
_MAX_OBJECTS_PER_256SQ = 12  # object count upper bound for a 256x256 image (scaled by area)
# Probability of drawing a small / medium / large object (target box side ranges below).
_SCALE_PROBS = (0.6, 0.28, 0.12)
_SMALL_SIDE = (8.0, 30.0)  # box area < 32^2
_MEDIUM_SIDE = (36.0, 90.0)  # 32^2 <= box area < 96^2
_LARGE_SIDE = (100.0, 190.0)  # box area >= 96^2 (also capped at 0.8 x the image side)
_SHIFT = 4  # cv2 fixed-point bits for sub-pixel drawing
DEFAULT_GENERATION_PARAMS: Dict[str, object] = {
    "num_train": 200,
    "num_val": 50,
    "image_size": 256,
    "seed": 0,
}
_ONE = 1 << _SHIFT


class SyntheticDatasetError(RuntimeError):
    """The synthetic dataset directory cannot be used with the requested parameters."""


def default_synthetic_root() -> str:
    """Directory of the default synthetic dataset.

    ``$KD_SYNTHETIC_ROOT`` if that environment variable is set (``~`` is expanded),
    else ``~/.cache/kd_toolkit/kd_synthetic``.
    """
    root = os.environ.get(SYNTHETIC_ROOT_ENV) or "~/.cache/kd_toolkit/kd_synthetic"
    return os.path.abspath(os.path.expanduser(root))


def synthetic_dataset_paths(root: Optional[str] = None) -> Dict[str, str]:
    """Paths of a (possibly not yet generated) synthetic dataset under ``root``.

    Returns a dict with keys ``root``, ``stamp_file`` and, for each split ``s`` in
    ("train", "val"), ``{s}_json`` (COCO json) and ``{s}_image_root`` (image folder).
    Nothing is read or written.
    """
    root = os.path.abspath(os.path.expanduser(root)) if root else default_synthetic_root()
    paths = {"root": root, "stamp_file": os.path.join(root, SYNTHETIC_STAMP_NAME)}
    for split in SPLITS:
        paths[f"{split}_json"] = os.path.join(root, "annotations", f"instances_{split}.json")
        paths[f"{split}_image_root"] = os.path.join(root, split)
    return paths


def normalize_generation_params(num_train, num_val, image_size, seed) -> Dict[str, object]:
    """Checked generation parameters in the form stored in the stamp file.

    ``image_size`` becomes ``[height, width]``; bad values raise ``ValueError``.
    """
    for name, value in (("num_train", num_train), ("num_val", num_val), ("seed", seed)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    if isinstance(image_size, (int, np.integer)) and not isinstance(image_size, bool):
        height = width = int(image_size)
    elif isinstance(image_size, Sequence) and len(image_size) == 2:
        height, width = (int(v) for v in image_size)
    else:
        raise ValueError(f"image_size must be an int or a (height, width) pair, got {image_size!r}")
    if min(height, width) < 32:
        raise ValueError(f"image_size must be at least 32 px on each side, got {image_size!r}")
    return {
        "num_train": int(num_train),
        "num_val": int(num_val),
        "image_size": [height, width],
        "seed": int(seed),
    }


def _stamp_content(params: Dict[str, object]) -> Dict[str, object]:
    return {
        "generator": _GENERATOR_NAME,
        "version": SYNTHETIC_GENERATOR_VERSION,
        "params": params,
        "classes": list(SYNTHETIC_CLASSES),
    }


def _read_stamp(stamp_file: str) -> Optional[dict]:
    if not os.path.isfile(stamp_file):
        return None
    try:
        with open(stamp_file) as f:
            stamp = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise SyntheticDatasetError(
            f"Cannot read the synthetic dataset stamp file {stamp_file}: {e}"
        )
    if not isinstance(stamp, dict):
        raise SyntheticDatasetError(
            f"{stamp_file} is not a synthetic dataset stamp (not a JSON object)"
        )
    return stamp


def _stamp_matches(stamp: dict, expected: dict) -> bool:
    return all(stamp.get(k) == v for k, v in expected.items())


def _describe(stamp: dict) -> str:
    return f"version={stamp.get('version')}, params={stamp.get('params')}"


def generate_synthetic_dataset(
    root: Optional[str] = None,
    num_train: int = DEFAULT_GENERATION_PARAMS["num_train"],
    num_val: int = DEFAULT_GENERATION_PARAMS["num_val"],
    image_size: Union[int, Tuple[int, int]] = DEFAULT_GENERATION_PARAMS["image_size"],
    seed: int = DEFAULT_GENERATION_PARAMS["seed"],
    overwrite: bool = False,
) -> Dict[str, str]:
    """Write (or reuse) the synthetic shapes dataset under ``root``.

    Args:
        root: output directory; ``None`` means :func:`default_synthetic_root`.
        num_train, num_val: number of images in the "train" and "val" splits.
        image_size: ``int`` (square) or ``(height, width)`` in pixels, at least 32.
            Large objects (box side >= 96) need a side of at least 120 px.
        seed: generation seed. Image ``i`` of a split depends only on
            ``(seed, split, i)`` and the image size, so the first images of a split do not
            change when ``num_train`` / ``num_val`` change.
        overwrite: if ``root`` holds a synthetic dataset generated with other parameters
            (or by another generator version), replace it. Without it that case raises
            :class:`SyntheticDatasetError`; the two are never mixed.

    Returns:
        the dict of :func:`synthetic_dataset_paths`.

    An existing dataset whose stamp file records the same parameters and version is
    reused without touching it. A non-empty directory without stamp file is never
    written into (even with ``overwrite``). Generation happens in a temporary sibling
    directory that is renamed into place when complete, so an interrupted or concurrent
    generation never leaves a half-written dataset under ``root``.
    """
    params = normalize_generation_params(num_train, num_val, image_size, seed)
    paths = synthetic_dataset_paths(root)
    root = paths["root"]
    expected = _stamp_content(params)

    stamp = _read_stamp(paths["stamp_file"])
    if stamp is not None:
        if _stamp_matches(stamp, expected):
            return paths
        if not overwrite:
            raise SyntheticDatasetError(
                f"{root} holds a synthetic dataset generated with {_describe(stamp)}, but "
                f"{_describe(expected)} was requested. Regenerate it there with overwrite=True "
                f"(tools/make_synthetic_dataset.py --overwrite), or use another directory "
                f"(argument root / ${SYNTHETIC_ROOT_ENV})."
            )
    elif os.path.isdir(root) and os.listdir(root):
        raise SyntheticDatasetError(
            f"{root} exists, is not empty and has no {SYNTHETIC_STAMP_NAME}: it is not a "
            f"synthetic dataset written by {_GENERATOR_NAME}. Refusing to write into it; "
            f"choose another directory or empty it."
        )
    elif os.path.exists(root) and not os.path.isdir(root):
        raise SyntheticDatasetError(f"{root} exists and is not a directory")

    parent = os.path.dirname(root)
    os.makedirs(parent, exist_ok=True)
    tmp_root = tempfile.mkdtemp(prefix=f".{os.path.basename(root)}.tmp-", dir=parent)
    try:
        _write_dataset(tmp_root, params)
        with open(os.path.join(tmp_root, SYNTHETIC_STAMP_NAME), "w") as f:
            json.dump(expected, f, indent=2, sort_keys=True)
        _install(tmp_root, root, expected, overwrite=overwrite and stamp is not None)
    finally:
        if os.path.isdir(tmp_root):
            shutil.rmtree(tmp_root, ignore_errors=True)
    return paths


def _install(tmp_root: str, root: str, expected: dict, overwrite: bool) -> None:
    """Move the finished dataset ``tmp_root`` to ``root`` (atomic rename)."""
    if overwrite and os.path.isdir(root):
        old = tempfile.mkdtemp(prefix=f".{os.path.basename(root)}.old-", dir=os.path.dirname(root))
        os.rename(root, os.path.join(old, "data"))
        try:
            os.rename(tmp_root, root)
        finally:
            shutil.rmtree(old, ignore_errors=True)
        return
    try:
        os.rename(tmp_root, root)  # replaces an empty directory, fails on a non-empty one
    except OSError:
        # Another process finished first: use its dataset if it is the one we want.
        stamp = _read_stamp(os.path.join(root, SYNTHETIC_STAMP_NAME))
        if stamp is None or not _stamp_matches(stamp, expected):
            raise SyntheticDatasetError(
                f"{root} was written concurrently by someone else with "
                f"{_describe(stamp) if stamp else 'no stamp file'}; requested {_describe(expected)}"
            )
    logger.info("Synthetic dataset ready in %s", root)


# --------------------------------------------------------------------------- drawing


def _smooth_noise(rng: np.random.Generator, height: int, width: int, cells: int) -> np.ndarray:
    """(H, W, 3) float32 noise in about [-1, 1] varying over ~``cells`` cells per side."""
    grid = rng.standard_normal((cells + 1, cells + 1, 3)).astype(np.float32)
    return cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC)


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Textured background, (H, W, 3) float32 in [0, 255]."""
    base = rng.uniform(40.0, 215.0, size=3).astype(np.float32)
    image = np.broadcast_to(base, (height, width, 3)).copy()
    image += rng.uniform(15.0, 40.0) * _smooth_noise(rng, height, width, int(rng.integers(2, 6)))
    cells = max(4, min(height, width) // int(rng.integers(8, 20)))
    image += rng.uniform(5.0, 15.0) * _smooth_noise(rng, height, width, cells)
    # a linear illumination gradient in a random direction
    angle = rng.uniform(0.0, 2.0 * np.pi)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    ramp = (np.cos(angle) * xs / width + np.sin(angle) * ys / height)[..., None]
    image += rng.uniform(0.0, 40.0) * (ramp - ramp.mean())
    return image


def _random_color(rng: np.random.Generator) -> Tuple[float, float, float]:
    return tuple(float(v) for v in rng.uniform(0.0, 255.0, size=3))


def _draw_clutter(rng: np.random.Generator, image: np.ndarray, count: int, thin_only: bool) -> None:
    """Draw ``count`` unannotated distractors on ``image`` in place.

    Kinds: straight line, arc, elongated filled ellipse (aspect >= 3), thin rectangle
    outline. ``thin_only`` restricts to 1-2 px lines and arcs (foreground occluders).
    """
    height, width = image.shape[:2]
    for _ in range(count):
        kind = int(rng.integers(0, 2 if thin_only else 4))
        color = _random_color(rng)
        thickness = int(rng.integers(1, 3 if thin_only else 4))
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        if kind == 0:  # line
            length = rng.uniform(20.0, 0.6 * max(height, width))
            angle = rng.uniform(0.0, np.pi)
            dx, dy = 0.5 * length * np.cos(angle), 0.5 * length * np.sin(angle)
            p0 = (int(round((cx - dx) * _ONE)), int(round((cy - dy) * _ONE)))
            p1 = (int(round((cx + dx) * _ONE)), int(round((cy + dy) * _ONE)))
            cv2.line(image, p0, p1, color, thickness, cv2.LINE_AA, _SHIFT)
        elif kind == 1:  # arc
            axes = (int(rng.integers(10, 60)), int(rng.integers(10, 60)))
            start = float(rng.uniform(0.0, 360.0))
            span = float(rng.uniform(60.0, 200.0))
            center = (int(cx), int(cy))
            angle = float(rng.uniform(0.0, 180.0))
            cv2.ellipse(
                image, center, axes, angle, start, start + span, color, thickness, cv2.LINE_AA
            )
        elif kind == 2:  # elongated filled ellipse
            major = float(rng.uniform(8.0, 50.0))
            minor = major / float(rng.uniform(3.0, 6.0))
            axes = (int(round(major)), max(1, int(round(minor))))
            angle = float(rng.uniform(0.0, 180.0))
            cv2.ellipse(image, (int(cx), int(cy)), axes, angle, 0.0, 360.0, color, -1, cv2.LINE_AA)
        else:  # thin rectangle outline
            w, h = rng.uniform(10.0, 80.0, size=2)
            p0 = (int(cx - w / 2), int(cy - h / 2))
            p1 = (int(cx + w / 2), int(cy + h / 2))
            cv2.rectangle(image, p0, p1, color, 1, cv2.LINE_8)


def _shape_polygon(class_name: str, side: float, rng: np.random.Generator) -> Optional[np.ndarray]:
    """Vertices (K, 2) relative to the centre, scaled so the larger box side is ``side``."""
    if class_name == "square":
        angle = 0.0 if rng.random() < 0.5 else rng.uniform(0.0, 0.5 * np.pi)
        offsets = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], dtype=np.float64)
    elif class_name == "triangle":
        angle = rng.uniform(0.0, 2.0 * np.pi)
        t = np.array([0.0, 2.0, 4.0]) * np.pi / 3.0
        offsets = np.stack([np.cos(t), np.sin(t)], axis=1)
    else:
        return None
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    points = offsets @ rot.T
    extent = (points.max(axis=0) - points.min(axis=0)).max()
    points = points * (side / extent)
    return points - 0.5 * (points.max(axis=0) + points.min(axis=0))  # centre the box


def _draw_shape_mask(
    mask: np.ndarray,
    class_name: str,
    center: np.ndarray,
    side: float,
    polygon: Optional[np.ndarray],
) -> None:
    """Rasterize one shape (value 1) into the zeroed uint8 ``mask`` in place."""
    c = (int(round(center[0] * _ONE)), int(round(center[1] * _ONE)))
    if class_name == "circle":
        cv2.circle(mask, c, int(round(0.5 * side * _ONE)), 1, -1, cv2.LINE_8, _SHIFT)
    elif class_name == "ring":
        thickness = max(2, int(round(0.14 * side)))
        radius = 0.5 * side - 0.5 * thickness
        cv2.circle(mask, c, int(round(radius * _ONE)), 1, thickness, cv2.LINE_8, _SHIFT)
    else:
        pts = np.round((polygon + center) * _ONE).astype(np.int32)
        cv2.fillPoly(mask, [pts], 1, cv2.LINE_8, _SHIFT)


def _sample_sides(rng: np.random.Generator, count: int, height: int, width: int) -> np.ndarray:
    """Target box sides of ``count`` objects, at most one large one, sorted descending."""
    large_max = min(_LARGE_SIDE[1], 0.8 * min(height, width))
    medium_max = min(_MEDIUM_SIDE[1], 0.8 * min(height, width))
    scales = rng.choice(3, size=count, p=_SCALE_PROBS)
    if large_max < _LARGE_SIDE[0]:
        scales[scales == 2] = 1
    scales[np.flatnonzero(scales == 2)[1:]] = 1  # at most one large object per image
    if medium_max < _MEDIUM_SIDE[0]:
        scales[scales == 1] = 0
    lows = np.array([_SMALL_SIDE[0], _MEDIUM_SIDE[0], _LARGE_SIDE[0]])[scales]
    highs = np.array([_SMALL_SIDE[1], medium_max, large_max])[scales]
    return np.sort(rng.uniform(lows, highs))[::-1]


def render_synthetic_image(
    seed: int, split_index: int, image_index: int, height: int, width: int
) -> Tuple[np.ndarray, list]:
    """Draw one image and its objects.

    Returns:
        image: (H, W, 3) uint8, BGR channel order (as written by cv2).
        objects: list of dicts with ``category_id`` (1-based, order of
            ``SYNTHETIC_CLASSES``), ``bbox`` [x, y, w, h] ints (pixel-edge coordinates),
            ``area`` (= w * h) and ``visible_fraction``.
    """
    rng = np.random.default_rng([seed, split_index, image_index])
    image = _background(rng, height, width)
    _draw_clutter(rng, image, int(rng.integers(3, 10)), thin_only=False)

    max_objects = max(2, int(round(_MAX_OBJECTS_PER_256SQ * height * width / 256.0**2)))
    num_objects = 0
    if image_index % _EMPTY_IMAGE_PERIOD != _EMPTY_IMAGE_PERIOD - 1:
        num_objects = int(rng.integers(2, max_objects + 1))
    sides = _sample_sides(rng, num_objects, height, width)

    owner = np.full((height, width), -1, dtype=np.int16)  # index of the visible object
    mask = np.zeros((height, width), dtype=np.uint8)
    placed = []  # (class_id, crop slices, full pixel count)
    visible = []  # visible pixel count per placed object
    for side in sides:
        class_id = int(rng.integers(0, len(SYNTHETIC_CLASSES)))
        class_name = SYNTHETIC_CLASSES[class_id]
        polygon = _shape_polygon(class_name, side, rng)
        half = 0.5 * side + 1.0
        for _ in range(15):  # placement attempts
            center = rng.uniform([half, half], [width - half, height - half])
            y0, x0 = (max(0, int(np.floor(v - half)) - 1) for v in center[::-1])
            y1 = min(height, int(np.ceil(center[1] + half)) + 2)
            x1 = min(width, int(np.ceil(center[0] + half)) + 2)
            crop = (slice(y0, y1), slice(x0, x1))
            mask[crop] = 0
            _draw_shape_mask(mask, class_name, center, side, polygon)
            shape = mask[crop].astype(bool)
            full = int(shape.sum())
            if full == 0:
                continue
            covered = owner[crop][shape]
            hidden = np.bincount(covered[covered >= 0], minlength=len(placed))
            remaining = np.asarray(visible, dtype=np.int64) - hidden
            fulls = np.array([p[2] for p in placed], dtype=np.int64)
            if np.all(remaining >= _MIN_VISIBLE_FRACTION * fulls):
                break
        else:
            continue  # no acceptable position: drop this object
        owner[crop][shape] = len(placed)
        visible = list(remaining) + [full]
        placed.append((class_id, crop, full))
        # flat colour that stands out from the local background
        region_mean = image[crop][shape].mean(axis=0)
        color = rng.uniform(0.0, 255.0, size=3)
        for _ in range(8):
            if np.linalg.norm(color - region_mean) > 90.0:
                break
            color = rng.uniform(0.0, 255.0, size=3)
        else:
            color = np.where(region_mean > 127.5, 0.0, 255.0)
        image[crop][shape] = color.astype(np.float32)

    _draw_clutter(rng, image, int(rng.integers(0, 4)), thin_only=True)
    image = cv2.GaussianBlur(image, (0, 0), 0.7)
    image += rng.normal(0.0, rng.uniform(3.0, 10.0), size=image.shape).astype(np.float32)
    image = np.clip(np.round(image), 0, 255).astype(np.uint8)

    objects = []
    for index, (class_id, crop, full) in enumerate(placed):
        ys, xs = np.nonzero(owner[crop] == index)
        x0, y0 = crop[1].start + int(xs.min()), crop[0].start + int(ys.min())
        w, h = int(xs.max() - xs.min()) + 1, int(ys.max() - ys.min()) + 1
        objects.append(
            {
                "category_id": class_id + 1,
                "bbox": [x0, y0, w, h],
                "area": w * h,
                "visible_fraction": round(float(visible[index]) / full, 3),
            }
        )
    return image, objects


def _write_dataset(root: str, params: Dict[str, object]) -> None:
    height, width = params["image_size"]
    categories = [
        {"id": i + 1, "name": name, "supercategory": "shape"}
        for i, name in enumerate(SYNTHETIC_CLASSES)
    ]
    os.makedirs(os.path.join(root, "annotations"))
    for split_index, split in enumerate(SPLITS):
        os.makedirs(os.path.join(root, split))
        images, annotations = [], []
        for image_index in range(params[f"num_{split}"]):
            image, objects = render_synthetic_image(
                params["seed"], split_index, image_index, height, width
            )
            file_name = f"{image_index:06d}.png"
            if not cv2.imwrite(os.path.join(root, split, file_name), image):
                raise OSError(f"cv2.imwrite failed for {os.path.join(root, split, file_name)}")
            image_id = image_index + 1
            images.append(
                {"id": image_id, "file_name": file_name, "height": height, "width": width}
            )
            for obj in objects:
                annotations.append(
                    {"id": len(annotations) + 1, "image_id": image_id, "iscrowd": 0, **obj}
                )
        coco = {
            "info": {
                "description": "kd_core synthetic shapes ({} split)".format(split),
                "version": str(SYNTHETIC_GENERATOR_VERSION),
                "generator": _GENERATOR_NAME,
                "params": params,
            },
            "licenses": [],
            "categories": categories,
            "images": images,
            "annotations": annotations,
        }
        with open(os.path.join(root, "annotations", f"instances_{split}.json"), "w") as f:
            json.dump(coco, f)


def box_size_statistics(json_file: str) -> Dict[str, int]:
    """Counts of a COCO json: images, empty images, boxes and COCO small/medium/large boxes.

    Sizes use the ``area`` field with COCO's thresholds (< 32^2, < 96^2, >= 96^2).
    """
    with open(json_file) as f:
        coco = json.load(f)
    areas = np.array([a["area"] for a in coco["annotations"]], dtype=np.float64)
    with_boxes = {a["image_id"] for a in coco["annotations"]}
    return {
        "images": len(coco["images"]),
        "empty_images": sum(1 for im in coco["images"] if im["id"] not in with_boxes),
        "boxes": int(areas.size),
        "small": int((areas < 32**2).sum()),
        "medium": int(((areas >= 32**2) & (areas < 96**2)).sum()),
        "large": int((areas >= 96**2).sum()),
    }
