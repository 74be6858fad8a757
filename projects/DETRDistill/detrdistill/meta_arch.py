"""DETRDistill (ICCV 2023) as a Detectron2 meta-architecture on the kd_core engine.

One training step:
    1. teacher ``run()`` under no_grad (eval mode): per-layer logits/boxes/hidden states, the
       multi-scale features fed to its transformer, and its input queries;
    2. student ``run()`` on the same augmented batch, with the teacher's (detached) queries as an
       extra query group in the same decoder pass (Group-DETR block-diagonal self-attention), so
       the encoder runs once;
    3. losses: the student's own DETR loss + ``loss_kd_logits_*`` (Hungarian-matching logits KD,
       stage by stage) + ``loss_kd_feature`` (target-aware feature KD) + ``loss_kd_query_*``
       (the teacher-query group supervised with ground truth under the teacher's assignment) +
       optionally ``loss_kd_relation``.
Inference is the student alone (no extra group).
"""
import logging
from typing import Dict, List, Optional, Union

import torch
from detectron2.modeling import META_ARCH_REGISTRY
from torch import nn

from kd_core.distiller import as_schedule
from kd_core.matching import HungarianMatcher, PendingAssignments
from kd_core.meta_arch import DistillationDetector
from kd_core.schedules import LossWeightSchedule, current_iteration
from kd_core.teacher import FrozenTeacher

from .distill.feature_kd import TargetAwareFeatureDistillation
from .distill.logits_kd import HungarianLogitsDistillation
from .distill.query_prior_kd import (
    QUERY_GROUP_ASSIGNMENTS,
    match_teacher_to_ground_truth,
    prefix_query_group_losses,
    query_group_indices,
)
from .distill.relation_kd import QueryRelationDistillation
from .modeling.detr_base import DETRBase
from .modeling.outputs import DETROutputs

__all__ = ["DETRDistillDetector", "run_detr"]

logger = logging.getLogger(__name__)
Weight = Union[float, LossWeightSchedule]


def run_detr(model: DETRBase, batched_inputs: List[dict]) -> DETROutputs:
    """Raw outputs of a DETR-family model (no post-processing): the teacher forward of DETRDistill."""
    return model.run(model.preprocess_image(batched_inputs))


def _zeros_tied_to(module: Optional[nn.Module], names) -> Dict[str, torch.Tensor]:
    """Zero losses that still touch every parameter of ``module`` (DDP sees all of them)."""
    params = list(module.parameters()) if module is not None else []
    zero = sum((p.sum() * 0.0 for p in params), torch.zeros(()))
    return {k: zero for k in names}


