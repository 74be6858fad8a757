"""Loss primitives shared by the distillation methods.

Every function here is a pure function of tensors (no module state), vectorized
over boxes, queries and classes, and returns a differentiable tensor.

Conventions:
    * ``logits`` are raw scores before sigmoid/softmax.
    * ``cxcywh`` boxes are (center-x, center-y, width, height); "normalized"
      means divided by the image width/height, so values lie in [0, 1].
    * ``xyxy`` boxes are (x0, y0, x1, y1) in the same units as their input.
"""
from typing import Optional

import torch
import torch.nn.functional as F
from torchvision.ops import box_convert

__all__ = [
    "soft_bce_with_logits",
    "kl_div_with_temperature",
    "weighted_mse",
    "box_l1_loss",
    "giou_loss",
    "quality_scores",
    "pairwise_giou_cxcywh",
    "pairwise_iou_cxcywh",
]


def _reduce(loss: torch.Tensor, reduction: str, normalizer=None) -> torch.Tensor:
    if reduction == "none":
        return loss
    if reduction == "sum":
        total = loss.sum()
        return total if normalizer is None else total / normalizer
    if reduction == "mean":
        return loss.mean()
    raise ValueError(f"Unknown reduction '{reduction}', expected 'none', 'sum' or 'mean'.")


def soft_bce_with_logits(
    student_logits: torch.Tensor,
    teacher_probs: torch.Tensor,
    weight: Optional[torch.Tensor] = None,
    reduction: str = "sum",
    normalizer=None,
) -> torch.Tensor:
    """Binary cross-entropy of sigmoid(student) against soft teacher probabilities.

    Args:
        student_logits: (..., C) raw student scores.
        teacher_probs: (..., C) target probabilities in [0, 1] (detached by the caller).
        weight: optional per-element weight broadcastable to (..., C).
        reduction: "none" returns (..., C); "sum" sums everything, then divides by
            ``normalizer`` when given (e.g. the number of matched pairs); "mean" averages.
    """
    loss = F.binary_cross_entropy_with_logits(student_logits, teacher_probs, reduction="none")
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction, normalizer)


def kl_div_with_temperature(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    temperature: float = 1.0,
    reduction: str = "mean",
) -> torch.Tensor:
    """Hinton KD: ``T^2 * KL(softmax(t/T) || softmax(s/T))`` over the last dimension.

    Args:
        student_logits, teacher_logits: (N, C) class logits (softmax classifiers).
        reduction: "none" gives (N,), "sum" the sum over rows, "mean" the mean over rows.
    """
    t = temperature
    log_p_s = F.log_softmax(student_logits / t, dim=-1)
    log_p_t = F.log_softmax(teacher_logits / t, dim=-1)
    kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum(dim=-1) * (t * t)
    return _reduce(kl, reduction)


def weighted_mse(
    student: torch.Tensor,
    teacher: torch.Tensor,
    weight: Optional[torch.Tensor] = None,
    reduction: str = "mean",
    normalizer=None,
) -> torch.Tensor:
    """Squared error ``weight * (student - teacher)^2``.

    Args:
        student, teacher: tensors of the same shape, e.g. (B, C, H, W) feature maps.
        weight: optional mask broadcastable to that shape, e.g. (B, 1, H, W).
        reduction: "mean" averages over all elements (PyTorch ``MSELoss`` semantics),
            "sum" sums and divides by ``normalizer`` when given, "none" returns elementwise.
    """
    if student.shape != teacher.shape:
        raise ValueError(
            f"weighted_mse: student shape {tuple(student.shape)} != teacher shape "
            f"{tuple(teacher.shape)}; add an adapter or spatial alignment."
        )
    loss = (student - teacher) ** 2
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction, normalizer)


def box_l1_loss(pred_boxes: torch.Tensor, target_boxes: torch.Tensor) -> torch.Tensor:
    """L1 distance per box, summed over the 4 coordinates.

    Args:
        pred_boxes, target_boxes: (N, 4) boxes in the same convention
            (normalized cxcywh for DETR models).
    Returns:
        (N,) per-box L1.
    """
    return (pred_boxes - target_boxes).abs().sum(dim=-1)


