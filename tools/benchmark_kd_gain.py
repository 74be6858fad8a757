#!/usr/bin/env python
"""
KD-gain benchmark: how much AP does distillation add to the student, per method and dataset, over seeds.

For every method and dataset it trains, with tools/lazyconfig_train_net.py (one subprocess per run):
    teacher                 once per dataset (seed = the first seed), --teacher-iters iterations
    student baseline        the student alone, --iters iterations, one run per seed
    distilled student       the KD config, same schedule and seeds, teacher = the run above
    ablations (--ablations) one KD component at a time (DETRDistill: logits / feature / query only;
                            ScaleKD: SDF only = model.use_csa=False, CSA only = SDF weight 0)
Every run evaluates every --eval-period iterations (AP-vs-iteration curves: tools/plot_results.py)
and after its last iteration. Results: <output-dir>/results.md (mean +- std over seeds of AP, AP50,
AP75, APs, APm, APl and the paired AP gain over the baseline of the same seed) and results.json.

    python tools/benchmark_kd_gain.py --dry-run                       # print the plan and commands
    python tools/benchmark_kd_gain.py --methods scalekd_retinanet    # 3 datasets x 3 seeds, CPU
    python tools/benchmark_kd_gain.py --methods detrdistill --datasets bccd --seeds 0 1 --ablations
    python tools/benchmark_kd_gain.py --scale real --methods scalekd_retinanet --num-gpus 8   # COCO, GPUs
    python tools/benchmark_kd_gain.py --methods scalekd_faster_rcnn --seeds 0 \
        --kd-opts model.distillers.sdf.weight=0.01 --opts train.amp.enabled=True   # a KD-only sweep, CPU bf16

Scales:
    tiny (default, CPU): the tiny R34 -> R18 configs (configs/tiny, projects/*/configs/*/*tiny_cpu.py),
        from scratch; coco128 / bccd (640x480) resized like the 256 px synthetic images: training
        short edge 224-288, test 256, long edge <= 384 (about a quarter of the original pixels).
        Defaults: 300 student iterations, 400 teacher iterations, evaluation every 100 (the
        quickstart's schedule). scalekd_retinanet_w32 is the quickstart's pair: scalekd_retinanet with
        half-width ResNets (docs/results.md has their step times). The tiny Deformable DETRs learn
        nothing from the synthetic images in that schedule; --teacher-iters 2400 --iters 1800 teaches
        them a little (docs/results.md).
        ScaleKD runs in its same-resolution mode (teacher_scale 1.0): the tiny teacher is trained at
        1x, and a 2x teacher view triples the step time on CPU
        (--scalekd-teacher-scale 2 for the paper's mode, with --teacher-weights of a
        teacher trained at 2x the sizes: docs/results.md has the commands). The tiny ScaleKD config switches the CSA mimic
        losses on at iteration 150 (half of 300); with other --iters, set
        model.csa_cls_weight.start_iter with --kd-opts (the other runs have no such key).
    real (GPU): the COCO configs with their own schedules (1x / 50 epochs) unless --iters is given.
        ScaleKD teachers are the model-zoo checkpoints named in the KD configs (evaluated with
        --eval-teacher on the view the students distil from, e.g. 2x the test size; not trained) and its baselines are the KD config's student trained alone
        (a generated config, see student_only_config_text); DETRDistill trains its R101 teacher
        unless --teacher-weights detrdistill=PATH is given. FitNet has no COCO config.

Run folders: <output-dir>/<dataset>/<role>-...-seedN-<hash of config, its resolved contents and
overrides>. Finished runs (model_final.pth and the final evaluation in metrics.json) are reused;
interrupted ones resume from their last checkpoint; a changed override (--opts, --kd-opts, --teacher-weights,
...), config value or default of one of this repository's constructors left in place gives a new folder. Other changes of library code do
not: a reused run trained with other library code (recorded in its benchmark_run.json) says so, and a new
--output-dir trains it again. Methods
that train the same config share the run (e.g. the RetinaNet R34 teacher and R18 baseline of
scalekd_retinanet and fitnet; the Faster R-CNN pair's of scalekd_faster_rcnn and its plain feature-KD
control, fitnet_faster_rcnn; the FCOS pair's of scalekd_fcos and its control, fitnet_fcos).
results.md / results.json cover the methods and datasets of the invocation (rerun with all of them to
rebuild the full table: finished runs are only read; --kd-name names the distilled variant, so that
tools/plot_results.py can draw several invocations, e.g. --kd-opts settings, together).
A model with no detection at all (Detectron2 reports NaN for every metric) counts as AP 0.

Time, tiny scale, CPU (2 cores), estimated from the step times of the quickstart's full-width runs on
machine A (RetinaNet R34 0.51 s/it, R18 0.31 s/it, ScaleKD same-resolution 0.57 s/it at batch 4, 256 px) and 3-iteration
smoke runs (Deformable DETR KD ~0.5 s/it at batch 2), not from complete benchmark runs: about 20 min
for kd_synthetic and 25-30 min each for coco128 / bccd per method with 3 seeds, i.e. 1-1.5 h per
method for the default datasets; --ablations adds 2 (ScaleKD) / 3 (DETRDistill) KD runs per seed,
about 2x / 2.5x the time. --seeds 0 1 (or --iters 200 --teacher-iters 300) should fit one hour.
Disk: a tiny run's model_final.pth (weights + optimizer state) is ~150 MB on average; --prune-checkpoints
deletes those of finished student / distilled runs (teachers are kept for the KD runs).
Datasets: kd_synthetic (generated on first use), coco128 and bccd (from --datasets-root, else
$KD_DATASETS, else ../shared/datasets), coco (COCO 2017 via $DETECTRON2_DATASETS, real scale).
"""
import argparse
import dataclasses
import functools
import glob
import hashlib
import json
import math
import os
import re
import statistics
import sys
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # noqa: E402 (run from a clone)
from kd_core.paths import add_project_paths  # noqa: E402

add_project_paths()  # the real-scale plan reads the projects' configs (scalekd, detrdistill imports)

from kd_core.runs import (  # noqa: E402
    COCO_BOX_METRICS,
    TrainingRunError,
    coco_metric_history,
    copypaste_metrics,
    final_coco_metrics,
    run_is_complete,
    run_training,
    zero_ap_without_detections,
)

