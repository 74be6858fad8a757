"""Detectron2 detectors with the small changes this toolkit needs to train them under autocast."""
from typing import List

import torch
from detectron2.modeling.meta_arch.fcos import FCOS

__all__ = ["FCOSWithFloat32Losses"]


class FCOSWithFloat32Losses(FCOS):
    """Detectron2's FCOS whose losses take float32 predictions, so it trains under autocast
    (``train.amp.enabled=True``: fp16 on CUDA, bfloat16 on CPU).

    Detectron2's ``FCOS.losses`` decodes the predicted deltas in the autocast dtype, and fvcore's
    ``giou_loss`` then writes float32 values into a half-precision tensor (``index_put`` dtype
    error at the first step). Here the head's outputs are cast to float32 before the losses; the
    network itself still runs in the autocast dtype, and in float32 nothing changes. Same
    parameters and state dict as ``FCOS``: checkpoints load either way.

    Shapes as in ``FCOS.losses``: ``pred_logits`` per level (N, Hi*Wi, K), ``pred_anchor_deltas``
    (N, Hi*Wi, 4) in the detector's ``box2box_transform`` parameterisation, ``pred_centerness``
    (N, Hi*Wi, 1).
    """

    def losses(
        self,
        anchors,
        pred_logits: List[torch.Tensor],
        gt_labels,
        pred_anchor_deltas: List[torch.Tensor],
        gt_boxes,
        pred_centerness: List[torch.Tensor],
    ):
        return super().losses(
            anchors,
            [x.float() for x in pred_logits],
            gt_labels,
            [x.float() for x in pred_anchor_deltas],
            gt_boxes,
            [x.float() for x in pred_centerness],
        )
