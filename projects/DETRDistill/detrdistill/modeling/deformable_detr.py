"""Deformable DETR (Zhu et al., ICLR 2021) as a Detectron2 meta-architecture.

Multi-level features (3 backbone levels + 1 extra stride-2 level) go through a deformable
encoder; the decoder refines ``num_queries`` queries with self-attention and deformable
cross-attention; every decoder layer predicts sigmoid class scores and normalized cxcywh
boxes relative to its reference points. Options: iterative box refinement
(``with_box_refine``) and two-stage proposals (``as_two_stage``).

``run(images, extra_queries=...)`` runs another query set (e.g. a teacher's) as a second
group in the same decoder pass (block-diagonal self-attention), as DETRDistill's
query-prior assignment distillation needs.
"""
import copy
import math
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from detectron2.modeling import META_ARCH_REGISTRY, Backbone
from detectron2.structures import ImageList

from .backbones import MultiLevelProjection
from .criterion import SetCriterion
from .detr_base import MLP, DETRBase, inverse_sigmoid
from .ms_deform_attn import MultiScaleDeformableAttention
from .outputs import DETROutputs
from .position_encoding import PositionEmbeddingSine, sine_embedding_of_coordinates

__all__ = [
    "DeformableDETR",
    "DeformableTransformer",
    "DeformableTransformerEncoderLayer",
    "DeformableTransformerDecoderLayer",
    "FeedForward",
    "group_self_attention_mask",
]


class FeedForward(nn.Module):
    """Linear -> ReLU -> dropout -> Linear -> dropout (no residual)."""

    def __init__(self, dim: int, hidden_dim: int, dropout: float = 0.1):
        super().__init__()
        self.linear1 = nn.Linear(dim, hidden_dim)
        self.linear2 = nn.Linear(hidden_dim, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.linear2(self.dropout(F.relu(self.linear1(x)))))


class DeformableTransformerEncoderLayer(nn.Module):
    """Deformable self-attention over all levels + FFN, post-norm."""

    def __init__(self, dim=256, ffn_dim=1024, dropout=0.1, num_levels=4, num_heads=8, num_points=4):
        super().__init__()
        self.self_attn = MultiScaleDeformableAttention(dim, num_heads, num_levels, num_points)
        self.self_attn_norm = nn.LayerNorm(dim)
        self.ffn = FeedForward(dim, ffn_dim, dropout)
        self.ffn_norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, src, pos, reference_points, spatial_shapes, padding_mask):
        """src, pos: (B, S, D); reference_points: (B, S, L, 2); padding_mask: (B, S) True = pad."""
        attn = self.self_attn(src + pos, reference_points, src, spatial_shapes, padding_mask)
        src = self.self_attn_norm(src + self.dropout(attn))
        return self.ffn_norm(src + self.ffn(src))


class DeformableTransformerDecoderLayer(nn.Module):
    """Query self-attention, deformable cross-attention to the encoder memory, FFN; post-norm."""

    def __init__(self, dim=256, ffn_dim=1024, dropout=0.1, num_levels=4, num_heads=8, num_points=4):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)
        self.self_attn_norm = nn.LayerNorm(dim)
        self.cross_attn = MultiScaleDeformableAttention(dim, num_heads, num_levels, num_points)
        self.cross_attn_norm = nn.LayerNorm(dim)
        self.ffn = FeedForward(dim, ffn_dim, dropout)
        self.ffn_norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, tgt, query_pos, reference_points, memory, spatial_shapes, memory_padding_mask, self_attn_mask=None):
        """
        Args:
            tgt, query_pos: (B, Q, D) query content and positional embedding.
            reference_points: (B, Q, L, 2 or 4) normalized, already scaled by valid ratios.
            memory: (B, S, D) encoder output; memory_padding_mask: (B, S) True = pad.
            self_attn_mask: optional (Q, Q) bool, True = query i may not attend to query j.
        """
        q = k = tgt + query_pos
        attn = self.self_attn(q, k, tgt, attn_mask=self_attn_mask, need_weights=False)[0]
        tgt = self.self_attn_norm(tgt + self.dropout(attn))
        attn = self.cross_attn(tgt + query_pos, reference_points, memory, spatial_shapes, memory_padding_mask)
        tgt = self.cross_attn_norm(tgt + self.dropout(attn))
        return self.ffn_norm(tgt + self.ffn(tgt))


