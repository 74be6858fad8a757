"""Adapters between student and teacher features (mmrazor's "connectors")."""
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ChannelAdapter", "align_spatial", "build_channel_adapters"]


class ChannelAdapter(nn.Module):
    """Maps student channels to teacher channels.

    ``kind="conv"``: 1x1 convolution on (B, C_s, H, W) -> (B, C_t, H, W).
    ``kind="linear"``: linear layer on (..., C_s) -> (..., C_t) (tokens, queries).
    ``kind="identity"``: no parameters; channel counts must match.
    """

    def __init__(self, in_channels: int, out_channels: int, kind: str = "conv"):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kind = kind
        if kind == "conv":
            self.proj = nn.Conv2d(in_channels, out_channels, kernel_size=1)
        elif kind == "linear":
            self.proj = nn.Linear(in_channels, out_channels)
        elif kind == "identity":
            if in_channels != out_channels:
                raise ValueError(
                    f"ChannelAdapter(kind='identity') needs equal channels, got student {in_channels} "
                    f"vs teacher {out_channels}; use kind='conv' or 'linear'."
                )
            self.proj = nn.Identity()
        else:
            raise ValueError(f"Unknown adapter kind '{kind}' (expected 'conv', 'linear' or 'identity').")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # conv and identity-on-maps use (B, C, H, W); linear and identity-on-tokens use (..., C)
        channel_dim = 1 if self.kind == "conv" or (self.kind == "identity" and x.dim() == 4) else -1
        if x.shape[channel_dim] != self.in_channels:
            raise ValueError(
                f"ChannelAdapter expects {self.in_channels} input channels, got tensor of shape {tuple(x.shape)}."
            )
        return self.proj(x)


def build_channel_adapters(in_channels: Sequence[int], out_channels: Sequence[int], kind: str = "conv") -> nn.ModuleList:
    """One adapter per feature level; identity where the channel counts already match."""
    if len(in_channels) != len(out_channels):
        raise ValueError(f"{len(in_channels)} student levels vs {len(out_channels)} teacher levels.")
    return nn.ModuleList(
        ChannelAdapter(i, o, "identity" if (i == o and kind == "conv") else kind) for i, o in zip(in_channels, out_channels)
    )


def align_spatial(x: torch.Tensor, size, mode: str = "avgpool") -> torch.Tensor:
    """Resize a (B, C, H, W) map to ``size`` = (H', W').

    ``mode="avgpool"`` average-pools by the integer factor when ``x`` is an exact multiple of
    ``size`` (a 2x-resolution teacher map pooled 2x2), and falls back to adaptive average
    pooling otherwise; "bilinear"/"nearest" interpolate (also for up-sampling).
    """
    h, w = int(size[0]), int(size[1])
    if x.shape[-2:] == (h, w):
        return x
    if mode == "avgpool":
        if x.shape[-2] >= h and x.shape[-1] >= w:
            fh, fw = x.shape[-2] // h, x.shape[-1] // w
            if fh * h == x.shape[-2] and fw * w == x.shape[-1]:
                return F.avg_pool2d(x, kernel_size=(fh, fw), stride=(fh, fw))
            return F.adaptive_avg_pool2d(x, (h, w))
        mode = "bilinear"
    if mode == "bilinear":
        return F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)
    if mode == "nearest":
        return F.interpolate(x, size=(h, w), mode="nearest")
    raise ValueError(f"Unknown spatial alignment mode '{mode}'.")
