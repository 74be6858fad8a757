"""Turn a distillation checkpoint into a plain student checkpoint."""
import logging
import os
from typing import Dict, Tuple

import torch

__all__ = ["extract_student_state_dict", "export_student_checkpoint"]

logger = logging.getLogger(__name__)

STUDENT_PREFIX = "student."


def extract_student_state_dict(state_dict: Dict[str, torch.Tensor], prefix: str = STUDENT_PREFIX) -> Dict[str, torch.Tensor]:
    """The student's tensors of a :class:`DistillationDetector` state dict, with ``prefix`` removed.

    Distiller parameters (adapters, SDF blocks, ...) and anything else outside the student are
    dropped: the deployed student is exactly the student architecture.
    """
    state_dict = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state_dict.items()}
    student = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
    if not student:
        sample = sorted(state_dict)[:5]
        raise KeyError(
            f"No '{prefix}*' keys in the checkpoint (e.g. {sample}); is it a distillation checkpoint? "
            "A plain detector checkpoint can be used as it is."
        )
    return student


def export_student_checkpoint(input_path: str, output_path: str) -> Tuple[int, int]:
    """Write ``{"model": student_state_dict}`` for the student's own config.

    Returns:
        (number of student tensors kept, number of tensors dropped).
    """
    from detectron2.utils.file_io import PathManager

    with PathManager.open(input_path, "rb") as f:
        ckpt = torch.load(f, map_location="cpu", weights_only=False)
    state = ckpt["model"] if isinstance(ckpt, dict) and "model" in ckpt else ckpt
    student = extract_student_state_dict(state)
    out = {"model": student, "__author__": "kd_toolkit export_student"}
    PathManager.mkdirs(os.path.dirname(output_path) or ".")
    with PathManager.open(output_path, "wb") as f:
        torch.save(out, f)
    dropped = len(state) - len(student)
    logger.info(f"Exported {len(student)} student tensors to {output_path} ({dropped} KD-only tensors dropped).")
    return len(student), dropped
