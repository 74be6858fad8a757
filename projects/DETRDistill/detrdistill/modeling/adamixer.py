"""AdaMixer (Gao et al., CVPR 2022) as a Detectron2 meta-architecture, in pure PyTorch.

An encoder-free query-based detector: backbone levels (C2..C5) are projected to ``hidden_dim``
channels and read directly by ``num_stages`` decoder stages. Each query is a content vector
and a box ``(x, y, z, r)`` in pixels of the network input: center (x, y),
``z = log2 sqrt(w h)`` (scale) and ``r = log2 (h / w)`` (aspect). Every stage:

1. multi-head self-attention over the queries with the sine embedding of the boxes added and
   an IoF bias (``log IoF(box_i, box_j)`` times a learned per-head factor);
2. adaptive 3D sampling: the content predicts, per group and point, offsets (dx, dy, dz);
   points ``(x + dx w, y + dy h, z + dz)`` are sampled bilinearly (``grid_sample``) on every
   level and the levels are blended with a Gaussian weight on ``z - log2(stride)``;
3. adaptive mixing: per query, weights generated from the content mix the sampled
   features' channels (C/G x C/G) and then their points (P_in -> P_out), followed by a
   linear projection back to ``hidden_dim`` and a residual;
4. FFN; class and box heads; the box is refined as ``x, y += (dx, dy) 2^z``, ``z, r += dz, dr``
   and detached before the next stage.

Losses: sigmoid focal + L1 + GIoU with Hungarian matching at every stage (:class:`SetCriterion`).
Details follow the official MMDetection code (MCG-NJU/AdaMixer); module names differ.

``run(images, extra_queries=...)`` decodes a second query set with the same stages on the same
features (backbone and projection run once). Queries interact only in self-attention, which
Group-DETR makes block-diagonal, so the groups are decoded one after the other: the same result
as a joint pass with a block-diagonal mask, and the main group's outputs are bitwise independent
of the extra group.
"""

import math
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from detectron2.modeling import META_ARCH_REGISTRY, Backbone
from detectron2.structures import ImageList

from .backbones import MultiLevelProjection
from .criterion import SetCriterion
from .deformable_detr import FeedForward
from .detr_base import DETRBase
from .outputs import DETROutputs
from .position_encoding import sine_embedding_of_coordinates

__all__ = [
    "AdaMixer",
    "AdaMixerStage",
    "AdaptiveMixing",
    "xyzr_from_cxcywh",
    "cxcywh_from_xyzr",
    "refine_xyzr",
    "sampling_points_3d",
    "sample_3d",
    "pairwise_iof_xyxy",
    "xyzr_position_embedding",
]


# ---------------------------------------------------------------------------------- box algebra
def xyzr_from_cxcywh(boxes: torch.Tensor, min_size: float = 1e-3) -> torch.Tensor:
    """(..., 4) absolute cxcywh -> (..., 4) (x, y, z = log2 sqrt(w h), r = log2(h / w)).

    Widths and heights are clamped to ``min_size`` so degenerate boxes stay finite.
    """
    wh = boxes[..., 2:].clamp(min=min_size)
    z = 0.5 * torch.log2(wh[..., 0:1] * wh[..., 1:2])
    r = torch.log2(wh[..., 1:2] / wh[..., 0:1])
    return torch.cat([boxes[..., :2], z, r], dim=-1)


def _wh_from_zr(xyzr: torch.Tensor) -> torch.Tensor:
    """(..., 4) xyzr -> (..., 2) absolute (w, h) = 2^z (2^(-r/2), 2^(r/2))."""
    z, r = xyzr[..., 2:3], xyzr[..., 3:4]
    return torch.cat([torch.exp2(z - 0.5 * r), torch.exp2(z + 0.5 * r)], dim=-1)


def cxcywh_from_xyzr(xyzr: torch.Tensor) -> torch.Tensor:
    """(..., 4) xyzr -> (..., 4) absolute cxcywh."""
    return torch.cat([xyzr[..., :2], _wh_from_zr(xyzr)], dim=-1)


def _xyxy_from_xyzr(xyzr: torch.Tensor) -> torch.Tensor:
    half = 0.5 * _wh_from_zr(xyzr)
    return torch.cat([xyzr[..., :2] - half, xyzr[..., :2] + half], dim=-1)


