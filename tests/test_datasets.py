"""Tests of kd_core.data: synthetic dataset, registration, validating COCO loader."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from detectron2.data import (
    DatasetCatalog,
    DatasetMapper,
    MetadataCatalog,
    get_detection_dataset_dicts,
)

import kd_core.data as kd_data
from kd_core.data import (
    SYNTHETIC_CLASSES,
    CocoAnnotationError,
    SyntheticDatasetError,
    box_size_statistics,
    generate_synthetic_dataset,
    load_validated_coco_json,
    register_kd_datasets,
    register_kd_synthetic,
    register_shared_datasets,
    register_validated_coco_instances,
)
from kd_core.data.builtin import SHARED_DATASETS

REPO_ROOT = Path(__file__).resolve().parents[1]
SYNTHETIC_NAMES = ("kd_synthetic_train", "kd_synthetic_val")
SMALL = dict(num_train=6, num_val=2, image_size=96)


@pytest.fixture
def restore_registration():
    """Put the kd_core.data registrations back as they were before the test."""
    meta = MetadataCatalog.get("kd_synthetic_train")
    synthetic_root = os.path.dirname(os.path.dirname(meta.json_file))
    synthetic_params = dict(meta.generation_params)
    shared = {
        n: MetadataCatalog.get(n).get("json_file")
        for n in SHARED_DATASETS
        if n in DatasetCatalog.list()
    }
    yield
    register_kd_synthetic(synthetic_root, replace=True, **synthetic_params)
    for name in SHARED_DATASETS:
        if name in DatasetCatalog.list() and name not in shared:
            DatasetCatalog.remove(name)
            MetadataCatalog.remove(name)
    if shared:
        json_rel = SHARED_DATASETS[next(iter(shared))][0]
        register_shared_datasets(next(iter(shared.values()))[: -len(json_rel) - 1], replace=True)


def _read_images(image_root):
    return {
        f: cv2.imread(os.path.join(image_root, f), cv2.IMREAD_UNCHANGED)
        for f in sorted(os.listdir(image_root))
    }


def test_generation_is_deterministic(tmp_path):
    a = generate_synthetic_dataset(tmp_path / "a", seed=3, **SMALL)
    b = generate_synthetic_dataset(tmp_path / "b", seed=3, **SMALL)
    c = generate_synthetic_dataset(tmp_path / "c", seed=4, **SMALL)
    for split in ("train", "val"):
        assert Path(a[f"{split}_json"]).read_bytes() == Path(b[f"{split}_json"]).read_bytes()
        images_a, images_b = _read_images(a[f"{split}_image_root"]), _read_images(
            b[f"{split}_image_root"]
        )
        assert list(images_a) == list(images_b) and len(images_a) == SMALL[f"num_{split}"]
        for name in images_a:
            assert np.array_equal(images_a[name], images_b[name])
            assert (Path(a[f"{split}_image_root"]) / name).read_bytes() == (
                Path(b[f"{split}_image_root"]) / name
            ).read_bytes()
    assert Path(a["train_json"]).read_bytes() != Path(c["train_json"]).read_bytes()
    images_c = _read_images(c["train_image_root"])
    assert not np.array_equal(
        _read_images(a["train_image_root"])["000000.png"], images_c["000000.png"]
    )


def test_default_dataset_speed_and_scale_distribution(tmp_path):
    start = time.perf_counter()
    paths = generate_synthetic_dataset(tmp_path / "default")
    elapsed = time.perf_counter() - start
    assert elapsed < 20.0, f"default generation took {elapsed:.1f} s"

    stats = box_size_statistics(paths["train_json"])
    assert stats["images"] == 200 and stats["empty_images"] == 10
    assert stats["small"] / stats["boxes"] > 0.4
    assert stats["small"] > stats["medium"] > stats["large"] > 0
    assert box_size_statistics(paths["val_json"])["images"] == 50

    coco = json.loads(Path(paths["train_json"]).read_text())
    assert [c["name"] for c in coco["categories"]] == list(SYNTHETIC_CLASSES)
    boxes = np.array([a["bbox"] for a in coco["annotations"]], dtype=np.float64)
    assert (boxes[:, 2:] > 0).all()
    assert (
        (boxes[:, :2] >= 0).all()
        and (boxes[:, 0] + boxes[:, 2] <= 256).all()
        and (boxes[:, 1] + boxes[:, 3] <= 256).all()
    )
    assert [a["area"] for a in coco["annotations"]] == (boxes[:, 2] * boxes[:, 3]).tolist()
    assert {a["iscrowd"] for a in coco["annotations"]} == {0}
    assert {a["category_id"] for a in coco["annotations"]} == {1, 2, 3, 4}
    visible = np.array([a["visible_fraction"] for a in coco["annotations"]])
    assert visible.min() >= 0.6 and (visible < 1.0).sum() > 20  # some partial occlusion
    stamp = json.loads(Path(paths["stamp_file"]).read_text())
    assert stamp["params"] == {"num_train": 200, "num_val": 50, "image_size": [256, 256], "seed": 0}


def test_registered_names_and_metadata():
    names = register_kd_datasets()  # second call (the first ran at import): a no-op
    assert set(SYNTHETIC_NAMES) <= set(names)
    for name in SYNTHETIC_NAMES:
        meta = MetadataCatalog.get(name)
        assert meta.registered_by == "kd_core.data"  # not a name Detectron2 already had
        assert meta.thing_classes == list(SYNTHETIC_CLASSES)
        assert meta.evaluator_type == "coco"
        split = name.rsplit("_", 1)[1]
        assert meta.json_file.endswith(os.path.join("annotations", f"instances_{split}.json"))
        assert meta.image_root == os.path.join(
            os.path.dirname(os.path.dirname(meta.json_file)), split
        )
    with pytest.raises(ValueError, match="replace=True"):
        register_kd_synthetic(seed=123)  # same names, other parameters


def test_lazy_generation_on_first_get(restore_registration, monkeypatch, tmp_path):
    root = tmp_path / "lazy"
    monkeypatch.setenv("KD_SYNTHETIC_ROOT", str(root))
    register_kd_synthetic(replace=True, num_train=20, num_val=2, image_size=64)
    assert MetadataCatalog.get("kd_synthetic_train").json_file == str(
        root / "annotations" / "instances_train.json"
    )
    assert not root.exists()  # registration writes nothing

    dicts = DatasetCatalog.get("kd_synthetic_train")
    assert root.is_dir() and len(dicts) == 20
    stamp_mtime = (root / "kd_synthetic_stamp.json").stat().st_mtime_ns
    assert len(DatasetCatalog.get("kd_synthetic_val")) == 2
    assert (root / "kd_synthetic_stamp.json").stat().st_mtime_ns == stamp_mtime  # reused

    # image 19 has no box: kept with filter_empty=False, dropped with filter_empty=True
    assert dicts[19]["annotations"] == []
    assert len(get_detection_dataset_dicts(["kd_synthetic_train"], filter_empty=False)) == 20
    assert len(get_detection_dataset_dicts(["kd_synthetic_train"], filter_empty=True)) == 19

    mapper = DatasetMapper(is_train=True, augmentations=[], image_format="BGR")
    sample = mapper(dicts[0])
    assert tuple(sample["image"].shape) == (3, 64, 64)
    assert len(sample["instances"]) == len(dicts[0]["annotations"]) > 0


def test_import_writes_nothing(tmp_path):
    root = tmp_path / "never_written"
    env = dict(os.environ, KD_SYNTHETIC_ROOT=str(root), PYTHONPATH=str(REPO_ROOT))
    code = (
        "import kd_core.data\n"
        "from detectron2.data import MetadataCatalog\n"
        "print(MetadataCatalog.get('kd_synthetic_val').json_file)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(root / "annotations" / "instances_val.json")
    assert not root.exists()


def test_reuse_and_parameter_mismatch(tmp_path):
    root = tmp_path / "syn"
    paths = generate_synthetic_dataset(root, **SMALL)
    image = Path(paths["train_image_root"]) / "000000.png"
    mtime = image.stat().st_mtime_ns
    assert generate_synthetic_dataset(root, **SMALL) == paths
    assert image.stat().st_mtime_ns == mtime  # reused, not rewritten

    with pytest.raises(SyntheticDatasetError, match="overwrite") as info:
        generate_synthetic_dataset(root, seed=7, **SMALL)
    assert str(root) in str(info.value) and "'seed': 7" in str(info.value)
    assert image.stat().st_mtime_ns == mtime  # untouched

    generate_synthetic_dataset(root, seed=7, overwrite=True, **SMALL)
    assert json.loads(Path(paths["stamp_file"]).read_text())["params"]["seed"] == 7
    assert sorted(p.name for p in tmp_path.iterdir()) == ["syn"]  # no temporary leftovers

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("not a dataset")
    for overwrite in (False, True):
        with pytest.raises(SyntheticDatasetError, match="no kd_synthetic_stamp.json"):
            generate_synthetic_dataset(foreign, overwrite=overwrite, **SMALL)
    assert os.listdir(foreign) == ["notes.txt"]


def _valid_coco():
    return {
        "images": [{"id": 1, "file_name": "a.png", "height": 10, "width": 10}],
        "annotations": [
            {
                "id": 1,
                "image_id": 1,
                "category_id": 1,
                "bbox": [1, 1, 4, 4],
                "area": 16,
                "iscrowd": 0,
            }
        ],
        "categories": [{"id": 1, "name": "thing"}],
    }


def _with(change):
    data = _valid_coco()
    change(data)
    return json.dumps(data)


@pytest.mark.parametrize(
    "text, problem",
    [
        ('{"images": [', "not valid JSON"),
        (_with(lambda d: d.pop("images")), "missing top-level key(s) ['images']"),
        (_with(lambda d: d.pop("annotations")), "missing top-level key(s) ['annotations']"),
        (_with(lambda d: d.pop("categories")), "missing top-level key(s) ['categories']"),
        (
            _with(lambda d: d["annotations"][0].update(bbox=[1, 1, -3, 4])),
            "negative width or height",
        ),
        (_with(lambda d: d["annotations"][0].update(bbox=[1, 1, 3])), "expected 4 numbers"),
        (_with(lambda d: d["annotations"][0].update(category_id=9)), "category_id not in"),
        (_with(lambda d: d["annotations"][0].update(image_id=5)), "image ids not in"),
        (_with(lambda d: d["images"].append(dict(d["images"][0]))), "image ids are not unique"),
    ],
)
def test_corrupt_annotation_file_is_reported(tmp_path, text, problem):
    json_file = tmp_path / "instances_bad.json"
    json_file.write_text(text)
    with pytest.raises(CocoAnnotationError) as info:
        load_validated_coco_json(str(json_file), str(tmp_path))
    assert str(json_file) in str(info.value) and problem in str(info.value)


def test_corrupt_file_fails_when_dataset_is_loaded(tmp_path):
    json_file = tmp_path / "instances_bad.json"
    json_file.write_text(_with(lambda d: d["annotations"][0].update(bbox=[0, 0, 2, -1])))
    name = "kd_test_corrupt_coco"
    try:
        assert register_validated_coco_instances(name, {}, str(json_file), str(tmp_path))
        with pytest.raises(CocoAnnotationError, match="negative width or height"):
            DatasetCatalog.get(name)
        json_file.write_text(json.dumps(_valid_coco()))
        (record,) = DatasetCatalog.get(name)
        assert record["annotations"][0]["bbox"] == [1, 1, 4, 4]
        assert MetadataCatalog.get(name).thing_classes == ["thing"]
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    with pytest.raises(CocoAnnotationError, match="does not exist"):
        load_validated_coco_json(str(tmp_path / "missing.json"), str(tmp_path))


def _shared_root():
    root = os.environ.get("KD_DATASETS") or str(REPO_ROOT.parent / "shared" / "datasets")
    if not os.path.isdir(root):
        pytest.skip(f"shared datasets folder {root} does not exist (set KD_DATASETS)")
    return root


def test_shared_datasets_registered_from_env(restore_registration, monkeypatch):
    root = _shared_root()
    monkeypatch.setenv("KD_DATASETS", root)
    names = register_shared_datasets(replace=True)
    assert names == list(SHARED_DATASETS)
    expected = {
        "coco128_train": (128, 80),
        "coco128_val": (128, 80),
        "coco128_permissive": (33, 80),
        "bccd_train": (205, 3),
        "bccd_val": (87, 3),
        "bccd_test": (72, 3),
    }
    for name, (num_images, num_classes) in expected.items():
        meta = MetadataCatalog.get(name)
        assert meta.json_file.startswith(os.path.abspath(root)) and meta.evaluator_type == "coco"
        dicts = DatasetCatalog.get(name)  # load_coco_json must agree with the preset metadata
        assert len(dicts) == num_images and len(meta.thing_classes) == num_classes
        assert os.path.isfile(dicts[0]["file_name"])
    assert MetadataCatalog.get("bccd_val").thing_classes == ["RBC", "WBC", "Platelets"]
    assert MetadataCatalog.get("coco128_train").thing_dataset_id_to_contiguous_id[90] == 79
    assert sum(len(r["annotations"]) for r in DatasetCatalog.get("coco128_train")) == 939

    with pytest.raises(FileNotFoundError, match="not a directory"):
        register_shared_datasets(os.path.join(root, "does_not_exist"))
    assert kd_data.default_datasets_root() == os.path.abspath(root)


def test_empty_dataset_and_all_images_without_boxes_give_clear_errors(tmp_path):
    import json

    from detectron2.data import get_detection_dataset_dicts

    from kd_core.data import register_validated_coco_instances

    categories = [{"id": 1, "name": "thing"}]
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps({"images": [], "annotations": [], "categories": categories}))
    register_validated_coco_instances("kd_test_empty", {}, str(empty), str(tmp_path), replace=True)
    with pytest.raises(Exception, match="kd_test_empty"):
        get_detection_dataset_dicts("kd_test_empty")

    boxless = tmp_path / "boxless.json"
    images = [{"id": i, "file_name": f"{i}.jpg", "height": 32, "width": 32} for i in (1, 2)]
    boxless.write_text(json.dumps({"images": images, "annotations": [], "categories": categories}))
    register_validated_coco_instances("kd_test_boxless", {}, str(boxless), str(tmp_path), replace=True)
    with pytest.raises(Exception, match="kd_test_boxless"):
        get_detection_dataset_dicts("kd_test_boxless", filter_empty=True)  # nothing left to train on
    assert len(get_detection_dataset_dicts("kd_test_boxless", filter_empty=False)) == 2  # kept when asked
