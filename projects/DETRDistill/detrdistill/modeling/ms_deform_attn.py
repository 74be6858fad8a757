"""Multi-scale deformable attention (Deformable DETR) in pure PyTorch.

The sampling uses ``F.grid_sample`` (bilinear, zero padding, ``align_corners=False``), one call
per feature level, vectorized over batch, heads, queries and points; the same code runs on
CPU and CUDA (no compiled op to build). It always computes in float32, also under autocast,
because bilinear sampling of half-precision values loses too much accuracy.
"""
import math
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "multi_scale_deformable_attention",
    "multi_scale_deformable_attention_reference",
    "MultiScaleDeformableAttention",
]


def _check_shapes(value, spatial_shapes, sampling_locations, attention_weights):
    if value.dim() != 4:
        raise ValueError(f"value must be (B, S, heads, head_dim), got {tuple(value.shape)}.")
    total = sum(int(h) * int(w) for h, w in spatial_shapes)
    if total != value.shape[1]:
        raise ValueError(f"spatial_shapes {list(spatial_shapes)} cover {total} tokens but value has {value.shape[1]}.")
    if sampling_locations.dim() != 6 or sampling_locations.shape[-1] != 2:
        raise ValueError(
            f"sampling_locations must be (B, Q, heads, levels, points, 2), got {tuple(sampling_locations.shape)}."
        )
    if attention_weights.shape != sampling_locations.shape[:-1]:
        raise ValueError(
            f"attention_weights {tuple(attention_weights.shape)} must be sampling_locations' shape without the "
            f"last dim {tuple(sampling_locations.shape[:-1])}."
        )
    if sampling_locations.shape[3] != len(spatial_shapes):
        raise ValueError(
            f"sampling_locations have {sampling_locations.shape[3]} levels, spatial_shapes {len(spatial_shapes)}."
        )


def multi_scale_deformable_attention(
    value: torch.Tensor,
    spatial_shapes: Sequence[Tuple[int, int]],
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
) -> torch.Tensor:
    """Weighted sum of bilinearly sampled values over levels and points.

    Args:
        value: (B, S, M, Dh) per-head values of S = sum_l H_l * W_l flattened tokens
            (level-major, row-major inside a level).
        spatial_shapes: per level ``(H_l, W_l)`` as Python ints.
        sampling_locations: (B, Q, M, L, P, 2) normalized (x, y) in [0, 1] of each level's
            map (0 = left/top edge, 1 = right/bottom edge; outside samples zeros).
        attention_weights: (B, Q, M, L, P) weights (softmax over L * P).
    Returns:
        (B, Q, M * Dh) in the dtype of ``value``; computed in float32.
    """
    _check_shapes(value, spatial_shapes, sampling_locations, attention_weights)
    out_dtype = value.dtype
    device_type = value.device.type
    with torch.autocast(device_type=device_type, enabled=False):
        value = value.float()
        sampling_locations = sampling_locations.float()
        attention_weights = attention_weights.float()
        bs, _, num_heads, head_dim = value.shape
        num_queries = sampling_locations.shape[1]
        value_list = value.split([int(h) * int(w) for h, w in spatial_shapes], dim=1)
        # grid_sample wants [-1, 1] coordinates with (B*M) as the batch.
        grids = (2 * sampling_locations - 1).transpose(1, 2).flatten(0, 1)  # (B*M, Q, L, P, 2)
        weights = attention_weights.transpose(1, 2).flatten(0, 1)[:, None]  # (B*M, 1, Q, L, P)
        output = None
        for level, (h, w) in enumerate(spatial_shapes):
            # (B, HW, M, Dh) -> (B*M, Dh, H, W)
            value_l = value_list[level].permute(0, 2, 3, 1).reshape(bs * num_heads, head_dim, int(h), int(w))
            sampled = F.grid_sample(
                value_l, grids[:, :, level], mode="bilinear", padding_mode="zeros", align_corners=False
            )  # (B*M, Dh, Q, P)
            # Accumulate level by level: no (B*M, Dh, Q, L*P) tensor is ever materialized.
            contribution = (sampled * weights[:, :, :, level]).sum(-1)  # (B*M, Dh, Q)
            output = contribution if output is None else output + contribution
        output = output.view(bs, num_heads * head_dim, num_queries).transpose(1, 2).contiguous()
    return output.to(out_dtype)


def multi_scale_deformable_attention_reference(
    value: torch.Tensor,
    spatial_shapes: Sequence[Tuple[int, int]],
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
) -> torch.Tensor:
    """Slow, explicit reference of :func:`multi_scale_deformable_attention` (tests only).

    Bilinear interpolation written out by hand: pixel (i, j) of a level has its center at
    ((j + 0.5) / W, (i + 0.5) / H); samples outside the map read zeros.
    """
    _check_shapes(value, spatial_shapes, sampling_locations, attention_weights)
    value = value.double()
    sampling_locations = sampling_locations.double()
    attention_weights = attention_weights.double()
    bs, _, num_heads, head_dim = value.shape
    _, num_queries, _, num_levels, num_points, _ = sampling_locations.shape
    output = value.new_zeros(bs, num_queries, num_heads, head_dim)
    start = 0
    for level, (h, w) in enumerate(spatial_shapes):
        h, w = int(h), int(w)
        value_l = value[:, start : start + h * w].view(bs, h, w, num_heads, head_dim)
        start += h * w
        for b in range(bs):
            for m in range(num_heads):
                for p in range(num_points):
                    x = sampling_locations[b, :, m, level, p, 0] * w - 0.5  # (Q,) pixel coordinates
                    y = sampling_locations[b, :, m, level, p, 1] * h - 0.5
                    x0, y0 = torch.floor(x), torch.floor(y)
                    sample = value.new_zeros(num_queries, head_dim)
                    for dx in (0, 1):
                        for dy in (0, 1):
                            xi, yi = x0 + dx, y0 + dy
                            wx = 1 - (x - xi).abs()
                            wy = 1 - (y - yi).abs()
                            inside = (xi >= 0) & (xi <= w - 1) & (yi >= 0) & (yi <= h - 1)
                            xc = xi.clamp(0, w - 1).long()
                            yc = yi.clamp(0, h - 1).long()
                            corner = value_l[b, yc, xc, m]  # (Q, Dh)
                            sample += (wx * wy * inside.double())[:, None] * corner
                    output[b, :, m] += attention_weights[b, :, m, level, p][:, None] * sample
    return output.flatten(2)


