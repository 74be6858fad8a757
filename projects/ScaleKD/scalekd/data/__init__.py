from .mapper import TEACHER_IMAGE_KEY, ScaleKDDatasetMapper, make_teacher_image

__all__ = ["ScaleKDDatasetMapper", "make_teacher_image", "TEACHER_IMAGE_KEY"]
