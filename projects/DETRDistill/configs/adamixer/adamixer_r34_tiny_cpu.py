# Tiny AdaMixer with a ResNet-34 backbone: the teacher of the tiny DETRDistill pair (CPU).
#   python tools/lazyconfig_train_net.py --config-file projects/DETRDistill/configs/adamixer/adamixer_r34_tiny_cpu.py
from .adamixer_tiny_cpu import dataloader, lr_multiplier, model, optimizer, train

model.backbone.depth = 34
train.output_dir = "./output/adamixer_r34_tiny_cpu"
