"""The Cross-Scale Assistant of a ScaleKD model as a stand-alone detector, for evaluation.

The assistant is trained on ground truth and its outputs are the student's mimic targets, so its own
accuracy says whether those targets are better than the student's predictions (the point of the
warm-up before the mimic losses switch on). :class:`AssistantDetector` runs it the way training does
(student backbone + teacher backbone -> fused maps -> the assistant's head) and post-processes with
the student's own inference code, so Detectron2's evaluators score it like any detector:

    python tools/lazyconfig_train_net.py --config-file CFG --eval-assistant train.init_checkpoint=out/x/model_final.pth
"""
from typing import Dict, List

import torch
from detectron2.modeling.postprocessing import detector_postprocess
from torch import nn

from kd_core.meta_arch import teacher_reads_other_format

from .data.mapper import make_teacher_image

__all__ = ["AssistantDetector", "add_teacher_views"]


def add_teacher_views(batched_inputs: List[dict], key: str, scale: float, flip_channels: bool = False) -> List[dict]:
    """Test-time inputs with the teacher's view under ``key``: as they are where the mapper provided
    it (:class:`~scalekd.ScaleKDDatasetMapper`, rendered from the original image), or where the scale is 1
    and the teacher reads the student's channel order; else each (C, H, W) ``image`` resized by ``scale``
    and, with ``flip_channels`` (teacher and student of other formats, BGR <-> RGB), its channels
    reversed (:func:`~scalekd.make_teacher_image`)."""
    if not batched_inputs or key in batched_inputs[0] or (scale == 1.0 and not flip_channels):
        return batched_inputs
    return [{**x, key: make_teacher_image(x["image"], scale, flip_channels)} for x in batched_inputs]


class AssistantDetector(nn.Module):
    """Inference with the assistant of a :class:`~scalekd.ScaleKDDetector` (eval mode only).

    Dense students (RetinaNet, FCOS): the assistant's dense head on the fused maps, decoded with
    the student's anchors and ``forward_inference``. Faster / Mask R-CNN students: the student's RPN
    proposals, the assistant's RoI box head on the fused maps, the assistant's box predictor's
    ``inference`` (boxes only). Cascade R-CNN is not supported: the assistant holds heads for the
    distilled stages only, not a whole cascade.

    Inputs: Detectron2's test-time dicts (``image``: (C, H, W) uint8). The teacher's view is the
    input's ``teacher_image`` when the mapper provides one, else the image resized by the model's
    ``teacher_scale`` (and converted to the teacher's BGR/RGB order) as :class:`~scalekd.ScaleKDDatasetMapper` does.
    Outputs: ``[{"instances": Instances}]`` in the input's ``height`` x ``width`` coordinates.
    """

    def __init__(self, kd_model: nn.Module):
        super().__init__()
        if getattr(kd_model, "assistant", None) is None:
            raise ValueError("This ScaleKD model has no Cross-Scale Assistant (model.use_csa=False): nothing to evaluate.")
        if kd_model.kind == "cascade":
            raise ValueError(
                "Evaluating the assistant alone is supported for RetinaNet, FCOS and Faster/Mask R-CNN students; "
                "a Cascade R-CNN assistant holds box heads for the distilled stages only, not a whole cascade."
            )
        self.kd_model = kd_model
        self.eval()

    def train(self, mode: bool = True):
        if mode:
            raise RuntimeError("AssistantDetector is for evaluation only.")
        self.kd_model.eval()
        self.kd_model.assistant.module.eval()
        return super().train(False)

    @torch.no_grad()
    def forward(self, batched_inputs: List[Dict]) -> List[Dict]:
        kd = self.kd_model
        student, assistant = kd.student, kd.assistant.module
        flip = teacher_reads_other_format(student, kd.teacher.model)
        batched_inputs = add_teacher_views(batched_inputs, kd.teacher_image_key, kd.teacher_scale, flip)
        images = student.preprocess_image(batched_inputs)
        features = student.backbone(images.tensor)
        teacher_features = kd.run_teacher(batched_inputs, images.tensor.shape[-2:])
        fused = assistant.fuse(features, teacher_features)
        if kd.kind in ("retinanet", "fcos"):
            results = student.forward_inference(images, fused, assistant.head(fused))
        else:
            proposals, _ = student.proposal_generator(images, features, None)
            predictions = assistant.head(fused, [p.proposal_boxes for p in proposals], 0)
            results, _ = assistant.head.box_predictors[0].inference(predictions, proposals)
        out = []
        for result, x, size in zip(results, batched_inputs, images.image_sizes):
            out.append({"instances": detector_postprocess(result, x.get("height", size[0]), x.get("width", size[1]))})
        return out