PREFIX = "kd_gain"
RUN_INFO = "benchmark_run.json"  # written in each run dir after success: command, seconds
TEACHER_METRICS = "teacher_metrics.json"  # metrics of an evaluation-only teacher run


# --------------------------------------------------------------------------- methods


@dataclasses.dataclass(frozen=True)
class MethodSpec:
    """One distillation method at one scale.

    family: "detr" (num_classes at model.num_classes, DETR augmentation keys), "dense"
        (RetinaNet/FCOS: model.num_classes) or "rcnn" (Faster R-CNN: model.roi_heads.num_classes).
    teacher_config: the teacher's own config, trained by the benchmark; None = the KD config's
        teacher weights are used as they are (a pretrained teacher, evaluated with --eval-teacher).
    student_config: the student baseline config; None = the KD config's student trained alone
        (a config generated in <output-dir>/generated_configs).
    kd_config: the distillation config.
    kd_overrides: overrides of every KD run (ablations included).
    ablations: ablation name -> overrides that switch components off.
    teacher_name, student_name: short model names for the tables.
    """

    family: str
    teacher_config: Optional[str]
    student_config: Optional[str]
    kd_config: str
    kd_overrides: Tuple[str, ...] = ()
    ablations: Mapping[str, Tuple[str, ...]] = dataclasses.field(default_factory=dict)
    teacher_name: str = "teacher"
    student_name: str = "student"


# Hydra's override grammar: "null" is None ("None" would be the string 'None').
DETRDISTILL_ABLATIONS = {
    "logits_only": ("model.feature_kd=null", "model.query_kd=False"),
    "feature_only": ("model.logits_kd=null", "model.query_kd=False"),
    "query_only": ("model.logits_kd=null", "model.feature_kd=null"),
}
# use_csa is a constructor argument the configs do not set: "+" adds the key (strict overrides).
SCALEKD_ABLATIONS = {
    "sdf_only": ("+model.use_csa=False",),
    "csa_only": ("model.distillers.sdf.weight=0.0",),
}

_DETR_TINY = "projects/DETRDistill/configs/deformable_detr/"
_SCALEKD_TINY = "projects/ScaleKD/configs/tiny/"
METHODS: Dict[str, Dict[str, MethodSpec]] = {
    "tiny": {
        "detrdistill": MethodSpec(
            "detr",
            _DETR_TINY + "deformable_detr_r34_tiny_cpu.py",
            _DETR_TINY + "deformable_detr_tiny_cpu.py",
            "projects/DETRDistill/configs/detrdistill/deformable_detr_r34_r18_tiny_cpu.py",
            ablations=DETRDISTILL_ABLATIONS,
            teacher_name="Deformable DETR R34",
            student_name="Deformable DETR R18",
        ),
        "scalekd_retinanet": MethodSpec(
            "dense",
            "configs/tiny/retinanet_r34_tiny_cpu.py",
            "configs/tiny/retinanet_r18_tiny_cpu.py",
            _SCALEKD_TINY + "retinanet_r34_r18_scalekd_tiny_cpu.py",
            ablations=SCALEKD_ABLATIONS,
            teacher_name="RetinaNet R34",
            student_name="RetinaNet R18",
        ),
        # the quickstart's pair: the same RetinaNets with half-width ResNets
        "scalekd_retinanet_w32": MethodSpec(
            "dense",
            "configs/tiny/retinanet_r34_w32_tiny_cpu.py",
            "configs/tiny/retinanet_r18_w32_tiny_cpu.py",
            _SCALEKD_TINY + "retinanet_r34_r18_w32_scalekd_tiny_cpu.py",
            ablations=SCALEKD_ABLATIONS,
            teacher_name="RetinaNet R34 w32",
            student_name="RetinaNet R18 w32",
        ),
        "scalekd_fcos": MethodSpec(
            "dense",
            _SCALEKD_TINY + "fcos_r34_tiny_cpu.py",
            _SCALEKD_TINY + "fcos_r18_tiny_cpu.py",
            _SCALEKD_TINY + "fcos_r34_r18_scalekd_tiny_cpu.py",
            ablations=SCALEKD_ABLATIONS,
            teacher_name="FCOS R34",
            student_name="FCOS R18",
        ),
        "scalekd_faster_rcnn": MethodSpec(
            "rcnn",
            _SCALEKD_TINY + "faster_rcnn_r34_tiny_cpu.py",
            _SCALEKD_TINY + "faster_rcnn_r18_tiny_cpu.py",
            _SCALEKD_TINY + "faster_rcnn_r34_r18_scalekd_tiny_cpu.py",
            ablations=SCALEKD_ABLATIONS,
            teacher_name="Faster R-CNN R34",
            student_name="Faster R-CNN R18",
        ),
        "fitnet": MethodSpec(
            "dense",
            "configs/tiny/retinanet_r34_tiny_cpu.py",
            "configs/tiny/retinanet_r18_tiny_cpu.py",
            "configs/tiny/retinanet_r34_r18_fitnet_tiny_cpu.py",
            teacher_name="RetinaNet R34",
            student_name="RetinaNet R18",
        ),
        # plain feature KD on scalekd_faster_rcnn's pair (the same teacher and student runs): the control
        "fitnet_faster_rcnn": MethodSpec(
            "rcnn",
            _SCALEKD_TINY + "faster_rcnn_r34_tiny_cpu.py",
            _SCALEKD_TINY + "faster_rcnn_r18_tiny_cpu.py",
            "configs/tiny/faster_rcnn_r34_r18_fitnet_tiny_cpu.py",
            teacher_name="Faster R-CNN R34",
            student_name="Faster R-CNN R18",
        ),
        # the same control on scalekd_fcos's pair
        "fitnet_fcos": MethodSpec(
            "dense",
            _SCALEKD_TINY + "fcos_r34_tiny_cpu.py",
            _SCALEKD_TINY + "fcos_r18_tiny_cpu.py",
            "configs/tiny/fcos_r34_r18_fitnet_tiny_cpu.py",
            teacher_name="FCOS R34",
            student_name="FCOS R18",
        ),
    },
    "real": {
        "detrdistill": MethodSpec(
            "detr",
            "projects/DETRDistill/configs/deformable_detr/deformable_detr_r101_50ep.py",
            "projects/DETRDistill/configs/deformable_detr/deformable_detr_r50_50ep.py",
            "projects/DETRDistill/configs/detrdistill/deformable_detr_r101_r50_50ep.py",
            ablations=DETRDISTILL_ABLATIONS,
            teacher_name="Deformable DETR R101",
            student_name="Deformable DETR R50",
        ),
        "scalekd_retinanet": MethodSpec(
            "dense",
            None,
            None,
            "projects/ScaleKD/configs/coco/retinanet_r101_r50_1x_scalekd.py",
            ablations=SCALEKD_ABLATIONS,
            teacher_name="RetinaNet R101 (zoo)",
            student_name="RetinaNet R50",
        ),
        "scalekd_fcos": MethodSpec(
            "dense",
            None,
            None,
            "projects/ScaleKD/configs/coco/fcos_r101_r50_1x_scalekd.py",
            ablations=SCALEKD_ABLATIONS,
            teacher_name="FCOS R101",
            student_name="FCOS R50",
        ),
        "scalekd_faster_rcnn": MethodSpec(
            "rcnn",
            None,
            None,
            "projects/ScaleKD/configs/coco/faster_rcnn_r101_r50_1x_scalekd.py",
            ablations=SCALEKD_ABLATIONS,
            teacher_name="Faster R-CNN R101 (zoo)",
            student_name="Faster R-CNN R50",
        ),
    },
}
METHOD_NAMES = (
    "detrdistill",
    "scalekd_retinanet",
    "scalekd_retinanet_w32",
    "scalekd_fcos",
    "scalekd_faster_rcnn",
    "fitnet",
    "fitnet_faster_rcnn",
    "fitnet_fcos",
)
NUM_CLASSES_KEY = {"detr": "num_classes", "dense": "num_classes", "rcnn": "roi_heads.num_classes"}


