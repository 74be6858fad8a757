"""Conditional DETR (Meng et al., ICCV 2021) as a Detectron2 meta-architecture.

Single-scale DETR (C5, or C5 with a dilated res5: "DC5") whose decoder cross-attention is
*conditional*: every query has a reference point ``s = sigmoid(MLP(query_pos))``; its
sine embedding, transformed by the decoder content (``T = query_scale(content)``, identity
in the first layer), forms a *spatial query* that is concatenated per head with the content
query, and the keys are likewise ``[content key | positional key]``, so content and spatial
attention add up inside one dot product. Boxes are predicted relative to the reference
point (offset added in logit space to its (x, y)). Sigmoid focal loss + L1 + GIoU on every
decoder layer.

Parameter names follow detrex's ``ConditionalDETR`` wherever they name the same thing
(``input_proj``, ``query_embed``, ``class_embed``, ``bbox_embed``, the projections of the
conditional attentions, ``query_scale``, ``ref_point_head``);
:mod:`detrdistill.converters.detrex_conditional` maps the remaining (layer-structure) names.

``run(images, extra_queries=...)`` decodes a second query set (e.g. a teacher's) in the same
decoder pass; self-attention is block-diagonal over the groups (Group-DETR), computed block by
block, so the main group's outputs do not depend on the extra group (up to float rounding of
the linear layers that run over both groups' rows).
"""

import math
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from detectron2.modeling import META_ARCH_REGISTRY, Backbone
from detectron2.modeling.backbone import BasicStem, BottleneckBlock, ResNet
from detectron2.structures import ImageList

from .criterion import SetCriterion
from .deformable_detr import FeedForward
from .detr_base import MLP, DETRBase, inverse_sigmoid
from .outputs import DETROutputs
from .position_encoding import PositionEmbeddingSine, sine_embedding_of_coordinates

__all__ = [
    "ConditionalDETR",
    "ConditionalTransformer",
    "ConditionalEncoderLayer",
    "ConditionalDecoderLayer",
    "ConditionalSelfAttention",
    "ConditionalCrossAttention",
    "make_resnet_dc5_backbone",
    "group_slices",
]


def make_resnet_dc5_backbone(
    depth: int = 50,
    out_features: Sequence[str] = ("res5",),
    norm: str = "FrozenBN",
    freeze_at: int = 1,
    stride_in_1x1: bool = False,
) -> ResNet:
    """Detectron2 ResNet whose res5 keeps stride 16, its 3x3 convs dilated by 2 ("DC5").

    Same arguments and parameter names as :func:`~detrdistill.modeling.backbones.make_resnet_backbone`
    (so the same ImageNet weights load); only res5's first block has stride 1 and every res5 3x3 conv
    has dilation 2 (Detectron2's ``RES5_DILATION=2`` convention). Bottleneck depths only.
    """
    if depth < 50:
        raise ValueError(f"make_resnet_dc5_backbone: a dilated res5 needs a bottleneck ResNet (>= 50), got {depth}.")
    if "res5" not in out_features:
        raise ValueError(f"make_resnet_dc5_backbone: out_features must include 'res5', got {list(out_features)}.")
    stages = ResNet.make_default_stages(depth=depth, norm=norm, stride_in_1x1=stride_in_1x1)
    stages[3] = ResNet.make_stage(
        block_class=BottleneckBlock,
        num_blocks=len(stages[3]),
        stride_per_block=[1] * len(stages[3]),
        in_channels=1024,
        out_channels=2048,
        bottleneck_channels=512,
        norm=norm,
        stride_in_1x1=stride_in_1x1,
        dilation=2,
    )
    return ResNet(
        stem=BasicStem(in_channels=3, out_channels=64, norm=norm),
        stages=stages,
        out_features=list(out_features),
        freeze_at=freeze_at,
    )


def group_slices(group_sizes: Sequence[int]) -> List[slice]:
    """Consecutive query ranges of the groups, e.g. [300, 100] -> [slice(0, 300), slice(300, 400)]."""
    slices, start = [], 0
    for n in group_sizes:
        slices.append(slice(start, start + n))
        start += n
    return slices


