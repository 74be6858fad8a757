"""Backbones and the multi-level input projection of the DETR models.

* :func:`make_resnet_backbone`: Detectron2 ResNet-18/34/50/101/152 (``BasicStem`` +
  ``ResNet.make_default_stages``), LazyCall-able.
* :class:`MobileNetV2Backbone`: torchvision's MobileNetV2 architecture (never downloads
  weights) as a Detectron2 :class:`Backbone`.
* :class:`MultiLevelProjection`: per-level 1x1 conv + GroupNorm to the transformer width, plus
  extra stride-2 3x3 conv levels (Deformable DETR's fourth level).
"""
from typing import Dict, List, Sequence

import torch
from torch import nn

from detectron2.layers import FrozenBatchNorm2d, ShapeSpec
from detectron2.modeling.backbone import Backbone, BasicStem, ResNet

__all__ = [
    "make_resnet_backbone",
    "MobileNetV2Backbone",
    "MultiLevelProjection",
    "RESNET_OUT_CHANNELS",
    "MOBILENET_V2_STAGE_CHANNELS",
]

#: Output channels of ResNet stages res2..res5 for each depth.
RESNET_OUT_CHANNELS = {
    18: {"res2": 64, "res3": 128, "res4": 256, "res5": 512},
    34: {"res2": 64, "res3": 128, "res4": 256, "res5": 512},
    50: {"res2": 256, "res3": 512, "res4": 1024, "res5": 2048},
    101: {"res2": 256, "res3": 512, "res4": 1024, "res5": 2048},
    152: {"res2": 256, "res3": 512, "res4": 1024, "res5": 2048},
}


def make_resnet_backbone(
    depth: int = 50,
    out_features: Sequence[str] = ("res3", "res4", "res5"),
    norm: str = "FrozenBN",
    freeze_at: int = 1,
    stride_in_1x1: bool = False,
) -> ResNet:
    """Detectron2 ResNet with a ``BasicStem``.

    Args:
        depth: 18, 34, 50, 101 or 152.
        out_features: stage names among "stem", "res2".."res5".
        norm: normalization of every conv ("FrozenBN" for DETR training from ImageNet weights).
        freeze_at: number of leading stages (stem = 1) whose weights are frozen.
        stride_in_1x1: False for torchvision-style weights (``ImageNetPretrained/torchvision``);
            only used by bottleneck ResNets (depth >= 50).
    """
    if depth not in RESNET_OUT_CHANNELS:
        raise ValueError(f"make_resnet_backbone: depth must be one of {sorted(RESNET_OUT_CHANNELS)}, got {depth}.")
    stage_kwargs = {"norm": norm}
    if depth >= 50:
        stage_kwargs["stride_in_1x1"] = stride_in_1x1
    return ResNet(
        stem=BasicStem(in_channels=3, out_channels=64, norm=norm),
        stages=ResNet.make_default_stages(depth=depth, **stage_kwargs),
        out_features=list(out_features),
        freeze_at=freeze_at,
    )


# MMDetection's MobileNetV2 numbering of out_indices: 0..6 are the seven inverted-residual
# groups, 7 the final 1x1 conv. (end index into torchvision's ``features``, channels, stride)
_MBV2_STAGES = [(2, 16, 2), (4, 24, 4), (7, 32, 8), (11, 64, 16), (14, 96, 16), (17, 160, 32), (18, 320, 32), (19, 1280, 32)]
MOBILENET_V2_STAGE_CHANNELS = {f"stage{i}": c for i, (_, c, _) in enumerate(_MBV2_STAGES)}


