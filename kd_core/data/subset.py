"""A fixed subset of a registered dataset (overfitting checks, quick experiments)."""
from typing import List, Sequence, Union

from detectron2.data import get_detection_dataset_dicts

__all__ = ["first_images"]


def first_images(names: Union[str, Sequence[str]], num_images: int, filter_empty: bool = True) -> List[dict]:
    """The first ``num_images`` dataset dicts of ``names`` (after Detectron2's usual filtering).

    Usable in a LazyConfig in place of ``get_detection_dataset_dicts``:
    ``dataloader.train.dataset = L(first_images)(names="bccd_train", num_images=8)``. To evaluate on
    exactly those images, use the same call for ``dataloader.test`` together with
    ``kd_core.evaluation.SubsetCOCOEvaluator``: Detectron2's ``COCOEvaluator`` scores every image of
    the annotation file, so the images never run would count as misses.
    """
    if num_images <= 0:
        raise ValueError(f"num_images must be positive, got {num_images}.")
    dicts = get_detection_dataset_dicts(names, filter_empty=filter_empty)
    if len(dicts) < num_images:
        raise ValueError(f"{names} has {len(dicts)} images, fewer than the {num_images} asked for.")
    return dicts[:num_images]