# --------------------------------------------------------------------------- datasets


@dataclasses.dataclass(frozen=True)
class CpuResize:
    """Image sizes of the tiny scale: multi-scale training short edges, test short edge, long-edge cap,
    and DETR's crop branch (short edges before the crop, crop size range)."""

    train_short_edges: Tuple[int, ...] = (224, 256, 288)
    test_short_edge: int = 256
    max_size: int = 384
    detr_pre_crop_short_edges: Tuple[int, ...] = (224, 256)
    detr_crop_size: Tuple[int, int] = (160, 256)


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """train/test: registered dataset names; num_classes: thing classes; coco_classes: the 80 COCO
    classes (a COCO-pretrained teacher fits); resize: image sizes at the tiny scale (None = the
    config's); shared_name: key of kd_core.data.builtin.SHARED_DATASETS whose files must exist."""

    train: str
    test: str
    num_classes: int
    coco_classes: bool = False
    resize: Optional[CpuResize] = None
    shared_name: Optional[str] = None


DATASETS: Dict[str, DatasetSpec] = {
    # 256 px synthetic images: the tiny configs' own sizes
    "kd_synthetic": DatasetSpec("kd_synthetic_train", "kd_synthetic_val", 4),
    # 128 COCO images (640 px), evaluated on the same 128 (the usual coco128 practice)
    "coco128": DatasetSpec("coco128_train", "coco128_val", 80, coco_classes=True, resize=CpuResize(), shared_name="coco128_train"),
    # 205 / 87 blood-smear images (640x480), 3 classes
    "bccd": DatasetSpec("bccd_train", "bccd_val", 3, resize=CpuResize(), shared_name="bccd_train"),
    "coco": DatasetSpec("coco_2017_train", "coco_2017_val", 80, coco_classes=True),
}
DEFAULT_DATASETS = {"tiny": ("kd_synthetic", "coco128", "bccd"), "real": ("coco",)}
DEFAULTS = {  # scale -> (student iterations, teacher iterations, eval period, ScaleKD teacher scale)
    "tiny": (300, 400, 100, 1.0),
    "real": (None, None, None, None),  # None: the config's own value
}


def _list(values: Sequence[int]) -> str:
    return "[" + ",".join(str(int(v)) for v in values) + "]"


def resize_overrides(family: str, resize: Optional[CpuResize]) -> List[str]:
    """Overrides of the data loaders' image sizes (tiny configs' layouts: the CNN configs'
    ``augmentations[0]`` is a ResizeShortestEdge; the DETR configs build theirs from
    ``detr_*_augmentation`` arguments)."""
    if resize is None:
        return []
    if family == "detr":
        train, crop, test = "dataloader.train.mapper.augmentation", "dataloader.train.mapper.augmentation_with_crop", "dataloader.test.mapper.augmentation"
        return [
            f"{train}.short_edge_lengths={_list(resize.train_short_edges)}",
            f"{train}.max_size={resize.max_size}",
            f"{crop}.short_edge_lengths={_list(resize.train_short_edges)}",
            f"{crop}.max_size={resize.max_size}",
            f"{crop}.pre_crop_short_edge_lengths={_list(resize.detr_pre_crop_short_edges)}",
            f"{crop}.crop_size={_list(resize.detr_crop_size)}",
            f"{test}.short_edge_length={resize.test_short_edge}",
            f"{test}.max_size={resize.max_size}",
        ]
    return [
        f"dataloader.train.mapper.augmentations.0.short_edge_length={_list(resize.train_short_edges)}",
        f"dataloader.train.mapper.augmentations.0.max_size={resize.max_size}",
        f"dataloader.test.mapper.augmentations.0.short_edge_length={resize.test_short_edge}",
        f"dataloader.test.mapper.augmentations.0.max_size={resize.max_size}",
    ]


