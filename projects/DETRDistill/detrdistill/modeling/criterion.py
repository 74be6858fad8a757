"""Set-prediction loss of the DETR family (sigmoid focal classification + L1 + GIoU).

Every decoder layer is supervised (auxiliary losses); matching for all layers is solved in
one Hungarian call and all losses are computed for all layers at once.
"""
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn
from torchvision.ops import sigmoid_focal_loss

from kd_core.distributed import mean_across_processes
from kd_core.losses import box_l1_loss, giou_loss
from kd_core.matching import PendingAssignments

__all__ = ["SetCriterion", "LayerIndices", "num_boxes_across_processes"]

#: Matching of one batch: per image ``(pred_idx, tgt_idx)`` int64 tensors of equal length.
ImageIndices = List[Tuple[torch.Tensor, torch.Tensor]]
#: Matching of every decoder layer: a list over layers of :data:`ImageIndices`.
LayerIndices = List[ImageIndices]

_LOSS_NAMES = ("loss_class", "loss_bbox", "loss_giou")


def num_boxes_across_processes(targets: Sequence[dict], device) -> torch.Tensor:
    """Average number of target boxes per process, as a (,) float tensor clamped to >= 1.

    The count is all-reduced over processes (DETR's normalizer), so every GPU divides by the
    same number even when their images hold different numbers of boxes.
    """
    total = float(sum(len(t["boxes"]) for t in targets))
    return mean_across_processes(torch.as_tensor(total, dtype=torch.float32).to(device, non_blocking=True)).clamp(min=1.0)


