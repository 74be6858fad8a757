"""SubsetCOCOEvaluator scores only the evaluated images; COCOEvaluator scores the whole file."""

import json

import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation import COCOEvaluator
from detectron2.structures import Boxes, BoxMode, Instances

from kd_core.data import first_images, register_validated_coco_instances
from kd_core.evaluation import SubsetCOCOEvaluator

NAME = "kd_test_subset_eval"


@pytest.fixture
def four_image_dataset(tmp_path):
    images = [{"id": i, "file_name": f"{i}.jpg", "height": 64, "width": 64} for i in (1, 2, 3, 4)]
    annotations = [
        {
            "id": i,
            "image_id": i,
            "category_id": 7,
            "bbox": [4.0 * i, 8.0, 20.0, 24.0],
            "area": 480.0,
            "iscrowd": 0,
        }
        for i in (1, 2, 3, 4)
    ]
    categories = [{"id": 7, "name": "cell"}]
    json_file = tmp_path / "instances_four.json"
    json_file.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    register_validated_coco_instances(NAME, {}, str(json_file), str(tmp_path), replace=True)
    yield NAME
    DatasetCatalog.remove(NAME)
    MetadataCatalog.remove(NAME)


def _perfect_predictions(evaluator, dataset_dicts):
    """Feed ``evaluator`` one exact, confident prediction per ground-truth box."""
    evaluator.reset()
    for d in dataset_dicts:
        boxes = torch.tensor(
            [BoxMode.convert(a["bbox"], BoxMode.XYWH_ABS, BoxMode.XYXY_ABS) for a in d["annotations"]]
        )
        instances = Instances((d["height"], d["width"]))
        instances.pred_boxes = Boxes(boxes)
        instances.scores = torch.ones(len(boxes))
        instances.pred_classes = torch.zeros(len(boxes), dtype=torch.long)
        evaluator.process([{"image_id": d["image_id"]}], [{"instances": instances}])
    return evaluator.evaluate()["bbox"]["AP"]


def test_subset_evaluator_scores_only_evaluated_images(four_image_dataset):
    subset = first_images(four_image_dataset, num_images=2)
    assert [d["image_id"] for d in subset] == [1, 2]
    # Whole file: the two images never run count as misses.
    assert _perfect_predictions(COCOEvaluator(four_image_dataset, output_dir=None), subset) < 60.0
    assert _perfect_predictions(
        SubsetCOCOEvaluator(four_image_dataset, output_dir=None), subset
    ) == pytest.approx(100.0)
    # All images run: both agree.
    everything = first_images(four_image_dataset, num_images=4)
    assert _perfect_predictions(
        SubsetCOCOEvaluator(four_image_dataset, output_dir=None), everything
    ) == pytest.approx(100.0)
