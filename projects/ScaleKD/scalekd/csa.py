"""Cross-Scale Assistant (CSA).

A learnable assistant that sees student and teacher features, is trained on ground truth with
its own optimizer, and supplies the class / box targets of the student's mimic losses.

* :class:`MultiScaleCrossAttention`: student tokens attend to teacher tokens aggregated at
  several rates (one rate per head group); one module shared by all feature levels.
* :class:`CrossScaleAssistant`: the attention plus a head that lines up one-to-one with the
  student's outputs (a copy of the student's dense head, or an RoI box head for two-stage
  detectors, see :class:`RoIBoxAssistantHead`).
* :class:`AssistantTrainer`: the assistant with its Adam optimizer; it performs the assistant's
  update and is the checkpointable object (module weights + optimizer state).

The assistant is kept out of the student's module tree (like the frozen teacher), so it is
never in the main optimizer, in DDP or in the student's ``state_dict``; its gradients are
all-reduced by :class:`AssistantTrainer` in multi-process runs.
"""
import copy
import logging
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import torch
import torch.distributed as dist
import torch.nn.functional as F
from detectron2.structures import Boxes
from detectron2.utils import comm

from kd_core.checkpoint import state_dict_differences
from kd_core.distributed import mean_across_processes
from torch import nn
from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

__all__ = [
    "DEFAULT_LEVEL_RATES",
    "ScaleReduction",
    "MultiScaleCrossAttention",
    "RoIBoxAssistantHead",
    "CrossScaleAssistant",
    "AssistantTrainer",
    "copy_module_with_weights",
]

logger = logging.getLogger(__name__)

#: K/V aggregation rates per student level, one per head group (spec defaults).
DEFAULT_LEVEL_RATES = {"p2": (8, 4), "p3": (8, 4), "p4": (4, 2), "p5": (2, 1), "p6": (1, 1), "p7": (1, 1)}


class ScaleReduction(nn.Module):
    """MSC(X, r): conv with kernel = stride = r, then LayerNorm over channels, then GELU.

    A map whose size is not a multiple of ``r`` is zero-padded at the bottom/right first.
    (B, C_in, H, W) -> (B, C_out, ceil(H / r), ceil(W / r)).
    """

    def __init__(self, in_channels: int, out_channels: int, rate: int):
        super().__init__()
        if rate < 1:
            raise ValueError(f"ScaleReduction: rate must be >= 1, got {rate}.")
        self.rate = int(rate)
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=self.rate, stride=self.rate)
        self.norm = nn.LayerNorm(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = self.rate
        pad_h, pad_w = (-x.shape[-2]) % r, (-x.shape[-1]) % r
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h))
        x = self.conv(x)
        x = self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return F.gelu(x)


