"""ScaleKD losses: the assistant's ground-truth losses and the student's mimic losses.

Dense tensors follow Detectron2's transposed layout: ``(N, R, K)`` with ``R = sum_l H_l W_l A``
locations (anchors) over all levels, logits before sigmoid, box deltas in the detector's
``box2box_transform`` parameterisation; boxes are XYXY in input-image pixels.
"""
from typing import Dict, List

import torch
import torch.nn.functional as F
from detectron2.layers import cat, cross_entropy
from detectron2.modeling.box_regression import _dense_box_regression_loss
from fvcore.nn import giou_loss, sigmoid_focal_loss_jit, smooth_l1_loss

from kd_core.losses import kl_div_with_temperature, soft_bce_with_logits

__all__ = [
    "dense_gt_losses",
    "fast_rcnn_gt_losses",
    "dense_cls_mimic_loss",
    "delta_l1_mimic_loss",
    "decoded_giou_mimic_loss",
    "roi_cls_mimic_loss",
    "roi_box_mimic_loss",
]


def dense_gt_losses(
    detector,
    anchors,
    pred_logits: torch.Tensor,
    pred_deltas: torch.Tensor,
    gt_labels: torch.Tensor,
    gt_boxes: List[torch.Tensor],
    normalizer: float,
    pred_centerness: torch.Tensor = None,
    ctrness_targets: torch.Tensor = None,
) -> Dict[str, torch.Tensor]:
    """The student detector's own GT losses, applied to the assistant's predictions.

    Same formulas as ``RetinaNet.losses`` / ``FCOS.losses`` (focal loss, the detector's box
    regression loss, FCOS centerness), with the student's labels and loss normalizer, without
    touching the student's EMA normalizer or its event-storage metrics.

    Args:
        detector: the student (RetinaNet or FCOS): its loss settings and box transform are used.
        anchors: list of per-level ``Boxes`` (the student's).
        pred_logits: (N, R, K); pred_deltas: (N, R, 4); pred_centerness: (N, R) for FCOS.
        gt_labels: (N, R) in {-1 ignore, 0..K-1, K background}; gt_boxes: N tensors (R, 4).
        normalizer: the student's loss normalizer (EMA of the positive count).
        ctrness_targets: (N, R) FCOS centerness targets.
    Keys: ``loss_cls``, ``loss_box_reg`` (+ ``loss_ctr`` for FCOS).
    """
    num_classes = detector.num_classes
    pos_mask = (gt_labels >= 0) & (gt_labels != num_classes)
    is_fcos = pred_centerness is not None
    if is_fcos:
        target = F.one_hot(gt_labels, num_classes=num_classes + 1)[..., :-1].to(pred_logits.dtype)
        loss_cls = sigmoid_focal_loss_jit(
            pred_logits, target, alpha=detector.focal_loss_alpha, gamma=detector.focal_loss_gamma, reduction="sum"
        )
        box_reg_loss_type, beta = "giou", 0.0
    else:
        valid = gt_labels >= 0
        target = F.one_hot(gt_labels[valid], num_classes=num_classes + 1)[:, :-1].to(pred_logits.dtype)
        loss_cls = sigmoid_focal_loss_jit(
            pred_logits[valid], target, alpha=detector.focal_loss_alpha, gamma=detector.focal_loss_gamma, reduction="sum"
        )
        box_reg_loss_type, beta = detector.box_reg_loss_type, detector.smooth_l1_beta
    loss_box = _dense_box_regression_loss(
        anchors, detector.box2box_transform, [pred_deltas], gt_boxes, pos_mask,
        box_reg_loss_type=box_reg_loss_type, smooth_l1_beta=beta,
    )
    losses = {"loss_cls": loss_cls / normalizer, "loss_box_reg": loss_box / normalizer}
    if is_fcos:
        loss_ctr = F.binary_cross_entropy_with_logits(pred_centerness[pos_mask], ctrness_targets[pos_mask], reduction="sum")
        losses["loss_ctr"] = loss_ctr / normalizer
    return losses


def fast_rcnn_gt_losses(
    predictor,
    scores: torch.Tensor,
    deltas: torch.Tensor,
    proposal_boxes: torch.Tensor,
    gt_boxes: torch.Tensor,
    gt_classes: torch.Tensor,
) -> Dict[str, torch.Tensor]:
    """``FastRCNNOutputLayers.losses`` on already concatenated RoIs, without its accuracy logging
    (which would overwrite the student's ``fast_rcnn/*`` metrics and sync with the host).

    Args:
        predictor: the assistant's ``FastRCNNOutputLayers``.
        scores: (R, K+1) logits; deltas: (R, K*4) or (R, 4).
        proposal_boxes, gt_boxes: (R, 4) XYXY; gt_classes: (R,) in 0..K (K = background).
    """
    if predictor.use_sigmoid_ce:
        loss_cls = predictor.sigmoid_cross_entropy_loss(scores, gt_classes)
    else:
        loss_cls = cross_entropy(scores, gt_classes, reduction="mean")
    losses = {"loss_cls": loss_cls, "loss_box_reg": predictor.box_reg_loss(proposal_boxes, gt_boxes, deltas, gt_classes)}
    return {k: v * predictor.loss_weight.get(k, 1.0) for k, v in losses.items()}


