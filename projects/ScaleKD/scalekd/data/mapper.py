"""Dataset mapper for a high-resolution teacher: the student's augmented image plus the same view at
``teacher_scale`` times its size for the teacher, rendered from the original image."""
from typing import Optional, Tuple

import numpy as np
import torch
from detectron2.data import DatasetMapper
from detectron2.data.transforms import (
    BlendTransform,
    ColorTransform,
    CropTransform,
    HFlipTransform,
    NoOpTransform,
    PadTransform,
    PILColorTransform,
    ResizeTransform,
    TransformList,
    VFlipTransform,
)
from PIL import Image

__all__ = ["ScaleKDDatasetMapper", "make_teacher_image", "teacher_view_transforms", "TEACHER_IMAGE_KEY"]

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


def _scaled_size(h: int, w: int, scale: float) -> Tuple[int, int]:
    return int(h * scale + 0.5), int(w * scale + 0.5)


def _on_grid(values, factor: float):
    """``values`` times ``factor`` as ints, or None where one of them is off the integer grid."""
    scaled = [v * factor for v in values]
    if any(abs(v - round(v)) > 1e-6 for v in scaled):
        return None
    return [int(round(v)) for v in scaled]


def teacher_view_transforms(transforms: TransformList, image_hw: Tuple[int, int], scale: float) -> Optional[TransformList]:
    """The student's augmentation, replayed on the original image for a view ``scale`` times larger.

    Args:
        transforms: what the student's augmentations did to the original image (resizes, flips,
            crops, pads and pixel-wise colour changes).
        image_hw: (H, W) of the original image.
        scale: the teacher's size factor.
    Returns:
        Transforms that take the original image to (round(H_s * scale), round(W_s * scale)), H_s x W_s
        being the student's image, with the student's resizes retargeted, its flips, crops and pads
        moved to the teacher's pixel grid (pixel (x, y) of the student's image is pixel
        (x * scale, y * scale) of the teacher's), and a final resize where the pipeline has none.
        None where a transform cannot be replayed that way (a crop or pad off the scaled grid, a
        shape-dependent blend, any other geometric transform): the caller then resizes the
        student's image instead.
    """
    h, w = image_hw  # the teacher image's size at this point of the pipeline
    sh, sw = image_hw  # the student image's size
    factor = 1.0  # teacher / student pixel ratio at this point
    out = []
    for t in transforms.transforms:
        if isinstance(t, NoOpTransform):
            continue
        if isinstance(t, ResizeTransform):
            sh, sw = t.new_h, t.new_w
            new_h, new_w = _scaled_size(sh, sw, scale)
            out.append(ResizeTransform(h, w, new_h, new_w, t.interp))
            h, w, factor = new_h, new_w, scale
        elif isinstance(t, HFlipTransform):
            out.append(HFlipTransform(w))
        elif isinstance(t, VFlipTransform):
            out.append(VFlipTransform(h))
        elif isinstance(t, CropTransform):
            # a crop window may reach past the image (e.g. FixedSizeCrop(pad=False)): numpy slicing clips it
            ch, cw = min(t.h, sh - t.y0), min(t.w, sw - t.x0)
            box = _on_grid((t.x0, t.y0, cw, ch), factor)
            if box is None:
                return None
            out.append(CropTransform(*box, w, h))
            h, w, sh, sw = box[3], box[2], ch, cw
        elif isinstance(t, PadTransform):
            pads = _on_grid((t.x0, t.y0, t.x1, t.y1), factor)
            if pads is None:
                return None
            out.append(PadTransform(*pads, w, h, t.pad_value, t.seg_pad_value))
            h, w = h + pads[1] + pads[3], w + pads[0] + pads[2]
            sh, sw = sh + t.y0 + t.y1, sw + t.x0 + t.x1
        elif isinstance(t, (ColorTransform, PILColorTransform)) or (
            isinstance(t, BlendTransform) and np.ndim(t.src_image) <= 1
        ):
            out.append(t)  # pixel-wise (a scalar or per-channel blend): the same change at any size
        else:
            return None
    target = _scaled_size(sh, sw, scale)
    if (h, w) != target:
        out.append(ResizeTransform(h, w, *target, Image.BILINEAR))
    return TransformList(out)


