# DETRDistill with Eq. 10 as the paper states it: the teacher-query group supervised with ground truth under
# the teacher's own per-stage assignment (the official code's intent; the code itself matches the group anew),
# decoded from the teacher's own reference points so that the assigned boxes are where its queries look.
from .deformable_detr_r101_r50_50ep import dataloader, lr_multiplier, model, optimizer, train

model.query_kd_assignment = "teacher"
model.query_kd_teacher_references = True
train.output_dir = "./output/detrdistill/deformable_detr_r101_r50_50ep_teacher_assignment"
