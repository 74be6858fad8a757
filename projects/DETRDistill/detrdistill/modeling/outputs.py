"""Raw outputs shared by every DETR-family model of this project.

All DETR models (Deformable DETR, Conditional DETR, AdaMixer) return a :class:`DETROutputs`
from ``run(images, extra_queries=None)``; losses, inference and distillation only read
this structure, never model internals.
"""
from dataclasses import dataclass, field, replace
from typing import Any, Dict, List, Optional

import torch

__all__ = ["DETROutputs"]


@dataclass
class DETROutputs:
    """Per-decoder-layer predictions of a DETR model for one batch.

    Shapes use L = decoder layers, B = images, Q = queries, C = classes, D = hidden dim.

    Attributes:
        logits: (L, B, Q, C) classification logits (sigmoid classifiers: no background column).
        boxes: (L, B, Q, 4) boxes, normalized cxcywh (divided by each image's unpadded w/h).
        hidden_states: (L, B, Q, D) decoder outputs of each layer (before the heads).
        query_embed: the query tensor this batch used, model-specific and opaque
            (Deformable DETR: (Q, 2D) = [positional | content]; two-stage: (B, Q, 2D + 4)).
            It is exactly what ``run(..., extra_queries=)`` of a model of the same architecture
            accepts.
        features: per level, (B, D, H_l, W_l) multi-scale features fed to the transformer
            (after the input projection).
        feature_masks: per level, (B, H_l, W_l) bool, True = padding.
        image_sizes: (B, 2) int64 tensor of unpadded (h, w) of each image in the batch.
        extra: outputs of the extra query group (``run(..., extra_queries=...)``), a
            ``DETROutputs`` whose logits/boxes/hidden_states are (L, B, Q_extra, ...) and whose
            other fields may be None; None when no extra group was run.
        enc_outputs: two-stage encoder proposals, ``{"logits": (B, S, C), "boxes": (B, S, 4)}``
            over the S flattened encoder tokens (normalized cxcywh); None for one-stage models.
        aux: free-form, model-specific extras (e.g. reference points) that no shared code relies on.
    """

    logits: torch.Tensor
    boxes: torch.Tensor
    hidden_states: Optional[torch.Tensor] = None
    query_embed: Any = None
    features: Optional[List[torch.Tensor]] = None
    feature_masks: Optional[List[torch.Tensor]] = None
    image_sizes: Optional[torch.Tensor] = None
    extra: Optional["DETROutputs"] = None
    enc_outputs: Optional[Dict[str, torch.Tensor]] = None
    aux: Dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if self.logits.dim() != 4 or self.boxes.dim() != 4 or self.boxes.shape[-1] != 4:
            raise ValueError(
                "DETROutputs expects logits (L, B, Q, C) and boxes (L, B, Q, 4); got "
                f"{tuple(self.logits.shape)} and {tuple(self.boxes.shape)}."
            )
        if self.logits.shape[:3] != self.boxes.shape[:3]:
            raise ValueError(
                f"DETROutputs: logits {tuple(self.logits.shape)} and boxes {tuple(self.boxes.shape)} "
                "disagree on (L, B, Q)."
            )

    @property
    def num_layers(self) -> int:
        return self.logits.shape[0]

    @property
    def num_queries(self) -> int:
        return self.logits.shape[2]

    def last_layer(self) -> Dict[str, torch.Tensor]:
        """The final decoder layer's ``{"logits": (B, Q, C), "boxes": (B, Q, 4)}``."""
        return {"logits": self.logits[-1], "boxes": self.boxes[-1]}

    def detach(self) -> "DETROutputs":
        """A copy whose tensors (including ``extra``) are detached from the graph."""

        def _d(x):
            if isinstance(x, torch.Tensor):
                return x.detach()
            if isinstance(x, (list, tuple)):
                return type(x)(_d(v) for v in x)
            if isinstance(x, dict):
                return {k: _d(v) for k, v in x.items()}
            if isinstance(x, DETROutputs):
                return x.detach()
            return x

        return replace(
            self,
            logits=self.logits.detach(),
            boxes=self.boxes.detach(),
            hidden_states=_d(self.hidden_states),
            query_embed=_d(self.query_embed),
            features=_d(self.features),
            feature_masks=_d(self.feature_masks),
            image_sizes=_d(self.image_sizes),
            extra=_d(self.extra),
            enc_outputs=_d(self.enc_outputs),
            aux=_d(self.aux),
        )