class SetCriterion(nn.Module):
    """DETR loss over all decoder layers with one-to-one (Hungarian) assignment.

    ``loss_class``: sigmoid focal loss over all queries and classes (unmatched queries are
    background, i.e. all-zero targets), summed and divided by the number of target boxes.
    ``loss_bbox``: L1 on normalized cxcywh of matched pairs / number of boxes.
    ``loss_giou``: (1 - GIoU) of matched pairs / number of boxes.
    """

    def __init__(
        self,
        num_classes: int,
        matcher: nn.Module,
        weight_dict: Optional[Dict[str, float]] = None,
        focal_alpha: float = 0.25,
        focal_gamma: float = 2.0,
    ):
        """
        Args:
            num_classes: number of foreground classes C (sigmoid classifier, no background).
            matcher: a module called as ``matcher(logits (N, Q, C), boxes (N, Q, 4), targets)``
                returning per image ``(pred_idx, tgt_idx)``, e.g. ``kd_core.matching.HungarianMatcher``.
            weight_dict: weight of each loss, keys among "loss_class", "loss_bbox", "loss_giou";
                the same weight applies to every decoder layer.
            focal_alpha, focal_gamma: sigmoid focal loss parameters.
        """
        super().__init__()
        if weight_dict is None:
            weight_dict = {"loss_class": 2.0, "loss_bbox": 5.0, "loss_giou": 2.0}
        unknown = set(weight_dict) - set(_LOSS_NAMES)
        if unknown:
            raise ValueError(f"SetCriterion: unknown losses {sorted(unknown)} in weight_dict; known: {_LOSS_NAMES}.")
        if num_classes <= 0:
            raise ValueError(f"SetCriterion: num_classes must be positive, got {num_classes}.")
        self.num_classes = num_classes
        self.matcher = matcher
        self.weight_dict = dict(weight_dict)
        self.focal_alpha = focal_alpha
        self.focal_gamma = focal_gamma

    @torch.no_grad()
    def match(self, logits: torch.Tensor, boxes: torch.Tensor, targets: Sequence[dict]) -> LayerIndices:
        """Hungarian matching of every layer in one matcher call.

        Args:
            logits: (L, B, Q, C); boxes: (L, B, Q, 4) normalized cxcywh.
            targets: B dicts with "labels" (M_b,) int64 and "boxes" (M_b, 4) normalized cxcywh.
        Returns:
            list over L layers of per-image ``(pred_idx, tgt_idx)``.
        """
        num_layers, bs = logits.shape[:2]
        flat = self.matcher(logits.flatten(0, 1), boxes.flatten(0, 1), list(targets) * num_layers)
        return [flat[layer * bs : (layer + 1) * bs] for layer in range(num_layers)]

    @torch.no_grad()
    def start_match(self, logits: torch.Tensor, boxes: torch.Tensor, targets: Sequence[dict]) -> PendingAssignments:
        """:meth:`match` solved in the background where the matcher can (``HungarianMatcher.start``):
        the costs are computed and their copy queued here; ``.result()`` gives :meth:`match`'s value,
        to pass as ``indices``. A matcher without ``start`` matches here."""
        num_layers, bs = logits.shape[:2]
        args = (logits.flatten(0, 1), boxes.flatten(0, 1), list(targets) * num_layers)
        start = getattr(self.matcher, "start", None)
        pending = start(*args) if start is not None else PendingAssignments.finished(self.matcher(*args))
        return pending.then(lambda flat: [flat[layer * bs : (layer + 1) * bs] for layer in range(num_layers)])

    def forward(
        self,
        logits: torch.Tensor,
        boxes: torch.Tensor,
        targets: Sequence[dict],
        indices: Optional[LayerIndices] = None,
        prefix: str = "",
        num_boxes: Optional[torch.Tensor] = None,
    ) -> Tuple[Dict[str, torch.Tensor], LayerIndices]:
        """
        Args:
            logits: (L, B, Q, C) class logits of each decoder layer.
            boxes: (L, B, Q, 4) normalized cxcywh boxes of each decoder layer.
            targets: B dicts with "labels" (M_b,) int64 and "boxes" (M_b, 4) normalized cxcywh.
            indices: optional precomputed assignment (list over L layers of per-image
                ``(pred_idx, tgt_idx)``), e.g. a teacher's; used instead of matching.
            prefix: prepended to every loss name (e.g. "group_" -> "group_loss_class").
            num_boxes: optional normalizer; default: boxes per process, all-reduced, >= 1.
        Returns:
            ``(losses, indices)``: losses already multiplied by their weights, named
            "loss_class"/"loss_bbox"/"loss_giou" for the last layer and "<name>_<l>" for layer
            l < L - 1; indices is the assignment used (list over layers).
        """
        if logits.dim() != 4 or boxes.dim() != 4:
            raise ValueError(
                f"SetCriterion expects logits (L, B, Q, C) and boxes (L, B, Q, 4), got "
                f"{tuple(logits.shape)} and {tuple(boxes.shape)}."
            )
        num_layers, bs, num_queries, num_classes = logits.shape
        if num_classes != self.num_classes:
            raise ValueError(f"SetCriterion: logits have {num_classes} classes, criterion expects {self.num_classes}.")
        if len(targets) != bs:
            raise ValueError(f"SetCriterion: {len(targets)} targets for a batch of {bs} images.")
        if indices is None:
            indices = self.match(logits, boxes, targets)
        elif len(indices) != num_layers or any(len(per_layer) != bs for per_layer in indices):
            raise ValueError(
                f"SetCriterion: indices must be a list over {num_layers} layers of {bs} per-image "
                f"(pred_idx, tgt_idx) pairs; got {len(indices)} layers."
            )
        device = logits.device
        if num_boxes is None:
            num_boxes = num_boxes_across_processes(targets, device)

        # Flatten the assignment of every (layer, image) into index vectors.
        tgt_offsets = [0]
        for t in targets:
            tgt_offsets.append(tgt_offsets[-1] + len(t["boxes"]))
        layer_ids, batch_ids, pred_ids, tgt_ids = [], [], [], []
        for layer, per_layer in enumerate(indices):
            for b, (p, t) in enumerate(per_layer):
                layer_ids.append(torch.full_like(p, layer))
                batch_ids.append(torch.full_like(p, b))
                pred_ids.append(p)
                tgt_ids.append(t + tgt_offsets[b])
        layer_ids = torch.cat(layer_ids).to(device)
        batch_ids = torch.cat(batch_ids).to(device)
        pred_ids = torch.cat(pred_ids).to(device)
        tgt_ids = torch.cat(tgt_ids).to(device)
        tgt_labels = torch.cat([t["labels"] for t in targets]).to(device=device, dtype=torch.int64)
        tgt_boxes = torch.cat([t["boxes"].reshape(-1, 4) for t in targets]).to(device=device, dtype=torch.float32)

        # Classification: one focal loss over (L, B, Q, C); unmatched queries have zero targets.
        logits = logits.float()
        onehot = torch.zeros_like(logits)
        onehot[layer_ids, batch_ids, pred_ids, tgt_labels[tgt_ids]] = 1.0
        focal = sigmoid_focal_loss(logits, onehot, alpha=self.focal_alpha, gamma=self.focal_gamma, reduction="none")
        per_layer = {"loss_class": focal.sum(dim=(1, 2, 3)) / num_boxes}

        # Boxes: matched pairs of all layers at once, summed per layer.
        src = boxes.float()[layer_ids, batch_ids, pred_ids]
        tgt = tgt_boxes[tgt_ids]
        zeros = boxes.new_zeros(num_layers, dtype=torch.float32)
        per_layer["loss_bbox"] = zeros.index_add(0, layer_ids, box_l1_loss(src, tgt)) / num_boxes
        per_layer["loss_giou"] = zeros.index_add(0, layer_ids, giou_loss(src, tgt)) / num_boxes

        losses = {}
        for name, values in per_layer.items():
            if name not in self.weight_dict:
                continue
            # one multiply and one split per loss rather than two operators per layer
            for layer, value in enumerate((values * self.weight_dict[name]).unbind(0)):
                suffix = "" if layer == num_layers - 1 else f"_{layer}"
                losses[f"{prefix}{name}{suffix}"] = value
        return losses, indices
