"""Registration of the datasets this toolkit uses, under fixed names.

Names (``DatasetCatalog`` / ``MetadataCatalog``):

* ``kd_synthetic_train``, ``kd_synthetic_val``: the embedded synthetic shapes dataset
  (``kd_core.data.synthetic``). Registration writes nothing; the files are generated
  the first time one of the two is requested from ``DatasetCatalog`` (and reused after).
  Location: ``register_kd_synthetic(root=...)``, else ``$KD_SYNTHETIC_ROOT``, else
  ``~/.cache/kd_toolkit/kd_synthetic``, resolved when the registration runs.
* ``coco128_train``, ``coco128_val`` (both ``instances_coco128.json``: the usual coco128
  practice), ``coco128_permissive``, ``bccd_train``, ``bccd_val``, ``bccd_test``: the real
  mini datasets of the shared datasets folder, taken from ``datasets_root``, else
  ``$KD_DATASETS``, else ``<repository>/../shared/datasets`` if that folder exists.
  Datasets whose files are absent there are not registered.

``import kd_core.data`` runs :func:`register_kd_datasets` once with the defaults, so the
environment variables are read at import time; to point a name elsewhere later, call
the register function again with ``replace=True``. Registering twice with the same
paths is a no-op; with other paths it raises unless ``replace=True``. Names that
something other than this module registered are left untouched.

All COCO-json datasets load through :func:`load_validated_coco_json`: a cheap structural
check of the json (one extra parse, no image reads) before Detectron2's
``load_coco_json``, so a corrupt file fails early with the file name and the problem.
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import load_coco_json
from detectron2.data.datasets.builtin_meta import COCO_CATEGORIES

from .synthetic import (
    DEFAULT_GENERATION_PARAMS,
    SPLITS,
    SYNTHETIC_CLASSES,
    generate_synthetic_dataset,
    normalize_generation_params,
    synthetic_dataset_paths,
)

__all__ = [
    "CocoAnnotationError",
    "DATASETS_ROOT_ENV",
    "check_dataset_files",
    "SHARED_DATASETS",
    "validate_coco_json",
    "load_validated_coco_json",
    "register_validated_coco_instances",
    "default_datasets_root",
    "register_kd_synthetic",
    "register_shared_datasets",
    "register_kd_datasets",
]

logger = logging.getLogger(__name__)

DATASETS_ROOT_ENV = "KD_DATASETS"
_REGISTERED_BY = "kd_core.data"  # metadata marker of the names this module registered

# name -> (json file, image folder, metadata key), relative to the shared datasets root
SHARED_DATASETS: Dict[str, tuple] = {
    "coco128_train": ("coco128/annotations/instances_coco128.json", "coco128/images", "coco"),
    "coco128_val": ("coco128/annotations/instances_coco128.json", "coco128/images", "coco"),
    "coco128_permissive": (
        "coco128/annotations/instances_coco128_permissive.json",
        "coco128/images",
        "coco",
    ),
    "bccd_train": ("bccd/annotations/instances_train.json", "bccd/images", "bccd"),
    "bccd_val": ("bccd/annotations/instances_val.json", "bccd/images", "bccd"),
    "bccd_test": ("bccd/annotations/instances_test.json", "bccd/images", "bccd"),
}


def _shared_metadata(key: str) -> dict:
    if key == "coco":  # the 80 thing classes with COCO's original (non-contiguous) ids
        things = [c for c in COCO_CATEGORIES if c["isthing"] == 1]
        return {
            "thing_classes": [c["name"] for c in things],
            "thing_colors": [c["color"] for c in things],
            "thing_dataset_id_to_contiguous_id": {c["id"]: i for i, c in enumerate(things)},
        }
    if key == "bccd":
        return {
            "thing_classes": ["RBC", "WBC", "Platelets"],
            "thing_dataset_id_to_contiguous_id": {1: 0, 2: 1, 3: 2},
        }
    raise KeyError(key)


# --------------------------------------------------------------------------- validation


class CocoAnnotationError(ValueError):
    """A COCO annotation file is missing, unreadable or structurally invalid."""


_IMAGE_KEYS = frozenset(("id", "file_name", "height", "width"))
_ANNOTATION_KEYS = frozenset(("id", "image_id", "category_id", "bbox"))


def _first_bad(entries: list, required: frozenset):
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict) or not required <= entry.keys():
            return index, entry
    return None


def validate_coco_json(json_file: str) -> None:
    """Check the structure of a COCO instances json; raise :class:`CocoAnnotationError`.

    Checks: the file exists and is valid JSON; top-level "images", "annotations" and
    "categories" lists (categories not empty); required keys of every image
    (id, file_name, height, width) and annotation (id, image_id, category_id, bbox);
    unique image / annotation / category ids; every ``bbox`` is 4 finite numbers
    ``[x, y, w, h]`` with ``w >= 0`` and ``h >= 0``; annotations refer to existing
    images and categories. Zero-size boxes are allowed (Detectron2 drops them when
    building ``Instances``) but logged as a warning. Every message names the file.
    """

    def fail(problem: str):
        raise CocoAnnotationError(f"Invalid COCO annotation file {json_file}: {problem}")

    if not os.path.isfile(json_file):
        raise CocoAnnotationError(f"COCO annotation file {json_file} does not exist")
    try:
        with open(json_file, "rb") as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        fail(f"not valid JSON ({e})")
    except (OSError, UnicodeDecodeError) as e:
        fail(f"cannot be read ({e})")
    if not isinstance(data, dict):
        fail(f"top level is a {type(data).__name__}, expected a JSON object")
    missing = [k for k in ("images", "annotations", "categories") if k not in data]
    if missing:
        fail(f"missing top-level key(s) {missing}")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data[key], list):
            fail(f'"{key}" is a {type(data[key]).__name__}, expected a list')
    images, annotations, categories = data["images"], data["annotations"], data["categories"]
    if not categories:
        fail('"categories" is empty')

    bad = _first_bad(categories, frozenset(("id", "name")))
    if bad is not None:
        fail(f"categories[{bad[0]}] lacks 'id' or 'name': {bad[1]!r}")
    bad = _first_bad(images, _IMAGE_KEYS)
    if bad is not None:
        fail(f"images[{bad[0]}] lacks one of {sorted(_IMAGE_KEYS)}: {bad[1]!r}")
    bad = _first_bad(annotations, _ANNOTATION_KEYS)
    if bad is not None:
        fail(f"annotations[{bad[0]}] lacks one of {sorted(_ANNOTATION_KEYS)}: {bad[1]!r}")

    for what, entries in (("category", categories), ("image", images), ("annotation", annotations)):
        ids = [e["id"] for e in entries]
        if len(set(ids)) != len(ids):
            dup = next(i for i, n in Counter(ids).items() if n > 1)
            fail(f"{what} ids are not unique (e.g. id {dup!r} appears more than once)")
    if not annotations:
        return

    try:
        boxes = np.asarray([a["bbox"] for a in annotations], dtype=np.float64)
    except (TypeError, ValueError):
        boxes = None
    if boxes is None or boxes.ndim != 2 or boxes.shape[1] != 4:
        for a in annotations:
            box = a["bbox"]
            ok = isinstance(box, (list, tuple)) and len(box) == 4
            if ok:
                try:
                    np.asarray(box, dtype=np.float64)
                except (TypeError, ValueError):
                    ok = False
            if not ok:
                fail(f"annotation id {a['id']} has bbox {box!r}, expected 4 numbers [x, y, w, h]")
        fail("bbox values are not all lists of 4 numbers [x, y, w, h]")
    if not np.isfinite(boxes).all():
        index = int(np.flatnonzero(~np.isfinite(boxes).all(axis=1))[0])
        fail(
            f"annotation id {annotations[index]['id']} has a non-finite bbox {annotations[index]['bbox']}"
        )
    negative = (boxes[:, 2] < 0) | (boxes[:, 3] < 0)
    if negative.any():
        index = int(np.flatnonzero(negative)[0])
        fail(
            f"{int(negative.sum())} box(es) with negative width or height, e.g. annotation id "
            f"{annotations[index]['id']} bbox {annotations[index]['bbox']} (format [x, y, w, h])"
        )
    empty = (boxes[:, 2] == 0) | (boxes[:, 3] == 0)
    if empty.any():
        logger.warning(
            "%s: %d zero-size box(es); they will be dropped in training.",
            json_file,
            int(empty.sum()),
        )

    image_ids = {im["id"] for im in images}
    unknown = [a for a in annotations if a["image_id"] not in image_ids]
    if unknown:
        fail(
            f'{len(unknown)} annotation(s) refer to image ids not in "images", e.g. annotation id '
            f"{unknown[0]['id']} with image_id {unknown[0]['image_id']!r}"
        )
    category_ids = {c["id"] for c in categories}
    unknown = [a for a in annotations if a["category_id"] not in category_ids]
    if unknown:
        fail(
            f'{len(unknown)} annotation(s) have a category_id not in "categories" '
            f"{sorted(category_ids)}, e.g. annotation id {unknown[0]['id']} with category_id "
            f"{unknown[0]['category_id']!r}"
        )


def load_validated_coco_json(
    json_file: str,
    image_root: str,
    dataset_name: Optional[str] = None,
    extra_annotation_keys: Optional[List[str]] = None,
) -> List[dict]:
    """:func:`validate_coco_json`, then Detectron2's ``load_coco_json`` (same arguments).

    Returns Detectron2 dataset dicts (boxes ``XYWH_ABS``); images without annotations are
    kept (``filter_empty`` in the data loader decides whether to drop them).
    """
    validate_coco_json(json_file)
    return load_coco_json(json_file, image_root, dataset_name, extra_annotation_keys)


# --------------------------------------------------------------------------- registration


def _register(name: str, loader: Callable[[], List[dict]], metadata: dict, replace: bool) -> bool:
    """Register ``name`` unless it is already registered with the same ``metadata``.

    Returns whether ``name`` is now registered by this module with ``metadata``.
    """
    if name in DatasetCatalog.list():
        current = MetadataCatalog.get(name)
        if current.get("registered_by") != _REGISTERED_BY:
            logger.warning(
                "Dataset '%s' is already registered by someone else; kd_core.data leaves it alone.",
                name,
            )
            return False
        if all(current.get(k) == v for k, v in metadata.items()):
            return True
        if not replace:
            changed = {k: (current.get(k), v) for k, v in metadata.items() if current.get(k) != v}
            raise ValueError(
                f"Dataset '{name}' is already registered with other settings "
                f"(key: (registered, requested)): {changed}. Pass replace=True to re-register it."
            )
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    DatasetCatalog.register(name, loader)
    MetadataCatalog.get(name).set(registered_by=_REGISTERED_BY, **metadata)
    return True


def register_validated_coco_instances(
    name: str, metadata: dict, json_file: str, image_root: str, *, replace: bool = False
) -> bool:
    """Detectron2's ``register_coco_instances`` with :func:`load_validated_coco_json`.

    Sets metadata ``json_file``, ``image_root``, ``evaluator_type="coco"`` plus
    ``metadata``. Idempotent for identical arguments; see the module docstring for
    ``replace``. Returns False if ``name`` belongs to someone else (left unchanged).
    """
    json_file, image_root = os.fspath(json_file), os.fspath(image_root)
    return _register(
        name,
        lambda: load_validated_coco_json(json_file, image_root, name),
        {"json_file": json_file, "image_root": image_root, "evaluator_type": "coco", **metadata},
        replace,
    )


def register_kd_synthetic(
    root: Optional[str] = None, *, replace: bool = False, **generation_params
) -> List[str]:
    """Register ``kd_synthetic_train`` / ``kd_synthetic_val`` (lazy: nothing is written now).

    Args:
        root: dataset directory; ``None`` = ``$KD_SYNTHETIC_ROOT`` or
            ``~/.cache/kd_toolkit/kd_synthetic``, read now.
        replace: re-register if the names point elsewhere or use other parameters.
        generation_params: ``num_train``, ``num_val``, ``image_size``, ``seed`` for
            :func:`generate_synthetic_dataset` (defaults: 200, 50, 256, 0). The first
            ``DatasetCatalog.get`` of either name generates both splits (or reuses a
            matching dataset; a mismatching one raises ``SyntheticDatasetError``).

    Returns the registered names. Metadata: ``thing_classes``, ``evaluator_type="coco"``,
    ``json_file``, ``image_root``, ``thing_dataset_id_to_contiguous_id`` and
    ``generation_params``.
    """
    unknown = set(generation_params) - set(DEFAULT_GENERATION_PARAMS)
    if unknown:
        raise TypeError(f"Unknown synthetic generation parameter(s) {sorted(unknown)}")
    params = {**DEFAULT_GENERATION_PARAMS, **generation_params}
    normalized = normalize_generation_params(**params)
    paths = synthetic_dataset_paths(root)
    names = []
    for split in SPLITS:
        name = f"kd_synthetic_{split}"
        json_file, image_root = paths[f"{split}_json"], paths[f"{split}_image_root"]

        def load(name=name, json_file=json_file, image_root=image_root):
            generate_synthetic_dataset(paths["root"], **params)
            return load_validated_coco_json(json_file, image_root, name)

        metadata = {
            "json_file": json_file,
            "image_root": image_root,
            "evaluator_type": "coco",
            "thing_classes": list(SYNTHETIC_CLASSES),
            "thing_dataset_id_to_contiguous_id": {i + 1: i for i in range(len(SYNTHETIC_CLASSES))},
            "generation_params": normalized,
        }
        if _register(name, load, metadata, replace):
            names.append(name)
    return names


def default_datasets_root() -> Optional[str]:
    """``$KD_DATASETS`` if set, else ``<repository>/../shared/datasets`` if it exists, else None."""
    env = os.environ.get(DATASETS_ROOT_ENV)
    if env:
        return os.path.abspath(os.path.expanduser(env))
    repository = Path(__file__).resolve().parent.parent.parent  # kd_core/data/builtin.py
    candidate = repository.parent / "shared" / "datasets"
    return str(candidate) if candidate.is_dir() else None


def register_shared_datasets(
    datasets_root: Optional[str] = None, *, replace: bool = False
) -> List[str]:
    """Register the real mini datasets (:data:`SHARED_DATASETS`) found under ``datasets_root``.

    ``datasets_root=None`` uses :func:`default_datasets_root`. An explicit root that does
    not exist raises ``FileNotFoundError``; a missing ``$KD_DATASETS`` folder is a
    warning. Returns the registered names (datasets whose json or image folder is absent
    are skipped).
    """
    if datasets_root is not None:
        datasets_root = os.path.abspath(os.path.expanduser(os.fspath(datasets_root)))
        if not os.path.isdir(datasets_root):
            raise FileNotFoundError(f"datasets_root {datasets_root} is not a directory")
    else:
        datasets_root = default_datasets_root()
        if datasets_root is None:
            return []
        if not os.path.isdir(datasets_root):
            logger.warning(
                "$%s=%s is not a directory; no shared dataset registered.",
                DATASETS_ROOT_ENV,
                datasets_root,
            )
            return []
    names = []
    for name, (json_rel, images_rel, meta_key) in SHARED_DATASETS.items():
        json_file = os.path.join(datasets_root, json_rel)
        image_root = os.path.join(datasets_root, images_rel)
        if not (os.path.isfile(json_file) and os.path.isdir(image_root)):
            logger.debug("Not registering %s: %s or %s is missing", name, json_file, image_root)
            continue
        if register_validated_coco_instances(
            name, _shared_metadata(meta_key), json_file, image_root, replace=replace
        ):
            names.append(name)
    return names


def register_kd_datasets(
    datasets_root: Optional[str] = None,
    *,
    synthetic_root: Optional[str] = None,
    replace: bool = False,
) -> List[str]:
    """Register the synthetic dataset and the shared real datasets; returns the names.

    Safe to call more than once. ``datasets_root`` / ``synthetic_root`` default to the
    environment variables ``KD_DATASETS`` / ``KD_SYNTHETIC_ROOT`` (see module docstring).
    """
    return register_kd_synthetic(synthetic_root, replace=replace) + register_shared_datasets(
        datasets_root, replace=replace
    )


def check_dataset_files(names) -> None:
    """Fail early, naming the dataset and the path, when a dataset a job will read is not registered, or
    its registered ``json_file`` or ``image_root`` does not exist: the job would otherwise fail only when its
    data loader is built (after the models, a teacher's download included), deep inside pycocotools.

    Args:
        names: dataset names (a string or a sequence of them), as ``get_detection_dataset_dicts`` takes.
    Datasets whose files are written on first use (the synthetic one: its metadata has
    ``generation_params``), metadata without those paths and remote paths (``scheme://...``) are not
    checked for files.
    """
    import difflib

    for name in [names] if isinstance(names, str) else list(names):
        registered = DatasetCatalog.list()
        if name not in registered:
            close = difflib.get_close_matches(name, registered, n=3)
            hint = f" Did you mean {' / '.join(close)}?" if close else ""
            raise KeyError(
                f"Dataset '{name}' is not registered.{hint} This toolkit registers kd_synthetic_*, and "
                f"coco128_* / bccd_* when their folders are under ${DATASETS_ROOT_ENV}; Detectron2 registers its "
                "builtin datasets (coco_2017_*, ...) under $DETECTRON2_DATASETS."
            )
        meta = MetadataCatalog.get(name)
        if meta.get("generation_params") is not None:
            continue
        for key in ("json_file", "image_root"):
            path = meta.get(key)
            if path and "://" not in str(path) and not os.path.exists(path):
                where = os.environ.get("DETECTRON2_DATASETS", "datasets")
                raise FileNotFoundError(
                    f"Dataset '{name}': its {key} {path} does not exist (working directory {os.getcwd()}). "
                    f"Detectron2's builtin datasets are read under $DETECTRON2_DATASETS (now '{where}'), this "
                    f"toolkit's real mini datasets under ${DATASETS_ROOT_ENV}."
                )