def group_self_attention_mask(group_sizes: Sequence[int], device=None) -> torch.Tensor:
    """Block-diagonal (Group-DETR) mask: (Q, Q) bool, True where queries of different groups meet."""
    group_ids = torch.cat([torch.full((n,), g, dtype=torch.int64, device=device) for g, n in enumerate(group_sizes)])
    return group_ids[:, None] != group_ids[None, :]


class DeformableTransformer(nn.Module):
    """Encoder, decoder and query-side parameters of Deformable DETR.

    Parameters: ``level_embed`` (L, D); ``encoder_layers``/``decoder_layers``; one-stage:
    ``reference_points`` (Linear D -> 2, reference points from the positional query);
    two-stage: ``enc_output``/``enc_output_norm`` (proposal features) and
    ``pos_trans``/``pos_trans_norm`` (queries from proposal boxes).
    """

    def __init__(
        self,
        dim: int = 256,
        num_heads: int = 8,
        num_encoder_layers: int = 6,
        num_decoder_layers: int = 6,
        ffn_dim: int = 1024,
        dropout: float = 0.1,
        num_levels: int = 4,
        encoder_points: int = 4,
        decoder_points: int = 4,
        as_two_stage: bool = False,
    ):
        super().__init__()
        self.dim = dim
        self.num_levels = num_levels
        self.as_two_stage = as_two_stage
        self.encoder_layers = nn.ModuleList(
            DeformableTransformerEncoderLayer(dim, ffn_dim, dropout, num_levels, num_heads, encoder_points)
            for _ in range(num_encoder_layers)
        )
        self.decoder_layers = nn.ModuleList(
            DeformableTransformerDecoderLayer(dim, ffn_dim, dropout, num_levels, num_heads, decoder_points)
            for _ in range(num_decoder_layers)
        )
        self.level_embed = nn.Parameter(torch.empty(num_levels, dim))
        if as_two_stage:
            self.enc_output = nn.Linear(dim, dim)
            self.enc_output_norm = nn.LayerNorm(dim)
            self.pos_trans = nn.Linear(2 * dim, 2 * dim)
            self.pos_trans_norm = nn.LayerNorm(2 * dim)
        else:
            self.reference_points = nn.Linear(dim, 2)
        self.reset_parameters()

    def reset_parameters(self):
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        for m in self.modules():
            if isinstance(m, MultiScaleDeformableAttention):
                m.reset_parameters()
        if not self.as_two_stage:
            nn.init.xavier_uniform_(self.reference_points.weight, gain=1.0)
            nn.init.constant_(self.reference_points.bias, 0.0)
        nn.init.normal_(self.level_embed)

    @staticmethod
    def valid_ratios(mask: torch.Tensor) -> torch.Tensor:
        """(B, H, W) padding mask -> (B, 2) fraction (w, h) of the map that is image."""
        _, h, w = mask.shape
        valid_h = (~mask[:, :, 0]).sum(1).float() / h
        valid_w = (~mask[:, 0, :]).sum(1).float() / w
        return torch.stack([valid_w, valid_h], -1)

    @staticmethod
    def encoder_reference_points(spatial_shapes, valid_ratios: torch.Tensor) -> torch.Tensor:
        """Pixel centers of every level, normalized to the valid region.

        Returns:
            (B, S, L, 2): for every token its (x, y), scaled into each level's valid ratio.
        """
        device = valid_ratios.device
        refs = []
        for level, (h, w) in enumerate(spatial_shapes):
            ref_y, ref_x = torch.meshgrid(
                torch.linspace(0.5, h - 0.5, h, dtype=torch.float32, device=device),
                torch.linspace(0.5, w - 0.5, w, dtype=torch.float32, device=device),
                indexing="ij",
            )
            ref_y = ref_y.reshape(-1)[None] / (valid_ratios[:, None, level, 1] * h)
            ref_x = ref_x.reshape(-1)[None] / (valid_ratios[:, None, level, 0] * w)
            refs.append(torch.stack((ref_x, ref_y), -1))
        refs = torch.cat(refs, 1)
        return refs[:, :, None] * valid_ratios[:, None]

    def encode(self, features: List[torch.Tensor], masks: List[torch.Tensor], pos_embeds: List[torch.Tensor]):
        """Run the encoder on flattened levels.

        Returns:
            memory (B, S, D), memory_padding_mask (B, S), spatial_shapes (list of (H_l, W_l)),
            valid_ratios (B, L, 2).
        """
        if len(features) != self.num_levels:
            raise ValueError(f"DeformableTransformer has {self.num_levels} levels, got {len(features)} feature maps.")
        spatial_shapes = [tuple(f.shape[-2:]) for f in features]
        src = torch.cat([f.flatten(2).transpose(1, 2) for f in features], 1)
        padding_mask = torch.cat([m.flatten(1) for m in masks], 1)
        pos = torch.cat(
            [p.flatten(2).transpose(1, 2) + self.level_embed[l].view(1, 1, -1) for l, p in enumerate(pos_embeds)], 1
        )
        valid_ratios = torch.stack([self.valid_ratios(m) for m in masks], 1)
        reference_points = self.encoder_reference_points(spatial_shapes, valid_ratios)
        memory = src
        for layer in self.encoder_layers:
            memory = layer(memory, pos, reference_points, spatial_shapes, padding_mask)
        return memory, padding_mask, spatial_shapes, valid_ratios

    def decode(
        self,
        tgt: torch.Tensor,
        query_pos: torch.Tensor,
        reference_points: torch.Tensor,
        memory: torch.Tensor,
        memory_padding_mask: torch.Tensor,
        spatial_shapes,
        valid_ratios: torch.Tensor,
        bbox_embed: Optional[nn.ModuleList] = None,
        self_attn_mask: Optional[torch.Tensor] = None,
    ) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        """Run the decoder.

        Args:
            tgt, query_pos: (B, Q, D); reference_points: (B, Q, 2 or 4) normalized, sigmoid space.
            bbox_embed: per-layer box heads for iterative refinement (None: fixed references).
        Returns:
            hidden states (L, B, Q, D) and, per layer, the (B, Q, 2 or 4) reference points
            that layer used (detached between layers when refining).
        """
        hidden, references = [], []
        output = tgt
        for idx, layer in enumerate(self.decoder_layers):
            if reference_points.shape[-1] == 4:
                ref_input = reference_points[:, :, None] * torch.cat([valid_ratios, valid_ratios], -1)[:, None]
            else:
                ref_input = reference_points[:, :, None] * valid_ratios[:, None]
            output = layer(output, query_pos, ref_input, memory, spatial_shapes, memory_padding_mask, self_attn_mask)
            hidden.append(output)
            references.append(reference_points)
            if bbox_embed is not None and idx < len(self.decoder_layers) - 1:
                delta = bbox_embed[idx](output)
                if reference_points.shape[-1] == 4:
                    new_ref = (delta + inverse_sigmoid(reference_points)).sigmoid()
                else:
                    new_ref = torch.cat([delta[..., :2] + inverse_sigmoid(reference_points), delta[..., 2:]], -1).sigmoid()
                reference_points = new_ref.detach()
        return torch.stack(hidden), references

    def encoder_proposals(self, memory, memory_padding_mask, spatial_shapes):
        """Two-stage: one proposal box per encoder token.

        Returns:
            proposal features (B, S, D) and unactivated (inverse-sigmoid) proposal boxes
            (B, S, 4) cxcywh, +inf at padding and near-border tokens.
        """
        bs = memory.shape[0]
        proposals = []
        start = 0
        for level, (h, w) in enumerate(spatial_shapes):
            mask = memory_padding_mask[:, start : start + h * w].view(bs, h, w)
            valid_h = (~mask[:, :, 0]).sum(1)
            valid_w = (~mask[:, 0, :]).sum(1)
            grid_y, grid_x = torch.meshgrid(
                torch.arange(h, dtype=torch.float32, device=memory.device),
                torch.arange(w, dtype=torch.float32, device=memory.device),
                indexing="ij",
            )
            grid = torch.stack([grid_x, grid_y], -1)  # (H, W, 2)
            scale = torch.stack([valid_w, valid_h], -1).view(bs, 1, 1, 2).float()
            grid = (grid[None] + 0.5) / scale
            wh = torch.full_like(grid, 0.05 * (2.0**level))
            proposals.append(torch.cat((grid, wh), -1).view(bs, -1, 4))
            start += h * w
        proposals = torch.cat(proposals, 1)
        valid = ((proposals > 0.01) & (proposals < 0.99)).all(-1, keepdim=True)
        proposals = torch.log(proposals / (1 - proposals))
        proposals = proposals.masked_fill(memory_padding_mask[..., None], float("inf"))
        proposals = proposals.masked_fill(~valid, float("inf"))
        features = memory.masked_fill(memory_padding_mask[..., None], 0.0).masked_fill(~valid, 0.0)
        features = self.enc_output_norm(self.enc_output(features))
        return features, proposals

    def queries_from_boxes(self, boxes: torch.Tensor) -> torch.Tensor:
        """Two-stage queries of (B, Q, 4) normalized boxes: (B, Q, 2D) = [positional | content]."""
        embed = sine_embedding_of_coordinates(boxes, num_pos_feats=self.dim // 2)
        return self.pos_trans_norm(self.pos_trans(embed))


@META_ARCH_REGISTRY.register()
class DeformableDETR(DETRBase):
    """Deformable DETR detector.

    Queries (``query_embed``): one-stage, the learned ``query_embed.weight`` (Q, 2D) =
    [positional | content], reference points from ``transformer.reference_points``;
    two-stage, per image (B, Q, 2D + 4) = [positional | content | reference box (normalized
    cxcywh)] built from the top-scoring encoder proposals.
    """

    def __init__(
        self,
        *,
        backbone: Backbone,
        in_features: Sequence[str],
        criterion: SetCriterion,
        num_classes: int = 80,
        num_queries: int = 300,
        hidden_dim: int = 256,
        num_heads: int = 8,
        num_encoder_layers: int = 6,
        num_decoder_layers: int = 6,
        dim_feedforward: int = 1024,
        dropout: float = 0.1,
        num_feature_levels: int = 4,
        encoder_points: int = 4,
        decoder_points: int = 4,
        with_box_refine: bool = False,
        as_two_stage: bool = False,
        position_embedding: Optional[nn.Module] = None,
        input_proj_num_groups: int = 32,
        pixel_mean: Sequence[float] = (123.675, 116.280, 103.530),
        pixel_std: Sequence[float] = (58.395, 57.120, 57.375),
        size_divisibility: int = 32,
        select_box_nums_for_evaluation: int = 100,
    ):
        """
        Args:
            backbone: a Detectron2 backbone whose outputs include ``in_features``.
            in_features: backbone outputs used, finest first; levels beyond them up to
                ``num_feature_levels`` are extra stride-2 convs on the last one.
            criterion: :class:`SetCriterion` (focal + L1 + GIoU on every decoder layer).
            num_classes, num_queries, hidden_dim, num_heads, num_encoder_layers,
            num_decoder_layers, dim_feedforward, dropout: transformer sizes.
            num_feature_levels: levels fed to the transformer (4 in the paper).
            encoder_points, decoder_points: sampling points per head and level.
            with_box_refine: each decoder layer has its own heads and refines the previous
                layer's boxes (references detached between layers).
            as_two_stage: queries come from the top-``num_queries`` encoder proposals.
            position_embedding: default sine embedding with ``hidden_dim // 2`` features per
                axis, normalized, offset -0.5 (as the original).
            input_proj_num_groups: GroupNorm groups of the input projection.
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
        if num_feature_levels < len(in_features):
            raise ValueError(
                f"DeformableDETR: num_feature_levels={num_feature_levels} < {len(in_features)} in_features."
            )
        if hidden_dim % 2 != 0:
            raise ValueError(f"DeformableDETR: hidden_dim must be even, got {hidden_dim}.")
        self.backbone = backbone
        self.in_features = in_features
        self.num_queries = num_queries
        self.hidden_dim = hidden_dim
        self.num_decoder_layers = num_decoder_layers
        self.num_feature_levels = num_feature_levels
        self.with_box_refine = with_box_refine
        self.as_two_stage = as_two_stage

        self.input_proj = MultiLevelProjection(
            [shapes[f].channels for f in in_features],
            hidden_dim,
            num_extra_levels=num_feature_levels - len(in_features),
            num_groups=input_proj_num_groups,
        )
        self.position_embedding = position_embedding or PositionEmbeddingSine(
            hidden_dim // 2, temperature=10000, normalize=True, offset=-0.5
        )
        self.transformer = DeformableTransformer(
            dim=hidden_dim,
            num_heads=num_heads,
            num_encoder_layers=num_encoder_layers,
            num_decoder_layers=num_decoder_layers,
            ffn_dim=dim_feedforward,
            dropout=dropout,
            num_levels=num_feature_levels,
            encoder_points=encoder_points,
            decoder_points=decoder_points,
            as_two_stage=as_two_stage,
        )
        if not as_two_stage:
            self.query_embed = nn.Embedding(num_queries, 2 * hidden_dim)

        # Heads: one shared pair without refinement; with refinement one pair per decoder
        # layer (+ one for two-stage proposals).
        class_head = nn.Linear(hidden_dim, num_classes)
        box_head = MLP(hidden_dim, hidden_dim, 4, 3)
        prior_prob = 0.01
        nn.init.constant_(class_head.bias, -math.log((1 - prior_prob) / prior_prob))
        nn.init.constant_(box_head.layers[-1].weight, 0.0)
        nn.init.constant_(box_head.layers[-1].bias, 0.0)
        num_heads_needed = (num_decoder_layers + int(as_two_stage)) if with_box_refine else 1
        self.class_embed = nn.ModuleList(copy.deepcopy(class_head) for _ in range(num_heads_needed))
        self.bbox_embed = nn.ModuleList(copy.deepcopy(box_head) for _ in range(num_heads_needed))
        if as_two_stage:
            for head in self.bbox_embed:
                nn.init.constant_(head.layers[-1].bias[2:], 0.0)
        else:
            nn.init.constant_(self.bbox_embed[0].layers[-1].bias[2:], -2.0)

    # ------------------------------------------------------------------ helpers
    def class_head_parameter_names(self) -> List[str]:
        return [f"class_embed.{name}" for name, _ in self.class_embed.named_parameters()]

    def _head_index(self, layer: int) -> int:
        return layer if self.with_box_refine else 0

    def _split_queries(self, query_embed: torch.Tensor, batch_size: int, what: str):
        """query_embed -> (content (B, Q, D), positional (B, Q, D), references (B, Q, 2 or 4)).

        Accepted forms: two-stage (B, Q, 2D+4) = [positional | content | box]; otherwise (Q, 2D)
        = [positional | content] with references from this model's ``reference_points`` layer,
        or (B, Q, 2D+2) = [positional | content | reference xy] (a :meth:`query_prior`).
        """
        d = self.hidden_dim
        if self.as_two_stage:
            if query_embed.dim() != 3 or query_embed.shape[0] != batch_size or query_embed.shape[2] != 2 * d + 4:
                raise ValueError(
                    f"DeformableDETR (two-stage): {what} must be (B={batch_size}, Q, 2*{d}+4) = "
                    f"[positional | content | box], got {tuple(query_embed.shape)}."
                )
            query_pos, tgt, ref = query_embed.split([d, d, 4], dim=-1)
            return tgt, query_pos, ref
        if query_embed.dim() == 3 and query_embed.shape[0] == batch_size and query_embed.shape[2] == 2 * d + 2:
            query_pos, tgt, ref = query_embed.split([d, d, 2], dim=-1)
            return tgt, query_pos, ref
        if query_embed.dim() != 2 or query_embed.shape[1] != 2 * d:
            raise ValueError(
                f"DeformableDETR: {what} must be (Q, 2*{d}) = [positional | content] or "
                f"(B={batch_size}, Q, 2*{d}+2) = [positional | content | reference xy], got {tuple(query_embed.shape)}."
            )
        query_pos, tgt = query_embed.split(d, dim=1)
        query_pos = query_pos[None].expand(batch_size, -1, -1)
        tgt = tgt[None].expand(batch_size, -1, -1)
        ref = self.transformer.reference_points(query_pos).sigmoid()
        return tgt, query_pos, ref

    def query_prior(self, outputs: DETROutputs) -> torch.Tensor:
        """Single-stage: (B, Q, 2D+2) = [positional | content | this model's initial reference xy]
        (normalized, sigmoid space), so that a receiving model decodes the queries from the same
        points. Two-stage: ``outputs.query_embed`` (it already ends with the reference boxes)."""
        if self.as_two_stage:
            return outputs.query_embed
        bs = outputs.logits.shape[1]
        tgt, query_pos, ref = self._split_queries(outputs.query_embed, bs, "query_embed")
        return torch.cat([query_pos, tgt, ref], dim=-1)

    def _predict(self, hidden: torch.Tensor, references: List[torch.Tensor]):
        """Heads on (L, B, Q, D) hidden states -> logits (L, B, Q, C), boxes (L, B, Q, 4)."""
        ref_unact = torch.stack(
            [F.pad(inverse_sigmoid(r), (0, 4 - r.shape[-1])) for r in references]
        )  # (L, B, Q, 4); zero w/h offsets for point references
        if self.with_box_refine:
            logits = torch.stack([self.class_embed[l](hidden[l]) for l in range(hidden.shape[0])])
            deltas = torch.stack([self.bbox_embed[l](hidden[l]) for l in range(hidden.shape[0])])
        else:
            logits = self.class_embed[0](hidden)
            deltas = self.bbox_embed[0](hidden)
        return logits, (deltas + ref_unact).sigmoid()

    # ------------------------------------------------------------------ forward
    def run(self, images: ImageList, extra_queries: Optional[torch.Tensor] = None) -> DETROutputs:
        """Backbone, encoder and decoder on a padded batch.

        Args:
            images: normalized, padded images (from :meth:`preprocess_image`).
            extra_queries: optional second query group in this model's ``query_embed`` format
                (e.g. a teacher's, detached), decoded in the same pass with a block-diagonal
                self-attention mask; its predictions go to ``outputs.extra``.
        Returns:
            :class:`DETROutputs` of the main group (+ ``extra``).
        """
        bs = images.tensor.shape[0]
        backbone_features = self.backbone(images.tensor)
        features = self.input_proj([backbone_features[f] for f in self.in_features])
        masks = self.level_masks(self.padding_mask(images), features)
        pos_embeds = [self.position_embedding(m).to(f.dtype) for m, f in zip(masks, features)]
        memory, memory_mask, spatial_shapes, valid_ratios = self.transformer.encode(features, masks, pos_embeds)

        enc_outputs = None
        if self.as_two_stage:
            proposal_features, proposals = self.transformer.encoder_proposals(memory, memory_mask, spatial_shapes)
            enc_head = self.num_decoder_layers if self.with_box_refine else 0
            enc_logits = self.class_embed[enc_head](proposal_features)
            enc_boxes_unact = self.bbox_embed[enc_head](proposal_features) + proposals
            topk = enc_logits[..., 0].topk(self.num_queries, dim=1)[1]
            ref_boxes = enc_boxes_unact.gather(1, topk[..., None].expand(-1, -1, 4)).detach().sigmoid()
            query_embed = torch.cat([self.transformer.queries_from_boxes(ref_boxes), ref_boxes], -1)
            enc_outputs = {"logits": enc_logits, "boxes": enc_boxes_unact.sigmoid()}
        else:
            query_embed = self.query_embed.weight

        tgt, query_pos, ref = self._split_queries(query_embed, bs, "query_embed")
        num_main = tgt.shape[1]
        self_attn_mask = None
        if extra_queries is not None:
            e_tgt, e_pos, e_ref = self._split_queries(extra_queries.to(tgt.dtype), bs, "extra_queries")
            tgt = torch.cat([tgt, e_tgt], 1)
            query_pos = torch.cat([query_pos, e_pos], 1)
            ref = torch.cat([ref, e_ref], 1)
            self_attn_mask = group_self_attention_mask([num_main, e_tgt.shape[1]], device=tgt.device)

        bbox_embed = self.bbox_embed if self.with_box_refine else None
        hidden, references = self.transformer.decode(
            tgt, query_pos, ref, memory, memory_mask, spatial_shapes, valid_ratios, bbox_embed, self_attn_mask
        )
        logits, boxes = self._predict(hidden, references)

        extra = None
        if extra_queries is not None:
            extra = DETROutputs(
                logits=logits[:, :, num_main:],
                boxes=boxes[:, :, num_main:],
                hidden_states=hidden[:, :, num_main:],
                query_embed=extra_queries,
            )
            logits, boxes, hidden = logits[:, :, :num_main], boxes[:, :, :num_main], hidden[:, :, :num_main]
        return DETROutputs(
            logits=logits,
            boxes=boxes,
            hidden_states=hidden,
            query_embed=query_embed,
            features=features,
            feature_masks=masks,
            image_sizes=torch.as_tensor(images.image_sizes, dtype=torch.int64).to(images.tensor.device, non_blocking=True),
            extra=extra,
            enc_outputs=enc_outputs,
        )
