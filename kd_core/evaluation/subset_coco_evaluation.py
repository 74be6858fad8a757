"""COCO evaluation restricted to the images that were actually run through the model."""
from detectron2.evaluation import COCOEvaluator

__all__ = ["SubsetCOCOEvaluator"]


class SubsetCOCOEvaluator(COCOEvaluator):
    """``COCOEvaluator`` that scores only the images it received predictions for.

    Detectron2's ``COCOEvaluator.evaluate()`` scores every image of the dataset's annotation file;
    an image the test loader never visited counts as all misses. When the test loader runs on a
    subset of a registered dataset (``kd_core.data.first_images``, a quick check on a few
    images), use this evaluator so the AP is the AP of that subset::

        dataloader.test.dataset = L(first_images)(names="bccd_train", num_images=8)
        dataloader.evaluator = L(SubsetCOCOEvaluator)(dataset_name="bccd_train")

    The image ids are taken from the predictions after they are gathered from all processes,
    so the restriction is the same under multi-process evaluation. An explicit
    ``evaluate(img_ids=...)`` still wins.
    """

    def _eval_predictions(self, predictions, img_ids=None):
        if img_ids is None:
            img_ids = sorted({p["image_id"] for p in predictions})
        super()._eval_predictions(predictions, img_ids=img_ids)