def dense_cls_mimic_loss(
    student_logits: torch.Tensor, assistant_logits: torch.Tensor, normalizer: float, temperature: float = 1.0
) -> torch.Tensor:
    """``T^2 BCE(sigmoid(z_S / T), sigmoid(z_A / T))`` summed over all locations and classes,
    divided by the positive-count normalizer. Logits (N, R, K); the assistant's are detached here.

    The targets' own entropy (a constant for the student) is subtracted, so the value is the
    binary KL divergence: the same gradient as the BCE, and 0 when the student matches.
    """
    a = assistant_logits.detach().float() / temperature
    target = a.sigmoid()
    bce = soft_bce_with_logits(student_logits.float() / temperature, target, reduction="sum")
    entropy = F.binary_cross_entropy_with_logits(a, target, reduction="sum")
    return (bce - entropy) * (temperature**2 / normalizer)


def delta_l1_mimic_loss(student_deltas: torch.Tensor, assistant_deltas: torch.Tensor, pos_mask: torch.Tensor, normalizer: float) -> torch.Tensor:
    """L1 between box deltas at the student's positive locations (RetinaNet), / normalizer.
    Deltas (N, R, 4); pos_mask (N, R) bool."""
    diff = (student_deltas.float() - assistant_deltas.detach().float()).abs().sum(dim=-1)
    return (diff * pos_mask.to(diff.dtype)).sum() / normalizer


def decoded_giou_mimic_loss(
    box2box_transform, anchors, student_deltas: torch.Tensor, assistant_deltas: torch.Tensor, pos_mask: torch.Tensor, normalizer: float
) -> torch.Tensor:
    """GIoU loss between the decoded student and assistant boxes at the student's positive
    locations (FCOS), / normalizer. ``anchors``: per-level ``Boxes`` or an (R, 4) tensor."""
    if isinstance(anchors, (list, tuple)):
        anchors = cat([a.tensor if hasattr(a, "tensor") else a for a in anchors])
    s = torch.stack([box2box_transform.apply_deltas(d, anchors) for d in student_deltas.float()])
    with torch.no_grad():
        t = torch.stack([box2box_transform.apply_deltas(d, anchors) for d in assistant_deltas.detach().float()])
    return giou_loss(s[pos_mask], t[pos_mask], reduction="sum") / normalizer


def roi_cls_mimic_loss(student_scores: torch.Tensor, assistant_scores: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """``T^2 KL(softmax(z_A / T) || softmax(z_S / T))`` averaged over the sampled RoIs.
    Scores (R, K+1)."""
    if student_scores.numel() == 0:
        return student_scores.sum() * 0.0
    return kl_div_with_temperature(student_scores.float(), assistant_scores.detach().float(), temperature, reduction="mean")


def roi_box_mimic_loss(
    student_deltas: torch.Tensor, assistant_deltas: torch.Tensor, gt_classes: torch.Tensor, num_classes: int, beta: float = 0.0
) -> torch.Tensor:
    """Smooth-L1 between the GT-class box deltas of foreground RoIs, divided by the number of
    RoIs (Fast R-CNN's normalisation). Deltas (R, K*4) class-specific or (R, 4) agnostic;
    gt_classes (R,) with K = background. No host sync (masking, not indexing)."""
    r = student_deltas.shape[0]
    if r == 0:
        return student_deltas.sum() * 0.0
    fg = (gt_classes >= 0) & (gt_classes < num_classes)
    if student_deltas.shape[1] != 4:  # class-specific regression: pick the GT class's deltas
        idx = gt_classes.clamp(0, num_classes - 1).view(r, 1, 1).expand(r, 1, 4)
        student_deltas = student_deltas.view(r, num_classes, 4).gather(1, idx).squeeze(1)
        assistant_deltas = assistant_deltas.view(r, num_classes, 4).gather(1, idx).squeeze(1)
    per_roi = smooth_l1_loss(student_deltas.float(), assistant_deltas.detach().float(), beta=beta, reduction="none").sum(dim=-1)
    return (per_roi * fg.to(per_roi.dtype)).sum() / r
