"""Datasets of the KD toolkit.

Importing this package registers, lazily (no file is written or read at import):

* ``kd_synthetic_train`` / ``kd_synthetic_val``: the embedded synthetic shapes dataset,
  generated on first ``DatasetCatalog.get`` under ``$KD_SYNTHETIC_ROOT`` or
  ``~/.cache/kd_toolkit/kd_synthetic`` (or explicitly:
  ``python tools/make_synthetic_dataset.py --output DIR``);
* ``coco128_train``, ``coco128_val``, ``coco128_permissive``, ``bccd_train``,
  ``bccd_val``, ``bccd_test``: the real mini datasets under ``$KD_DATASETS`` (else
  ``<repository>/../shared/datasets`` when it exists).

VisDrone-DET splits are registered on request with :func:`register_visdrone`.
See ``kd_core/data/builtin.py`` for the rules.
"""

from .builtin import (
    CocoAnnotationError,
    check_dataset_files,
    default_datasets_root,
    load_validated_coco_json,
    register_kd_datasets,
    register_kd_synthetic,
    register_shared_datasets,
    register_validated_coco_instances,
    validate_coco_json,
)
from .subset import first_images
from .synthetic import (
    SYNTHETIC_CLASSES,
    SyntheticDatasetError,
    box_size_statistics,
    default_synthetic_root,
    generate_synthetic_dataset,
    synthetic_dataset_paths,
)
from .visdrone import (
    VISDRONE_CLASSES,
    VisDroneAnnotationError,
    load_visdrone,
    parse_visdrone_annotation,
    register_visdrone,
)

register_kd_datasets()