class MobileNetV2Backbone(Backbone):
    """torchvision MobileNetV2 (width 1.0) as a Detectron2 backbone.

    Output names are ``"stage{i}"`` with i as in MMDetection's ``out_indices``: stage0..stage6
    are the inverted-residual groups (channels 16, 24, 32, 64, 96, 160, 320; strides
    2, 4, 8, 16, 16, 32, 32) and stage7 is the final 1x1 conv (1280 channels, stride 32).
    DETRDistill's student uses indices (2, 4, 7): channels [32, 96, 1280].

    Parameters live under ``features`` with torchvision's numbering: a torchvision
    ``mobilenet_v2`` state dict loads into a model's ``backbone`` after dropping its
    ``classifier.*`` keys and prefixing the rest with ``"backbone."``.
    """

    def __init__(
        self,
        out_features: Sequence[str] = ("stage2", "stage4", "stage7"),
        norm: str = "FrozenBN",
        freeze_at: int = 0,
    ):
        """
        Args:
            out_features: names among "stage0".."stage7".
            norm: "BN" (trainable BatchNorm) or "FrozenBN" (BatchNorm replaced by
                ``FrozenBatchNorm2d``, standard for small-batch DETR training).
            freeze_at: freeze the stem conv (1) and the first ``freeze_at - 1`` stages.
        """
        super().__init__()
        from torchvision.models import mobilenet_v2

        unknown = [f for f in out_features if f not in MOBILENET_V2_STAGE_CHANNELS]
        if unknown or len(out_features) == 0:
            raise ValueError(
                f"MobileNetV2Backbone: unknown out_features {unknown or out_features}; "
                f"choose among {list(MOBILENET_V2_STAGE_CHANNELS)}."
            )
        if norm not in ("BN", "FrozenBN"):
            raise ValueError(f"MobileNetV2Backbone: norm must be 'BN' or 'FrozenBN', got '{norm}'.")
        features = mobilenet_v2(weights=None).features
        if norm == "FrozenBN":
            features = FrozenBatchNorm2d.convert_frozen_batchnorm(features)
        self.features = features
        self._out_features = list(out_features)
        self._stage_ends = [end for end, _, _ in _MBV2_STAGES]
        self._last_stage = max(int(f[len("stage") :]) for f in self._out_features)
        self._out_feature_channels = {f"stage{i}": c for i, (_, c, _) in enumerate(_MBV2_STAGES)}
        self._out_feature_strides = {f"stage{i}": s for i, (_, _, s) in enumerate(_MBV2_STAGES)}
        self._freeze(freeze_at)

    def _freeze(self, freeze_at: int):
        if freeze_at <= 0:
            return
        # freeze_at=1: the stem conv (features[0]); freeze_at=k: also stages 0..k-2.
        end = 1 if freeze_at == 1 else self._stage_ends[min(freeze_at - 2, len(self._stage_ends) - 1)]
        for module in self.features[:end]:
            for p in module.parameters():
                p.requires_grad_(False)
            FrozenBatchNorm2d.convert_frozen_batchnorm(module)

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        """(B, 3, H, W) -> {name: (B, C, H / stride, W / stride)}."""
        outputs = {}
        start = 0
        for i, end in enumerate(self._stage_ends[: self._last_stage + 1]):
            x = self.features[start:end](x)
            start = end
            name = f"stage{i}"
            if name in self._out_features:
                outputs[name] = x
        return outputs

    @property
    def size_divisibility(self) -> int:
        return 32

    def output_shape(self) -> Dict[str, ShapeSpec]:
        return {
            name: ShapeSpec(channels=self._out_feature_channels[name], stride=self._out_feature_strides[name])
            for name in self._out_features
        }


class MultiLevelProjection(nn.Module):
    """Project backbone levels to the transformer width (Deformable DETR's ``input_proj``).

    Level i < len(in_channels): 1x1 conv + GroupNorm on backbone feature i. Extra levels:
    3x3 stride-2 conv + GroupNorm, the first on the last *backbone* feature, the next ones on
    the previous extra level.
    """

    def __init__(self, in_channels: Sequence[int], out_channels: int, num_extra_levels: int = 0, num_groups: int = 32):
        super().__init__()
        if out_channels % num_groups != 0:
            raise ValueError(
                f"MultiLevelProjection: out_channels={out_channels} is not divisible by num_groups={num_groups}."
            )
        if len(in_channels) == 0:
            raise ValueError("MultiLevelProjection needs at least one input level.")
        levels = [
            nn.Sequential(nn.Conv2d(c, out_channels, kernel_size=1), nn.GroupNorm(num_groups, out_channels))
            for c in in_channels
        ]
        for i in range(num_extra_levels):
            c = in_channels[-1] if i == 0 else out_channels
            levels.append(
                nn.Sequential(
                    nn.Conv2d(c, out_channels, kernel_size=3, stride=2, padding=1),
                    nn.GroupNorm(num_groups, out_channels),
                )
            )
        self.levels = nn.ModuleList(levels)
        self.num_inputs = len(in_channels)
        self.out_channels = out_channels
        for level in self.levels:
            nn.init.xavier_uniform_(level[0].weight, gain=1)
            nn.init.constant_(level[0].bias, 0)

    @property
    def num_levels(self) -> int:
        return len(self.levels)

    def forward(self, features: List[torch.Tensor]) -> List[torch.Tensor]:
        """
        Args:
            features: ``num_inputs`` backbone maps (B, C_i, H_i, W_i), finest first.
        Returns:
            ``num_levels`` maps (B, out_channels, H_l, W_l).
        """
        if len(features) != self.num_inputs:
            raise ValueError(f"MultiLevelProjection expects {self.num_inputs} feature maps, got {len(features)}.")
        outs = [self.levels[i](f) for i, f in enumerate(features)]
        for i in range(self.num_inputs, len(self.levels)):
            src = features[-1] if i == self.num_inputs else outs[-1]
            outs.append(self.levels[i](src))
        return outs