def dataset_overrides(spec: MethodSpec, dataset: DatasetSpec, role: str, scale: str) -> List[str]:
    """Dataset names, class count of every model in the config and (tiny scale) image sizes.

    role: "single" (a teacher or student config: ``model.<key>``) or "kd" (a distillation config:
    ``model.student.<key>`` and ``model.teacher.model.<key>``)."""
    if role not in ("single", "kd"):
        raise ValueError(f"role must be 'single' or 'kd', got {role!r}")
    key = NUM_CLASSES_KEY[spec.family]
    models = ["model"] if role == "single" else ["model.student", "model.teacher.model"]
    out = [f"dataloader.train.dataset.names={dataset.train}", f"dataloader.test.dataset.names={dataset.test}"]
    out += [f"{m}.{key}={dataset.num_classes}" for m in models]
    if scale == "tiny":
        out += resize_overrides(spec.family, dataset.resize)
    return out


def schedule_overrides(iters: Optional[int], eval_period: Optional[int], seed: int) -> List[str]:
    """max_iter, evaluation period, seed, and only the final checkpoint (tiny runs are minutes long;
    a period of max_iter would write the last checkpoint twice, as model_<iter> and model_final)."""
    out = []
    if iters is not None:
        out += [f"train.max_iter={iters}", f"train.checkpointer.period={iters + 1}"]
    if eval_period is not None:
        out.append(f"train.eval_period={eval_period}")
    out.append(f"train.seed={seed}")
    return out


# --------------------------------------------------------------------------- generated baseline config


def student_only_config_text(kd_config: str) -> str:
    """A LazyConfig that trains the student of ``kd_config`` alone with the KD config's data,
    optimizer, schedule and train settings (ScaleKD's teacher-image mapper replaced by
    Detectron2's DatasetMapper with the same augmentations). ``kd_config``: absolute path."""
    return f'''# Generated by tools/benchmark_kd_gain.py: the student of
#   {kd_config}
# trained alone (same data, optimizer, lr schedule and train settings): the KD-gain baseline.
from detectron2.config import LazyConfig
from detectron2.data import DatasetMapper

_kd = LazyConfig.load({kd_config!r})
model = _kd.model.student
dataloader = _kd.dataloader
optimizer = _kd.optimizer
lr_multiplier = _kd.lr_multiplier
train = _kd.train
dataloader.train.mapper._target_ = DatasetMapper
for _key in ("teacher_scale", "teacher_image_format"):
    dataloader.train.mapper.pop(_key, None)
'''


# --------------------------------------------------------------------------- plan


@dataclasses.dataclass
class Run:
    """One job. kind: "train" or "eval_teacher" (a pretrained teacher evaluated, not trained)."""

    output_dir: str
    config: str
    overrides: List[str]
    label: str
    max_iter: Optional[int]
    kind: str = "train"
    generated_config: Optional[str] = None  # text to write to ``config`` before running
    is_teacher: bool = False

    def done(self) -> bool:
        if self.kind == "eval_teacher":
            return os.path.isfile(os.path.join(self.output_dir, TEACHER_METRICS))
        if self.max_iter is None:
            return False
        if run_is_complete(self.output_dir, self.max_iter):
            return True
        # --prune-checkpoints removed model_final.pth of a finished student run
        if not self.info().get("pruned", False):
            return False
        history = coco_metric_history(self.output_dir)
        return bool(history) and history[-1][0] >= self.max_iter

    def info(self) -> dict:
        """What ``execute`` recorded when the run finished (RUN_INFO: seconds, command, env, pruned,
        library_code); {} for a run without it."""
        path = os.path.join(self.output_dir, RUN_INFO)
        if not os.path.isfile(path):
            return {}
        with open(path) as f:
            return json.load(f)

    def metrics(self) -> Dict[str, float]:
        """Final COCO box metrics; all-NaN (no detection at all) counts as 0 AP."""
        if self.kind == "eval_teacher":
            with open(os.path.join(self.output_dir, TEACHER_METRICS)) as f:
                values = {k: (math.nan if v is None else float(v)) for k, v in json.load(f).items()}
        else:
            values = final_coco_metrics(self.output_dir)
        return zero_ap_without_detections(values)


@dataclasses.dataclass
class Entry:
    """One cell of the results: method x dataset x variant ("teacher", "student", "kd", ablation) x seed."""

    method: str
    dataset: str
    variant: str
    seed: int
    run: Run


def _stem(config: str) -> str:
    return os.path.splitext(os.path.basename(config))[0]


def _iters_tag(iters: Optional[int]) -> str:
    return f"it{iters}" if iters is not None else "itcfg"


def _config_max_iter(config: str) -> int:
    from detectron2.config import LazyConfig

    return int(LazyConfig.load(_abs(config)).train.max_iter)


def _abs(path: str) -> str:
    return path if os.path.isabs(path) else os.path.join(ROOT, path)


@functools.lru_cache(maxsize=None)
def config_digest(config: str) -> str:
    """sha1 of the resolved LazyConfig ``config`` (``LazyConfig.to_py``: every value, including
    those imported from other config files) and of the constructor defaults it leaves in place
    (``kd_core.config.constructor_defaults`` of this repository's classes: a changed default, e.g.
    ``ScaleKDDetector(csa_optimizer_fused=...)``, gives a new digest; PyTorch's and Detectron2's
    defaults are left out, so that another installed version does not rename every run). Other
    library code is not covered: ``library_code_digest`` records it in each run and a reused run
    says when it differs."""
    from detectron2.config import LazyConfig

    from kd_core.config import constructor_defaults

    cfg = LazyConfig.load(_abs(config))
    text = LazyConfig.to_py(cfg) + "\n# constructor defaults\n" + "\n".join(constructor_defaults(cfg, roots=[ROOT]))
    return hashlib.sha1(text.encode()).hexdigest()


def library_code_digest() -> str:
    """sha1 of the library's Python sources that a run executes: kd_core/, the projects' packages
    (projects/*/, without their configs/ and tools/) and tools/lazyconfig_train_net.py, by path
    and contents, as they are now (read again at each call: the code may change during a long
    benchmark). Recorded in each finished run's RUN_INFO, as it was when the run started; not part
    of the run folder's name."""
    files = [os.path.join(ROOT, "tools", "lazyconfig_train_net.py")]
    for top in [os.path.join(ROOT, "kd_core")] + sorted(glob.glob(os.path.join(ROOT, "projects", "*"))):
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames[:] = sorted(d for d in dirnames if d not in ("configs", "tools", "__pycache__") and not d.startswith("."))
            files += [os.path.join(dirpath, f) for f in sorted(filenames) if f.endswith(".py")]
    digest = hashlib.sha1()
    for path in files:
        digest.update(os.path.relpath(path, ROOT).encode() + b"\0")
        with open(path, "rb") as f:
            digest.update(f.read() + b"\0")
    return digest.hexdigest()