class _RecordingAugmentations:
    """Wraps the mapper's augmentations (any other attribute is the wrapped object's) and keeps the
    original image and the transforms of the last call until :meth:`pop` takes them. Each dataloader
    worker has its own mapper and calls it for one image at a time; a mapper shared by several
    threads would need one recorder per thread."""

    def __init__(self, augmentations):
        self.augmentations = augmentations
        self._last = None

    def __call__(self, aug_input):
        image = aug_input.image
        transforms = self.augmentations(aug_input)
        self._last = (image, transforms)
        return transforms

    def pop(self):
        """(original image (H, W, C), TransformList) of the last call, or None; forgets them."""
        last, self._last = self._last, None
        return last

    def __getattr__(self, name):
        if name == "augmentations":  # not set yet (e.g. while unpickling)
            raise AttributeError(name)
        return getattr(self.augmentations, name)

    def __repr__(self):
        return repr(self.augmentations)


class ScaleKDDatasetMapper(DatasetMapper):
    """:class:`DatasetMapper` that also stores ``teacher_image``: the student's augmented view
    (augmentations sampled once, shared with the student) at ``teacher_scale`` times its size.

    The teacher's image is rendered from the original image with the student's transforms
    retargeted to the larger size (:func:`teacher_view_transforms`), so a student view smaller than
    the original (e.g. a low-resolution student) leaves the teacher the original's detail instead of
    an upsampled copy of the student's pixels. Where the transforms cannot be replayed that way the
    student's image is resized (:func:`make_teacher_image`).

    Args:
        is_train, **kwargs: as for :class:`DatasetMapper` (augmentations, image_format, ...).
        teacher_scale: 2.0 for ScaleKD's high-resolution teacher; 1.0 = "same resolution" mode
            (no extra key unless the teacher needs another channel order).
        teacher_image_format: the teacher's input format ("BGR"/"RGB"); None = same as
            ``image_format``. E.g. an RGB torchvision-initialised student with an MSRA (BGR) teacher.
        teacher_image_key: dataset-dict key of the teacher image.
        render_teacher_from_original: True (default): render the teacher's view from the original
            image as above; False: always resize the student's augmented image (the teacher gets the
            student's pixels upsampled; for ablations and for pipelines that should not be replayed).
    """

    def __init__(
        self,
        is_train: bool = True,
        *,
        teacher_scale: float = 2.0,
        teacher_image_format: Optional[str] = None,
        teacher_image_key: str = TEACHER_IMAGE_KEY,
        render_teacher_from_original: bool = True,
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
        self.render_teacher_from_original = bool(render_teacher_from_original)
        self._flip_channels = teacher_image_format != self.image_format
        if self.render_teacher_from_original:
            self.augmentations = _RecordingAugmentations(self.augmentations)

    @property
    def adds_teacher_image(self) -> bool:
        return self.teacher_scale != 1.0 or self._flip_channels

    def __call__(self, dataset_dict):
        out = super().__call__(dataset_dict)
        recorded = self.augmentations.pop() if isinstance(self.augmentations, _RecordingAugmentations) else None
        if self.adds_teacher_image:
            out[self.teacher_image_key] = self._teacher_image(out["image"], recorded)
        return out

    def _teacher_image(self, student_image: torch.Tensor, recorded) -> torch.Tensor:
        """(C, H', W') uint8 teacher image for the (C, H, W) student image; ``recorded``: the
        original image and the student's transforms of this call (None: resize the student's image)."""
        if self.teacher_scale == 1.0 or recorded is None:
            return make_teacher_image(student_image, self.teacher_scale, self._flip_channels)
        original, student_transforms = recorded
        target = _scaled_size(*student_image.shape[-2:], self.teacher_scale)
        transforms = teacher_view_transforms(student_transforms, original.shape[:2], self.teacher_scale)
        hwc = None if transforms is None else transforms.apply_image(original)
        if hwc is None or hwc.shape[:2] != target:
            return make_teacher_image(student_image, self.teacher_scale, self._flip_channels)
        if self._flip_channels:
            hwc = hwc[:, :, ::-1]
        return torch.as_tensor(np.ascontiguousarray(hwc.transpose(2, 0, 1)))
