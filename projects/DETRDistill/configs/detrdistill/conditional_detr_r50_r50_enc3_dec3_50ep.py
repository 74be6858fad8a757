# DETRDistill Table 4: a Conditional DETR R50 6/6 teacher -> a student with 3 encoder / 3 decoder layers.
# A student with fewer decoder layers learns from teacher stages grouped as in the paper's Fig. 5.
from ..conditional_detr.conditional_detr_r50_50ep import model as teacher
from .conditional_detr_r101_r50_50ep import dataloader, lr_multiplier, model, optimizer, train

model.teacher.model = teacher
model.teacher.weights = "./output/conditional_detr_r50_50ep/model_final.pth"
model.student.num_encoder_layers = 3
model.student.num_decoder_layers = 3
train.output_dir = "./output/detrdistill/conditional_detr_r50_r50_enc3_dec3_50ep"