class MultiScaleCrossAttention(nn.Module):
    """Multi-scale cross-attention block (queries: student; keys/values: teacher).

    For head group g (``num_heads / num_groups`` heads of width ``d = C / num_heads``) on level l
    with rate ``r = level_rates[l][g]``::

        X_g = MSC_g,r(Z^T)                       # (B, C/G, h, w), h = ceil(H_T / r)
        K_g, V_g = X_g W_g^K, X_g W_g^V;  V_g <- V_g + DWConv3x3_g(V_g)
        head = softmax(Q K^T / sqrt(d)) V         # Q = LN(Z^S) W^Q, per head
        Y = Z^S + Linear(concat heads);  out = Y + FFN(LN(Y))

    Args:
        embed_dim: C, the student feature width (queries and output).
        teacher_dim: the teacher feature width (the MSC convs map it to C / G).
        num_heads, num_groups: heads, split into groups with different rates.
        level_rates: student level name -> one rate per group.
        ffn_dim: hidden width of the FFN (default 4 C).
        zero_init_residual: zero-init the output projection and the last FFN layer, so the
            block starts as the identity on Z^S (the copied teacher head then sees student
            features unchanged).
    Input/output maps: (B, C, H, W) student, (B, C_T, H_T, W_T) teacher; output (B, C, H, W).
    """

    def __init__(
        self,
        embed_dim: int,
        teacher_dim: int,
        num_heads: int = 8,
        num_groups: int = 2,
        level_rates: Mapping[str, Sequence[int]] = None,
        ffn_dim: Optional[int] = None,
        zero_init_residual: bool = True,
    ):
        super().__init__()
        level_rates = dict(DEFAULT_LEVEL_RATES if level_rates is None else level_rates)
        if embed_dim % num_heads != 0:
            raise ValueError(f"MultiScaleCrossAttention: embed_dim {embed_dim} is not divisible by num_heads {num_heads}.")
        if num_heads % num_groups != 0:
            raise ValueError(f"MultiScaleCrossAttention: num_heads {num_heads} is not divisible by num_groups {num_groups}.")
        bad = {k: v for k, v in level_rates.items() if len(v) != num_groups or any(int(r) < 1 for r in v)}
        if bad:
            raise ValueError(f"MultiScaleCrossAttention: level_rates need {num_groups} positive rates per level, got {bad}.")
        self.embed_dim = embed_dim
        self.teacher_dim = teacher_dim
        self.num_heads = num_heads
        self.num_groups = num_groups
        self.head_dim = embed_dim // num_heads
        self.group_dim = embed_dim // num_groups
        self.level_rates = {k: tuple(int(r) for r in v) for k, v in level_rates.items()}

        self.query_norm = nn.LayerNorm(embed_dim)
        self.q_proj = nn.Linear(embed_dim, embed_dim)
        self.reductions = nn.ModuleDict()
        for g in range(num_groups):
            for r in sorted({rates[g] for rates in self.level_rates.values()}):
                self.reductions[f"group{g}_rate{r}"] = ScaleReduction(teacher_dim, self.group_dim, r)
        self.kv_proj = nn.ModuleList(nn.Linear(self.group_dim, 2 * self.group_dim) for _ in range(num_groups))
        self.value_pos = nn.ModuleList(
            nn.Conv2d(self.group_dim, self.group_dim, 3, padding=1, groups=self.group_dim) for _ in range(num_groups)
        )
        self.out_proj = nn.Linear(embed_dim, embed_dim)
        ffn_dim = ffn_dim or 4 * embed_dim
        self.ffn_norm = nn.LayerNorm(embed_dim)
        self.ffn = nn.Sequential(nn.Linear(embed_dim, ffn_dim), nn.GELU(), nn.Linear(ffn_dim, embed_dim))
        if zero_init_residual:
            for layer in (self.out_proj, self.ffn[-1]):
                nn.init.zeros_(layer.weight)
                nn.init.zeros_(layer.bias)

    def _check_inputs(self, student: torch.Tensor, teacher: torch.Tensor, level: str) -> None:
        if level not in self.level_rates:
            raise KeyError(f"MultiScaleCrossAttention: no rates for level '{level}' (have {sorted(self.level_rates)}).")
        if student.dim() != 4 or student.shape[1] != self.embed_dim:
            raise ValueError(f"CSA expects student maps (B, {self.embed_dim}, H, W), got {tuple(student.shape)} at '{level}'.")
        if teacher.dim() != 4 or teacher.shape[1] != self.teacher_dim or teacher.shape[0] != student.shape[0]:
            raise ValueError(
                f"CSA expects teacher maps (B={student.shape[0]}, {self.teacher_dim}, H, W), got {tuple(teacher.shape)} at '{level}'."
            )

    def _group_keys_values(self, teacher: torch.Tensor, group: int, rate: int) -> Tuple[torch.Tensor, torch.Tensor, Tuple[int, int]]:
        """K, V of head group ``group`` from MSC(teacher, rate): each (B, heads / G, h' w', d); and (h', w')."""
        b = teacher.shape[0]
        heads_per_group = self.num_heads // self.num_groups
        x = self.reductions[f"group{group}_rate{rate}"](teacher)  # (B, C/G, h', w')
        hr, wr = x.shape[-2:]
        k, v = self.kv_proj[group](x.flatten(2).transpose(1, 2)).chunk(2, dim=-1)  # (B, h'w', C/G) each
        v = v + self.value_pos[group](v.transpose(1, 2).reshape(b, self.group_dim, hr, wr)).flatten(2).transpose(1, 2)
        k = k.reshape(b, hr * wr, heads_per_group, self.head_dim).transpose(1, 2)
        v = v.reshape(b, hr * wr, heads_per_group, self.head_dim).transpose(1, 2)
        return k, v, (hr, wr)

    def forward(self, student: torch.Tensor, teacher: torch.Tensor, level: str) -> torch.Tensor:
        """One level: student map (B, C, H, W), teacher map (B, C_T, H_T, W_T) -> (B, C, H, W)."""
        return self.forward_levels([student], [teacher], [level])[0]

    def forward_levels(
        self, students: Sequence[torch.Tensor], teachers: Sequence[torch.Tensor], levels: Sequence[str]
    ) -> List[torch.Tensor]:
        """Several levels in one pass; the same result as :meth:`forward` per level.

        The token-wise parts (query LayerNorm and projection, output projection, FFN) run once on
        the tokens of all levels; only the keys/values and the attention itself are per level.
        Args: per level, a student map (B, C, H_l, W_l), a teacher map (B, C_T, H'_l, W'_l), its name.
        Returns: per level, the output map (B, C, H_l, W_l).
        """
        if not (len(students) == len(teachers) == len(levels)) or not levels:
            raise ValueError("MultiScaleCrossAttention.forward_levels: one student map, teacher map and level name per level.")
        for zs, zt, level in zip(students, teachers, levels):
            self._check_inputs(zs, zt, level)
        b, c = students[0].shape[:2]
        if any(zs.shape[0] != b for zs in students):
            raise ValueError(f"CSA: every level needs the same batch size, got {[zs.shape[0] for zs in students]}.")
        sizes = [zs.shape[-2] * zs.shape[-1] for zs in students]
        tokens = torch.cat([zs.flatten(2) for zs in students], dim=2).transpose(1, 2)  # (B, sum HW, C)
        q = self.q_proj(self.query_norm(tokens)).view(b, -1, self.num_heads, self.head_dim).transpose(1, 2)
        heads_per_group = self.num_heads // self.num_groups
        attended = []
        for q_level, zt, level in zip(q.split(sizes, dim=2), teachers, levels):
            outs = []
            for g, rate in enumerate(self.level_rates[level]):
                k, v, _ = self._group_keys_values(zt, g, rate)
                q_g = q_level[:, g * heads_per_group : (g + 1) * heads_per_group]
                outs.append(F.scaled_dot_product_attention(q_g, k, v))  # (B, heads/G, HW, d)
            attended.append(torch.cat(outs, dim=1))
        attn = torch.cat(attended, dim=2).transpose(1, 2).reshape(b, -1, c)
        y = tokens + self.out_proj(attn)
        y = y + self.ffn(self.ffn_norm(y))
        y = y.transpose(1, 2)
        return [part.reshape(b, c, *zs.shape[-2:]) for part, zs in zip(y.split(sizes, dim=2), students)]

    @torch.no_grad()
    def attention_weights(self, student: torch.Tensor, teacher: torch.Tensor, level: str) -> List[torch.Tensor]:
        """The softmax weights :meth:`forward` applies, for visualisation (no gradient).

        Args: as :meth:`forward`: student (B, C, H, W), teacher (B, C_T, H_T, W_T), student level name.
        Returns: per head group g, a (B, num_heads / num_groups, H * W, h_g, w_g) tensor: for every
            student token (row-major over (H, W)) its weights over the group's reduced teacher grid
            (h_g, w_g) = (ceil(H_T / r_g), ceil(W_T / r_g)); each (h_g, w_g) slice sums to 1.
        """
        self._check_inputs(student, teacher, level)
        b, _, h, w = student.shape
        tokens = student.flatten(2).transpose(1, 2)
        q = self.q_proj(self.query_norm(tokens)).view(b, h * w, self.num_heads, self.head_dim).transpose(1, 2)
        heads_per_group = self.num_heads // self.num_groups
        weights = []
        for g, rate in enumerate(self.level_rates[level]):
            k, _, (hr, wr) = self._group_keys_values(teacher, g, rate)
            q_g = q[:, g * heads_per_group : (g + 1) * heads_per_group]
            logits = q_g @ k.transpose(-2, -1) / self.head_dim**0.5  # SDPA's default scale
            weights.append(logits.softmax(dim=-1).view(b, heads_per_group, h * w, hr, wr))
        return weights