def _kd_teacher_weights(kd_config: str) -> str:
    from detectron2.config import LazyConfig

    return str(LazyConfig.load(_abs(kd_config)).model.teacher.weights)


def parse_teacher_weights(items: Sequence[str]) -> Dict[str, str]:
    out = {}
    for item in items:
        method, sep, path = item.partition("=")
        if not sep or method not in METHOD_NAMES or not path:
            raise SystemExit(f"[{PREFIX}] --teacher-weights expects METHOD=PATH with METHOD in {METHOD_NAMES}, got {item!r}.")
        out[method] = path if path.startswith("detectron2://") else os.path.abspath(os.path.expanduser(path))
    return out


def build_plan(args) -> List[Entry]:
    """Every (method, dataset, variant, seed) with the run that produces it (runs shared by
    several entries are the same object). Validates methods, datasets and teacher weights."""
    scale = args.scale
    out = os.path.abspath(args.output_dir)
    teacher_weights = parse_teacher_weights(args.teacher_weights)
    runs: Dict[str, Run] = {}
    entries: List[Entry] = []

    def get_run(name, content_of: Optional[str] = None, **kwargs) -> Run:
        # the folder name ends with a hash of what defines the run: config path, overrides and the
        # resolved config's contents (content_of: the config whose contents define a generated one),
        # so a run is reused only while none of them changed (not after --opts, --teacher-weights or
        # an edit of the config or of a config file it imports)
        digest = config_digest(content_of or kwargs["config"])
        key = json.dumps([kwargs["config"], kwargs["overrides"], kwargs.get("kind", "train"), digest])
        output_dir = f"{name}-{hashlib.sha1(key.encode()).hexdigest()[:6]}"
        run = Run(output_dir=output_dir, **kwargs)
        shared = runs.setdefault(output_dir, run)
        if (shared.config, shared.overrides, shared.kind) != (run.config, run.overrides, run.kind):
            raise ValueError(f"Two different runs would share {output_dir}: {shared.label!r} and {run.label!r}.")
        return shared

    for dataset_name in args.datasets:
        dataset = DATASETS[dataset_name]
        for method in args.methods:
            if method not in METHODS[scale]:
                raise SystemExit(f"[{PREFIX}] method '{method}' has no {scale}-scale configs (have {sorted(METHODS[scale])}).")
            spec = METHODS[scale][method]
            for path in (spec.teacher_config, spec.student_config, spec.kd_config):
                if path is not None and not os.path.isfile(_abs(path)):
                    raise SystemExit(f"[{PREFIX}] config {path} of method '{method}' is missing from this checkout.")
            base = os.path.join(out, dataset_name)
            teacher_seed = args.seeds[0]
            kd_data = dataset_overrides(spec, dataset, "kd", scale)
            single_data = dataset_overrides(spec, dataset, "single", scale)

            kd_extra = list(spec.kd_overrides)
            if method.startswith("scalekd") and args.scalekd_teacher_scale is not None:
                kd_extra.append(f"dataloader.train.mapper.teacher_scale={args.scalekd_teacher_scale:g}")

            # teacher: trained here, given (--teacher-weights), or the KD config's pretrained weights
            # (evaluated at the KD runs' teacher scale: the view the students distil from)
            if method in teacher_weights or spec.teacher_config is None:
                weights = teacher_weights.get(method) or _kd_teacher_weights(spec.kd_config)
                if method not in teacher_weights and not dataset.coco_classes:
                    raise SystemExit(
                        f"[{PREFIX}] {method} at the {scale} scale distils from the KD config's COCO teacher "
                        f"({weights}), which does not fit {dataset_name} ({dataset.num_classes} classes). "
                        f"Pass --teacher-weights {method}=PATH with a teacher trained on {dataset_name}."
                    )
                if not weights.startswith("detectron2://") and not os.path.isfile(_abs(weights)) and not args.dry_run:
                    raise SystemExit(
                        f"[{PREFIX}] teacher weights {weights} of {method} do not exist: train that teacher first "
                        f"(see the KD config {spec.kd_config}) or pass --teacher-weights {method}=PATH."
                    )
                stem = "".join(c if c.isalnum() or c in "._-" else "_" for c in os.path.splitext(os.path.basename(weights))[0])
                teacher_run = get_run(
                    os.path.join(base, f"teacher-{_stem(spec.kd_config)}-{stem}"),
                    config=spec.kd_config,
                    overrides=kd_data + kd_extra + [f"model.teacher.weights={weights}", f"train.seed={teacher_seed}"] + list(args.opts),
                    label=f"{dataset_name} teacher of {method} (evaluation)",
                    max_iter=None,
                    kind="eval_teacher",
                )
            else:
                weights = None
                t_iters = args.teacher_iters
                teacher_run = get_run(
                    os.path.join(base, f"teacher-{_stem(spec.teacher_config)}-{_iters_tag(t_iters)}-seed{teacher_seed}"),
                    config=spec.teacher_config,
                    overrides=single_data + schedule_overrides(t_iters, args.eval_period, teacher_seed) + list(args.opts),
                    label=f"{dataset_name} teacher ({spec.teacher_name})",
                    max_iter=t_iters if t_iters is not None else (None if args.dry_run else _config_max_iter(spec.teacher_config)),
                    is_teacher=True,
                )
                weights = os.path.join(teacher_run.output_dir, "model_final.pth")
            entries.append(Entry(method, dataset_name, "teacher", teacher_seed, teacher_run))

            max_iter = args.iters
            if max_iter is None and not args.dry_run:
                max_iter = _config_max_iter(spec.kd_config)
            if spec.student_config is not None:
                student_config, generated = spec.student_config, None
            else:
                student_config = os.path.join(out, "generated_configs", f"{_stem(spec.kd_config)}_student_only.py")
                generated = student_only_config_text(_abs(spec.kd_config))
            # (name in the results, tag in the run folder, switches); --kd-name renames the distilled variant
            # in the results only, so a renamed variant reuses the runs of its overrides
            variants = [(args.kd_name, "kd", ())]
            if args.ablations:
                variants += [(name, name, switches) for name, switches in spec.ablations.items()]
            for seed in args.seeds:
                sched = schedule_overrides(args.iters, args.eval_period, seed)
                student_run = get_run(
                    os.path.join(base, f"student-{_stem(student_config)}-{_iters_tag(args.iters)}-seed{seed}"),
                    config=student_config,
                    overrides=single_data + sched + list(args.opts),
                    label=f"{dataset_name} student ({spec.student_name}) seed {seed}",
                    max_iter=max_iter,
                    generated_config=generated,
                    content_of=spec.kd_config if generated is not None else None,
                )
                entries.append(Entry(method, dataset_name, "student", seed, student_run))
                for variant, folder_tag, switches in variants:
                    kd_run = get_run(
                        os.path.join(base, f"{method}-{folder_tag}-{_iters_tag(args.iters)}-seed{seed}"),
                        config=spec.kd_config,
                        # --kd-opts before the ablation's switches, so a sweep cannot undo an ablation
                        overrides=kd_data + sched + kd_extra + list(args.kd_opts) + list(switches)
                        + [f"model.teacher.weights={weights}"] + list(args.opts),
                        label=f"{dataset_name} {method} {variant} seed {seed}",
                        max_iter=max_iter,
                    )
                    entries.append(Entry(method, dataset_name, variant, seed, kd_run))
    return entries


