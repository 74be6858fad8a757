"""Dataset mapper for a high-resolution teacher: the student's augmented image plus the same image
resized by ``teacher_scale`` for the teacher."""
from typing import Optional

import numpy as np
import torch
from detectron2.data import DatasetMapper
from detectron2.data.transforms import ResizeTransform
from PIL import Image

__all__ = ["ScaleKDDatasetMapper", "make_teacher_image", "TEACHER_IMAGE_KEY"]

TEACHER_IMAGE_KEY = "teacher_image"
_FLIPPABLE_FORMATS = ("BGR", "RGB")


def make_teacher_image(image: torch.Tensor, scale: float, flip_channels: bool = False, interp=Image.BILINEAR) -> torch.Tensor:
    """The teacher's view of an augmented image.

    Args:
        image: (C, H, W) uint8 tensor, as produced by :class:`DatasetMapper`.
        scale: resize factor; the result is (C, round(H * scale), round(W * scale)).
        flip_channels: reverse the channel order (BGR <-> RGB) for a teacher trained on the other format.
        interp: PIL interpolation of the resize.
    Returns:
        (C, H', W') uint8 tensor.
    """
    if image.dim() != 3:
        raise ValueError(f"make_teacher_image expects a (C, H, W) image, got shape {tuple(image.shape)}.")
    if scale <= 0:
        raise ValueError(f"teacher scale must be > 0, got {scale}.")
    hwc = image.permute(1, 2, 0).numpy()
    h, w = hwc.shape[:2]
    new_h, new_w = int(h * scale + 0.5), int(w * scale + 0.5)
    if (new_h, new_w) != (h, w):
        hwc = ResizeTransform(h, w, new_h, new_w, interp).apply_image(hwc)
    if flip_channels:
        hwc = hwc[:, :, ::-1]
    return torch.as_tensor(np.ascontiguousarray(hwc.transpose(2, 0, 1)))


class ScaleKDDatasetMapper(DatasetMapper):
    """:class:`DatasetMapper` that also stores ``teacher_image``: the augmented image (augmentations
    applied once, shared with the student) resized by ``teacher_scale``.

    Args:
        is_train, **kwargs: as for :class:`DatasetMapper` (augmentations, image_format, ...).
        teacher_scale: 2.0 for ScaleKD's high-resolution teacher; 1.0 = "same resolution" mode
            (no extra key unless the teacher needs another channel order).
        teacher_image_format: the teacher's input format ("BGR"/"RGB"); None = same as
            ``image_format``. E.g. an RGB torchvision-initialised student with an MSRA (BGR) teacher.
        teacher_image_key: dataset-dict key of the teacher image.
    """

    def __init__(
        self,
        is_train: bool = True,
        *,
        teacher_scale: float = 2.0,
        teacher_image_format: Optional[str] = None,
        teacher_image_key: str = TEACHER_IMAGE_KEY,
        **kwargs,
    ):
        super().__init__(is_train, **kwargs)
        if teacher_scale <= 0:
            raise ValueError(f"teacher_scale must be > 0, got {teacher_scale}.")
        teacher_image_format = teacher_image_format or self.image_format
        if teacher_image_format != self.image_format and not {teacher_image_format, self.image_format} <= set(_FLIPPABLE_FORMATS):
            raise ValueError(
                f"ScaleKDDatasetMapper converts only between BGR and RGB, got image_format={self.image_format} "
                f"and teacher_image_format={teacher_image_format}."
            )
        self.teacher_scale = float(teacher_scale)
        self.teacher_image_format = teacher_image_format
        self.teacher_image_key = teacher_image_key
        self._flip_channels = teacher_image_format != self.image_format

    @property
    def adds_teacher_image(self) -> bool:
        return self.teacher_scale != 1.0 or self._flip_channels

    def __call__(self, dataset_dict):
        out = super().__call__(dataset_dict)
        if self.adds_teacher_image:
            out[self.teacher_image_key] = make_teacher_image(out["image"], self.teacher_scale, self._flip_channels)
        return out
