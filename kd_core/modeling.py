"""Detectron2 model pieces with the small changes this toolkit needs: an FCOS that trains under
autocast, and ResNet-18/34 stages of any width (the tiny half-width models)."""
from typing import List

import torch
from detectron2.modeling.backbone import ResNet
from detectron2.modeling.backbone.resnet import BasicBlock
from detectron2.modeling.meta_arch.fcos import FCOS

__all__ = ["FCOSWithFloat32Losses", "basic_block_resnet_stages"]

_BASIC_BLOCKS_PER_STAGE = {18: [2, 2, 2, 2], 34: [3, 4, 6, 3]}


def basic_block_resnet_stages(depth: int, width: int = 64, norm: str = "BN"):
    """The stages res2-res5 of a ResNet-18/34 whose channel counts are ``width``, 2x, 4x, 8x
    (``width=64``: the standard network, module for module what Detectron2's
    ``ResNet.make_default_stages(depth, norm=norm)`` builds, which has no width argument).
    The stem (``BasicStem(out_channels=width)``) and whatever reads res5 (``8 * width``
    channels) must agree. Returns ``list[list[BasicBlock]]``, the ``stages`` of ``ResNet``.
    """
    if depth not in _BASIC_BLOCKS_PER_STAGE:
        raise ValueError(f"basic_block_resnet_stages: depth must be 18 or 34, got {depth}")
    out_channels = [width, 2 * width, 4 * width, 8 * width]
    in_channels = [width] + out_channels[:-1]
    return [
        ResNet.make_stage(
            block_class=BasicBlock,
            num_blocks=n,
            stride_per_block=[stride] + [1] * (n - 1),
            in_channels=c_in,
            out_channels=c_out,
            norm=norm,
        )
        for n, stride, c_in, c_out in zip(_BASIC_BLOCKS_PER_STAGE[depth], [1, 2, 2, 2], in_channels, out_channels)
    ]


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