def _split_heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """(B, N, C) -> (B, h, N, C / h)."""
    b, n, c = x.shape
    return x.view(b, n, num_heads, c // num_heads).transpose(1, 2)


def _attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    num_heads: int,
    key_padding_mask: Optional[torch.Tensor] = None,
    dropout_p: float = 0.0,
) -> torch.Tensor:
    """Multi-head scaled dot-product attention on projected inputs.

    Args:
        q: (B, Nq, Cqk); k: (B, Nk, Cqk); v: (B, Nk, Cv) (Cqk may differ from Cv).
        key_padding_mask: (B, Nk) bool, True = key ignored.
    Returns:
        (B, Nq, Cv); logits are scaled by (Cqk / num_heads) ** -0.5.
    """
    mask = None if key_padding_mask is None else ~key_padding_mask[:, None, None, :]
    out = F.scaled_dot_product_attention(
        _split_heads(q, num_heads),
        _split_heads(k, num_heads),
        _split_heads(v, num_heads),
        attn_mask=mask,
        dropout_p=dropout_p,
    )
    return out.transpose(1, 2).flatten(2)


class ConditionalSelfAttention(nn.Module):
    """Decoder self-attention with separate content and positional projections.

    ``q = Wqc(content) + Wqp(pos)``, ``k = Wkc(content) + Wkp(pos)``, ``v = Wv(content)``.
    """

    def __init__(self, dim: int, num_heads: int, dropout: float = 0.0):
        super().__init__()
        if dim % num_heads != 0:
            raise ValueError(f"ConditionalSelfAttention: dim={dim} is not divisible by num_heads={num_heads}.")
        self.num_heads = num_heads
        self.dropout = dropout
        self.query_content_proj = nn.Linear(dim, dim)
        self.query_pos_proj = nn.Linear(dim, dim)
        self.key_content_proj = nn.Linear(dim, dim)
        self.key_pos_proj = nn.Linear(dim, dim)
        self.value_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, tgt: torch.Tensor, query_pos: torch.Tensor, group_sizes: Sequence[int]) -> torch.Tensor:
        """
        Args:
            tgt, query_pos: (B, Q, D) query content and positional embedding; the Q queries are
                consecutive groups of ``group_sizes`` that do not attend to each other.
        Returns:
            (B, Q, D) attention output (no residual).
        """
        q = self.query_content_proj(tgt) + self.query_pos_proj(query_pos)
        k = self.key_content_proj(tgt) + self.key_pos_proj(query_pos)
        v = self.value_proj(tgt)
        p = self.dropout if self.training else 0.0
        out = [_attention(q[:, s], k[:, s], v[:, s], self.num_heads, dropout_p=p) for s in group_slices(group_sizes)]
        return self.out_proj(torch.cat(out, 1) if len(out) > 1 else out[0])