def unique_runs(entries: Sequence[Entry]) -> List[Run]:
    """The runs of ``entries`` in order, each once (teachers before the KD runs that need them)."""
    seen, runs = set(), []
    for e in entries:
        if e.run.output_dir not in seen:
            seen.add(e.run.output_dir)
            runs.append(e.run)
    return runs


def command_line(run: Run, num_gpus: int = 1) -> List[str]:
    """The training script's arguments for ``run`` (what run_training executes, without --resume)."""
    extra = ["--eval-teacher"] if run.kind == "eval_teacher" else []
    if num_gpus != 1:
        extra += ["--num-gpus", str(num_gpus)]
    return ["tools/lazyconfig_train_net.py", "--config-file", run.config, *extra, f"train.output_dir={run.output_dir}", *run.overrides]


# --------------------------------------------------------------------------- execution


def execute(run: Run, env: Mapping[str, str], num_gpus: int, prune_checkpoints: bool = False) -> None:
    if run.generated_config is not None:
        os.makedirs(os.path.dirname(run.config), exist_ok=True)
        with open(run.config, "w") as f:
            f.write(run.generated_config)
    extra = ["--eval-teacher"] if run.kind == "eval_teacher" else []
    if num_gpus != 1:
        extra += ["--num-gpus", str(num_gpus)]
    library_code = library_code_digest()  # the code this run starts with
    try:
        seconds = run_training(run.config, run.output_dir, run.overrides, run.label, env=env, extra_args=extra, prefix=PREFIX)
    except TrainingRunError as e:
        raise SystemExit(str(e)) from None
    if run.kind == "eval_teacher":
        with open(os.path.join(run.output_dir, "log.txt")) as f:
            metrics = copypaste_metrics(f.read())
        with open(os.path.join(run.output_dir, TEACHER_METRICS), "w") as f:
            json.dump(_json_safe({m: metrics.get(m, math.nan) for m in COCO_BOX_METRICS}), f)
    elif run.max_iter is not None and not run.done():
        raise SystemExit(f"[{PREFIX}] {run.label} exited without its final evaluation in {run.output_dir}/metrics.json.")
    pruned = prune_checkpoints and run.kind == "train" and not run.is_teacher
    if pruned:  # the student's weights are not needed by later runs; metrics.json stays
        for name in os.listdir(run.output_dir):
            if name.endswith(".pth") or name == "last_checkpoint":
                os.remove(os.path.join(run.output_dir, name))
    with open(os.path.join(run.output_dir, RUN_INFO), "w") as f:
        json.dump(
            {"seconds": seconds, "command": command_line(run, num_gpus), "env": dict(env), "pruned": pruned, "library_code": library_code},
            f,
            indent=1,
        )


def _code_note(run: Run) -> str:
    """What a reused run's output says about the library code it was trained with."""
    recorded = run.info().get("library_code")
    if recorded is None:
        return "; its library code was not recorded (a run from before that was)"
    now = library_code_digest()
    if recorded != now:
        return f"; trained with other library code ({recorded[:10]}, now {now[:10]}): use a new --output-dir to train it again"
    return ""


# --------------------------------------------------------------------------- aggregation


def mean_std(values: Sequence[float]) -> Tuple[float, float]:
    """Mean and sample standard deviation (n - 1); std is NaN for one value, both NaN for none.
    A NaN value (a metric COCOeval could not compute) makes both NaN."""
    values = [float(v) for v in values]
    if not values:
        return math.nan, math.nan
    if any(math.isnan(v) for v in values):
        return math.nan, math.nan
    mean = statistics.fmean(values)
    return mean, (statistics.stdev(values) if len(values) > 1 else math.nan)


def aggregate(rows: Sequence[Mapping]) -> List[dict]:
    """Summaries over seeds of result rows ``{"method", "dataset", "variant", "seed", "metrics"}``.

    Returns one dict per (method, dataset, variant), in first-seen order, with ``n``, ``seeds``,
    ``mean`` / ``std`` per metric, and for the distilled variants (not "teacher" / "student") the
    paired gain over the student baseline of the same seed: ``gain_mean`` / ``gain_std`` per
    metric and ``gain_n`` (seeds that have both). Raises ValueError on duplicate rows."""
    groups: Dict[Tuple[str, str, str], Dict[int, Mapping[str, float]]] = {}
    for r in rows:
        key = (r["method"], r["dataset"], r["variant"])
        per_seed = groups.setdefault(key, {})
        if r["seed"] in per_seed:
            raise ValueError(f"Duplicate result for {key} seed {r['seed']}.")
        per_seed[r["seed"]] = r["metrics"]
    summary = []
    for (method, dataset, variant), per_seed in groups.items():
        seeds = sorted(per_seed)
        item = {"method": method, "dataset": dataset, "variant": variant, "n": len(seeds), "seeds": seeds, "mean": {}, "std": {}}
        for m in COCO_BOX_METRICS:
            item["mean"][m], item["std"][m] = mean_std([per_seed[s][m] for s in seeds])
        if variant not in ("teacher", "student"):
            base = groups.get((method, dataset, "student"), {})
            paired = [s for s in seeds if s in base]
            item["gain_n"] = len(paired)
            item["gain_mean"], item["gain_std"] = {}, {}
            for m in COCO_BOX_METRICS:
                item["gain_mean"][m], item["gain_std"][m] = mean_std([per_seed[s][m] - base[s][m] for s in paired])
        summary.append(item)
    return summary


