"""Content-query relation distillation (official DETRDistill code only; not in the paper).

Student decoder outputs and the teacher decoder outputs they were matched to by the logits KD
matching are projected into a shared embedding space, and an InfoNCE loss makes every student
query most similar to its own teacher partner among all matched queries of the batch.
"""

from typing import Dict, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["QueryRelationDistillation", "QueryProjection"]


class QueryProjection(nn.Module):
    """``Linear(in, E)`` then the MLP ``Linear(E, E) - BN - ReLU - Linear(E, E)``, L2-normalized.

    Maps (N, in_dim) -> (N, E) unit vectors (the official code's MoCo-style head).
    """

    def __init__(self, in_dim: int, embed_dim: int = 512):
        super().__init__()
        self.proj = nn.Linear(in_dim, embed_dim)
        self.mlp = nn.Sequential(
            nn.Linear(embed_dim, embed_dim),
            nn.BatchNorm1d(embed_dim),
            nn.ReLU(inplace=True),
            nn.Linear(embed_dim, embed_dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.mlp(self.proj(x)), dim=-1)


class QueryRelationDistillation(nn.Module):
    """InfoNCE between matched student and teacher decoder outputs.

    For every mapped layer pair, the matched queries of all images are gathered
    (``N = sum over images of matched pairs``; ``B * Q`` when Qs == Qt), both sides are projected
    (separate :class:`QueryProjection` heads, shared over layers), and
    ``CE(t @ s^T / temperature, arange(N))`` (rows: teacher queries, columns: student queries)
    is added up over layer pairs and multiplied by ``loss_weight``. Only matched pairs enter, so
    unequal query counts are handled. Teacher outputs are detached (the teacher projection head is
    trained). A layer pair with fewer than 2 matched queries contributes 0 (BatchNorm needs 2).

    Args:
        student_dim, teacher_dim: decoder widths.
        embed_dim: projection width (official 512).
        temperature: InfoNCE temperature (official 0.07).
        loss_weight: official 0.2.
    """

    LOSS_NAMES = ("loss_kd_relation",)

    def __init__(
        self,
        *,
        student_dim: int = 256,
        teacher_dim: int = 256,
        embed_dim: int = 512,
        temperature: float = 0.07,
        loss_weight: float = 0.2,
    ):
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}.")
        self.student_proj = QueryProjection(student_dim, embed_dim)
        self.teacher_proj = QueryProjection(teacher_dim, embed_dim)
        self.student_dim = student_dim
        self.teacher_dim = teacher_dim
        self.temperature = temperature
        self.loss_weight = loss_weight

    def forward(
        self,
        student_hidden: torch.Tensor,
        teacher_hidden: torch.Tensor,
        layer_pairs: Sequence[Tuple[int, int]],
        indices: Sequence[Sequence[Tuple[torch.Tensor, torch.Tensor]]],
    ) -> Dict[str, torch.Tensor]:
        """Relation loss.

        Args:
            student_hidden: (Ls, B, Qs, Ds) student decoder outputs per layer.
            teacher_hidden: (Lt, B, Qt, Dt) teacher decoder outputs per layer.
            layer_pairs: ``(student_layer, teacher_layer)`` per matched stage
                (``LogitsMatching.layer_pairs``).
            indices: per pair, per image, ``(student_query_idx, teacher_query_idx)``
                (``LogitsMatching.indices``).
        Returns:
            {"loss_kd_relation": scalar}.
        """
        if student_hidden.dim() != 4 or teacher_hidden.dim() != 4:
            raise ValueError(
                f"student_hidden and teacher_hidden must be (L, B, Q, D), got {tuple(student_hidden.shape)} and "
                f"{tuple(teacher_hidden.shape)}."
            )
        if student_hidden.shape[-1] != self.student_dim or teacher_hidden.shape[-1] != self.teacher_dim:
            raise ValueError(
                f"QueryRelationDistillation was built for widths student {self.student_dim} / teacher "
                f"{self.teacher_dim}, got {student_hidden.shape[-1]} / {teacher_hidden.shape[-1]}."
            )
        if student_hidden.shape[1] != teacher_hidden.shape[1]:
            raise ValueError(f"Batch mismatch: student {student_hidden.shape[1]} vs teacher {teacher_hidden.shape[1]}.")
        if len(layer_pairs) != len(indices):
            raise ValueError(f"{len(layer_pairs)} layer pairs but {len(indices)} index lists.")
        teacher_hidden = teacher_hidden.detach()
        # Zero tied to every parameter: keeps DDP's gradient bookkeeping regular when a pair is skipped.
        total = sum((p.sum() * 0.0 for p in self.parameters()), student_hidden.new_zeros((), dtype=torch.float32))
        for (s_layer, t_layer), per_image in zip(layer_pairs, indices):
            if len(per_image) != student_hidden.shape[1]:
                raise ValueError(f"indices hold {len(per_image)} images, the batch has {student_hidden.shape[1]}.")
            if sum(len(s) for s, _ in per_image) < 2:
                continue
            s_rows = torch.cat([student_hidden[s_layer, b, s_q] for b, (s_q, _) in enumerate(per_image)])
            t_rows = torch.cat([teacher_hidden[t_layer, b, t_q] for b, (_, t_q) in enumerate(per_image)])
            s_emb = self.student_proj(s_rows.float())
            t_emb = self.teacher_proj(t_rows.float())
            logits = t_emb @ s_emb.t() / self.temperature  # (N, N): teacher rows, student columns
            labels = torch.arange(logits.shape[0], device=logits.device)
            total = total + F.cross_entropy(logits, labels)
        return {"loss_kd_relation": self.loss_weight * total}