class ConditionalCrossAttention(nn.Module):
    """Conditional cross-attention: per head, [content | spatial] queries against [content | positional] keys.

    The spatial query is ``query_pos_sine_proj(T(content) * sine(reference point))`` (computed
    by the caller up to the projection). Only the first decoder layer also adds the
    projected positional query / key to the content query / key (``with_query_pos=True``).
    """

    def __init__(self, dim: int, num_heads: int, dropout: float = 0.0, with_query_pos: bool = False):
        super().__init__()
        if dim % num_heads != 0:
            raise ValueError(f"ConditionalCrossAttention: dim={dim} is not divisible by num_heads={num_heads}.")
        self.num_heads = num_heads
        self.dropout = dropout
        self.query_content_proj = nn.Linear(dim, dim)
        self.query_pos_proj = nn.Linear(dim, dim) if with_query_pos else None
        self.query_pos_sine_proj = nn.Linear(dim, dim)
        self.key_content_proj = nn.Linear(dim, dim)
        self.key_pos_proj = nn.Linear(dim, dim)
        self.value_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)

    def forward(
        self,
        tgt: torch.Tensor,
        query_pos: torch.Tensor,
        query_sine_embed: torch.Tensor,
        memory: torch.Tensor,
        memory_pos: torch.Tensor,
        memory_padding_mask: Optional[torch.Tensor],
    ) -> torch.Tensor:
        """
        Args:
            tgt, query_pos, query_sine_embed: (B, Q, D) content, positional query and the
                (transformed) sine embedding of the reference points.
            memory, memory_pos: (B, S, D) encoder output and its positional embedding.
            memory_padding_mask: (B, S) bool, True = padding.
        Returns:
            (B, Q, D) attention output (no residual).
        """
        b, nq, d = tgt.shape
        ns = memory.shape[1]
        h = self.num_heads
        q = self.query_content_proj(tgt)
        k = self.key_content_proj(memory)
        v = self.value_proj(memory)
        k_pos = self.key_pos_proj(memory_pos)
        if self.query_pos_proj is not None:
            q = q + self.query_pos_proj(query_pos)
            k = k + k_pos
        q_sine = self.query_pos_sine_proj(query_sine_embed)
        q = torch.cat([q.view(b, nq, h, d // h), q_sine.view(b, nq, h, d // h)], -1).view(b, nq, 2 * d)
        k = torch.cat([k.view(b, ns, h, d // h), k_pos.view(b, ns, h, d // h)], -1).view(b, ns, 2 * d)
        p = self.dropout if self.training else 0.0
        return self.out_proj(_attention(q, k, v, h, memory_padding_mask, p))


class ConditionalEncoderLayer(nn.Module):
    """DETR encoder layer (post-norm): self-attention with positions added to q and k, FFN."""

    def __init__(self, dim: int = 256, num_heads: int = 8, ffn_dim: int = 2048, dropout: float = 0.1):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)
        self.self_attn_norm = nn.LayerNorm(dim)
        self.ffn = FeedForward(dim, ffn_dim, dropout)
        self.ffn_norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, src: torch.Tensor, pos: torch.Tensor, padding_mask: Optional[torch.Tensor]) -> torch.Tensor:
        """src, pos: (B, S, D); padding_mask: (B, S) bool, True = padding."""
        q = k = src + pos
        attn = self.self_attn(q, k, src, key_padding_mask=padding_mask, need_weights=False)[0]
        src = self.self_attn_norm(src + self.dropout(attn))
        return self.ffn_norm(src + self.ffn(src))


class ConditionalDecoderLayer(nn.Module):
    """Conditional self-attention, conditional cross-attention, FFN; post-norm."""

    def __init__(
        self, dim: int = 256, num_heads: int = 8, ffn_dim: int = 2048, dropout: float = 0.1, first_layer: bool = False
    ):
        super().__init__()
        self.self_attn = ConditionalSelfAttention(dim, num_heads, dropout)
        self.self_attn_norm = nn.LayerNorm(dim)
        self.cross_attn = ConditionalCrossAttention(dim, num_heads, dropout, with_query_pos=first_layer)
        self.cross_attn_norm = nn.LayerNorm(dim)
        self.ffn = FeedForward(dim, ffn_dim, dropout)
        self.ffn_norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, tgt, query_pos, query_sine_embed, memory, memory_pos, memory_padding_mask, group_sizes):
        """tgt, query_pos, query_sine_embed: (B, Q, D); memory, memory_pos: (B, S, D) -> (B, Q, D)."""
        tgt = self.self_attn_norm(tgt + self.dropout(self.self_attn(tgt, query_pos, group_sizes)))
        attn = self.cross_attn(tgt, query_pos, query_sine_embed, memory, memory_pos, memory_padding_mask)
        tgt = self.cross_attn_norm(tgt + self.dropout(attn))
        return self.ffn_norm(tgt + self.ffn(tgt))


class ConditionalTransformer(nn.Module):
    """Encoder and conditional decoder of Conditional DETR.

    Parameters: ``encoder_layers``, ``decoder_layers``, ``ref_point_head`` (MLP D -> D -> 2,
    reference points from the positional query), ``query_scale`` (the "T" MLP D -> D -> D
    applied to the decoder content from layer 2 on), ``decoder_norm`` (LayerNorm on every
    layer's output before the heads).
    """

    def __init__(
        self,
        dim: int = 256,
        num_heads: int = 8,
        num_encoder_layers: int = 6,
        num_decoder_layers: int = 6,
        ffn_dim: int = 2048,
        dropout: float = 0.1,
    ):
        super().__init__()
        if dim % 2 != 0:
            raise ValueError(f"ConditionalTransformer: dim must be even (sine embedding of x and y), got {dim}.")
        if num_decoder_layers < 1:
            raise ValueError(f"ConditionalTransformer: num_decoder_layers must be >= 1, got {num_decoder_layers}.")
        self.dim = dim
        self.encoder_layers = nn.ModuleList(
            ConditionalEncoderLayer(dim, num_heads, ffn_dim, dropout) for _ in range(num_encoder_layers)
        )
        self.decoder_layers = nn.ModuleList(
            ConditionalDecoderLayer(dim, num_heads, ffn_dim, dropout, first_layer=(i == 0))
            for i in range(num_decoder_layers)
        )
        self.query_scale = MLP(dim, dim, dim, 2)
        self.ref_point_head = MLP(dim, dim, 2, 2)
        self.decoder_norm = nn.LayerNorm(dim)
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def encode(self, src: torch.Tensor, pos: torch.Tensor, padding_mask: Optional[torch.Tensor]) -> torch.Tensor:
        """(B, S, D) flattened features and positions, (B, S) padding mask -> (B, S, D) memory."""
        memory = src
        for layer in self.encoder_layers:
            memory = layer(memory, pos, padding_mask)
        return memory

    def decode(
        self,
        query_pos: torch.Tensor,
        memory: torch.Tensor,
        memory_pos: torch.Tensor,
        memory_padding_mask: Optional[torch.Tensor],
        group_sizes: Sequence[int],
        group_references: Optional[Sequence[Optional[torch.Tensor]]] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Decode from zero content queries.

        Args:
            query_pos: (B, Q, D) positional queries (the learned object queries).
            memory, memory_pos: (B, S, D); memory_padding_mask: (B, S) bool, True = padding.
            group_sizes: sizes of the consecutive query groups (block-diagonal self-attention).
            group_references: per group, None (reference points from ``ref_point_head``) or
                given (B, Q_g, 2) normalized (x, y) reference points (e.g. a teacher's).
        Returns:
            hidden states (L, B, Q, D) after ``decoder_norm`` and reference points (B, Q, 2)
            normalized (x, y), shared by all layers.
        """
        # Per group, so that a group's values never depend on where it sits in the batch (CPU
        # transcendental kernels round differently in vectorized and tail loops).
        references, sines = [], []
        given = list(group_references) if group_references is not None else [None] * len(group_sizes)
        for s, ref in zip(group_slices(group_sizes), given):
            if ref is None:
                ref = self.ref_point_head(query_pos[:, s]).sigmoid()
            references.append(ref)
            # (y, x) order as in the original implementation (pos_y first).
            sines.append(sine_embedding_of_coordinates(ref.flip(-1), num_pos_feats=self.dim // 2))
        reference = torch.cat(references, 1) if len(references) > 1 else references[0]
        sine = (torch.cat(sines, 1) if len(sines) > 1 else sines[0]).to(query_pos.dtype)
        tgt = torch.zeros_like(query_pos)
        hidden = []
        for idx, layer in enumerate(self.decoder_layers):
            query_sine_embed = sine if idx == 0 else sine * self.query_scale(tgt)
            tgt = layer(tgt, query_pos, query_sine_embed, memory, memory_pos, memory_padding_mask, group_sizes)
            hidden.append(self.decoder_norm(tgt))
        return torch.stack(hidden), reference


@META_ARCH_REGISTRY.register()
class ConditionalDETR(DETRBase):
    """Conditional DETR detector.

    Queries (``query_embed``): the learned positional object queries ``query_embed.weight``
    (Q, D); the content queries start at zero. ``extra_queries`` take the same (Q', D) form
    (or per image (B, Q', D)).
    """

    def __init__(
        self,
        *,
        backbone: Backbone,
        criterion: SetCriterion,
        in_feature: str = "res5",
        num_classes: int = 80,
        num_queries: int = 300,
        hidden_dim: int = 256,
        num_heads: int = 8,
        num_encoder_layers: int = 6,
        num_decoder_layers: int = 6,
        dim_feedforward: int = 2048,
        dropout: float = 0.1,
        position_embedding: Optional[nn.Module] = None,
        pixel_mean: Sequence[float] = (123.675, 116.280, 103.530),
        pixel_std: Sequence[float] = (58.395, 57.120, 57.375),
        size_divisibility: int = 32,
        select_box_nums_for_evaluation: int = 300,
    ):
        """
        Args:
            backbone: a Detectron2 backbone with output ``in_feature`` (e.g. ResNet "res5",
                or :func:`make_resnet_dc5_backbone` for DC5).
            criterion: :class:`SetCriterion` (focal + L1 + GIoU on every decoder layer).
            in_feature: the single backbone level fed to the transformer.
            num_classes, num_queries, hidden_dim, num_heads, num_encoder_layers,
            num_decoder_layers, dim_feedforward, dropout: transformer sizes (paper: 300
            queries, 6 + 6 layers, 256-d, 8 heads, FFN 2048, dropout 0.1).
            position_embedding: default: normalized sine embedding with ``hidden_dim // 2``
                features per axis, temperature 10000.
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
        shapes = self.backbone_shapes(backbone, [in_feature])
        if hidden_dim % num_heads != 0:
            raise ValueError(f"ConditionalDETR: hidden_dim={hidden_dim} is not divisible by num_heads={num_heads}.")
        self.backbone = backbone
        self.in_feature = in_feature
        self.num_queries = num_queries
        self.hidden_dim = hidden_dim
        self.num_decoder_layers = num_decoder_layers

        self.input_proj = nn.Conv2d(shapes[in_feature].channels, hidden_dim, kernel_size=1)
        self.position_embedding = position_embedding or PositionEmbeddingSine(
            hidden_dim // 2, temperature=10000, normalize=True
        )
        self.transformer = ConditionalTransformer(
            dim=hidden_dim,
            num_heads=num_heads,
            num_encoder_layers=num_encoder_layers,
            num_decoder_layers=num_decoder_layers,
            ffn_dim=dim_feedforward,
            dropout=dropout,
        )
        self.query_embed = nn.Embedding(num_queries, hidden_dim)
        self.class_embed = nn.Linear(hidden_dim, num_classes)
        self.bbox_embed = MLP(hidden_dim, hidden_dim, 4, 3)
        prior_prob = 0.01
        nn.init.constant_(self.class_embed.bias, -math.log((1 - prior_prob) / prior_prob))
        nn.init.constant_(self.bbox_embed.layers[-1].weight, 0.0)
        nn.init.constant_(self.bbox_embed.layers[-1].bias, 0.0)

    def class_head_parameter_names(self) -> List[str]:
        return ["class_embed.weight", "class_embed.bias"]

    def _expand_queries(self, queries: torch.Tensor, batch_size: int, what: str):
        """(Q, D) or (B, Q, D) positional queries -> ((B, Q, D), None); (B, Q, D + 2) = [positional |
        reference xy] (a :meth:`query_prior`) -> ((B, Q, D), (B, Q, 2) references)."""
        d = self.hidden_dim
        if queries.dim() == 2 and queries.shape[1] == d:
            return queries[None].expand(batch_size, -1, -1), None
        if queries.dim() == 3 and queries.shape[0] == batch_size and queries.shape[2] == d:
            return queries, None
        if queries.dim() == 3 and queries.shape[0] == batch_size and queries.shape[2] == d + 2:
            pos, ref = queries.split([d, 2], dim=-1)
            return pos, ref
        raise ValueError(
            f"ConditionalDETR: {what} must be (Q, {d}) or (B={batch_size}, Q, {d}) positional queries, or "
            f"(B={batch_size}, Q, {d}+2) = [positional | reference xy], got {tuple(queries.shape)}."
        )

    def query_prior(self, outputs: DETROutputs) -> torch.Tensor:
        """(B, Q, D + 2) = [positional query | this model's reference xy (normalized)], so that a
        receiving model decodes the queries from the same reference points."""
        reference = outputs.aux["reference_points"]
        pos, _ = self._expand_queries(outputs.query_embed, reference.shape[0], "query_embed")
        return torch.cat([pos, reference.to(pos.dtype)], dim=-1)

    def _predict(self, hidden: torch.Tensor, reference: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Heads on (L, B, Q, D) hidden states with (B, Q, 2) reference points.

        Returns:
            logits (L, B, Q, C) and boxes (L, B, Q, 4) normalized cxcywh: the box head's
            (x, y) offsets are added to the reference point in logit space.
        """
        deltas = self.bbox_embed(hidden)
        boxes = torch.cat([deltas[..., :2] + inverse_sigmoid(reference), deltas[..., 2:]], -1).sigmoid()
        return self.class_embed(hidden), boxes

    def run(self, images: ImageList, extra_queries: Optional[torch.Tensor] = None) -> DETROutputs:
        """Backbone, encoder and decoder on a padded batch.

        Args:
            images: normalized, padded images (from :meth:`preprocess_image`).
            extra_queries: optional second query group, (Q', D) or (B, Q', D) positional
                queries as in ``query_embed``, or (B, Q', D + 2) with their reference points
                (:meth:`query_prior`; e.g. a teacher's, detached); decoded in the same
                pass with block-diagonal self-attention, predictions in ``outputs.extra``.
        Returns:
            :class:`DETROutputs`; ``features`` is the single projected level [(B, D, H, W)],
            ``aux["reference_points"]`` the (B, Q, 2) normalized reference points.
        """
        bs = images.tensor.shape[0]
        feature = self.input_proj(self.backbone(images.tensor)[self.in_feature])
        mask = self.level_masks(self.padding_mask(images), [feature])[0]
        pos = self.position_embedding(mask).to(feature.dtype)
        src = feature.flatten(2).transpose(1, 2)  # (B, S, D)
        pos_flat = pos.flatten(2).transpose(1, 2)
        mask_flat = mask.flatten(1)
        memory = self.transformer.encode(src, pos_flat, mask_flat)

        query_embed = self.query_embed.weight
        query_pos, _ = self._expand_queries(query_embed, bs, "query_embed")
        group_sizes, group_references = [query_pos.shape[1]], [None]
        if extra_queries is not None:
            extra_pos, extra_ref = self._expand_queries(extra_queries.to(query_pos.dtype), bs, "extra_queries")
            query_pos = torch.cat([query_pos, extra_pos], 1)
            group_sizes.append(extra_pos.shape[1])
            group_references.append(extra_ref)
        hidden, reference = self.transformer.decode(
            query_pos, memory, pos_flat, mask_flat, group_sizes, group_references
        )

        # Heads per group (see ConditionalTransformer.decode): the main group's predictions
        # are the same with or without an extra group, up to float rounding (linear layers
        # shared by the groups run over more rows, which CPU GEMM kernels may block differently).
        slices = group_slices(group_sizes)
        logits, boxes = self._predict(hidden[:, :, slices[0]].contiguous(), reference[:, slices[0]].contiguous())
        extra = None
        if extra_queries is not None:
            extra_logits, extra_boxes = self._predict(
                hidden[:, :, slices[1]].contiguous(), reference[:, slices[1]].contiguous()
            )
            extra = DETROutputs(
                logits=extra_logits,
                boxes=extra_boxes,
                hidden_states=hidden[:, :, slices[1]],
                query_embed=extra_queries,
                aux={"reference_points": reference[:, slices[1]]},
            )
        return DETROutputs(
            logits=logits,
            boxes=boxes,
            hidden_states=hidden[:, :, slices[0]],
            query_embed=query_embed,
            features=[feature],
            feature_masks=[mask],
            image_sizes=torch.as_tensor(images.image_sizes, dtype=torch.int64).to(images.tensor.device, non_blocking=True),
            extra=extra,
            aux={"reference_points": reference[:, slices[0]]},
        )
