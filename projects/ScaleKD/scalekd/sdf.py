"""Scale-Decoupled Feature distillation (SDF).

The teacher's and the (adapted) student's last-stage maps go through the same block: one
residual bottleneck (1x1 -> 3x3 -> 1x1) applied three times with the 3x3 dilated by 1, 2 and 3
(weights shared between the branches), a per-token MLP per branch output, and the three
embeddings concatenated. The student's embedding is pulled towards the teacher's with an L2
loss; the teacher path is detached.

By default the SDF block is a frozen random projection (trained on this loss alone it could
collapse to a constant); ``trainable=True`` trains it with the student.
"""
import logging
from typing import Dict, Mapping, Sequence, Union

import torch
import torch.nn.functional as F
from detectron2.layers import get_norm
from torch import nn

from kd_core.adapters import ChannelAdapter, align_spatial
from kd_core.distiller import Distiller
from kd_core.schedules import LossWeightSchedule

__all__ = ["SharedDilatedBottleneck", "ScaleDecoupledEmbedding", "SDFDistiller"]

logger = logging.getLogger(__name__)


class SharedDilatedBottleneck(nn.Module):
    """A residual bottleneck whose 3x3 conv is applied with several dilations, weights shared.

    Branch ``d``: ``relu(x + conv3(relu(conv2_d(relu(conv1(x))))))`` with ``conv2_d`` the 3x3
    conv at dilation ``d`` (padding ``d``, so the spatial size is kept).

    Args:
        channels: input/output channels C.
        bottleneck_channels: inner width (default C // 4).
        dilations: one branch per dilation.
        norm: Detectron2 norm name after each conv ("" = none, "GN", "BN", ...), shared by the branches.
    """

    def __init__(self, channels: int, bottleneck_channels: int = None, dilations: Sequence[int] = (1, 2, 3), norm: str = ""):
        super().__init__()
        if not dilations or any(int(d) < 1 for d in dilations):
            raise ValueError(f"dilations must be positive integers, got {list(dilations)}.")
        inner = bottleneck_channels or max(1, channels // 4)
        self.dilations = [int(d) for d in dilations]
        self.conv1 = nn.Conv2d(channels, inner, 1, bias=not norm)
        self.conv2 = nn.Conv2d(inner, inner, 3, bias=not norm)
        self.conv3 = nn.Conv2d(inner, channels, 1, bias=not norm)
        self.norm1 = get_norm(norm, inner) or nn.Identity()
        self.norm2 = get_norm(norm, inner) or nn.Identity()
        self.norm3 = get_norm(norm, channels) or nn.Identity()
        for conv in (self.conv1, self.conv2, self.conv3):
            nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
            if conv.bias is not None:
                nn.init.zeros_(conv.bias)

    def forward(self, x: torch.Tensor) -> Sequence[torch.Tensor]:
        """(B, C, H, W) -> one (B, C, H, W) map per dilation."""
        y = F.relu(self.norm1(self.conv1(x)))
        outs = []
        for d in self.dilations:
            z = F.conv2d(y, self.conv2.weight, self.conv2.bias, padding=d, dilation=d)
            z = F.relu(self.norm2(z))
            z = self.norm3(self.conv3(z))
            outs.append(F.relu(x + z))
        return outs


class ScaleDecoupledEmbedding(nn.Module):
    """SDF block: shared dilated bottleneck -> per-token MLP per branch -> concatenation.

    Args:
        channels: input channels C (the teacher's channels; the student is adapted to them first).
        embed_dims: widths of the per-token MLP (default C -> 256 -> 256), shared by the branches.
        dilations, bottleneck_channels, norm: see :class:`SharedDilatedBottleneck`.
    Output: (B, H*W, len(dilations) * embed_dims[-1]) tokens in row-major (y, x) order.
    """

    def __init__(
        self,
        channels: int,
        embed_dims: Sequence[int] = (256, 256),
        dilations: Sequence[int] = (1, 2, 3),
        bottleneck_channels: int = None,
        norm: str = "",
    ):
        super().__init__()
        if not embed_dims:
            raise ValueError("embed_dims must name at least one MLP width.")
        self.channels = channels
        self.bottleneck = SharedDilatedBottleneck(channels, bottleneck_channels, dilations, norm)
        layers, in_dim = [], channels
        for i, dim in enumerate(embed_dims):
            layers.append(nn.Linear(in_dim, dim))
            if i < len(embed_dims) - 1:
                layers.append(nn.ReLU())
            in_dim = dim
        self.mlp = nn.Sequential(*layers)
        self.out_dim = len(self.bottleneck.dilations) * embed_dims[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.channels:
            raise ValueError(f"ScaleDecoupledEmbedding expects (B, {self.channels}, H, W), got {tuple(x.shape)}.")
        branches = [self.mlp(b.flatten(2).transpose(1, 2)) for b in self.bottleneck(x)]  # each (B, HW, D)
        return torch.cat(branches, dim=-1)


def _as_list(value, n: int, what: str) -> list:
    if isinstance(value, int):
        return [value] * n
    value = list(value)
    if len(value) != n:
        raise ValueError(f"{what} has {len(value)} entries for {n} feature pairs.")
    return value


class SDFDistiller(Distiller):
    """SDF loss between recorded student and teacher feature maps.

    For each (student feature, teacher feature) pair: the student map goes through a 1x1 conv
    adapter to the teacher's channels; the teacher map (detached) is brought to the student's
    spatial size; both go through the same :class:`ScaleDecoupledEmbedding`;
    ``loss = mean over images and tokens of sum over channels (e_s - e_t)^2``, summed over pairs.

    Args:
        student_channels, teacher_channels: channels of each paired feature (int = same for all).
        student_module, teacher_module: recorded modules whose output is a dict of maps
            ("backbone.bottom_up" = ResNet stages; "backbone" = FPN levels).
        student_features, teacher_features: paired names in those dicts. Default C5 ("res5")
            for both. Pairing teacher C5 with student C4 (a 2x teacher's C5 has the size of the
            student's C4): ``student_features=["res4"]``, ``student_channels=[<C4 channels>]``,
            ``spatial_align="exact"``. FPN option: module "backbone", features p3-p5.
        spatial_align: "avgpool" (a larger teacher map is average-pooled by the integer factor,
            2x2 for a 2x teacher), "bilinear", or "exact" (sizes must already match, else error).
        embed_dims, dilations, bottleneck_channels, norm: the SDF block.
        trainable: train the SDF block with the student (default: frozen random init; the
            adapter is always trained).
        reduction: "sum_channels" (sum over the embedding channels, mean over tokens and
            images; default) or "mean" (mean over all elements: 1/768 of the former for 3 x 256).
        weight: alpha (0.07 two-stage, 0.01 one-stage) or a :class:`LossWeightSchedule`.
    Loss key: ``loss_kd_sdf``.
    """

    def __init__(
        self,
        *,
        student_channels: Union[int, Sequence[int]],
        teacher_channels: Union[int, Sequence[int]],
        student_module: str = "backbone.bottom_up",
        teacher_module: str = "backbone.bottom_up",
        student_features: Sequence[str] = ("res5",),
        teacher_features: Sequence[str] = ("res5",),
        spatial_align: str = "avgpool",
        embed_dims: Sequence[int] = (256, 256),
        dilations: Sequence[int] = (1, 2, 3),
        bottleneck_channels: int = None,
        norm: str = "",
        trainable: bool = False,
        reduction: str = "sum_channels",
        weight: Union[float, LossWeightSchedule] = 0.01,
    ):
        super().__init__([student_module], [teacher_module], weight)
        self.student_features = list(student_features)
        self.teacher_features = list(teacher_features)
        n = len(self.student_features)
        if n == 0 or n != len(self.teacher_features):
            raise ValueError(
                f"SDFDistiller: student_features {self.student_features} and teacher_features "
                f"{self.teacher_features} must be non-empty and of the same length."
            )
        if spatial_align not in ("avgpool", "bilinear", "exact"):
            raise ValueError(f"SDFDistiller: spatial_align must be 'avgpool', 'bilinear' or 'exact', got '{spatial_align}'.")
        self.student_channels = _as_list(student_channels, n, "student_channels")
        self.teacher_channels = _as_list(teacher_channels, n, "teacher_channels")
        if reduction not in ("sum_channels", "mean"):
            raise ValueError(f"SDFDistiller: reduction must be 'sum_channels' or 'mean', got '{reduction}'.")
        self.spatial_align = spatial_align
        self.reduction = reduction
        self.trainable = bool(trainable)
        self.adapters = nn.ModuleList(ChannelAdapter(s, t, "conv") for s, t in zip(self.student_channels, self.teacher_channels))
        self.embeddings = nn.ModuleList(
            ScaleDecoupledEmbedding(t, embed_dims, dilations, bottleneck_channels, norm) for t in self.teacher_channels
        )
        if not self.trainable:
            for p in self.embeddings.parameters():
                p.requires_grad_(False)

    def loss_names(self):
        return ["loss_kd_sdf"]

    def teacher_record_keys(self):
        return {self.teacher_modules[0]: list(self.teacher_features)}

    def check_models(self, student: nn.Module, teacher: nn.Module) -> None:
        """Fail early when the recorded modules lack the features or have other channels."""
        for side, model, module_name, names, channels in (
            ("student", student, self.student_modules[0], self.student_features, self.student_channels),
            ("teacher", teacher, self.teacher_modules[0], self.teacher_features, self.teacher_channels),
        ):
            module = dict(model.named_modules()).get(module_name)
            if module is None or not hasattr(module, "output_shape"):
                continue  # FeatureRecorder reports a missing module; shapes are checked at run time
            shapes = module.output_shape()
            for name, c in zip(names, channels):
                if name not in shapes:
                    raise KeyError(f"SDFDistiller: {side} module '{module_name}' has no output '{name}' (has {sorted(shapes)}).")
                if shapes[name].channels != c:
                    raise ValueError(
                        f"SDFDistiller: {side} feature '{module_name}.{name}' has {shapes[name].channels} channels, "
                        f"the config says {c}; fix {side}_channels."
                    )

    def _align(self, t: torch.Tensor, size) -> torch.Tensor:
        if tuple(t.shape[-2:]) == tuple(size):
            return t
        if self.spatial_align == "exact":
            raise ValueError(
                f"SDFDistiller: teacher map {tuple(t.shape[-2:])} and student map {tuple(size)} differ in size "
                "with spatial_align='exact'. Use 'avgpool' or pair features of the same stride."
            )
        return align_spatial(t, size, self.spatial_align)

    def embed_pair(self, index: int, student_map: torch.Tensor, teacher_map: torch.Tensor):
        """Embeddings (B, HW, D) of one pair: student (with grad) and teacher (detached)."""
        s = self.adapters[index](student_map)
        with torch.no_grad():
            t = self._align(teacher_map.detach().to(s.dtype), s.shape[-2:])
            e_t = self.embeddings[index](t)
        e_s = self.embeddings[index](s)
        return e_s, e_t

    def losses(self, student_records: Mapping[str, object], teacher_records: Mapping[str, object], batched_inputs) -> Dict[str, torch.Tensor]:
        s_feats = student_records[self.student_modules[0]]
        t_feats = teacher_records[self.teacher_modules[0]]
        total = 0.0
        for i, (sn, tn) in enumerate(zip(self.student_features, self.teacher_features)):
            if sn not in s_feats or tn not in t_feats:
                raise KeyError(f"SDFDistiller: feature '{sn}' not in student {sorted(s_feats)} or '{tn}' not in teacher {sorted(t_feats)}.")
            e_s, e_t = self.embed_pair(i, s_feats[sn], t_feats[tn])
            sq = (e_s.float() - e_t.float()).pow(2)
            total = total + (sq.sum(dim=-1).mean() if self.reduction == "sum_channels" else sq.mean())
        return {"loss_kd_sdf": total}
