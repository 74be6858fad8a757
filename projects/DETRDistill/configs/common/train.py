# Training settings of the DETR recipes: kd_core's common train dict (a fresh copy per config load)
# with gradient clipping at max norm 0.1.
import copy

from kd_core.configs.common.train import train as _kd_train

train = copy.deepcopy(_kd_train)
train.update(clip_grad=dict(enabled=True, max_norm=0.1, norm_type=2.0))