def giou_loss(pred_boxes: torch.Tensor, target_boxes: torch.Tensor, box_format: str = "cxcywh") -> torch.Tensor:
    """``1 - GIoU`` for aligned pairs of boxes.

    Args:
        pred_boxes, target_boxes: (N, 4) boxes, ``box_format`` "cxcywh" or "xyxy".
            Degenerate boxes (zero width/height) are allowed and give finite values.
    Returns:
        (N,) per-pair loss in [0, 2].
    """
    if box_format != "xyxy":
        pred_boxes = box_convert(pred_boxes, box_format, "xyxy")
        target_boxes = box_convert(target_boxes, box_format, "xyxy")
    # torchvision's generalized_box_iou_loss, with the intersection clamped at 0 instead of written
    # through a boolean mask: the mask's indexing waits for a GPU (a nonzero per index, 5 in the
    # forward, more in the backward) and dispatches more operators. Same values and gradients except
    # where two boxes exactly touch (a zero-width intersection, whose gradient the clamp passes);
    # torchvision's eps keeps zero-area pairs finite under autograd.
    x1, y1, x2, y2 = pred_boxes.float().unbind(-1)
    x1g, y1g, x2g, y2g = target_boxes.float().unbind(-1)
    eps = 1e-7
    inter = (torch.min(x2, x2g) - torch.max(x1, x1g)).clamp(min=0) * (torch.min(y2, y2g) - torch.max(y1, y1g)).clamp(min=0)
    union = (x2 - x1) * (y2 - y1) + (x2g - x1g) * (y2g - y1g) - inter
    enclosing = (torch.max(x2, x2g) - torch.min(x1, x1g)) * (torch.max(y2, y2g) - torch.min(y1, y1g))
    return 1 - (inter / (union + eps) - (enclosing - union) / (enclosing + eps))


def _pairwise_iou_parts(boxes1: torch.Tensor, boxes2: torch.Tensor, eps: float):
    b1 = box_convert(boxes1.float(), "cxcywh", "xyxy")
    b2 = box_convert(boxes2.float(), "cxcywh", "xyxy")
    area1 = ((b1[..., 2] - b1[..., 0]).clamp(min=0) * (b1[..., 3] - b1[..., 1]).clamp(min=0))[..., :, None]
    area2 = ((b2[..., 2] - b2[..., 0]).clamp(min=0) * (b2[..., 3] - b2[..., 1]).clamp(min=0))[..., None, :]
    lt = torch.max(b1[..., :, None, :2], b2[..., None, :, :2])
    rb = torch.min(b1[..., :, None, 2:], b2[..., None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    union = area1 + area2 - inter
    return b1, b2, union, inter / (union + eps)


def pairwise_iou_cxcywh(boxes1: torch.Tensor, boxes2: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """IoU between every pair of cxcywh boxes, batched over leading dimensions.

    Args:
        boxes1: (..., N, 4); boxes2: (..., M, 4) (same units; leading dimensions broadcast).
        eps: added to the union, so degenerate (zero-area) boxes give 0 instead of NaN.
    Returns:
        (..., N, M) IoU in [0, 1].
    """
    return _pairwise_iou_parts(boxes1, boxes2, eps)[3]


def pairwise_giou_cxcywh(boxes1: torch.Tensor, boxes2: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """GIoU between every pair of cxcywh boxes, batched over leading dimensions.

    Unlike torchvision's ``generalized_box_iou``, two zero-area boxes give a finite value.

    Args:
        boxes1: (..., N, 4); boxes2: (..., M, 4) (same units; leading dimensions broadcast).
    Returns:
        (..., N, M) GIoU in [-1, 1].
    """
    b1, b2, union, iou = _pairwise_iou_parts(boxes1, boxes2, eps)
    lt_enc = torch.min(b1[..., :, None, :2], b2[..., None, :, :2])
    rb_enc = torch.max(b1[..., :, None, 2:], b2[..., None, :, 2:])
    enclosing = (rb_enc - lt_enc).clamp(min=0).prod(-1)
    return iou - (enclosing - union) / (enclosing + eps)


def quality_scores(class_scores: torch.Tensor, ious: torch.Tensor, gamma: float = 0.5) -> torch.Tensor:
    """Prediction quality ``score^gamma * IoU^(1 - gamma)`` (DETRDistill Eq. 8).

    Args:
        class_scores: (...,) class probabilities in [0, 1].
        ious: (...,) IoU of each prediction with its ground-truth box, in [0, 1].
        gamma: 1.0 gives the score alone, 0.0 the IoU alone.
    """
    return class_scores.clamp(min=0).pow(gamma) * ious.clamp(min=0).pow(1.0 - gamma)