class RoIBoxAssistantHead(nn.Module):
    """Two-stage assistant head: ROIAlign on the student's sampled proposals + box head(s) +
    Fast R-CNN predictor(s), one pair per distilled stage (1 for Faster/Mask R-CNN; the
    chosen cascade stages for Cascade R-CNN).

    Args:
        pooler: a copy of the student's box pooler (no parameters).
        box_heads, box_predictors: one per entry of ``stages``.
        stages: the student stage index each pair lines up with.
    """

    def __init__(self, pooler: nn.Module, box_heads: Sequence[nn.Module], box_predictors: Sequence[nn.Module], stages: Sequence[int]):
        super().__init__()
        if not (len(box_heads) == len(box_predictors) == len(stages)):
            raise ValueError("RoIBoxAssistantHead: one box head and one predictor per stage.")
        self.pooler = pooler
        self.box_heads = nn.ModuleList(box_heads)
        self.box_predictors = nn.ModuleList(box_predictors)
        self.stages = [int(s) for s in stages]

    def forward(self, features: List[torch.Tensor], proposal_boxes: List[Boxes], index: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """features: fused maps of the box-head levels; proposal_boxes: per image, the RoIs of
        stage ``self.stages[index]``. Returns (scores (R, K+1), deltas (R, K*4 or 4))."""
        x = self.pooler(features, proposal_boxes)
        x = self.box_heads[index](x)
        return self.box_predictors[index](x)


class CrossScaleAssistant(nn.Module):
    """Multi-scale cross-attention + an assistant head.

    Args:
        attention: the :class:`MultiScaleCrossAttention` shared by all levels.
        head: dense head (same class as the student's) or :class:`RoIBoxAssistantHead`.
        level_pairs: student level -> teacher level providing its keys/values, in the order of
            the student's head inputs.
    """

    def __init__(self, attention: MultiScaleCrossAttention, head: nn.Module, level_pairs: Mapping[str, str]):
        super().__init__()
        missing = [l for l in level_pairs if l not in attention.level_rates]
        if missing:
            raise KeyError(f"CrossScaleAssistant: no attention rates for student levels {missing}; add them to csa_level_rates.")
        self.attention = attention
        self.head = head
        self.level_pairs = dict(level_pairs)

    def settings(self) -> Dict[str, object]:
        """The attention's settings that its parameter shapes do not reveal: heads, per-level K/V
        rates, and the student -> teacher level pairs (plain lists and dicts). The number of head
        groups is not among them: it sets the K/V projections' widths, which the shape check sees."""
        return {
            "num_heads": self.attention.num_heads,
            "level_rates": {k: list(v) for k, v in self.attention.level_rates.items()},
            "level_pairs": dict(self.level_pairs),
        }

    def fuse(self, student_features: Mapping[str, torch.Tensor], teacher_features: Mapping[str, torch.Tensor]) -> List[torch.Tensor]:
        """Fused maps, one per student level (order of ``level_pairs``), each (B, C, H_l, W_l).
        Inputs are detached and cast to fp32 here."""
        for s_level, t_level in self.level_pairs.items():
            if s_level not in student_features or t_level not in teacher_features:
                raise KeyError(
                    f"CrossScaleAssistant: level '{s_level}' (student: {sorted(student_features)}) or "
                    f"'{t_level}' (teacher: {sorted(teacher_features)}) is missing."
                )
        students = [student_features[l].detach().float() for l in self.level_pairs]
        teachers = [teacher_features[l].detach().float() for l in self.level_pairs.values()]
        return self.attention.forward_levels(students, teachers, list(self.level_pairs))


def copy_module_with_weights(student_module: nn.Module, teacher_module: Optional[nn.Module], init: str, what: str) -> nn.Module:
    """A trainable deep copy of ``student_module`` (its architecture), initialised from the
    teacher's module (``init="teacher"``; every key and shape must match) or left with the
    student's current weights (``init="student"``)."""
    if init not in ("teacher", "student"):
        raise ValueError(f"csa_head_init must be 'teacher' or 'student', got '{init}'.")
    module = copy.deepcopy(student_module)
    for m in module.modules():  # e.g. a feature recorder's hooks on the student's head stay with the student
        m._forward_hooks.clear()
        m._forward_pre_hooks.clear()
    if init == "teacher":
        if teacher_module is None:
            raise ValueError(f"csa_head_init='teacher': the teacher has no {what} to copy; use csa_head_init='student'.")
        own, theirs = module.state_dict(), teacher_module.state_dict()
        problems = [k for k in own if k not in theirs] + [k for k in theirs if k not in own]
        problems += [f"{k}: {tuple(theirs[k].shape)} vs {tuple(v.shape)}" for k, v in own.items() if k in theirs and theirs[k].shape != v.shape]
        if problems:
            raise ValueError(
                f"csa_head_init='teacher': the teacher's {what} does not fit the student's architecture "
                f"({problems[:5]}). Use csa_head_init='student' or matching head configs."
            )
        module.load_state_dict(theirs)
    for p in module.parameters():
        p.requires_grad_(True)
    return module


def _as_plain(value: object) -> object:
    """``value`` with tuples as lists and mapping keys as strings, so recorded settings compare
    equal whatever container types a checkpoint's round trip gave them."""
    if isinstance(value, Mapping):
        return {str(k): _as_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_as_plain(v) for v in value]
    return value


class AssistantTrainer:
    """The assistant module with its own Adam optimizer; a checkpointable object.

    Not an ``nn.Module``: held as a plain attribute of the detector, the assistant stays out of
    the student's parameters, ``state_dict``, optimizer and DDP. ``state_dict()`` holds the
    module's weights and the optimizer's state, so ``--resume`` continues both.

    ``state_dict()["settings"]`` records what a resumed run must share with the one that wrote the
    checkpoint and that no parameter shape shows (:meth:`settings`); :meth:`state_differences`
    compares it.

    Args:
        module: the :class:`CrossScaleAssistant` (or any module; its ``settings()`` method, where it
            has one, adds to :meth:`settings`).
        lr, weight_decay, betas: Adam settings (spec: lr 3e-4, weight decay 1e-4).
        optimizer: "adam" (the paper's: ``torch.optim.Adam``, weight decay added to the gradient) or
            "adamw" (decoupled weight decay). With "adam", a parameter whose loss gradient is much
            smaller than ``weight_decay * |w|`` moves towards 0 by about ``lr`` per step, because
            Adam normalizes the decay term like a gradient.
        fused: PyTorch's fused Adam/AdamW kernel (CPU and CUDA): one kernel for all parameters
            instead of one update per parameter tensor (about 600 dispatched operators per step for
            the tiny RetinaNet assistant on CPU). The update is the same up to float rounding. A
            state restored from a checkpoint keeps the kernel it was saved with (``load_state_dict``
            restores every parameter-group setting), as the student's optimizer does.
    """

    OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}

    def __init__(
        self,
        module: nn.Module,
        lr: float = 3e-4,
        weight_decay: float = 1e-4,
        betas=(0.9, 0.999),
        optimizer: str = "adam",
        fused: bool = True,
    ):
        if not isinstance(module, nn.Module):
            raise TypeError(f"AssistantTrainer needs an nn.Module, got {type(module).__name__}.")
        if optimizer not in self.OPTIMIZERS:
            raise ValueError(f"AssistantTrainer: optimizer must be one of {sorted(self.OPTIMIZERS)}, got '{optimizer}'.")
        self.module = module
        self.module.train()
        self.optimizer_name = optimizer
        self.optimizer = self.OPTIMIZERS[optimizer](
            [p for p in module.parameters() if p.requires_grad],
            lr=lr,
            weight_decay=weight_decay,
            betas=tuple(betas),
            fused=bool(fused) or None,  # None: PyTorch's default (per-tensor on CPU, foreach on CUDA)
        )
        self._synced = False
        self.restored = False  # True once load_state_dict ran (weights from a checkpoint)

    @property
    def device(self) -> torch.device:
        return next(self.module.parameters()).device

    def parameters(self):
        return self.module.parameters()

    def prepare(self, device) -> "AssistantTrainer":
        """Call before the assistant's forward in each training step: moves the module and the
        optimizer's state to ``device`` and, once, broadcasts rank 0's assistant to every process
        (its random attention init differs per rank). Adam's ``step`` counters move too where the
        kernel reads them on the parameters' device (fused or capturable); the per-tensor and
        foreach kernels read them on the host, where they stay."""
        device = torch.device(device)
        if self.device != device:
            self.module.to(device)
            for group in self.optimizer.param_groups:
                step_on_device = bool(group.get("fused") or group.get("capturable"))
                for p in group["params"]:
                    state = self.optimizer.state.get(p, {})
                    for k, v in state.items():
                        if torch.is_tensor(v) and (k != "step" or step_on_device):
                            state[k] = v.to(device)
        if not self._synced:
            if comm.get_world_size() > 1:
                for t in self.module.state_dict().values():
                    dist.broadcast(t, src=0)
            self._synced = True
        return self

    def all_reduce_gradients(self) -> None:
        """Average the assistant's gradients over processes with one flattened all_reduce."""
        world = comm.get_world_size()
        if world == 1:
            return
        grads = [p.grad for p in self.module.parameters() if p.grad is not None]
        if not grads:
            return
        flat = mean_across_processes(_flatten_dense_tensors(grads))
        for g, synced in zip(grads, _unflatten_dense_tensors(flat, grads)):
            g.copy_(synced)

    def step(self, loss: torch.Tensor) -> None:
        """One update of the assistant on ``loss`` (which must depend on no student parameter:
        the assistant's inputs are detached). Gradients are freed afterwards."""
        if not self._synced and comm.get_world_size() > 1:
            raise RuntimeError("AssistantTrainer.prepare(device) must run before the assistant's first forward.")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.all_reduce_gradients()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def settings(self) -> Dict[str, object]:
        """What the checkpoint's tensors do not reveal and a resumed run must share: the optimizer
        ("adam" / "adamw") and its lr, weight_decay and betas as constructed (a restored Adam state
        would otherwise bring back the checkpoint's lr silently), plus ``module.settings()`` where
        the module has one (the attention's heads, rates and level pairs)."""
        defaults = self.optimizer.defaults
        out = {
            "optimizer": self.optimizer_name,
            "lr": float(defaults["lr"]),
            "weight_decay": float(defaults["weight_decay"]),
            "betas": [float(b) for b in defaults["betas"]],
        }
        module_settings = getattr(self.module, "settings", None)
        if callable(module_settings):
            out.update(module_settings())
        return out

    def state_dict(self) -> Dict[str, object]:
        return {"model": self.module.state_dict(), "optimizer": self.optimizer.state_dict(), "settings": self.settings()}

    def state_differences(self, state: object) -> List[str]:
        """Why ``state`` (a checkpoint's entry for this object) cannot be loaded: not the
        ``{"model", "optimizer"}`` dict of :meth:`state_dict`, module keys/shapes that differ
        (:func:`kd_core.checkpoint.state_dict_differences`), or :meth:`settings` that differ from
        the checkpoint's ``"settings"`` (checkpoints written before it existed have none: not
        compared). Empty when it fits."""
        if not isinstance(state, Mapping) or "model" not in state or "optimizer" not in state:
            return ["not an assistant state (a dict with 'model' and 'optimizer')"]
        problems = state_dict_differences(self.module.state_dict(), state["model"])
        saved = state.get("settings")
        if isinstance(saved, Mapping):
            own = self.settings()
            problems += [
                f"the assistant's '{k}' is {saved.get(k, '(not recorded)')!r} in the checkpoint and {v!r} in this model"
                for k, v in own.items()
                if _as_plain(saved.get(k)) != _as_plain(v)
            ]
        return problems

    def load_state_dict(self, state: Mapping[str, object]) -> None:
        if not isinstance(state, Mapping) or "model" not in state or "optimizer" not in state:
            raise KeyError("AssistantTrainer.load_state_dict expects a dict with 'model' and 'optimizer'.")
        self.module.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self._synced = False
        self.restored = True