class MultiScaleDeformableAttention(nn.Module):
    """Deformable attention over multi-level feature maps (Zhu et al., Deformable DETR).

    Each query predicts, per head, level and point, a sampling offset around its reference
    point and an attention weight; the output is the weighted sum of sampled values. Parameter
    names (``sampling_offsets``, ``attention_weights``, ``value_proj``, ``output_proj``) follow
    the original implementation.
    """

    def __init__(self, embed_dim: int = 256, num_heads: int = 8, num_levels: int = 4, num_points: int = 4):
        super().__init__()
        if embed_dim % num_heads != 0:
            raise ValueError(f"embed_dim ({embed_dim}) must be divisible by num_heads ({num_heads}).")
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.num_levels = num_levels
        self.num_points = num_points
        self.sampling_offsets = nn.Linear(embed_dim, num_heads * num_levels * num_points * 2)
        self.attention_weights = nn.Linear(embed_dim, num_heads * num_levels * num_points)
        self.value_proj = nn.Linear(embed_dim, embed_dim)
        self.output_proj = nn.Linear(embed_dim, embed_dim)
        self.reset_parameters()

    def reset_parameters(self):
        """Original initialization: offsets start on a ring of directions, one per head."""
        nn.init.constant_(self.sampling_offsets.weight, 0.0)
        thetas = torch.arange(self.num_heads, dtype=torch.float32) * (2.0 * math.pi / self.num_heads)
        grid_init = torch.stack([thetas.cos(), thetas.sin()], -1)
        grid_init = (grid_init / grid_init.abs().max(-1, keepdim=True)[0]).view(self.num_heads, 1, 1, 2)
        grid_init = grid_init.repeat(1, self.num_levels, self.num_points, 1)
        grid_init = grid_init * torch.arange(1, self.num_points + 1, dtype=torch.float32).view(1, 1, -1, 1)
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(grid_init.view(-1))
        nn.init.constant_(self.attention_weights.weight, 0.0)
        nn.init.constant_(self.attention_weights.bias, 0.0)
        nn.init.xavier_uniform_(self.value_proj.weight)
        nn.init.constant_(self.value_proj.bias, 0.0)
        nn.init.xavier_uniform_(self.output_proj.weight)
        nn.init.constant_(self.output_proj.bias, 0.0)

    def forward(
        self,
        query: torch.Tensor,
        reference_points: torch.Tensor,
        value: torch.Tensor,
        spatial_shapes: Sequence[Tuple[int, int]],
        value_padding_mask: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """
        Args:
            query: (B, Q, D) queries, positional embedding already added.
            reference_points: (B, Q, L, 2) normalized (x, y) per level, or (B, Q, L, 4)
                normalized (cx, cy, w, h) boxes (offsets then scale with the box size).
            value: (B, S, D) flattened multi-level features.
            spatial_shapes: per level ``(H_l, W_l)`` Python ints.
            value_padding_mask: (B, S) bool, True = padding (its values are zeroed).
        Returns:
            (B, Q, D) attention output (no residual, no dropout).
        """
        bs, num_queries, _ = query.shape
        num_value = value.shape[1]
        value = self.value_proj(value)
        if value_padding_mask is not None:
            value = value.masked_fill(value_padding_mask[..., None], 0.0)
        value = value.view(bs, num_value, self.num_heads, self.embed_dim // self.num_heads)
        # Sampling locations and weights in float32 (they are half precision under autocast).
        offsets = self.sampling_offsets(query).float().view(
            bs, num_queries, self.num_heads, self.num_levels, self.num_points, 2
        )
        weights = self.attention_weights(query).float()
        weights = weights.view(bs, num_queries, self.num_heads, self.num_levels * self.num_points).softmax(-1)
        weights = weights.view(bs, num_queries, self.num_heads, self.num_levels, self.num_points)
        reference_points = reference_points.float()
        if reference_points.shape[-1] == 2:
            # offsets are in pixels of each level
            # (L, 2) as (x, y); non_blocking: no stream synchronization per attention layer on CUDA
            normalizer = torch.tensor([[w, h] for h, w in spatial_shapes], dtype=offsets.dtype).to(offsets.device, non_blocking=True)
            locations = reference_points[:, :, None, :, None, :] + offsets / normalizer[None, None, None, :, None, :]
        elif reference_points.shape[-1] == 4:
            locations = (
                reference_points[:, :, None, :, None, :2]
                + offsets / self.num_points * reference_points[:, :, None, :, None, 2:] * 0.5
            )
        else:
            raise ValueError(f"reference_points must end in 2 or 4 coordinates, got {tuple(reference_points.shape)}.")
        output = multi_scale_deformable_attention(value, spatial_shapes, locations, weights)
        return self.output_proj(output)
