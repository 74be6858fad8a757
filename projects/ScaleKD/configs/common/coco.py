# COCO 1x training for ScaleKD: Detectron2's COCO loaders with the teacher image added by
# ScaleKDDatasetMapper, SGD, the 1x schedule (90k iterations at batch 16).
#   same-resolution mode: dataloader.train.mapper.teacher_scale=1.0 (the model follows it)
from kd_core.config import get_config
from scalekd import ScaleKDDatasetMapper

dataloader = get_config("common/data/coco.py").dataloader
dataloader.train.mapper._target_ = ScaleKDDatasetMapper
dataloader.train.mapper.teacher_scale = 2.0  # the student's image at 2x for the teacher
dataloader.train.mapper.teacher_image_format = None  # None = the student's image_format

optimizer = get_config("common/optim.py").SGD
lr_multiplier = get_config("common/schedule.py").lr_multiplier_1x
train = get_config("common/train.py").train
train.max_iter = 90000
train.init_checkpoint = "detectron2://ImageNetPretrained/MSRA/R-50.pkl"
