"""Tests of the VisDrone-DET loader and VisDroneEvaluator on a tiny dataset written here."""

import numpy as np
import pytest
import torch
import cv2
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import Boxes, BoxMode, Instances

from kd_core.data import VISDRONE_CLASSES, VisDroneAnnotationError, load_visdrone, register_visdrone
from kd_core.evaluation import VisDroneEvaluator, ignored_fraction

# image stem -> (height, width, annotation text); category 1 pedestrian, 2 people, 3 bicycle,
# 4 car, 9 bus; 0 = ignored region, 11 = others
IMAGES = {
    "0000001_00000_d_0000001": (
        90,
        120,
        "10,10,20,30,1,1,0,0\n"  # pedestrian
        "50,20,30,20,1,4,1,2\n"  # car (truncation 1, occlusion 2)
        "0,60,40,30,0,0,0,0\n"  # ignored region x 0..40, y 60..90
        "70,50,10,10,1,11,0,0\n"  # others: not ground truth
        "5,65,10,10,1,4,0,0\n",  # car inside the ignored region: not evaluated
    ),
    "0000002_00000_d_0000002": (
        80,
        100,
        "5,5,30,30,1,9,0,0,\n"  # bus (trailing comma, as in some VisDrone files)
        "\n"
        "40,40,20,10,0,2,0,0\n"  # people with score 0: ignore flag -> iscrowd
        "60,10,0,5,1,3,0,0\n",  # zero-size bicycle: dropped
    ),
    "0000003_00000_d_0000003": (64, 64, ""),  # no object
}


@pytest.fixture
def visdrone_dirs(tmp_path):
    image_dir, annotation_dir = tmp_path / "images", tmp_path / "annotations"
    image_dir.mkdir()
    annotation_dir.mkdir()
    for stem, (height, width, text) in IMAGES.items():
        cv2.imwrite(str(image_dir / f"{stem}.jpg"), np.full((height, width, 3), 90, np.uint8))
        (annotation_dir / f"{stem}.txt").write_text(text)
    return image_dir, annotation_dir


@pytest.fixture
def visdrone_name(visdrone_dirs, request):
    name = f"kd_test_visdrone_{request.node.name}"
    assert register_visdrone(name, *visdrone_dirs)
    yield name
    DatasetCatalog.remove(name)
    MetadataCatalog.remove(name)


def test_loader_output(visdrone_dirs):
    dicts = load_visdrone(*map(str, visdrone_dirs))
    assert [d["image_id"] for d in dicts] == [0, 1, 2]
    assert [(d["height"], d["width"]) for d in dicts] == [(90, 120), (80, 100), (64, 64)]
    assert dicts[0]["file_name"].endswith("0000001_00000_d_0000001.jpg")

    first = dicts[0]["annotations"]
    assert [a["category_id"] for a in first] == [0, 3, 3]  # pedestrian, car, car; "others" dropped
    assert [a["bbox"] for a in first] == [[10, 10, 20, 30], [50, 20, 30, 20], [5, 65, 10, 10]]
    assert all(a["bbox_mode"] == BoxMode.XYWH_ABS and a["iscrowd"] == 0 for a in first)
    assert (first[1]["truncation"], first[1]["occlusion"]) == (1, 2)
    np.testing.assert_array_equal(dicts[0]["ignore_regions"], [[0, 60, 40, 90]])
    assert dicts[0]["ignore_regions"].dtype == np.float32

    second = dicts[1]["annotations"]
    assert [(VISDRONE_CLASSES[a["category_id"]], a["iscrowd"]) for a in second] == [
        ("bus", 0),
        ("people", 1),
    ]
    assert dicts[1]["ignore_regions"].shape == (0, 4)
    assert dicts[2]["annotations"] == []


@pytest.mark.parametrize(
    "line, problem",
    [
        ("1,2,-3,4,1,4,0,0", "negative box size"),
        ("1,2,3,4,1,12,0,0", "category 12 is not an integer in [0, 11]"),
        ("1,2,3,4,1", "expected 8 comma-separated values"),
        ("1,2,3,x,1,4,0,0", "non-numeric value"),
    ],
)
def test_malformed_annotation_is_reported(visdrone_dirs, line, problem):
    image_dir, annotation_dir = visdrone_dirs
    txt = annotation_dir / "0000002_00000_d_0000002.txt"
    txt.write_text("5,5,30,30,1,9,0,0\n" + line + "\n")
    with pytest.raises(VisDroneAnnotationError) as info:
        load_visdrone(str(image_dir), str(annotation_dir))
    assert f"{txt}, line 2" in str(info.value) and problem in str(info.value)


