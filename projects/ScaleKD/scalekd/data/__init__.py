from .mapper import TEACHER_IMAGE_KEY, ScaleKDDatasetMapper, make_teacher_image, teacher_view_transforms

__all__ = ["ScaleKDDatasetMapper", "make_teacher_image", "teacher_view_transforms", "TEACHER_IMAGE_KEY"]
