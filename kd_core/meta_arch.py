"""The teacher/student distillation meta-architecture."""
import logging
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from detectron2.config import instantiate
from detectron2.modeling import META_ARCH_REGISTRY
from detectron2.utils.events import get_event_storage
from torch import nn

from .distiller import Distiller
from .hooks import FeatureRecorder
from .schedules import current_iteration
from .teacher import FrozenTeacher
from .teacher_cache import TeacherOutputCache, teacher_fingerprint

__all__ = ["DistillationDetector", "TeacherViewDetector", "get_num_classes", "run_backbone", "teacher_inputs", "teacher_reads_other_format"]

logger = logging.getLogger(__name__)


def get_num_classes(model: nn.Module) -> Optional[int]:
    """Number of foreground classes of a Detectron2 detector, or None if it cannot be told."""
    for owner in (model, getattr(model, "roi_heads", None), getattr(model, "head", None)):
        n = getattr(owner, "num_classes", None)
        if isinstance(n, int):
            return n
    box_predictor = getattr(getattr(model, "roi_heads", None), "box_predictor", None)
    if isinstance(box_predictor, nn.ModuleList):  # cascade
        box_predictor = box_predictor[0]
    n = getattr(box_predictor, "num_classes", None)
    return n if isinstance(n, int) else None


def teacher_inputs(batched_inputs: List[dict], image_key: str = "teacher_image") -> List[dict]:
    """Per-image dicts for the teacher: ``image`` replaced by ``image_key`` where the mapper provided one
    (e.g. the same augmented image at 2x scale for ScaleKD); otherwise the student's inputs unchanged."""
    if image_key and batched_inputs and image_key in batched_inputs[0]:
        return [{**x, "image": x[image_key]} for x in batched_inputs]
    return batched_inputs


def teacher_reads_other_format(student: nn.Module, teacher: nn.Module) -> bool:
    """Whether the teacher's ``input_format`` is the student's with the channels reversed (BGR vs RGB)."""
    formats = {getattr(student, "input_format", None), getattr(teacher, "input_format", None)}
    return formats == {"BGR", "RGB"}


def run_backbone(model: nn.Module, batched_inputs: List[dict], padded_size: Optional[Sequence[int]] = None):
    """Preprocess and run only the backbone of a Detectron2 detector (no heads, no post-processing).

    ``padded_size`` = (H, W): pad the preprocessed batch (zeros after normalisation, at the
    bottom/right, like Detectron2's own padding) to at least that size, e.g. to exactly 2x the
    student's padded size for a 2x teacher. Returns the backbone's output dict, e.g.
    {"p2": (B, C, H/4, W/4), ...} for an FPN.
    """
    x = model.preprocess_image(batched_inputs).tensor
    if padded_size is not None:
        pad_h, pad_w = max(0, int(padded_size[0]) - x.shape[-2]), max(0, int(padded_size[1]) - x.shape[-1])
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h))
    return model.backbone(x)


class TeacherViewDetector(nn.Module):
    """A distillation model's frozen teacher as a stand-alone detector, run on the teacher's view of
    each input, for evaluation (``--eval-teacher``).

    Args:
        model: the teacher detector (Detectron2 inference API).
        image_key: the inputs' key of the teacher's view (e.g. ScaleKD's 2x ``teacher_image``); the
            input's ``image`` where a batch has none.
        make_views: optional ``batched_inputs -> batched_inputs`` that adds ``image_key`` where the
            test mapper did not (e.g. the image resized to the teacher's scale).
    Inputs: Detectron2's test-time dicts. Outputs: the teacher's ``[{"instances": Instances}]``, in the
    inputs' ``height`` x ``width`` coordinates (the teacher's own post-processing), so a view at another
    scale is scored against the same ground truth.
    """

    def __init__(self, model: nn.Module, image_key: Optional[str] = "teacher_image", make_views=None):
        super().__init__()
        self.model = model
        self.image_key = image_key
        self.make_views = make_views

    def train(self, mode: bool = True):
        if mode:
            raise RuntimeError("TeacherViewDetector is for evaluation only.")
        return super().train(False)

    @torch.no_grad()
    def forward(self, batched_inputs: List[dict]) -> List[dict]:
        if self.make_views is not None:
            batched_inputs = self.make_views(batched_inputs)
        return self.model(teacher_inputs(batched_inputs, self.image_key))


