"""ScaleKD meta-architecture: student + frozen (high-resolution) teacher + SDF + Cross-Scale Assistant.

One training iteration (:meth:`ScaleKDDetector.forward_train`):

1. the teacher's backbone runs (no_grad, eval) on the teacher image (the same augmented image at
   ``teacher_scale``), padded to exactly ``teacher_scale`` x the student's padded size, so the
   teacher's level ``P_{l+k}`` (k = log2 scale) has the size of the student's ``P_l`` (or its
   features come from the teacher output cache, ``teacher_cache_dir``);
2. the student runs once, piece by piece with Detectron2's own methods (backbone, head,
   anchors, ``label_anchors``, ``losses``; or RPN, ``label_and_sample_proposals``, box head,
   ``box_predictor.losses``, mask/keypoint branches), so its losses are exactly Detectron2's
   and its raw head outputs are at hand;
3. the distillers (SDF) add their terms;
4. the assistant (CSA) runs on detached student/teacher features, computes its GT loss and
   takes its own Adam step (gradients all-reduced across processes) - the assistant is updated
   before the student;
5. after the warm-up, the student's mimic losses against the assistant's (detached) outputs.

Returned: the student's losses + ``loss_kd_sdf``, ``loss_kd_csa_cls``, ``loss_kd_csa_bbox``
(every value is a student-loss term: Detectron2's trainer sums them all). The assistant's own
losses are logged as ``csa_loss_*`` scalars every ``metrics_period`` iterations.
"""
import logging
import math
import re
from typing import Dict, List, Mapping, Optional, Sequence, Union

import torch
from detectron2.layers import cat
from detectron2.modeling import META_ARCH_REGISTRY
from detectron2.modeling.meta_arch import FCOS, GeneralizedRCNN, RetinaNet
from detectron2.modeling.roi_heads import CascadeROIHeads, StandardROIHeads
from detectron2.structures import Boxes
from detectron2.utils.events import get_event_storage
from torch import nn

from kd_core.distiller import as_schedule
from kd_core.meta_arch import DistillationDetector, TeacherViewDetector, run_backbone, teacher_inputs, teacher_reads_other_format
from kd_core.schedules import LossWeightSchedule, current_iteration
from kd_core.teacher import FrozenTeacher

from .assistant_detector import AssistantDetector, add_teacher_views
from .csa import (
    DEFAULT_LEVEL_RATES,
    AssistantTrainer,
    CrossScaleAssistant,
    MultiScaleCrossAttention,
    RoIBoxAssistantHead,
    copy_module_with_weights,
)
from .losses import (
    decoded_giou_mimic_loss,
    delta_l1_mimic_loss,
    dense_cls_mimic_loss,
    dense_gt_losses,
    fast_rcnn_gt_losses,
    roi_box_mimic_loss,
    roi_cls_mimic_loss,
)

__all__ = ["ScaleKDDetector", "detector_kind", "default_level_pairs"]

logger = logging.getLogger(__name__)

#: Spec weights (beta, gamma) of the CSA mimic losses per detector family.
MIMIC_WEIGHTS = {"one_stage": (0.2, 0.05), "two_stage": (0.5, 0.2)}
DEFAULT_WARMUP_ITERS = 30000
ASSISTANT_KEY = "scalekd_assistant"


def detector_kind(model: nn.Module) -> str:
    """"retinanet", "fcos", "rcnn" (StandardROIHeads: Faster/Mask R-CNN) or "cascade"."""
    if isinstance(model, FCOS):
        return "fcos"
    if isinstance(model, RetinaNet):
        return "retinanet"
    if isinstance(model, GeneralizedRCNN):
        if isinstance(model.roi_heads, CascadeROIHeads):
            return "cascade"
        if isinstance(model.roi_heads, StandardROIHeads):
            return "rcnn"
    raise TypeError(
        f"ScaleKD supports Detectron2's RetinaNet, FCOS and GeneralizedRCNN with Standard/Cascade ROI heads; "
        f"got {type(model).__name__}" + (f" with {type(model.roi_heads).__name__}" if hasattr(model, "roi_heads") else "") + "."
    )


def _level_number(name: str) -> Optional[int]:
    m = re.fullmatch(r"p(\d+)", name)
    return int(m.group(1)) if m else None


