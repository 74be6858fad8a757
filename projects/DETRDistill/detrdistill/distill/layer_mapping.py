"""Which teacher decoder layer each student decoder layer learns from (DETRDistill Fig. 5).

Layers are 0-based everywhere in code; the docs below also give the paper's 1-based stages.
"""

from typing import List, Tuple

__all__ = ["LAYER_MAPPING_MODES", "build_layer_mapping", "resolve_layer_mapping_mode"]

LAYER_MAPPING_MODES = ("auto", "same_index", "last", "grouped")


def resolve_layer_mapping_mode(mode, num_student_layers: int, num_teacher_layers: int) -> str:
    """``None`` / "auto" -> "same_index" for equal layer counts, else "grouped"; other modes unchanged."""
    if mode is None or mode == "auto":
        return "same_index" if num_student_layers == num_teacher_layers else "grouped"
    if mode not in LAYER_MAPPING_MODES:
        raise ValueError(f"Unknown layer mapping mode '{mode}', expected one of {LAYER_MAPPING_MODES}.")
    return mode


def build_layer_mapping(num_student_layers: int, num_teacher_layers: int, mode: str = "auto") -> List[Tuple[int, int]]:
    """Pairs ``(student_layer, teacher_layer)`` (0-based) that are distilled against each other.

    Modes:
        "same_index": student layer k <- teacher layer k (equal layer counts required).
        "last": every student layer <- the teacher's last layer (the official code with
            ``is_layer_by_layer_distill=False``).
        "grouped": progressive stage grouping of Fig. 5. When the teacher has ``g`` times as many
            layers as the student, student layer j <- teacher layers ``j*g ... j*g+g-1``
            (6 teacher / 3 student: 1-based student stage j <- teacher stages 2j-1 and 2j).
            When the student has ``g`` times as many layers, student layers ``j*g ... j*g+g-1``
            all <- teacher layer j. Equal counts give "same_index". The larger count must be a
            multiple of the smaller one.
        "auto" (or None): "same_index" for equal counts, otherwise "grouped".

    Returns:
        list of ``(student_layer, teacher_layer)``, sorted by student layer then teacher layer.
    """
    for name, n in (("num_student_layers", num_student_layers), ("num_teacher_layers", num_teacher_layers)):
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"build_layer_mapping: {name} must be a positive int, got {n!r}.")
    mode = resolve_layer_mapping_mode(mode, num_student_layers, num_teacher_layers)
    s, t = num_student_layers, num_teacher_layers
    if mode == "same_index":
        if s != t:
            raise ValueError(
                f"Layer mapping 'same_index' needs equal decoder depths, got {s} student vs {t} teacher "
                "layers; use 'grouped' (Fig. 5) or 'last'."
            )
        return [(k, k) for k in range(s)]
    if mode == "last":
        return [(k, t - 1) for k in range(s)]
    # grouped
    if t >= s:
        if t % s != 0:
            raise ValueError(
                f"Layer mapping 'grouped' needs the teacher depth to be a multiple of the student depth, "
                f"got {t} teacher vs {s} student layers; use 'last' instead."
            )
        g = t // s
        return [(j, j * g + i) for j in range(s) for i in range(g)]
    if s % t != 0:
        raise ValueError(
            f"Layer mapping 'grouped' needs the student depth to be a multiple of the teacher depth, "
            f"got {s} student vs {t} teacher layers; use 'last' instead."
        )
    g = s // t
    return [(k, k // g) for k in range(s)]