def _fmt(mean: float, std: float) -> str:
    if math.isnan(mean):
        return "n/a"
    return f"{mean:.1f}" if math.isnan(std) else f"{mean:.1f} ± {std:.1f}"


def _fmt_gain(mean: float, std: float) -> str:
    if math.isnan(mean):
        return ""
    return f"{mean:+.1f}" if math.isnan(std) else f"{mean:+.1f} ± {std:.1f}"


def markdown_table(summary: Sequence[Mapping], model_names: Mapping[Tuple[str, str], str] = None) -> str:
    """One markdown table per dataset: rows method x variant, columns the COCO metrics (mean ± std over
    seeds) and the paired AP gain over the baseline. ``model_names``: (method, variant) -> row name."""
    model_names = model_names or {}
    lines = []
    for dataset in dict.fromkeys(s["dataset"] for s in summary):
        lines += [f"### {dataset}", ""]
        lines.append("| method | model | seeds | " + " | ".join(COCO_BOX_METRICS) + " | AP gain |")
        lines.append("|---|---|---|" + "---|" * len(COCO_BOX_METRICS) + "---|")
        for s in (s for s in summary if s["dataset"] == dataset):
            name = model_names.get((s["method"], s["variant"]), s["variant"])
            cells = [_fmt(s["mean"][m], s["std"][m]) for m in COCO_BOX_METRICS]
            gain = _fmt_gain(s["gain_mean"]["AP"], s["gain_std"]["AP"]) if "gain_mean" in s else ""
            lines.append(f"| {s['method']} | {name} | {s['n']} | " + " | ".join(cells) + f" | {gain} |")
        lines.append("")
    return "\n".join(lines)


def _json_safe(x):
    if isinstance(x, float) and math.isnan(x):
        return None
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    return x


def _model_names(args) -> Dict[Tuple[str, str], str]:
    names = {}
    for method in args.methods:
        spec = METHODS[args.scale][method]
        names[(method, "teacher")] = spec.teacher_name
        names[(method, "student")] = spec.student_name
        names[(method, args.kd_name)] = f"{spec.student_name} + {method}" + (f" ({args.kd_name})" if args.kd_name != "kd" else "")
        for ablation in spec.ablations:
            names[(method, ablation)] = f"{spec.student_name} + {method} ({ablation})"
    return names