def default_level_pairs(student_levels: Sequence[str], teacher_levels: Sequence[str], level_offset: int) -> Dict[str, str]:
    """Student FPN level ``pN`` -> teacher level ``p(N + level_offset)``.

    A 2x teacher has ``level_offset=1``: its P_{l+1} has the student's P_l size. When that level
    is coarser than the teacher's coarsest (e.g. P8 for a RetinaNet student's P7), the teacher's
    coarsest level is used (cross-attention needs no equal sizes). A missing finer level is an error.
    """
    teacher_numbers = {n: _level_number(n) for n in teacher_levels}
    teacher_numbers = {k: v for k, v in teacher_numbers.items() if v is not None}
    if not teacher_numbers:
        raise ValueError(f"ScaleKD: the teacher's backbone has no FPN levels 'pN' (has {list(teacher_levels)}); set csa_level_pairs.")
    coarsest = max(teacher_numbers, key=teacher_numbers.get)
    pairs = {}
    for level in student_levels:
        n = _level_number(level)
        if n is None:
            raise ValueError(f"ScaleKD: student level '{level}' is not an FPN level 'pN'; set csa_level_pairs explicitly.")
        want = f"p{n + level_offset}"
        if want in teacher_numbers:
            pairs[level] = want
        elif n + level_offset > teacher_numbers[coarsest]:
            logger.info(f"ScaleKD: teacher has no '{want}' for student '{level}'; using its coarsest level '{coarsest}'.")
            pairs[level] = coarsest
        else:
            raise ValueError(
                f"ScaleKD: student level '{level}' needs teacher level '{want}', which the teacher's backbone "
                f"does not produce (has {sorted(teacher_numbers)}); set csa_level_pairs explicitly."
            )
    return pairs


class _RoIStageRecord:
    """What the mimic losses need of one box stage of the student: its predictions and RoIs."""

    __slots__ = ("stage", "scores", "deltas", "boxes", "proposal_boxes", "gt_boxes", "gt_classes")

    def __init__(self, stage: int, predictions, proposals):
        self.stage = stage
        self.scores, self.deltas = predictions[0], predictions[1]
        self.boxes = [p.proposal_boxes for p in proposals]  # per image, captured before any in-place update
        self.proposal_boxes = cat([b.tensor for b in self.boxes], dim=0)
        self.gt_boxes = cat([(p.gt_boxes if p.has("gt_boxes") else p.proposal_boxes).tensor for p in proposals], dim=0)
        self.gt_classes = cat([p.gt_classes for p in proposals], dim=0)


