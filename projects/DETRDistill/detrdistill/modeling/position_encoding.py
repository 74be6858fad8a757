"""Sinusoidal position embeddings of the DETR family."""
import math

import torch
from torch import nn

__all__ = ["PositionEmbeddingSine", "sine_embedding_of_coordinates"]


class PositionEmbeddingSine(nn.Module):
    """2-D sine/cosine embedding of pixel positions (DETR), computed from a padding mask.

    Positions are cumulative counts of valid (non-padding) pixels along y and x, so padded
    regions do not shift the embedding of the valid image.
    """

    def __init__(
        self,
        num_pos_feats: int = 128,
        temperature: float = 10000,
        normalize: bool = True,
        scale: float = 2 * math.pi,
        offset: float = 0.0,
        eps: float = 1e-6,
    ):
        """
        Args:
            num_pos_feats: channels per axis; the output has ``2 * num_pos_feats`` channels
                (y first, then x), i.e. ``hidden_dim // 2``.
            temperature: frequency base (10000 in DETR/Deformable DETR, 20 in some variants).
            normalize: divide positions by the valid extent and multiply by ``scale``.
            offset: added to positions before normalizing (Deformable DETR uses -0.5,
                i.e. pixel centers).
        """
        super().__init__()
        if num_pos_feats % 2 != 0:
            raise ValueError(f"PositionEmbeddingSine: num_pos_feats must be even, got {num_pos_feats}.")
        self.num_pos_feats = num_pos_feats
        self.temperature = temperature
        self.normalize = normalize
        self.scale = scale
        self.offset = offset
        self.eps = eps

    def forward(self, mask: torch.Tensor) -> torch.Tensor:
        """
        Args:
            mask: (B, H, W) bool, True = padding.
        Returns:
            (B, 2 * num_pos_feats, H, W) float32 embedding.
        """
        if mask.dim() != 3:
            raise ValueError(f"PositionEmbeddingSine expects a (B, H, W) mask, got {tuple(mask.shape)}.")
        not_mask = ~mask.bool()
        y_embed = not_mask.cumsum(1, dtype=torch.float32)
        x_embed = not_mask.cumsum(2, dtype=torch.float32)
        if self.normalize:
            y_embed = (y_embed + self.offset) / (y_embed[:, -1:, :] + self.eps) * self.scale
            x_embed = (x_embed + self.offset) / (x_embed[:, :, -1:] + self.eps) * self.scale
        dim_t = self._dim_t(mask.device)
        pos_x = _interleave_sin_cos(x_embed[..., None] / dim_t)
        pos_y = _interleave_sin_cos(y_embed[..., None] / dim_t)
        return torch.cat((pos_y, pos_x), dim=3).permute(0, 3, 1, 2)

    def _dim_t(self, device) -> torch.Tensor:
        dim_t = torch.arange(self.num_pos_feats, dtype=torch.float32, device=device)
        return self.temperature ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / self.num_pos_feats)


def _interleave_sin_cos(x: torch.Tensor) -> torch.Tensor:
    """(..., F) -> (..., F) with sin on even and cos on odd frequencies, interleaved."""
    return torch.stack((x[..., 0::2].sin(), x[..., 1::2].cos()), dim=-1).flatten(-2)


def sine_embedding_of_coordinates(
    coords: torch.Tensor, num_pos_feats: int = 128, temperature: float = 10000, scale: float = 2 * math.pi
) -> torch.Tensor:
    """Sine embedding of normalized coordinates (queries' reference points or boxes).

    Args:
        coords: (..., K) coordinates in [0, 1] (e.g. K=2 for (x, y) points, K=4 for cxcywh).
    Returns:
        (..., K * num_pos_feats): each coordinate embedded with ``num_pos_feats`` channels,
        in the order of the K input coordinates.
    """
    dim_t = torch.arange(num_pos_feats, dtype=torch.float32, device=coords.device)
    dim_t = temperature ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / num_pos_feats)
    pos = coords.float()[..., None] * scale / dim_t
    return _interleave_sin_cos(pos).flatten(-2)