def refine_xyzr(xyzr: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """Apply a stage's (..., 4) box delta: ``x, y += (dx, dy) 2^z``; ``z, r += (dz, dr)``."""
    xy = xyzr[..., :2] + delta[..., :2] * torch.exp2(xyzr[..., 2:3])
    return torch.cat([xy, xyzr[..., 2:] + delta[..., 2:]], dim=-1)


def pairwise_iof_xyxy(boxes: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Intersection over the first box's area between all pairs of a set.

    Args:
        boxes: (B, N, 4) absolute xyxy.
    Returns:
        (B, N, N): ``iof[b, i, j] = |box_i ∩ box_j| / max(|box_i|, eps)``.
    """
    lt = torch.max(boxes[:, :, None, :2], boxes[:, None, :, :2])
    rb = torch.min(boxes[:, :, None, 2:], boxes[:, None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area = (boxes[..., 2:] - boxes[..., :2]).clamp(min=0).prod(-1)
    return inter / area.clamp(min=eps)[:, :, None]


def xyzr_position_embedding(xyzr: torch.Tensor, dim: int) -> torch.Tensor:
    """Sine embedding of (B, N, 4) xyzr boxes -> (B, N, dim); x, y are divided by 1000 first."""
    scaled = xyzr / xyzr.new_tensor([1000.0, 1000.0, 1.0, 1.0])
    return sine_embedding_of_coordinates(scaled, num_pos_feats=dim // 4, temperature=10000, scale=1.0)


# ------------------------------------------------------------------------- adaptive 3D sampling
def sampling_points_3d(offsets: torch.Tensor, xyzr: torch.Tensor, num_groups: int, num_points: int) -> torch.Tensor:
    """Sampling points of every query from its predicted offsets.

    Args:
        offsets: (B, Q, G * P * 3) raw (dx, dy, dz) per group and point; dx, dy in units of
            the box width/height, dz in log2 scale.
        xyzr: (B, Q, 4) query boxes.
    Returns:
        (B, Q, G, P, 3): absolute (x, y) in pixels of the network input and z (log2 scale).
    """
    b, q, _ = offsets.shape
    offsets = offsets.view(b, q, num_groups, num_points, 3)
    wh = _wh_from_zr(xyzr)[:, :, None, None, :]
    xy = xyzr[:, :, None, None, :2] + offsets[..., :2] * wh
    z = xyzr[:, :, None, None, 2:3] + offsets[..., 2:3]
    return torch.cat([xy, z], dim=-1)


def sample_3d(
    points: torch.Tensor, features: Sequence[torch.Tensor], strides: Sequence[int], tau: float = 2.0
) -> torch.Tensor:
    """Sample a feature pyramid at 3D points (bilinear in x, y; Gaussian blend over levels in z).

    Level l gets weight ``softmax_l(-(z - log2 stride_l)^2 / tau)``. Group g reads channels
    ``[g C/G, (g + 1) C/G)`` of every level. Points outside the map read zeros.

    Args:
        points: (B, Q, G, P, 3) absolute (x, y) pixels and z (log2 scale).
        features: per level (B, C, H_l, W_l), padded maps whose pixel (0, 0) is the image corner.
        strides: per level, pixels of the input per feature pixel.
    Returns:
        (B, Q, G, P, C / G) sampled features.
    """
    b, q, g, p, _ = points.shape
    channels = features[0].shape[1]
    if channels % g != 0:
        raise ValueError(f"sample_3d: {channels} feature channels are not divisible into {g} groups.")
    level_z = torch.log2(torch.as_tensor(strides, dtype=points.dtype).to(points.device, non_blocking=True))
    level_weights = torch.softmax(-(points[..., 2:3] - level_z).pow(2) / tau, dim=-1)  # (B, Q, G, P, L)
    level_weights = level_weights.permute(0, 2, 4, 1, 3).reshape(b * g, len(strides), 1, q, p)
    xy = points[..., :2].permute(0, 2, 1, 3, 4).reshape(b * g, q, p, 2)
    out = None
    for level, (feature, stride) in enumerate(zip(features, strides)):
        h, w = feature.shape[-2:]
        grid = xy / xy.new_tensor([w * stride, h * stride]) * 2.0 - 1.0
        value = feature.reshape(b * g, channels // g, h, w)
        sampled = F.grid_sample(value, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        sampled = sampled * level_weights[:, level]  # (B*G, C/G, Q, P)
        out = sampled if out is None else out + sampled
    return out.view(b, g, channels // g, q, p).permute(0, 3, 1, 4, 2)


# ----------------------------------------------------------------------------- adaptive mixing
class AdaptiveMixing(nn.Module):
    """Per-query dynamic channel mixing then point mixing of the sampled features.

    The query content generates, per group, a (C/G x C/G) channel-mixing matrix and a
    (P_out x P_in) point-mixing matrix; each mixing is followed by LayerNorm over
    (points, channels) and ReLU; the result is projected to the query dim and added to the query.
    """

    def __init__(self, feature_dim: int, query_dim: int, in_points: int, out_points: int, num_groups: int):
        super().__init__()
        if feature_dim % num_groups != 0:
            raise ValueError(f"AdaptiveMixing: feature_dim={feature_dim} is not divisible by num_groups={num_groups}.")
        self.num_groups = num_groups
        self.group_dim = feature_dim // num_groups
        self.in_points = in_points
        self.out_points = out_points
        self.channel_params = self.group_dim * self.group_dim
        self.point_params = in_points * out_points
        self.parameter_generator = nn.Linear(query_dim, num_groups * (self.channel_params + self.point_params))
        self.out_proj = nn.Linear(num_groups * out_points * self.group_dim, query_dim)

    def reset_parameters(self):
        """Generated weights start query-independent (generator weight zero, default bias)."""
        nn.init.zeros_(self.parameter_generator.weight)

    def forward(self, sampled: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
        """
        Args:
            sampled: (B, Q, G, P_in, C/G) sampled features.
            query: (B, Q, D) query content.
        Returns:
            (B, Q, D) ``query + out_proj(mixed)``.
        """
        b, q = query.shape[:2]
        g, c = self.num_groups, self.group_dim
        if sampled.shape[2:] != (g, self.in_points, c):
            raise ValueError(
                f"AdaptiveMixing expects sampled features (B, Q, {g}, {self.in_points}, {c}), "
                f"got {tuple(sampled.shape)}."
            )
        params = self.parameter_generator(query).view(b, q, g, -1)
        channel_mix, point_mix = params.split([self.channel_params, self.point_params], dim=-1)
        channel_mix = channel_mix.reshape(b, q, g, c, c)
        point_mix = point_mix.reshape(b, q, g, self.out_points, self.in_points)
        out = torch.matmul(sampled, channel_mix)  # (B, Q, G, P_in, C/G)
        out = F.relu(F.layer_norm(out, out.shape[-2:]))
        out = torch.matmul(point_mix, out)  # (B, Q, G, P_out, C/G)
        out = F.relu(F.layer_norm(out, out.shape[-2:]))
        return query + self.out_proj(out.reshape(b, q, -1))


# ------------------------------------------------------------------------------------- stage
class AdaMixerStage(nn.Module):
    """One AdaMixer decoder stage (self-attention, 3D sampling + adaptive mixing, FFN, heads)."""

    def __init__(
        self,
        num_classes: int,
        hidden_dim: int = 256,
        num_heads: int = 8,
        dim_feedforward: int = 2048,
        dropout: float = 0.0,
        in_points: int = 32,
        out_points: int = 128,
        num_groups: int = 4,
        sampling_tau: float = 2.0,
    ):
        super().__init__()
        if hidden_dim % 4 != 0:
            raise ValueError(f"AdaMixerStage: hidden_dim must be divisible by 4 (box embedding), got {hidden_dim}.")
        self.hidden_dim = hidden_dim
        self.num_groups = num_groups
        self.in_points = in_points
        self.sampling_tau = sampling_tau
        self.self_attn = nn.MultiheadAttention(hidden_dim, num_heads, dropout=dropout, batch_first=True)
        self.self_attn_norm = nn.LayerNorm(hidden_dim)
        self.iof_tau = nn.Parameter(torch.ones(num_heads))
        self.sampling_offsets = nn.Linear(hidden_dim, num_groups * in_points * 3)
        self.adaptive_mixing = AdaptiveMixing(hidden_dim, hidden_dim, in_points, out_points, num_groups)
        self.mixing_norm = nn.LayerNorm(hidden_dim)
        self.ffn = FeedForward(hidden_dim, dim_feedforward, dropout)
        self.ffn_norm = nn.LayerNorm(hidden_dim)
        self.cls_fcs = nn.Sequential(nn.Linear(hidden_dim, hidden_dim), nn.LayerNorm(hidden_dim), nn.ReLU(inplace=True))
        self.class_embed = nn.Linear(hidden_dim, num_classes)
        self.reg_fcs = nn.Sequential(nn.Linear(hidden_dim, hidden_dim), nn.LayerNorm(hidden_dim), nn.ReLU(inplace=True))
        self.bbox_embed = nn.Linear(hidden_dim, 4)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self):
        """The official initialization."""
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        prior_prob = 0.01
        nn.init.constant_(self.class_embed.bias, -math.log((1 - prior_prob) / prior_prob))
        nn.init.zeros_(self.bbox_embed.weight)
        nn.init.zeros_(self.bbox_embed.bias)
        nn.init.uniform_(self.iof_tau, 0.0, 4.0)
        # Offsets: zero weight; (dx, dy) bias on a regular grid if P is a square number, else
        # uniform in [-0.5, 0.5] box sizes; dz bias -1 (one level finer than the box's scale).
        nn.init.zeros_(self.sampling_offsets.weight)
        bias = self.sampling_offsets.bias.view(self.num_groups, self.in_points, 3)
        side = int(round(math.sqrt(self.in_points)))
        if side * side == self.in_points:
            centers = torch.linspace(-0.5, 0.5, side + 1)[:-1] + 0.5 / side
            ys, xs = torch.meshgrid(centers, centers, indexing="ij")
            # The official code writes (y, x) into the (dx, dy) slots; the grid is symmetric.
            bias[:, :, 0:2] = torch.stack([ys.flatten(), xs.flatten()], -1)[None]
        else:
            nn.init.uniform_(bias[:, :, 0:2], -0.5, 0.5)
        nn.init.constant_(bias[:, :, 2:3], -1.0)
        self.adaptive_mixing.reset_parameters()

    def _self_attention(self, content: torch.Tensor, xyzr: torch.Tensor) -> torch.Tensor:
        """Self-attention of the queries: (B, N, D) content, (B, N, 4) boxes -> (B, N, D).

        As the official code, the boxes' sine embedding is added to the content before the
        attention and stays in the residual.
        """
        b, n, _ = content.shape
        with torch.no_grad():
            iof = pairwise_iof_xyxy(_xyxy_from_xyzr(xyzr))
            log_iof = (iof + 1e-7).log()
            pos = xyzr_position_embedding(xyzr, self.hidden_dim).to(content.dtype)
        bias = (log_iof[:, None] * self.iof_tau.view(1, -1, 1, 1)).flatten(0, 1)  # (B * heads, N, N)
        x = content + pos
        return x + self.self_attn(x, x, x, attn_mask=bias.to(x.dtype), need_weights=False)[0]

    def forward(
        self, features: Sequence[torch.Tensor], strides: Sequence[int], xyzr: torch.Tensor, content: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """
        Args:
            features: per level (B, D, H_l, W_l); strides: per level.
            xyzr: (B, Q, 4) query boxes (detached); content: (B, Q, D).
        Returns:
            logits (B, Q, C), box deltas (B, Q, 4) for :func:`refine_xyzr`, new content (B, Q, D).
        """
        content = self.self_attn_norm(self._self_attention(content, xyzr))
        points = sampling_points_3d(self.sampling_offsets(content), xyzr, self.num_groups, self.in_points)
        sampled = sample_3d(points, features, strides, self.sampling_tau)
        content = self.mixing_norm(self.adaptive_mixing(sampled, content))
        content = self.ffn_norm(content + self.ffn(content))

        logits = self.class_embed(self.cls_fcs(content))
        deltas = self.bbox_embed(self.reg_fcs(content))
        return logits, deltas, content


# ------------------------------------------------------------------------------------- model
@META_ARCH_REGISTRY.register()
class AdaMixer(DETRBase):
    """AdaMixer detector.

    Queries (``query_embed``): (Q, D + 4) = [learned content | initial box (normalized
    cxcywh)]; the initial boxes are the whole image (a fixed buffer ``initial_boxes``, as the
    official ``xyzr`` is not learnable). ``extra_queries`` take the same form, (Q', D + 4) or
    per image (B, Q', D + 4). Content vectors are layer-normalized before the first stage.
    """

    def __init__(
        self,
        *,
        backbone: Backbone,
        criterion: SetCriterion,
        in_features: Sequence[str] = ("res2", "res3", "res4", "res5"),
        num_classes: int = 80,
        num_queries: int = 100,
        hidden_dim: int = 256,
        num_stages: int = 6,
        num_heads: int = 8,
        dim_feedforward: int = 2048,
        dropout: float = 0.0,
        in_points: int = 32,
        out_points: int = 128,
        num_groups: int = 4,
        sampling_tau: float = 2.0,
        input_proj_num_groups: int = 32,
        pixel_mean: Sequence[float] = (123.675, 116.280, 103.530),
        pixel_std: Sequence[float] = (58.395, 57.120, 57.375),
        size_divisibility: int = 32,
        select_box_nums_for_evaluation: int = 100,
    ):
        """
        Args:
            backbone: a Detectron2 backbone whose outputs include ``in_features``.
            criterion: :class:`SetCriterion` (focal + L1 + GIoU on every stage).
            in_features: backbone levels read by the stages, finest first (paper: C2..C5,
                strides 4..32).
            num_classes, num_queries, hidden_dim, num_stages, num_heads, dim_feedforward,
            dropout: sizes (paper: 100 queries, 6 stages, 256-d, 8 heads, FFN 2048, dropout 0).
            in_points: sampling points per group (P_in, 32); out_points: points after
                spatial mixing (P_out, 128); num_groups: mixing groups (G, 4).
            sampling_tau: temperature of the Gaussian level weighting.
            input_proj_num_groups: GroupNorm groups of the per-level 1x1 projection.
            pixel_mean, pixel_std: RGB, for torchvision-pretrained backbones.
            size_divisibility, select_box_nums_for_evaluation: see :class:`DETRBase`.
        """
        super().__init__(
            num_classes=num_classes,
            criterion=criterion,
            pixel_mean=pixel_mean,
            pixel_std=pixel_std,
            size_divisibility=size_divisibility,
            select_box_nums_for_evaluation=select_box_nums_for_evaluation,
        )
        in_features = list(in_features)
        shapes = self.backbone_shapes(backbone, in_features)
        if num_stages < 1:
            raise ValueError(f"AdaMixer: num_stages must be >= 1, got {num_stages}.")
        self.backbone = backbone
        self.in_features = in_features
        self.feature_strides = [int(shapes[f].stride) for f in in_features]
        self.num_queries = num_queries
        self.hidden_dim = hidden_dim
        self.num_decoder_layers = num_stages

        self.input_proj = MultiLevelProjection(
            [shapes[f].channels for f in in_features], hidden_dim, num_groups=input_proj_num_groups
        )
        self.query_content = nn.Embedding(num_queries, hidden_dim)
        self.register_buffer("initial_boxes", torch.tensor([[0.5, 0.5, 1.0, 1.0]]).repeat(num_queries, 1))
        self.stages = nn.ModuleList(
            AdaMixerStage(
                num_classes,
                hidden_dim=hidden_dim,
                num_heads=num_heads,
                dim_feedforward=dim_feedforward,
                dropout=dropout,
                in_points=in_points,
                out_points=out_points,
                num_groups=num_groups,
                sampling_tau=sampling_tau,
            )
            for _ in range(num_stages)
        )

    def class_head_parameter_names(self) -> List[str]:
        return [f"stages.{i}.class_embed.{p}" for i in range(len(self.stages)) for p in ("weight", "bias")]

    @property
    def query_embed(self) -> torch.Tensor:
        """(Q, D + 4) = [content | initial box (normalized cxcywh)]."""
        return torch.cat([self.query_content.weight, self.initial_boxes.to(self.query_content.weight.dtype)], dim=1)

    def _initial_queries(
        self, queries: torch.Tensor, image_wh: torch.Tensor, what: str
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """(Q, D + 4) or (B, Q, D + 4) queries -> content (B, Q, D) and detached xyzr (B, Q, 4)."""
        bs, d = image_wh.shape[0], self.hidden_dim
        if queries.dim() == 2 and queries.shape[1] == d + 4:
            queries = queries[None].expand(bs, -1, -1)
        elif not (queries.dim() == 3 and queries.shape[0] == bs and queries.shape[2] == d + 4):
            raise ValueError(
                f"AdaMixer: {what} must be (Q, {d}+4) or (B={bs}, Q, {d}+4) = [content | normalized cxcywh box], "
                f"got {tuple(queries.shape)}."
            )
        content, boxes = queries.split([d, 4], dim=-1)
        content = F.layer_norm(content, (d,))
        xyzr = xyzr_from_cxcywh(boxes.detach() * image_wh.repeat(1, 2)[:, None])
        return content, xyzr

    def run(self, images: ImageList, extra_queries: Optional[torch.Tensor] = None) -> DETROutputs:
        """Backbone, projection and the decoder stages on a padded batch.

        Args:
            images: normalized, padded images (from :meth:`preprocess_image`).
            extra_queries: optional second query group in the ``query_embed`` format (e.g. a
                teacher's, detached), decoded by the same stages on the same features without
                attending to the main group (Group-DETR); predictions in ``outputs.extra``.
        Returns:
            :class:`DETROutputs` with per stage logits (S, B, Q, C), boxes (S, B, Q, 4)
            normalized cxcywh (not clipped to the image), content vectors (S, B, Q, D);
            ``aux["xyzr"]``: (S, B, Q, 4) refined boxes of every stage in pixels.
        """
        backbone_features = self.backbone(images.tensor)
        features = self.input_proj([backbone_features[f] for f in self.in_features])
        masks = self.level_masks(self.padding_mask(images), features)
        image_sizes = torch.as_tensor(images.image_sizes, dtype=torch.int64).to(images.tensor.device, non_blocking=True)
        image_wh = image_sizes.flip(-1).to(features[0].dtype)  # (B, 2) as (w, h)

        query_embed = self.query_embed
        logits, boxes, content, xyzr = self._decode(features, query_embed, image_wh, "query_embed")
        extra = None
        if extra_queries is not None:
            e_logits, e_boxes, e_content, e_xyzr = self._decode(
                features, extra_queries.to(features[0].dtype), image_wh, "extra_queries"
            )
            extra = DETROutputs(
                logits=e_logits,
                boxes=e_boxes,
                hidden_states=e_content,
                query_embed=extra_queries,
                aux={"xyzr": e_xyzr},
            )
        return DETROutputs(
            logits=logits,
            boxes=boxes,
            hidden_states=content,
            query_embed=query_embed,
            features=features,
            feature_masks=masks,
            image_sizes=image_sizes,
            extra=extra,
            aux={"xyzr": xyzr},
        )

    def _decode(
        self, features: List[torch.Tensor], queries: torch.Tensor, image_wh: torch.Tensor, what: str
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """All stages on one query group.

        Returns:
            logits (S, B, Q, C); boxes (S, B, Q, 4) normalized cxcywh; content (S, B, Q, D);
            refined xyzr (S, B, Q, 4) in pixels.
        """
        content, xyzr = self._initial_queries(queries, image_wh, what)
        all_logits, all_xyzr, all_content = [], [], []
        for stage in self.stages:
            logits, deltas, content = stage(features, self.feature_strides, xyzr, content)
            refined = refine_xyzr(xyzr, deltas)
            all_logits.append(logits)
            all_xyzr.append(refined)
            all_content.append(content)
            xyzr = refined.detach()
        all_xyzr = torch.stack(all_xyzr)
        boxes = cxcywh_from_xyzr(all_xyzr) / image_wh.repeat(1, 2)[None, :, None]
        return torch.stack(all_logits), boxes, torch.stack(all_content), all_xyzr