@META_ARCH_REGISTRY.register()
class DistillationDetector(nn.Module):
    """A student detector trained with a frozen teacher and a set of distillers.

    Training returns the student's own detection losses plus every KD term under its own key
    (``loss_kd_*``), so Detectron2's ``EventStorage`` logs each one; inference (eval mode) is the
    student alone, so evaluation and export see exactly the student.

    The teacher is a :class:`FrozenTeacher` stored as a plain attribute: it is not in
    ``state_dict()``, ``parameters()``, DDP, or the optimizer.

    Args:
        student: the student detector (any Detectron2 meta-architecture).
        teacher: the frozen teacher.
        distillers: name -> :class:`Distiller`; their parameters (adapters, ...) are trained with
            the student and saved in the KD checkpoint under ``distillers.<name>``.
        teacher_forward: how the teacher runs each iteration: "backbone" (preprocess + backbone
            only; enough for feature KD), "full" (its eval forward) or a callable
            ``fn(teacher_model, batched_inputs)``.
        teacher_image_key: dataset-dict key of a separate teacher image (high-resolution teacher);
            ignored when absent from the inputs.
        check_num_classes: raise if teacher and student predict different numbers of classes.
        teacher_cache_dir: cache the teacher's backbone outputs and recorded features on disk in
            this directory, keyed by the exact teacher input image (see
            :class:`~kd_core.teacher_cache.TeacherOutputCache`); only with ``teacher_forward="backbone"``.
            "" = off. The per-iteration fraction of images found is logged as ``teacher_cache_hit_fraction``.
    """

    def __init__(
        self,
        *,
        student: nn.Module,
        teacher: FrozenTeacher,
        distillers: Optional[Mapping[str, Distiller]] = None,
        teacher_forward: Union[str, Callable] = "backbone",
        teacher_image_key: str = "teacher_image",
        check_num_classes: bool = True,
        teacher_cache_dir: str = "",
    ):
        super().__init__()
        if not isinstance(teacher, FrozenTeacher):
            raise TypeError(f"teacher must be a kd_core.FrozenTeacher, got {type(teacher).__name__}.")
        self.student = student
        self.teacher = teacher  # plain attribute: not registered (see class docstring)
        # Detectron2's instantiate() does not recurse into a dict without _target_, so a config's
        # ``distillers={"name": L(SomeDistiller)(...)}`` arrives as lazy configs: build them here.
        self.distillers = nn.ModuleDict({k: instantiate(v) for k, v in dict(distillers or {}).items()})
        if isinstance(teacher_forward, str) and teacher_forward not in ("backbone", "full"):
            raise ValueError(f"teacher_forward must be 'backbone', 'full' or a callable, got '{teacher_forward}'.")
        self.teacher_forward = teacher_forward
        self.teacher_image_key = teacher_image_key
        if check_num_classes:
            ns, nt = get_num_classes(student), get_num_classes(teacher.model)
            if ns is not None and nt is not None and ns != nt:
                raise ValueError(
                    f"Class-count mismatch: the student predicts {ns} classes and the teacher {nt}. "
                    "Distillation needs the same label space; fix num_classes in one of the model configs."
                )
        self._student_recorder = FeatureRecorder(student, [m for d in self.distillers.values() for m in d.student_modules])
        self._teacher_recorder = FeatureRecorder(teacher.model, [m for d in self.distillers.values() for m in d.teacher_modules])
        self.teacher_cache: Optional[TeacherOutputCache] = None
        if teacher_cache_dir:
            if teacher_forward != "backbone":
                raise ValueError(
                    "teacher_cache_dir caches the teacher's backbone features, so it needs teacher_forward='backbone' "
                    f"(feature distillation); this model's teacher_forward is {teacher_forward!r}."
                )
            self.teacher_cache = TeacherOutputCache(teacher_cache_dir, teacher_fingerprint(teacher))

    @property
    def device(self) -> torch.device:
        return next(self.student.parameters()).device

    def unregistered_modules(self) -> List[nn.Module]:
        """Networks this model runs that are kept out of its module tree (so out of ``state_dict``,
        the optimizer and DDP): the frozen teacher; subclasses add theirs (e.g. an assistant
        trained by its own optimizer). ``.to(device)`` does not reach them; whole-model
        conversions (e.g. :func:`kd_core.engine.to_channels_last`) must."""
        return [self.teacher.model]

    def teacher_detector(self) -> nn.Module:
        """The frozen teacher as a detector on its view of each input (:class:`TeacherViewDetector`),
        for evaluation; subclasses whose teacher sees another scale make that view."""
        return TeacherViewDetector(self.teacher.model, self.teacher_image_key).eval()

    def forward(self, batched_inputs: List[dict]):
        if not self.training:
            return self.student(batched_inputs)
        self._check_teacher_channel_order(batched_inputs)
        self.teacher.to(self.device)
        return self.forward_train(batched_inputs)

    def _check_teacher_channel_order(self, batched_inputs: List[dict]) -> None:
        """A teacher that reads the other channel order (BGR vs RGB) needs its own view of each image:
        without one it would silently get the student's."""
        key = self.teacher_image_key
        if batched_inputs and not (key and key in batched_inputs[0]) and teacher_reads_other_format(self.student, self.teacher.model):
            raise ValueError(
                f"The teacher reads {self.teacher.model.input_format} images and the student {self.student.input_format}, "
                f"but the inputs have no '{key}' in the teacher's order. Give the teacher its own view, e.g. "
                f"scalekd.data.ScaleKDDatasetMapper(teacher_image_format='{self.teacher.model.input_format}') in "
                "dataloader.train.mapper."
            )

    def run_teacher(self, batched_inputs: List[dict]):
        """Teacher forward (no_grad, eval) on the teacher's view of the batch."""
        inputs = teacher_inputs(batched_inputs, self.teacher_image_key)
        if self.teacher_forward == "backbone":
            return self.teacher.run(run_backbone, inputs)
        if self.teacher_forward == "full":
            return self.teacher(inputs)
        return self.teacher.run(self.teacher_forward, inputs)

    def teacher_record_keys(self) -> Dict[str, Optional[List[str]]]:
        """Per recorded teacher module whose output is a dict, the keys the distillers read (None = all)."""
        keys: Dict[str, Optional[List[str]]] = {}
        for distiller in self.distillers.values():
            for module, names in distiller.teacher_record_keys().items():
                if names is None or (module in keys and keys[module] is None):
                    keys[module] = None
                else:
                    keys[module] = list(dict.fromkeys((keys.get(module) or []) + list(names)))
        return keys

    def teacher_backbone_features(
        self, batched_inputs: List[dict], padded_size: Optional[Sequence[int]] = None, output_keys: Optional[Sequence[str]] = None
    ) -> Tuple[Dict[str, torch.Tensor], Dict[str, object]]:
        """The teacher backbone's outputs and the recorded teacher features on the teacher's view of
        the batch (no_grad, eval), padded to at least ``padded_size`` (see :func:`run_backbone`).

        With ``teacher_cache_dir`` they come from the disk cache where the same teacher image was
        seen before; then only ``output_keys`` of the outputs are returned (None = all).
        """
        inputs = teacher_inputs(batched_inputs, self.teacher_image_key)
        if self.teacher_cache is None:
            with self._teacher_recorder.record() as records:
                outputs = self.teacher.run(run_backbone, inputs, padded_size)
            return outputs, records
        outputs, records = self.teacher_cache.run(
            self.teacher, run_backbone, self._teacher_recorder, inputs, padded_size, output_keys, self.teacher_record_keys()
        )
        try:
            get_event_storage().put_scalar("teacher_cache_hit_fraction", self.teacher_cache.last_batch_hits / len(inputs))
        except AssertionError:  # no EventStorage (outside a trainer)
            pass
        return outputs, records

    def forward_train(self, batched_inputs: List[dict]) -> Dict[str, torch.Tensor]:
        """Student detection losses + weighted KD terms. Subclasses override for deeper coupling."""
        if self.teacher_forward == "backbone":
            _, teacher_records = self.teacher_backbone_features(batched_inputs, output_keys=())
        else:
            with self._teacher_recorder.record() as teacher_records:
                self.run_teacher(batched_inputs)
        with self._student_recorder.record() as student_records:
            losses = dict(self.student(batched_inputs))
        iteration = current_iteration()
        for name, distiller in self.distillers.items():
            kd = distiller(student_records, teacher_records, batched_inputs, iteration)
            clash = set(kd) & set(losses)
            if clash:
                raise KeyError(f"Distiller '{name}' returned loss keys that already exist: {sorted(clash)}.")
            losses.update(kd)
        return losses

    def extra_checkpointables(self) -> Dict[str, object]:
        """Objects with state_dict()/load_state_dict() saved next to the model (e.g. an auxiliary
        optimizer). The training script adds them to the DetectionCheckpointer."""
        return {}

    def student_state_dict(self) -> Dict[str, torch.Tensor]:
        """The student's own weights, as the student's config expects them."""
        return self.student.state_dict()