@META_ARCH_REGISTRY.register()
class DETRDistillDetector(DistillationDetector):
    """Teacher/student DETR distillation (DETRDistill).

    Args:
        student: a DETR-family model of this project (:class:`DETRBase`).
        teacher: :class:`FrozenTeacher` around a DETR-family model with the same classes.
        logits_kd: the Hungarian-matching logits KD module, or None to switch it off.
        feature_kd: the target-aware feature KD module, or None.
        relation_kd: the content-query relation (InfoNCE) module, or None (default: off).
        query_kd: run the teacher's queries as an extra group in the student decoder.
        query_kd_assignment: "fresh" (default: match the group to GT anew, what the official
            code does and what produced the published numbers) or "teacher" (the teacher's own
            per-stage GT assignment, Eq. 10 and the official code's intent; use it with
            ``query_kd_teacher_references=True``, see docs/results.md).
        query_kd_layer_mapping: how student layers take the teacher's per-layer assignment when
            the depths differ (see ``build_layer_mapping``).
        query_kd_teacher_references: False (default, the official code): the student's reference
            layer maps the teacher's positional queries. True: the teacher group starts from the
            teacher's own reference points (``teacher.model.query_prior``: Deformable and
            Conditional DETR append them to their queries; AdaMixer's queries already carry their
            boxes). With ``query_kd_assignment="teacher"`` set this True: otherwise the teacher's
            assignment puts targets where the teacher's reference points are, not where the
            student's layer sends the queries, and the student collapses (docs/results.md).
        teacher_matcher: the teacher's DETR matcher for its GT assignment (default: the teacher
            criterion's matcher).
        logits_kd_weight, feature_kd_weight, query_kd_weight, relation_kd_weight: float or
            :class:`LossWeightSchedule` multiplying each component.
        teacher_image_key: see :class:`DistillationDetector`.
    """

    def __init__(
        self,
        *,
        student: DETRBase,
        teacher: FrozenTeacher,
        logits_kd: Optional[HungarianLogitsDistillation] = None,
        feature_kd: Optional[TargetAwareFeatureDistillation] = None,
        relation_kd: Optional[QueryRelationDistillation] = None,
        query_kd: bool = True,
        query_kd_assignment: str = "fresh",
        query_kd_layer_mapping: Optional[str] = None,
        query_kd_teacher_references: bool = False,
        teacher_matcher: Optional[HungarianMatcher] = None,
        logits_kd_weight: Weight = 1.0,
        feature_kd_weight: Weight = 1.0,
        query_kd_weight: Weight = 1.0,
        relation_kd_weight: Weight = 1.0,
        teacher_image_key: str = "teacher_image",
    ):
        super().__init__(
            student=student, teacher=teacher, distillers={}, teacher_forward=run_detr, teacher_image_key=teacher_image_key
        )
        t = teacher.model
        for role, m in (("student", student), ("teacher", t)):
            if not isinstance(m, DETRBase):
                raise TypeError(f"DETRDistill needs DETR-family models; the {role} is a {type(m).__name__}.")
        if query_kd_assignment not in QUERY_GROUP_ASSIGNMENTS:
            raise ValueError(f"query_kd_assignment must be one of {QUERY_GROUP_ASSIGNMENTS}, got '{query_kd_assignment}'.")
        if query_kd:
            if type(t) is not type(student):
                raise ValueError(
                    f"Query-prior KD feeds the teacher's queries to the student decoder, which needs the same "
                    f"architecture: teacher {type(t).__name__} vs student {type(student).__name__}. Set query_kd=False."
                )
            if t.hidden_dim != student.hidden_dim:
                raise ValueError(
                    f"Query-prior KD needs equal hidden sizes: teacher {t.hidden_dim} vs student "
                    f"{student.hidden_dim}. Set query_kd=False (logits and feature KD still work)."
                )
        if relation_kd is not None and logits_kd is None:
            raise ValueError("relation_kd re-orders the teacher queries by the logits-KD matching: enable logits_kd.")
        self.logits_kd = logits_kd
        self.feature_kd = feature_kd
        self.relation_kd = relation_kd
        self.query_kd = query_kd
        self.query_kd_assignment = query_kd_assignment
        self.query_kd_layer_mapping = query_kd_layer_mapping
        self.query_kd_teacher_references = query_kd_teacher_references
        self.teacher_matcher = teacher_matcher if teacher_matcher is not None else t.criterion.matcher
        self.schedules = {
            "logits": as_schedule(logits_kd_weight),
            "feature": as_schedule(feature_kd_weight),
            "query": as_schedule(query_kd_weight),
            "relation": as_schedule(relation_kd_weight),
        }

    # ------------------------------------------------------------------ helpers
    def _needs_teacher_assignment(self) -> bool:
        paper_logits = self.logits_kd is not None and self.logits_kd.mode == "paper"
        return paper_logits or (self.query_kd and self.query_kd_assignment == "teacher")

    @torch.no_grad()
    def _teacher_query_group(self, t_out: DETROutputs) -> torch.Tensor:
        """The teacher's queries (detached) for the student's extra query group."""
        if self.query_kd_teacher_references:
            return self.teacher.model.query_prior(t_out).detach()
        return t_out.query_embed.detach()

    # ------------------------------------------------------------------ training
    def forward_train(self, batched_inputs: List[dict]) -> Dict[str, torch.Tensor]:
        student = self.student
        images = student.preprocess_image(batched_inputs)
        targets = student.prepare_targets(batched_inputs)
        t_out = self.run_teacher(batched_inputs)  # run_detr under no_grad, eval mode
        extra = self._teacher_query_group(t_out) if self.query_kd else None
        s_out = student.run(images, extra_queries=extra)

        iteration = current_iteration()
        w = {k: s(iteration) for k, s in self.schedules.items()}
        teacher_gt = None
        if self._needs_teacher_assignment():
            teacher_gt = match_teacher_to_ground_truth(self.teacher_matcher, t_out.logits, t_out.boxes, targets)
        # Every Hungarian matching of the step is started before any is waited for: their costs are
        # computed and their copies to the host queued back to back, a background thread solves
        # them in this order (the small ground-truth ones first), and this thread meanwhile issues
        # the feature KD, then each loss as its matching arrives, the logits KD's (the largest)
        # last. On a GPU the device computes while the host solves, instead of waiting for the
        # host three times. The losses dict keeps one key order (student, logits, relation,
        # feature, query group).
        pending_student = student.criterion.start_match(s_out.logits, s_out.boxes, targets)
        pending_group = None
        if self.query_kd:
            group_indices = query_group_indices(
                self.query_kd_assignment, teacher_gt, s_out.extra.logits.shape[0], self.query_kd_layer_mapping
            )
            pending_group = (  # None: "fresh", the group matched to ground truth anew
                student.criterion.start_match(s_out.extra.logits, s_out.extra.boxes, targets)
                if group_indices is None
                else PendingAssignments.finished(group_indices)
            )
        pending_matching = None
        if self.logits_kd is not None and not (w["logits"] == 0.0 and (self.relation_kd is None or w["relation"] == 0.0)):
            pending_matching = self.logits_kd.start_match(s_out.logits, s_out.boxes, t_out.logits, t_out.boxes, teacher_gt)
        feature_losses = {}
        if self.feature_kd is not None:
            if w["feature"] == 0.0:
                feature_losses = _zeros_tied_to(self.feature_kd, ["loss_kd_feature"])
            else:
                kd = self.feature_kd(
                    s_out.features,
                    t_out.features,
                    s_out.feature_masks,
                    t_out.logits,
                    t_out.boxes,
                    t_out.hidden_states,
                    targets,
                )
                feature_losses = {k: v * w["feature"] for k, v in kd.items()}

        losses, _ = student.compute_losses(s_out, targets, indices=pending_student.result())

        query_losses = {}
        if self.query_kd:
            group = s_out.extra
            group_losses, _ = student.criterion(group.logits, group.boxes, targets, indices=pending_group.result())
            query_losses = {k: v * w["query"] for k, v in prefix_query_group_losses(group_losses).items()}

        if self.logits_kd is not None:
            matching = None if pending_matching is None else pending_matching.result()
            if matching is None:
                losses.update(_zeros_tied_to(None, HungarianLogitsDistillation.LOSS_NAMES))
            else:
                kd = self.logits_kd(s_out.logits, s_out.boxes, t_out.logits, t_out.boxes, teacher_gt, matching=matching)
                losses.update({k: v * w["logits"] for k, v in kd.items()})
            if self.relation_kd is not None:
                if w["relation"] == 0.0 or matching is None:
                    losses.update(_zeros_tied_to(self.relation_kd, ["loss_kd_relation"]))
                else:
                    kd = self.relation_kd(s_out.hidden_states, t_out.hidden_states, matching.layer_pairs, matching.indices)
                    losses.update({k: v * w["relation"] for k, v in kd.items()})
        losses.update(feature_losses)
        losses.update(query_losses)
        return losses