@META_ARCH_REGISTRY.register()
class ScaleKDDetector(DistillationDetector):
    """ScaleKD (Zhu et al., CVPR 2023) on Detectron2's RetinaNet, FCOS, Faster/Mask R-CNN (box
    branch) and Cascade R-CNN. Inference (eval mode) is the student alone.

    Args:
        student, teacher, distillers, teacher_image_key, check_num_classes, teacher_cache_dir: see
            :class:`DistillationDetector`; ``distillers`` normally holds ``{"sdf": SDFDistiller(...)}``.
        teacher_scale: the teacher's input scale relative to the student's (1, 2 or 4); the
            dataset mapper must provide the teacher image at that scale (checked every step).
        use_csa: train the Cross-Scale Assistant and add its mimic losses.
        csa_num_heads, csa_num_groups, csa_level_rates, csa_ffn_dim: the assistant's
            :class:`MultiScaleCrossAttention` (defaults: 8 heads in 2 groups, spec rates, 4C).
        csa_level_pairs: student level -> teacher level for keys/values (default: P_{l+log2 scale},
            see :func:`default_level_pairs`).
        csa_head_init: "teacher" (copy of the student's head architecture with the teacher's
            head weights; shapes must match) or "student".
        csa_zero_init_residual: zero-init the attention's output projection and last FFN layer, so
            the assistant starts as its head on the student's features. Until the output projection
            grows, the query/key projections get (almost) no gradient, so the attention stays
            close to uniform early in training; False = default init (the attention learns at once).
        csa_lr, csa_weight_decay: the assistant's Adam.
        csa_optimizer: "adam" (the paper's Adam with L2 weight decay) or "adamw" (decoupled decay:
            parameters with small gradients, e.g. the query projection early on, are not driven to
            0 at ``csa_lr`` per step); see :class:`AssistantTrainer`.
        csa_optimizer_fused: the assistant's Adam as PyTorch's fused kernel (default; the same
            update up to float rounding); False: PyTorch's default implementation.
        csa_cascade_stages: Cascade R-CNN stages distilled: "last" or "all".
        csa_refresh_targets: after the assistant's step, recompute its outputs (no_grad) for the
            mimic targets, so the student learns from the updated assistant; False reuses the
            pre-step outputs (one assistant forward less).
        csa_autocast: run the assistant's forward passes under the training step's autocast where
            its dtype is bfloat16 (``train.amp.enabled=True`` on CPU); its outputs are cast to fp32
            before its losses and the mimic losses, and its weights and Adam state stay fp32. Never
            under fp16 autocast (CUDA AMP): the assistant's own step has no loss scaler. False (the
            default, as in every published result here): the assistant always runs in fp32.
        csa_cls_weight, csa_bbox_weight: beta, gamma (float or :class:`LossWeightSchedule`);
            None = the spec's weights (0.2/0.05 one-stage, 0.5/0.2 two-stage) after 30k warm-up iterations.
        csa_temperature: T of the class mimic loss: the two-stage KL, the dense (RetinaNet/FCOS)
            sigmoid BCE; both scaled by T^2. 1.0 = the spec's.
        csa_roi_box_beta: smooth-L1 beta of the two-stage box mimic loss.
        freeze_student_backbone_iters: detach the student's bottom-up backbone output for the
            first N iterations (no gradient reaches it; BN statistics still update). With DDP set
            ``train.ddp.find_unused_parameters=True``. 0 = off.
        metrics_period: log ``csa_loss_*`` every N iterations (a host sync each time) and stop with
            ``FloatingPointError`` if one is not finite; 0 = never.
    """

    def __init__(
        self,
        *,
        student: nn.Module,
        teacher: FrozenTeacher,
        distillers: Optional[Mapping[str, nn.Module]] = None,
        teacher_scale: float = 2.0,
        teacher_image_key: str = "teacher_image",
        use_csa: bool = True,
        csa_num_heads: int = 8,
        csa_num_groups: int = 2,
        csa_level_rates: Optional[Mapping[str, Sequence[int]]] = None,
        csa_ffn_dim: Optional[int] = None,
        csa_level_pairs: Optional[Mapping[str, str]] = None,
        csa_head_init: str = "teacher",
        csa_zero_init_residual: bool = True,
        csa_lr: float = 3e-4,
        csa_weight_decay: float = 1e-4,
        csa_optimizer: str = "adam",
        csa_optimizer_fused: bool = True,
        csa_cascade_stages: str = "last",
        csa_refresh_targets: bool = True,
        csa_autocast: bool = False,
        csa_cls_weight: Union[None, float, LossWeightSchedule] = None,
        csa_bbox_weight: Union[None, float, LossWeightSchedule] = None,
        csa_temperature: float = 1.0,
        csa_roi_box_beta: float = 1.0,
        freeze_student_backbone_iters: int = 0,
        metrics_period: int = 20,
        check_num_classes: bool = True,
        teacher_cache_dir: str = "",
    ):
        super().__init__(
            student=student,
            teacher=teacher,
            distillers=distillers,
            teacher_forward="backbone",
            teacher_image_key=teacher_image_key,
            check_num_classes=check_num_classes,
            teacher_cache_dir=teacher_cache_dir,
        )
        self.kind = detector_kind(student)
        offset = math.log2(teacher_scale) if teacher_scale > 0 else -1
        if offset < 0 or abs(offset - round(offset)) > 1e-6:
            raise ValueError(f"teacher_scale must be 1, 2, 4, ... (a power of two >= 1), got {teacher_scale}.")
        self.teacher_scale = float(teacher_scale)
        self.level_offset = int(round(offset))
        for distiller in self.distillers.values():
            if hasattr(distiller, "check_models"):
                distiller.check_models(student, teacher.model)

        family = "one_stage" if self.kind in ("retinanet", "fcos") else "two_stage"
        beta, gamma = MIMIC_WEIGHTS[family]
        self.cls_schedule = as_schedule(LossWeightSchedule(beta, DEFAULT_WARMUP_ITERS) if csa_cls_weight is None else csa_cls_weight)
        self.bbox_schedule = as_schedule(LossWeightSchedule(gamma, DEFAULT_WARMUP_ITERS) if csa_bbox_weight is None else csa_bbox_weight)
        if csa_cascade_stages not in ("last", "all"):
            raise ValueError(f"csa_cascade_stages must be 'last' or 'all', got '{csa_cascade_stages}'.")
        self.csa_refresh_targets = bool(csa_refresh_targets)
        self.csa_autocast = bool(csa_autocast)
        self._warned_csa_autocast = False
        self.csa_temperature = float(csa_temperature)
        self.csa_roi_box_beta = float(csa_roi_box_beta)
        self.metrics_period = int(metrics_period)
        self.freeze_student_backbone_iters = int(freeze_student_backbone_iters)

        self.assistant: Optional[AssistantTrainer] = None  # plain attribute: not a registered submodule
        if use_csa:
            module = self._build_assistant(
                csa_num_heads,
                csa_num_groups,
                csa_level_rates,
                csa_ffn_dim,
                csa_level_pairs,
                csa_head_init,
                csa_cascade_stages,
                csa_zero_init_residual,
            )
            self.assistant = AssistantTrainer(
                module, lr=csa_lr, weight_decay=csa_weight_decay, optimizer=csa_optimizer, fused=csa_optimizer_fused
            )

        if self.freeze_student_backbone_iters > 0:
            bottom_up = getattr(student.backbone, "bottom_up", None)
            if bottom_up is None:
                raise ValueError("freeze_student_backbone_iters needs a student backbone with a 'bottom_up' (an FPN).")
            # prepend: runs before the feature recorders, so recorded features are detached too
            bottom_up.register_forward_hook(self._detach_when_frozen, prepend=True)

    # ------------------------------------------------------------------ construction
    def student_levels(self) -> List[str]:
        """The student feature levels the assistant fuses (its head's inputs)."""
        if self.kind in ("retinanet", "fcos"):
            return list(self.student.head_in_features)
        return list(self.student.roi_heads.box_in_features)

    def _build_assistant(
        self, num_heads, num_groups, level_rates, ffn_dim, level_pairs, head_init, cascade_stages, zero_init_residual
    ) -> CrossScaleAssistant:
        student, teacher = self.student, self.teacher.model
        s_levels = self.student_levels()
        s_shapes = student.backbone.output_shape()
        t_shapes = teacher.backbone.output_shape()
        if level_pairs is None:
            level_pairs = default_level_pairs(s_levels, list(t_shapes), self.level_offset)
        else:
            level_pairs = dict(level_pairs)
            if list(level_pairs) != s_levels:
                raise ValueError(f"csa_level_pairs must map exactly the student's levels {s_levels} (in order), got {list(level_pairs)}.")
            unknown = [t for t in level_pairs.values() if t not in t_shapes]
            if unknown:
                raise KeyError(f"csa_level_pairs names teacher levels {unknown} that the teacher's backbone lacks (has {sorted(t_shapes)}).")
        s_channels = {l: s_shapes[l].channels for l in s_levels}
        t_channels = {t: t_shapes[t].channels for t in level_pairs.values()}
        if len(set(s_channels.values())) != 1:
            raise ValueError(f"ScaleKD's assistant needs one student feature width for all levels, got {s_channels}.")
        if len(set(t_channels.values())) != 1:
            raise ValueError(f"ScaleKD's assistant needs one teacher feature width for all paired levels, got {t_channels}.")
        rates = dict(DEFAULT_LEVEL_RATES if level_rates is None else level_rates)
        attention = MultiScaleCrossAttention(
            embed_dim=next(iter(s_channels.values())),
            teacher_dim=next(iter(t_channels.values())),
            num_heads=num_heads,
            num_groups=num_groups,
            level_rates={l: rates[l] for l in s_levels if l in rates},
            ffn_dim=ffn_dim,
            zero_init_residual=zero_init_residual,
        )
        if self.kind in ("retinanet", "fcos"):
            teacher_head = teacher.head if detector_kind(teacher) == self.kind else None
            head = copy_module_with_weights(student.head, teacher_head, head_init, "dense head")
        else:
            roi = student.roi_heads
            t_roi = getattr(teacher, "roi_heads", None)
            if self.kind == "rcnn":
                stages = [0]
                s_heads, s_preds = [roi.box_head], [roi.box_predictor]
                t_heads = [t_roi.box_head] if isinstance(t_roi, StandardROIHeads) and not isinstance(t_roi, CascadeROIHeads) else [None]
                t_preds = [t_roi.box_predictor] if t_heads[0] is not None else [None]
            else:
                n = roi.num_cascade_stages
                stages = [n - 1] if cascade_stages == "last" else list(range(n))
                s_heads, s_preds = [roi.box_head[k] for k in stages], [roi.box_predictor[k] for k in stages]
                same = isinstance(t_roi, CascadeROIHeads) and t_roi.num_cascade_stages == n
                t_heads = [t_roi.box_head[k] if same else None for k in stages]
                t_preds = [t_roi.box_predictor[k] if same else None for k in stages]
            head = RoIBoxAssistantHead(
                pooler=copy_module_with_weights(roi.box_pooler, None, "student", "box pooler"),
                box_heads=[copy_module_with_weights(s, t, head_init, "box head") for s, t in zip(s_heads, t_heads)],
                box_predictors=[copy_module_with_weights(s, t, head_init, "box predictor") for s, t in zip(s_preds, t_preds)],
                stages=stages,
            )
        logger.info(f"ScaleKD assistant: level pairs {level_pairs}, head init from the {head_init}.")
        return CrossScaleAssistant(attention, head, level_pairs)

    def assistant_detector(self) -> nn.Module:
        """The Cross-Scale Assistant as a stand-alone detector for evaluation
        (:class:`~scalekd.assistant_detector.AssistantDetector`; shares this model's modules)."""
        return AssistantDetector(self)

    def teacher_detector(self) -> nn.Module:
        """The frozen teacher as a detector at ``teacher_scale``: on the mapper's ``teacher_image``
        where the test loader provides it (rendered from the original image), else on the input
        image resized by ``teacher_scale`` (channels reversed for a teacher of the other BGR/RGB
        format); detections in the inputs' coordinates."""
        key, scale = self.teacher_image_key, self.teacher_scale
        flip = teacher_reads_other_format(self.student, self.teacher.model)
        return TeacherViewDetector(self.teacher.model, key, make_views=lambda inputs: add_teacher_views(inputs, key, scale, flip)).eval()

    def unregistered_modules(self) -> List[nn.Module]:
        """The frozen teacher and the assistant (trained by its own Adam)."""
        return super().unregistered_modules() + ([self.assistant.module] if self.assistant is not None else [])

    def extra_checkpointables(self) -> Dict[str, object]:
        """The assistant (weights + its Adam state) is saved in every checkpoint under 'scalekd_assistant'."""
        return {ASSISTANT_KEY: self.assistant} if self.assistant is not None else {}

    def extra_repr(self) -> str:
        text = f"kind={self.kind}, teacher_scale={self.teacher_scale}, teacher={self.teacher!r}"
        if self.assistant is not None:
            n = sum(p.numel() for p in self.assistant.parameters())
            text += f", assistant=CrossScaleAssistant({n} parameters, not registered, own Adam)"
        return text

    # ------------------------------------------------------------------ helpers
    def _detach_when_frozen(self, module, inputs, output):
        if self.training and current_iteration() < self.freeze_student_backbone_iters:
            if isinstance(output, dict):
                return {k: v.detach() for k, v in output.items()}
            return output.detach()
        return None

    def _check_teacher_images(self, batched_inputs: List[dict]) -> None:
        key = self.teacher_image_key
        has_key = bool(key) and key in batched_inputs[0]
        if self.teacher_scale != 1.0 and not has_key:
            raise ValueError(
                f"ScaleKD runs the teacher at {self.teacher_scale:g}x but the inputs have no '{key}'. Use "
                f"scalekd.data.ScaleKDDatasetMapper(teacher_scale={self.teacher_scale:g}) in dataloader.train.mapper."
            )
        if not has_key:
            return
        s = self.teacher_scale
        for i, x in enumerate(batched_inputs):
            (h, w), (th, tw) = x["image"].shape[-2:], x[key].shape[-2:]
            if abs(th - h * s) > 1 or abs(tw - w * s) > 1:
                raise ValueError(
                    f"Image {i}: teacher image {th}x{tw} is not {s:g}x the student image {h}x{w}; "
                    "model.teacher_scale and the mapper's teacher_scale must agree."
                )

    def teacher_padded_size(self, student_padded_size) -> Optional[List[int]]:
        """``teacher_scale`` x the student's padded (H, W): the teacher's batch is padded to it, so
        paired levels have exactly the student's sizes. None (no extra padding) for None."""
        return None if student_padded_size is None else [int(round(self.teacher_scale * v)) for v in student_padded_size]

    def run_teacher(self, batched_inputs: List[dict], student_padded_size=None) -> Dict[str, torch.Tensor]:
        """Teacher backbone features on its view of the batch, padded to
        :meth:`teacher_padded_size` (no cache, no recording: evaluation and benchmarks)."""
        inputs = teacher_inputs(batched_inputs, self.teacher_image_key)
        return self.teacher.run(run_backbone, inputs, self.teacher_padded_size(student_padded_size))

    def _distiller_losses(self, student_records, teacher_records, batched_inputs, iteration) -> Dict[str, torch.Tensor]:
        out = {}
        for name, distiller in self.distillers.items():
            kd = distiller(student_records, teacher_records, batched_inputs, iteration)
            clash = set(kd) & set(out)
            if clash:
                raise KeyError(f"Distiller '{name}' returned loss keys that already exist: {sorted(clash)}.")
            out.update(kd)
        return out

    def _log_assistant(self, csa_losses: Mapping[str, torch.Tensor], iteration: int) -> None:
        if self.metrics_period <= 0 or iteration % self.metrics_period != 0:
            return
        values = {f"csa_{k}": float(v.detach()) for k, v in csa_losses.items()}  # the host sync of this period
        bad = [k for k, v in values.items() if not math.isfinite(v)]
        if bad:
            raise FloatingPointError(
                f"Non-finite Cross-Scale Assistant loss(es) {bad} at iteration {iteration}: the assistant's weights "
                "are corrupt from here on. Lower model.csa_lr or check the teacher's features."
            )
        try:
            storage = get_event_storage()
        except AssertionError:
            return
        storage.put_scalars(**values)

    def _autocast_off(self):
        return torch.autocast(device_type=self.device.type, enabled=False)

    def _assistant_autocast(self) -> bool:
        """Whether the assistant's forward passes run under autocast: ``csa_autocast`` and the
        training step's autocast (the caller's context) is bfloat16. Read it before any
        ``_autocast_off`` block."""
        device = self.device.type
        bf16_step = torch.is_autocast_enabled(device) and torch.get_autocast_dtype(device) == torch.bfloat16
        if self.csa_autocast and not bf16_step and not self._warned_csa_autocast:
            logger.warning(
                "model.csa_autocast=True has no effect here: the training step does not run under bfloat16 autocast "
                "(train.amp.enabled=True on CPU; fp16 AMP is never used for the assistant), so the assistant runs in fp32."
            )
            self._warned_csa_autocast = True
        return self.csa_autocast and bf16_step

    def _assistant_precision(self, enabled: bool):
        """The context of one assistant forward: bf16 autocast when ``enabled``, else fp32. Without
        autocast's weight-cast cache: the cache lives until the step's outermost autocast exits, so
        the refresh forward after the assistant's Adam step would read the pre-step bf16 weights."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=enabled, cache_enabled=False)

    # ------------------------------------------------------------------ training
    def forward_train(self, batched_inputs: List[dict]) -> Dict[str, torch.Tensor]:
        if "instances" not in batched_inputs[0]:
            raise ValueError("ScaleKD training needs 'instances' (ground truth) in every input dict.")
        iteration = current_iteration()
        if self.assistant is not None:
            self.assistant.prepare(self.device)
        self._check_teacher_images(batched_inputs)
        images = self.student.preprocess_image(batched_inputs)
        teacher_levels = [] if self.assistant is None else list(self.assistant.module.level_pairs.values())
        teacher_features, teacher_records = self.teacher_backbone_features(
            batched_inputs, self.teacher_padded_size(images.tensor.shape[-2:]), output_keys=teacher_levels
        )
        gt_instances = [x["instances"].to(self.device) for x in batched_inputs]
        with self._student_recorder.record() as student_records:
            features = self.student.backbone(images.tensor)
            if self.kind in ("retinanet", "fcos"):
                losses, mimic = self._dense_train(features, teacher_features, gt_instances, iteration)
            else:
                losses, mimic = self._two_stage_train(batched_inputs, images, features, teacher_features, gt_instances, iteration)
        for key, value in list(self._distiller_losses(student_records, teacher_records, batched_inputs, iteration).items()) + list(mimic.items()):
            if key in losses:
                raise KeyError(f"ScaleKD: loss key '{key}' is already used by the student.")
            losses[key] = value
        return losses

    def _mimic_weights(self, iteration: int):
        if self.assistant is None:
            return 0.0, 0.0
        return self.cls_schedule(iteration), self.bbox_schedule(iteration)

    def _zero_mimic(self, like: torch.Tensor) -> Dict[str, torch.Tensor]:
        zero = like.new_zeros(()).float()
        return {"loss_kd_csa_cls": zero, "loss_kd_csa_bbox": zero}

    # ---- dense detectors (RetinaNet, FCOS)
    def _dense_train(self, features, teacher_features, gt_instances, iteration):
        student = self.student
        is_fcos = self.kind == "fcos"
        feats = [features[f] for f in student.head_in_features]
        predictions = student.head(feats)
        dims = [student.num_classes, 4, 1] if is_fcos else [student.num_classes, 4]
        transposed = student._transpose_dense_predictions(predictions, dims)
        anchors = student.anchor_generator(feats)
        gt_labels, gt_boxes = student.label_anchors(anchors, gt_instances)
        if is_fcos:
            losses = dict(student.losses(anchors, transposed[0], gt_labels, transposed[1], gt_boxes, transposed[2]))
        else:
            losses = dict(student.losses(anchors, transposed[0], gt_labels, transposed[1], gt_boxes))
        if self.assistant is None:
            return losses, {}
        normalizer = student.loss_normalizer  # the EMA the student's losses just used (a float)
        labels = torch.stack(gt_labels)
        pos_mask = (labels >= 0) & (labels != student.num_classes)
        ctr_targets = student.compute_ctrness_targets(anchors, gt_boxes) if is_fcos else None
        module = self.assistant.module
        assistant_autocast = self._assistant_autocast()

        def assistant_outputs():  # fp32 (N, R, K), (N, R, 4) and, for FCOS, (N, R) over all levels' R positions
            with self._assistant_precision(assistant_autocast):
                fused = module.fuse(features, teacher_features)
                outs = student._transpose_dense_predictions(module.head(fused), dims)
            return [cat(x, dim=1).float() for x in outs[:2]] + ([cat(outs[2], dim=1).squeeze(2).float()] if is_fcos else [None])

        with self._autocast_off():
            a_logits, a_deltas, a_ctr = assistant_outputs()
            csa_losses = dense_gt_losses(student, anchors, a_logits, a_deltas, labels, gt_boxes, normalizer, a_ctr, ctr_targets)
            self.assistant.step(sum(csa_losses.values()))
        self._log_assistant(csa_losses, iteration)

        w_cls, w_box = self._mimic_weights(iteration)
        s_logits = cat(transposed[0], dim=1)
        mimic = self._zero_mimic(s_logits)
        if w_cls == 0.0 and w_box == 0.0:
            return losses, mimic
        with self._autocast_off(), torch.no_grad():
            if self.csa_refresh_targets:
                a_logits, a_deltas, _ = assistant_outputs()
            a_logits, a_deltas = a_logits.detach(), a_deltas.detach()
        if w_cls != 0.0:
            mimic["loss_kd_csa_cls"] = w_cls * dense_cls_mimic_loss(s_logits, a_logits, normalizer, self.csa_temperature)
        if w_box != 0.0:
            s_deltas = cat(transposed[1], dim=1)
            if is_fcos:
                box = decoded_giou_mimic_loss(student.box2box_transform, anchors, s_deltas, a_deltas, pos_mask, normalizer)
            else:
                box = delta_l1_mimic_loss(s_deltas, a_deltas, pos_mask, normalizer)
            mimic["loss_kd_csa_bbox"] = w_box * box
        return losses, mimic

    # ---- two-stage detectors (Faster/Mask R-CNN box branch, Cascade R-CNN)
    def _two_stage_train(self, batched_inputs, images, features, teacher_features, gt_instances, iteration):
        student = self.student
        roi = student.roi_heads
        if student.proposal_generator is not None:
            rpn_proposals, proposal_losses = student.proposal_generator(images, features, gt_instances)
        else:
            rpn_proposals = [x["proposals"].to(self.device) for x in batched_inputs]
            proposal_losses = {}
        proposals = roi.label_and_sample_proposals(rpn_proposals, gt_instances)
        if self.kind == "cascade":
            detector_losses, records = self._cascade_box_train(roi, features, proposals, gt_instances)
        else:
            detector_losses, records = self._standard_box_train(roi, features, proposals)
        detector_losses.update(roi._forward_mask(features, proposals))
        detector_losses.update(roi._forward_keypoint(features, proposals))
        if student.vis_period > 0 and get_event_storage().iter % student.vis_period == 0:
            student.visualize_training(batched_inputs, rpn_proposals)
        losses = dict(detector_losses)
        losses.update(proposal_losses)
        if self.assistant is None:
            return losses, {}

        module = self.assistant.module
        stages = module.head.stages
        by_stage = {r.stage: r for r in records}
        records = [by_stage[s] for s in stages]
        suffix = (lambda s: f"_stage{s}") if self.kind == "cascade" else (lambda s: "")
        assistant_autocast = self._assistant_autocast()

        def assistant_outputs():  # per distilled stage, fp32 (scores (R, K+1), deltas (R, K*4 or 4))
            with self._assistant_precision(assistant_autocast):
                fused = module.fuse(features, teacher_features)
                outputs = [module.head(fused, r.boxes, i) for i, r in enumerate(records)]
            return [(scores.float(), deltas.float()) for scores, deltas in outputs]

        with self._autocast_off():
            outputs = assistant_outputs()
            csa_losses = {}
            for i, (r, (scores, deltas)) in enumerate(zip(records, outputs)):
                stage_losses = fast_rcnn_gt_losses(module.head.box_predictors[i], scores, deltas, r.proposal_boxes, r.gt_boxes, r.gt_classes)
                csa_losses.update({k + suffix(r.stage): v for k, v in stage_losses.items()})
            self.assistant.step(sum(csa_losses.values()))
        self._log_assistant(csa_losses, iteration)

        w_cls, w_box = self._mimic_weights(iteration)
        mimic = self._zero_mimic(records[0].scores)
        if w_cls == 0.0 and w_box == 0.0:
            return losses, mimic
        with self._autocast_off(), torch.no_grad():
            if self.csa_refresh_targets:
                outputs = assistant_outputs()
            outputs = [(s.detach(), d.detach()) for s, d in outputs]
        num_classes = roi.num_classes
        if w_cls != 0.0:
            cls = sum(roi_cls_mimic_loss(r.scores, a_s, self.csa_temperature) for r, (a_s, _) in zip(records, outputs))
            mimic["loss_kd_csa_cls"] = w_cls * cls
        if w_box != 0.0:
            box = sum(
                roi_box_mimic_loss(r.deltas, a_d, r.gt_classes, num_classes, self.csa_roi_box_beta) for r, (_, a_d) in zip(records, outputs)
            )
            mimic["loss_kd_csa_bbox"] = w_box * box
        return losses, mimic

    @staticmethod
    def _standard_box_train(roi, features, proposals):
        """``StandardROIHeads._forward_box`` in training, keeping the predictions."""
        box_features = roi.box_pooler([features[f] for f in roi.box_in_features], [x.proposal_boxes for x in proposals])
        box_features = roi.box_head(box_features)
        predictions = roi.box_predictor(box_features)
        del box_features
        record = _RoIStageRecord(0, predictions, proposals)
        losses = roi.box_predictor.losses(predictions, proposals)
        if roi.train_on_pred_boxes:
            with torch.no_grad():
                pred_boxes = roi.box_predictor.predict_boxes_for_gt_classes(predictions, proposals)
                for proposals_per_image, pred_boxes_per_image in zip(proposals, pred_boxes):
                    proposals_per_image.proposal_boxes = Boxes(pred_boxes_per_image)
        return losses, [record]

    @staticmethod
    def _cascade_box_train(roi, features, proposals, targets):
        """``CascadeROIHeads._forward_box`` in training, keeping every stage's predictions."""
        features = [features[f] for f in roi.box_in_features]
        head_outputs, records = [], []
        prev_pred_boxes = None
        image_sizes = [x.image_size for x in proposals]
        for k in range(roi.num_cascade_stages):
            if k > 0:
                proposals = roi._create_proposals_from_boxes(prev_pred_boxes, image_sizes)
                proposals = roi._match_and_label_boxes(proposals, k, targets)
            predictions = roi._run_stage(features, proposals, k)
            prev_pred_boxes = roi.box_predictor[k].predict_boxes(predictions, proposals)
            head_outputs.append((roi.box_predictor[k], predictions, proposals))
            records.append(_RoIStageRecord(k, predictions, proposals))
        losses = {}
        storage = get_event_storage()
        for stage, (predictor, predictions, stage_proposals) in enumerate(head_outputs):
            with storage.name_scope("stage{}".format(stage)):
                stage_losses = predictor.losses(predictions, stage_proposals)
            losses.update({k + "_stage{}".format(stage): v for k, v in stage_losses.items()})
        return losses, records
