"""DETRDistill's distillation terms as tensor-level modules (independent of the model code).

* :class:`HungarianLogitsDistillation` - Hungarian-matching logits KD, stage by stage.
* :class:`TargetAwareFeatureDistillation` - query-weighted feature KD.
* :class:`QueryRelationDistillation` - the official code's content-query InfoNCE (optional).
* query-prior helpers - the teacher's assignment for the student's teacher-query group.
* :func:`build_layer_mapping` - which teacher layer each student layer learns from.
"""

from .feature_kd import TargetAwareFeatureDistillation, max_iou_with_ground_truth
from .layer_mapping import LAYER_MAPPING_MODES, build_layer_mapping, resolve_layer_mapping_mode
from .logits_kd import (
    HungarianLogitsDistillation,
    LogitsMatching,
    reduce_normalizers,
)
from .query_prior_kd import (
    QUERY_GROUP_ASSIGNMENTS,
    QUERY_KD_LOSS_PREFIX,
    match_teacher_to_ground_truth,
    prefix_query_group_losses,
    query_group_indices,
    teacher_assignment_indices,
)
from .relation_kd import QueryProjection, QueryRelationDistillation

__all__ = [
    "HungarianLogitsDistillation",
    "LogitsMatching",
    "TargetAwareFeatureDistillation",
    "QueryRelationDistillation",
    "QueryProjection",
    "LAYER_MAPPING_MODES",
    "build_layer_mapping",
    "resolve_layer_mapping_mode",
    "QUERY_GROUP_ASSIGNMENTS",
    "QUERY_KD_LOSS_PREFIX",
    "match_teacher_to_ground_truth",
    "teacher_assignment_indices",
    "query_group_indices",
    "prefix_query_group_losses",
    "max_iou_with_ground_truth",
    "reduce_normalizers",
]