# --------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", choices=("tiny", "real"), default="tiny", help="tiny: CPU configs (default); real: COCO configs, GPU")
    parser.add_argument("--methods", nargs="+", choices=METHOD_NAMES, default=None, help="default: every method of the scale")
    parser.add_argument("--datasets", nargs="+", choices=sorted(DATASETS), default=None,
                        help="default: kd_synthetic coco128 bccd (tiny), coco (real)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="student seeds (the teacher uses the first)")
    parser.add_argument("--iters", type=int, default=-1, help="student iterations (tiny default 300; real: the config's)")
    parser.add_argument("--teacher-iters", type=int, default=-1, help="teacher iterations (tiny default 400; real: the config's)")
    parser.add_argument("--eval-period", type=int, default=-1, help="evaluate every N iterations (tiny default 100; real: the config's)")
    parser.add_argument("--output-dir", default=None, help="default: output/kd_gain/<scale>")
    parser.add_argument("--datasets-root", default=None, help="folder with coco128/ and bccd/ (default: $KD_DATASETS)")
    parser.add_argument("--ablations", action=argparse.BooleanOptionalAction, default=False,
                        help="also train the one-component KD variants (default: off; 2 / 3 more KD runs per seed for ScaleKD / DETRDistill)")
    parser.add_argument("--scalekd-teacher-scale", type=float, default=-1.0,
                        help="ScaleKD teacher input scale (tiny default 1.0 = same resolution; real: the config's 2.0)")
    parser.add_argument("--teacher-weights", action="append", default=[], metavar="METHOD=PATH",
                        help="use this teacher checkpoint for METHOD instead of training/the config's (repeatable)")
    parser.add_argument("--prune-checkpoints", action="store_true",
                        help="delete the checkpoints of finished student / distilled runs (teachers are kept); "
                        "a tiny run's model_final.pth with optimizer state is ~150 MB")
    parser.add_argument("--num-gpus", type=int, default=1, help="passed to the training script (real scale)")
    parser.add_argument("--dry-run", action="store_true", help="print the plan and the commands; run nothing")
    parser.add_argument("--kd-opts", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                        help="extra overrides for the distilled runs only (e.g. a loss weight sweep: the teacher and the "
                        "baseline runs are reused); an ablation's own switch wins over them; give it before --opts")
    parser.add_argument("--kd-name", default="kd",
                        help="the distilled variant's name in results.md / results.json (default: kd), e.g. one per --kd-opts "
                        "setting, so that tools/plot_results.py can draw several invocations' results together")
    parser.add_argument("--opts", nargs=argparse.REMAINDER, default=[],
                        help="extra overrides for every run, applied last (so they also win over an ablation's switch)")
    return parser


def resolve_args(args):
    """Fill the scale-dependent defaults (the -1 sentinels) and check the values."""
    iters, teacher_iters, eval_period, teacher_scale = DEFAULTS[args.scale]
    args.iters = iters if args.iters == -1 else args.iters
    args.teacher_iters = teacher_iters if args.teacher_iters == -1 else args.teacher_iters
    args.eval_period = eval_period if args.eval_period == -1 else args.eval_period
    args.scalekd_teacher_scale = teacher_scale if args.scalekd_teacher_scale == -1.0 else args.scalekd_teacher_scale
    args.methods = list(dict.fromkeys(args.methods or [m for m in METHOD_NAMES if m in METHODS[args.scale]]))
    args.datasets = list(dict.fromkeys(args.datasets or DEFAULT_DATASETS[args.scale]))
    args.seeds = list(dict.fromkeys(args.seeds))
    args.output_dir = args.output_dir or os.path.join("output", "kd_gain", args.scale)
    misplaced = [item for item in args.opts if item.startswith("-")]
    if misplaced:
        raise SystemExit(
            f"[{PREFIX}] {misplaced[0]!r} was read as a config override: --opts takes the rest of the command "
            "line, so give the benchmark's options before it."
        )
    for name in ("iters", "teacher_iters"):
        if getattr(args, name) is not None and getattr(args, name) <= 0:
            raise SystemExit(f"[{PREFIX}] --{name.replace('_', '-')} must be positive, got {getattr(args, name)}.")
    if args.eval_period is not None and args.eval_period < 0:
        raise SystemExit(f"[{PREFIX}] --eval-period must be >= 0, got {args.eval_period}.")
    specs = [METHODS[args.scale][m] for m in args.methods if m in METHODS[args.scale]]  # others: build_plan's error
    taken = {"teacher", "student"} | {a for spec in specs for a in spec.ablations}
    if args.kd_name in taken or not re.fullmatch(r"[A-Za-z0-9._-]+", args.kd_name):
        raise SystemExit(
            f"[{PREFIX}] --kd-name {args.kd_name!r}: use letters, digits, '.', '_' and '-', and not one of {sorted(taken)}."
        )
    return args


def check_datasets(args) -> Dict[str, str]:
    """The subprocess environment (KD_DATASETS) after checking that the real mini datasets are there."""
    from kd_core.data.builtin import SHARED_DATASETS, default_datasets_root

    env = {}
    root = args.datasets_root
    if root is not None:
        root = os.path.abspath(os.path.expanduser(root))
        env["KD_DATASETS"] = root
    else:
        root = default_datasets_root()
    for name in args.datasets:
        shared = DATASETS[name].shared_name
        if shared is None:
            continue
        json_file = SHARED_DATASETS[shared][0]
        if root is None or not os.path.isfile(os.path.join(root, json_file)):
            message = (
                f"[{PREFIX}] dataset '{name}' needs {json_file} under the datasets root ({root or 'not set'}): "
                "pass --datasets-root or set KD_DATASETS."
            )
            if not args.dry_run:
                raise SystemExit(message)
            print(message + " (dry run: continuing)")
    return env


def main(argv=None):
    args = resolve_args(build_parser().parse_args(argv))
    env = check_datasets(args)
    entries = build_plan(args)
    runs = unique_runs(entries)
    out = os.path.abspath(args.output_dir)
    print(
        f"[{PREFIX}] scale {args.scale}: methods {args.methods}, datasets {args.datasets}, seeds {args.seeds}, "
        f"student iterations {args.iters or 'config'}, teacher iterations {args.teacher_iters or 'config'}, "
        f"eval period {args.eval_period if args.eval_period is not None else 'config'}, ablations "
        f"{'on' if args.ablations else 'off'}: {len(runs)} runs in {out}",
        flush=True,
    )
    if args.dry_run:
        env_prefix = "".join(f"{k}={v} " for k, v in env.items())
        for run in runs:
            state = f"done, reused{_code_note(run)}" if run.done() else "to run"
            note = " (generated config)" if run.generated_config is not None else ""
            print(f"# {run.label} [{state}]{note}")
            print(env_prefix + "python " + " ".join(command_line(run, args.num_gpus)))
        return None

    for i, run in enumerate(runs, 1):
        if run.done():
            print(f"[{PREFIX}] ({i}/{len(runs)}) {run.label}: finished earlier, reused ({run.output_dir}){_code_note(run)}", flush=True)
            continue
        print(f"[{PREFIX}] ({i}/{len(runs)}) {run.label}", flush=True)
        execute(run, env, args.num_gpus, args.prune_checkpoints)

    rows = [
        {"method": e.method, "dataset": e.dataset, "variant": e.variant, "seed": e.seed, "metrics": e.run.metrics(), "output_dir": e.run.output_dir}
        for e in entries
    ]
    summary = aggregate(rows)
    names = _model_names(args)
    seconds = {r.output_dir: r.info().get("seconds") for r in runs}
    header = (
        f"KD gain, {args.scale} scale: students {args.iters or 'config'} iterations, teachers trained here "
        f"{args.teacher_iters or 'config'} (given or pretrained teachers: evaluated only), seeds {', '.join(map(str, args.seeds))} (mean ± sample std over seeds; "
        "AP gain = distilled student - baseline of the same seed)."
    )
    if args.opts or args.kd_opts:
        header += f"\nOverrides of every run: {' '.join(args.opts) or '-'}; of the distilled runs only: {' '.join(args.kd_opts) or '-'}."
    table = header + "\n\n" + markdown_table(summary, names)
    known = [s for s in seconds.values() if s is not None]
    table += f"\nWall time of the runs (as recorded when each ran): {sum(known) / 60:.0f} min over {len(known)} of {len(runs)} runs.\n"
    print("\n" + table)
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write(table)
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(
            _json_safe(
                {
                    "scale": args.scale,
                    "iters": args.iters,
                    "teacher_iters": args.teacher_iters,
                    "eval_period": args.eval_period,
                    "seeds": args.seeds,
                    "methods": args.methods,
                    "datasets": args.datasets,
                    "ablations": args.ablations,
                    "scalekd_teacher_scale": args.scalekd_teacher_scale,
                    "opts": args.opts,
                    "kd_opts": args.kd_opts,
                    "kd_name": args.kd_name,
                    "model_names": {f"{m}/{v}": n for (m, v), n in names.items()},
                    "runs": [dict(r, seconds=seconds[r["output_dir"]]) for r in rows],
                    "summary": summary,
                }
            ),
            f,
            indent=1,
        )
    print(f"[{PREFIX}] wrote {out}/results.md and results.json")
    return summary


if __name__ == "__main__":
    main()