def test_missing_annotation_file(visdrone_dirs):
    image_dir, annotation_dir = visdrone_dirs
    (annotation_dir / "0000003_00000_d_0000003.txt").unlink()
    with pytest.raises(FileNotFoundError, match="0000003_00000_d_0000003.txt"):
        load_visdrone(str(image_dir), str(annotation_dir))


def test_register_visdrone(visdrone_name, visdrone_dirs):
    meta = MetadataCatalog.get(visdrone_name)
    assert meta.thing_classes == list(VISDRONE_CLASSES) and meta.evaluator_type == "visdrone"
    assert meta.thing_dataset_id_to_contiguous_id[10] == 9
    assert register_visdrone(visdrone_name, *visdrone_dirs)  # idempotent
    with pytest.raises(ValueError, match="replace=True"):
        register_visdrone(visdrone_name, visdrone_dirs[0], visdrone_dirs[0])
    assert len(DatasetCatalog.get(visdrone_name)) == 3


def test_ignored_fraction():
    regions = np.array([[0, 0, 10, 10], [5, 0, 20, 10]], dtype=np.float32)  # union x 0..20, y 0..10
    boxes = np.array(
        [[2, 2, 6, 6], [15, 5, 25, 15], [30, 30, 40, 40], [18, 0, 22, 10]], dtype=np.float64
    )
    np.testing.assert_allclose(ignored_fraction(boxes, regions, 50, 50), [1.0, 0.25, 0.0, 0.5])
    assert ignored_fraction(boxes, np.zeros((0, 4)), 50, 50).tolist() == [0.0] * 4


def _prediction(image_size, boxes_xyxy, classes, scores=None):
    instances = Instances(image_size)
    instances.pred_boxes = Boxes(torch.tensor(boxes_xyxy, dtype=torch.float32).reshape(-1, 4))
    instances.pred_classes = torch.tensor(classes, dtype=torch.int64)
    instances.scores = torch.tensor(
        scores if scores is not None else [0.9] * len(classes), dtype=torch.float32
    )
    return {"instances": instances}


def _evaluate(name, extra_first_image=((), ()), drop_bus=False):
    """Perfect detections of the evaluated boxes, plus extra (box, class) ones on image 0."""
    evaluator = VisDroneEvaluator(name, distributed=False)
    evaluator.reset()
    boxes0 = [[10, 10, 30, 40], [50, 20, 80, 40]] + list(extra_first_image[0])
    classes0 = [0, 3] + list(extra_first_image[1])
    scores0 = [0.8, 0.8] + [0.95] * len(extra_first_image[1])  # extras outrank the true boxes
    bus = ([], []) if drop_bus else ([[5, 5, 35, 35]], [8])
    evaluator.process(
        [{"image_id": 0}, {"image_id": 1}, {"image_id": 2}],
        [
            _prediction((90, 120), boxes0, classes0, scores0),
            _prediction((80, 100), *bus),
            _prediction((64, 64), [], []),
        ],
    )
    return evaluator.evaluate()["bbox"]


def test_perfect_prediction_scores_100(visdrone_name):
    result = _evaluate(visdrone_name)
    for key in ("AP", "AP50", "AP75", "APs", "AR1", "AR10", "AR100", "AR500"):
        assert result[key] == pytest.approx(100.0), key
    assert np.isnan(result["APm"]) and np.isnan(result["APl"])  # all boxes are small
    assert result["AP-car"] == pytest.approx(100.0) and np.isnan(result["AP-truck"])


def test_detections_in_ignored_region_are_not_false_positives(visdrone_name):
    # confident detections in the ignored region x 0..40, y 60..90 of image 0: a car on the
    # unevaluated car, a pedestrian fully inside, a car exactly half inside
    inside = ([[5, 65, 15, 75], [0, 70, 40, 90], [20, 50, 40, 70]], [3, 0, 3])
    assert _evaluate(visdrone_name, inside)["AP"] == pytest.approx(100.0)
    # control: the same confident false car outside the region lowers AP
    outside = ([[90, 60, 110, 80]], [3])
    assert _evaluate(visdrone_name, outside)["AP"] < 99.0
    # a missed ground-truth box does lower recall (the test can fail)
    assert _evaluate(visdrone_name, drop_bus=True)["AR500"] < 99.0


def test_detection_on_ignore_flagged_box_is_not_false_positive(visdrone_name):
    evaluator = VisDroneEvaluator(visdrone_name, distributed=False)
    evaluator.process(
        [{"image_id": 0}, {"image_id": 1}],
        [
            _prediction((90, 120), [[10, 10, 30, 40], [50, 20, 80, 40]], [0, 3]),
            _prediction((80, 100), [[5, 5, 35, 35], [40, 40, 60, 50]], [8, 1], [0.5, 0.99]),
        ],
    )
    result = evaluator.evaluate()["bbox"]
    assert result["AP"] == pytest.approx(100.0) and np.isnan(result["AP-people"])
