#!/usr/bin/env python
"""
Plots of the KD benchmarks (matplotlib, Agg backend: no display needed).

Curves and gains, from an output folder of tools/benchmark_kd_gain.py or tools/quickstart.py:
    python tools/plot_results.py output/kd_gain/tiny            # -> output/kd_gain/tiny/plots/*.png
    python tools/plot_results.py output/quickstart --output-dir plots
  * ap_vs_iter_<method>_<dataset>.png: COCO AP vs training iteration of the teacher, the student
    baseline and the distilled student (mean over seeds, band = +- one std; ablations dashed);
  * ap_gain_<dataset>.png: AP gain of every distilled variant over the baseline (mean +- std over seeds).
  Without results.json (a benchmark still running) every run folder with evaluations is plotted,
  grouped over seeds by folder name. A model with no detection at all (Detectron2: NaN) counts as AP 0.

Several benchmark invocations together (results.json files, or folders holding one), e.g. a method
and its control run on the same teacher and baselines, each distilled variant named by the
benchmark's --kd-name; --as-method draws them as one method (one curve plot per dataset):
    python tools/plot_results.py out/results_sdf.json out/results_fitnet.json --as-method faster_rcnn --output-dir plots
  The summaries (means, stds, paired gains) are recomputed from the merged runs; a run reported by
  two inputs is counted once, and two different runs for one method, variant and seed are an error.

What the distillation looks at, on a real image:
    # DETRDistill target-aware feature-KD masks of the teacher's last decoder stage, per feature level
    python tools/plot_results.py --masks --run-dir output/kd_gain/tiny/bccd/detrdistill-kd-it300-seed0-<hash>
    python tools/plot_results.py --masks --random-weights --dataset bccd_val --image-index 3
    # ScaleKD Cross-Scale Assistant: where a student token (centre of the largest / smallest GT box)
    # attends in the teacher's features, per head group (aggregation rate)
    python tools/plot_results.py --csa --run-dir output/kd_gain/tiny/coco128/scalekd_retinanet-kd-it300-seed0-<hash>
  --run-dir takes the config, overrides and checkpoint of a benchmark_kd_gain run (its benchmark_run.json);
  otherwise --config/--checkpoint (or --random-weights: random teacher and assistant) and --opts.
  Files: masks_<method>_<dataset>_<index>.png, csa_attention_<method>_<dataset>_<index>.png.
Output file names use only letters, digits, '.', '_' and '-'.
"""
import argparse
import json
import math
import os
import re
import sys
from typing import Dict, List, Sequence, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # noqa: E402 (run from a clone)
sys.path.insert(0, os.path.join(ROOT, "tools"))  # noqa: E402 (benchmark_kd_gain's dataset table)
from kd_core.paths import add_project_paths  # noqa: E402

add_project_paths()

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from kd_core.runs import coco_metric_history, zero_ap_without_detections  # noqa: E402

PREFIX = "plot_results"
DEFAULT_DETRDISTILL_CONFIG = "projects/DETRDistill/configs/detrdistill/deformable_detr_r34_r18_tiny_cpu.py"
DEFAULT_SCALEKD_CONFIG = "projects/ScaleKD/configs/tiny/retinanet_r34_r18_scalekd_tiny_cpu.py"
VARIANT_STYLE = {"teacher": ("tab:gray", "-"), "student": ("tab:blue", "-"), "kd": ("tab:red", "-")}
#: colours of the ablations (dashed), in their order on a plot: none of the main variants' colours
ABLATION_COLORS = ("tab:green", "tab:orange", "tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan")


def variant_style(variant: str, ablations: Sequence[str]) -> Tuple[str, str]:
    """(colour, line style) of a benchmark variant: the teacher grey, the student blue, the distilled
    student red (solid); the i-th of a method's ``ablations`` ABLATION_COLORS[i] (dashed)."""
    if variant in VARIANT_STYLE:
        return VARIANT_STYLE[variant]
    return ABLATION_COLORS[list(ablations).index(variant) % len(ABLATION_COLORS)], "--"


def safe_name(*parts: str) -> str:
    """A file name from ``parts`` joined by '_': characters other than letters, digits, '.', '_',
    '-' become '-'."""
    name = "_".join(str(p) for p in parts if p != "")
    name = re.sub(r"[^A-Za-z0-9._-]", "-", name)
    if not name or name in (".", ".."):
        raise ValueError(f"No usable file name from {parts!r}.")
    return name


def _save(fig, out_dir: str, name: str) -> str:
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, name)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    print(f"[{PREFIX}] wrote {path}")
    return path


# --------------------------------------------------------------------------- curves and gains


def mean_curve(histories: Sequence[List[Tuple[int, Dict[str, float]]]], metric: str = "AP"):
    """Mean and std over runs of ``metric`` at the iterations every run evaluated.
    Returns (iterations, mean, std) arrays (std 0 for one run)."""
    common = None
    for h in histories:
        its = {it for it, _ in h}
        common = its if common is None else common & its
    its = sorted(common or [])
    values = np.array([[dict(h)[it][metric] for it in its] for h in histories], dtype=float).reshape(len(histories), len(its))
    std = values.std(axis=0, ddof=1) if len(histories) > 1 else np.zeros(len(its))
    return np.array(its), values.mean(axis=0), std


def _plot_group(ax, label, histories, color=None, style="-"):
    histories = [h for h in histories if h]
    if not histories:
        return
    its, mean, std = mean_curve(histories)
    n = len(histories)
    (line,) = ax.plot(its, mean, style, marker="o", ms=3, color=color, label=f"{label} (n={n})")
    if n > 1:
        ax.fill_between(its, mean - std, mean + std, color=line.get_color(), alpha=0.2, linewidth=0)


def _histories(dirs: Sequence[str]):
    out = []
    for d in dirs:
        try:
            out.append([(it, zero_ap_without_detections(m)) for it, m in coco_metric_history(d)])
        except FileNotFoundError:
            print(f"[{PREFIX}] no metrics.json in {d}: skipped")
    return out


def plot_benchmark(results: dict, out_dir: str) -> List[str]:
    """AP-vs-iteration per (method, dataset) and AP-gain bars per dataset from a results.json."""
    written = []
    names = results.get("model_names", {})
    groups: Dict[Tuple[str, str], Dict[str, List[str]]] = {}
    for r in results["runs"]:
        groups.setdefault((r["method"], r["dataset"]), {}).setdefault(r["variant"], []).append(r["output_dir"])
    for (method, dataset), variants in groups.items():
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        ablations = [v for v in variants if v not in VARIANT_STYLE]
        for variant, dirs in variants.items():
            color, style = variant_style(variant, ablations)
            label = names.get(f"{method}/{variant}", variant)
            evaluated = [d for d in dirs if os.path.isfile(os.path.join(d, "teacher_metrics.json"))]
            for d in evaluated:  # a given / pretrained teacher: evaluated once, not trained here
                with open(os.path.join(d, "teacher_metrics.json")) as f:
                    saved = {k: (math.nan if v is None else v) for k, v in json.load(f).items()}
                ap = zero_ap_without_detections(saved)["AP"]
                ax.axhline(ap, color=color, linestyle=":", label=f"{label} (evaluated: {ap:.1f} AP)")
            _plot_group(ax, label, _histories([d for d in dirs if d not in evaluated]), color, style)
        ax.set(xlabel="iteration", ylabel="COCO box AP", title=f"{method} on {dataset}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        written.append(_save(fig, out_dir, safe_name("ap_vs_iter", method, dataset) + ".png"))

    by_dataset: Dict[str, List[dict]] = {}
    for s in results["summary"]:
        if "gain_mean" in s:
            by_dataset.setdefault(s["dataset"], []).append(s)
    for dataset, items in by_dataset.items():
        labels = [f"{s['method']}\n{s['variant']}" for s in items]
        means = [s["gain_mean"]["AP"] if s["gain_mean"]["AP"] is not None else math.nan for s in items]
        stds = [s["gain_std"]["AP"] if s["gain_std"]["AP"] is not None else 0.0 for s in items]
        ablations: Dict[str, List[str]] = {}  # per method, in the order of the curves' legend
        for s in items:
            if s["variant"] not in VARIANT_STYLE:
                ablations.setdefault(s["method"], []).append(s["variant"])
        colors = [variant_style(s["variant"], ablations.get(s["method"], []))[0] for s in items]
        fig, ax = plt.subplots(figsize=(max(4.0, 1.1 * len(items) + 1.5), 4.2))
        ax.bar(range(len(items)), means, yerr=stds, capsize=4, color=colors)
        ax.axhline(0.0, color="black", linewidth=0.8)
        ax.set_xticks(range(len(items)), labels, fontsize=7)
        ax.set(ylabel="AP gain over the student baseline", title=f"KD gain on {dataset} (mean ± std over seeds)")
        ax.grid(axis="y", alpha=0.3)
        written.append(_save(fig, out_dir, safe_name("ap_gain", dataset) + ".png"))
    return written


def merge_results(results: Sequence[dict], as_method: str = None) -> dict:
    """The runs of several benchmark_kd_gain.py results.json contents as one: ``runs`` (each run once:
    the same method, dataset, variant, seed and folder reported twice is one run), ``model_names``
    (the first input's name wins) and ``summary`` recomputed over the merged runs
    (``benchmark_kd_gain.aggregate``). ``as_method``: every run is reported under this method name.
    Raises SystemExit when two different runs claim one method, dataset, variant and seed."""
    import benchmark_kd_gain as bench

    runs, seen, names = [], set(), {}
    for r in results:
        for run in r["runs"]:
            run = dict(run, method=as_method or run["method"])
            key = (run["method"], run["dataset"], run["variant"], run["seed"], run["output_dir"])
            if key not in seen:
                seen.add(key)
                runs.append(run)
        for key, name in r.get("model_names", {}).items():
            method, variant = key.split("/", 1)
            names.setdefault(f"{as_method or method}/{variant}", name)
    rows = [dict(run, metrics={k: (math.nan if v is None else v) for k, v in run["metrics"].items()}) for run in runs]
    try:
        summary = bench.aggregate(rows)
    except ValueError as e:
        raise SystemExit(
            f"[{PREFIX}] {e} The inputs report two different runs under one name: give each benchmark "
            "invocation its own --kd-name."
        ) from None
    return {"runs": runs, "model_names": names, "summary": summary}


def _load_results(path: str) -> dict:
    """The contents of a results.json, given as the file or the folder that holds it."""
    file = os.path.join(path, "results.json") if os.path.isdir(path) else path
    if not os.path.isfile(file):
        raise SystemExit(f"[{PREFIX}] {path}: no results.json (several inputs are merged from their results.json).")
    with open(file) as f:
        return json.load(f)


def plot_run_folders(root: str, out_dir: str) -> List[str]:
    """Fallback without results.json: per dataset folder, every run folder with evaluations,
    grouped over seeds by name (``<name>-seedN-<hash>``)."""
    written = []
    for dataset in sorted(os.listdir(root)):
        folder = os.path.join(root, dataset)
        if not os.path.isdir(folder):
            continue
        groups: Dict[str, List[str]] = {}
        for run in sorted(os.listdir(folder)):
            if os.path.isfile(os.path.join(folder, run, "metrics.json")):
                groups.setdefault(re.sub(r"-seed\d+(-[0-9a-f]{6})?$", "", run), []).append(os.path.join(folder, run))
        histories = {k: [h for h in _histories(v) if h] for k, v in groups.items()}
        histories = {k: v for k, v in histories.items() if v}
        if not histories:
            continue
        fig, ax = plt.subplots(figsize=(7.0, 4.5))
        for name, hs in histories.items():
            _plot_group(ax, name, hs)
        ax.set(xlabel="iteration", ylabel="COCO box AP", title=f"runs in {dataset}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
        written.append(_save(fig, out_dir, safe_name("ap_vs_iter", dataset) + ".png"))
    return written


def plot_quickstart(root: str, out_dir: str) -> List[str]:
    """Quickstart folder (teacher/, student/, student_<method>/): AP vs iteration and the AP gain."""
    runs = {}
    for name in sorted(os.listdir(root)):
        if os.path.isfile(os.path.join(root, name, "metrics.json")):
            runs[name] = _histories([os.path.join(root, name)])[0]
    runs = {k: v for k, v in runs.items() if v}
    if "student" not in runs:
        raise SystemExit(f"[{PREFIX}] {root} has no evaluated student run (student/metrics.json).")
    written = []
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for name, history in runs.items():
        color, style = VARIANT_STYLE.get(name, ("tab:red", "-") if name.startswith("student_") else (None, "-"))
        _plot_group(ax, name, [history], color, style)
    ax.set(xlabel="iteration", ylabel="COCO box AP", title="quickstart")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    written.append(_save(fig, out_dir, "ap_vs_iter_quickstart.png"))
    kd = [k for k in runs if k.startswith("student_")]
    if kd:
        base = runs["student"][-1][1]["AP"]
        gains = [runs[k][-1][1]["AP"] - base for k in kd]
        fig, ax = plt.subplots(figsize=(max(4.0, 1.2 * len(kd) + 1.5), 4.0))
        ax.bar(range(len(kd)), gains, color="tab:red")
        ax.axhline(0.0, color="black", linewidth=0.8)
        ax.set_xticks(range(len(kd)), [k[len("student_"):] for k in kd])
        ax.set(ylabel="AP gain over the student baseline", title="quickstart KD gain (one seed)")
        written.append(_save(fig, out_dir, "ap_gain_quickstart.png"))
    return written


# --------------------------------------------------------------------------- models on a real image


def load_kd_model(args, default_config: str):
    """(cfg, model in eval mode) of a distillation config with its checkpoint (or random weights).

    --run-dir: config + overrides from the run's benchmark_run.json, checkpoint model_final.pth.
    Otherwise --config (default ``default_config``), --opts, --checkpoint or --random-weights."""
    import torch
    from detectron2.config import LazyConfig, instantiate

    from kd_core.checkpoint import build_checkpointer
    from kd_core.config import apply_overrides_strict

    checkpoint = args.checkpoint
    if args.run_dir:
        info_path = os.path.join(args.run_dir, "benchmark_run.json")
        if not os.path.isfile(info_path):
            raise SystemExit(f"[{PREFIX}] {info_path} not found: --run-dir must be a finished run of tools/benchmark_kd_gain.py.")
        with open(info_path) as f:
            command = json.load(f)["command"]
        config = command[command.index("--config-file") + 1]
        overrides = [c for c in command[command.index("--config-file") + 2 :] if "=" in c and not c.startswith("train.output_dir=")]
        checkpoint = checkpoint or os.path.join(args.run_dir, "model_final.pth")
    else:
        config, overrides = args.config or default_config, []
    config = config if os.path.isabs(config) else os.path.join(ROOT, config)
    cfg = LazyConfig.load(config)
    if not args.run_dir and args.dataset:
        overrides = _dataset_overrides(cfg, args.dataset)
    cfg = apply_overrides_strict(cfg, overrides + list(args.opts))
    if "teacher" not in cfg.model:
        raise SystemExit(f"[{PREFIX}] {config} is not a distillation config (cfg.model has no teacher).")
    if args.random_weights:
        cfg.model.teacher.weights = ""
        cfg.model.teacher.allow_random_init = True
        checkpoint = None
    elif args.teacher_weights:
        cfg.model.teacher.weights = args.teacher_weights
    torch.manual_seed(0)
    model = instantiate(cfg.model)
    if checkpoint:
        build_checkpointer(model).load(checkpoint)  # with the assistant (ScaleKD)
    elif not args.random_weights:
        raise SystemExit(f"[{PREFIX}] give --run-dir, --checkpoint or --random-weights.")
    return cfg, model.eval()


def _dataset_overrides(cfg, dataset_name: str) -> List[str]:
    """For a benchmark dataset split (tools/benchmark_kd_gain.py's table): the class count of the
    student and the teacher and the tiny-scale image sizes, as the benchmark sets them."""
    import benchmark_kd_gain as bench

    match = [d for d in bench.DATASETS.values() if dataset_name in (d.train, d.test)]
    if not match:
        return []
    dataset = match[0]
    key = "roi_heads.num_classes" if "roi_heads" in cfg.model.student else "num_classes"
    family = "detr" if "augmentation" in cfg.dataloader.test.mapper else "dense"
    out = [f"model.student.{key}={dataset.num_classes}", f"model.teacher.model.{key}={dataset.num_classes}"]
    return out + bench.resize_overrides(family, dataset.resize)


def _dataset_dict(cfg, args) -> Tuple[str, dict]:
    import kd_core.data  # noqa: F401  (registers the datasets)
    from detectron2.data import DatasetCatalog

    name = args.dataset or cfg.dataloader.test.dataset.names
    if not isinstance(name, str):
        name = list(name)[0]
    if name not in DatasetCatalog.list():
        raise SystemExit(f"[{PREFIX}] dataset '{name}' is not registered (set KD_DATASETS for coco128/bccd).")
    dicts = DatasetCatalog.get(name)
    if not 0 <= args.image_index < len(dicts):
        raise SystemExit(f"[{PREFIX}] --image-index {args.image_index} out of range: {name} has {len(dicts)} images.")
    return name, dicts[args.image_index]


def _rgb(image_chw, image_format: str) -> np.ndarray:
    """(3, H, W) uint8 tensor in ``image_format`` -> (H, W, 3) RGB array."""
    arr = image_chw.permute(1, 2, 0).cpu().numpy()
    return arr[:, :, ::-1] if image_format == "BGR" else arr


def _with_boxes(image_rgb: np.ndarray, boxes_xyxy: np.ndarray, metadata=None) -> np.ndarray:
    from detectron2.utils.visualizer import Visualizer

    vis = Visualizer(image_rgb, metadata=metadata)
    return vis.overlay_instances(boxes=boxes_xyxy, assigned_colors=[(0.1, 1.0, 0.1)] * len(boxes_xyxy)).get_image()


def draw_detrdistill_masks(args) -> str:
    """The target-aware feature-KD masks of the teacher's last decoder stage on one image:
    one panel per feature level (mask overlaid on the image) plus the image with its GT boxes."""
    import torch
    import torch.nn.functional as F
    from detectron2.config import instantiate
    from detectron2.data import MetadataCatalog

    from detrdistill.data import DetrDatasetMapper

    cfg, model = load_kd_model(args, DEFAULT_DETRDISTILL_CONFIG)
    if getattr(model, "feature_kd", None) is None:
        raise SystemExit(f"[{PREFIX}] the model has no feature KD module (model.feature_kd is None in this config).")
    name, record = _dataset_dict(cfg, args)
    image_format = cfg.dataloader.test.mapper.image_format
    # training mode keeps the annotations; the test resize, no random augmentation
    mapper = DetrDatasetMapper(
        is_train=True, augmentation=instantiate(cfg.dataloader.test.mapper.augmentation), augmentation_with_crop=None, image_format=image_format
    )
    inputs = [mapper(record)]
    student = model.student
    with torch.no_grad():
        t_out = model.teacher.run(lambda m, x: m.run(m.preprocess_image(x)), inputs)
        targets = student.prepare_targets(inputs)
        masks = model.feature_kd.masks(t_out.features, t_out.feature_masks, t_out.logits, t_out.boxes, t_out.hidden_states, targets, stage=-1)
        padded = model.teacher.model.preprocess_image(inputs).tensor.shape[-2:]
    image = _rgb(inputs[0]["image"], image_format)
    h, w = image.shape[:2]
    boxes = inputs[0]["instances"].gt_boxes.tensor.numpy()
    panels = [("image + GT boxes", _with_boxes(image, boxes, MetadataCatalog.get(name)), None)]
    for level, m in enumerate(masks):
        up = F.interpolate(m.float(), size=tuple(padded), mode="nearest")[0, 0, :h, :w].numpy()
        panels.append((f"level {level} ({m.shape[-2]}x{m.shape[-1]}), max {float(m.max()):.2f}", image, up))
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.4))
    for ax, (title, img, heat) in zip(np.atleast_1d(axes), panels):
        ax.imshow(img)
        if heat is not None:
            ax.imshow(heat, cmap="jet", alpha=0.5, vmin=0.0, vmax=max(float(heat.max()), 1e-6))
        ax.set_title(title, fontsize=8)
        ax.axis("off")
    source = "random weights" if args.random_weights else "trained"
    fig.suptitle(f"DETRDistill feature-KD masks ({model.feature_kd.mode} mode, last teacher stage, {source}), {name} #{args.image_index}", fontsize=9)
    return _save(fig, args.output_dir, safe_name("masks", args.method_name or "detrdistill", name, str(args.image_index)) + ".png")


def draw_csa_attention(args) -> str:
    """ScaleKD's Cross-Scale Assistant on one image: for a student token at the centre of the
    largest and of the smallest GT box (first student level), its attention weights over the
    teacher's features for each head group (mean over the group's heads), upsampled to the image."""
    import torch
    import torch.nn.functional as F
    from detectron2.config import instantiate

    cfg, model = load_kd_model(args, DEFAULT_SCALEKD_CONFIG)
    if getattr(model, "assistant", None) is None:
        raise SystemExit(f"[{PREFIX}] the model has no Cross-Scale Assistant (model.use_csa=False?).")
    name, record = _dataset_dict(cfg, args)
    mapper_cfg = cfg.dataloader.train.mapper
    mapper_cfg.augmentations = cfg.dataloader.test.mapper.augmentations  # the test resize, no flip
    mapper = instantiate(mapper_cfg)
    inputs = [mapper(record)]
    inst = inputs[0]["instances"]
    if len(inst) == 0:
        raise SystemExit(f"[{PREFIX}] image #{args.image_index} of {name} has no boxes; pick another --image-index.")
    assistant = model.assistant.module
    level = next(iter(assistant.level_pairs))
    t_level = assistant.level_pairs[level]
    student, teacher = model.student, model.teacher.model
    s_stride = student.backbone.output_shape()[level].stride
    t_stride = teacher.backbone.output_shape()[t_level].stride
    with torch.no_grad():
        images = student.preprocess_image(inputs)
        s_feat = student.backbone(images.tensor)[level]
        t_feat = model.run_teacher(inputs, images.tensor.shape[-2:])[t_level]
        weights = assistant.attention.attention_weights(s_feat.float(), t_feat.float(), level)
    image = _rgb(inputs[0]["image"], cfg.dataloader.test.mapper.image_format)
    h, w = image.shape[:2]
    boxes = inst.gt_boxes.tensor
    areas = inst.gt_boxes.area()
    picks = [("largest box", int(areas.argmax())), ("smallest box", int(areas.argmin()))]
    rates = assistant.attention.level_rates[level]
    fig, axes = plt.subplots(len(picks), 1 + len(weights), figsize=(3.2 * (1 + len(weights)), 3.2 * len(picks)), squeeze=False)
    for row, (what, i) in enumerate(picks):
        x0, y0, x1, y1 = boxes[i].tolist()
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        Hs, Ws = s_feat.shape[-2:]
        token = min(int(cy // s_stride), Hs - 1) * Ws + min(int(cx // s_stride), Ws - 1)
        ax = axes[row, 0]
        ax.imshow(_with_boxes(image, boxes[i : i + 1].numpy()))
        ax.plot([cx], [cy], "r+", ms=12, mew=2)
        ax.set_title(f"query: {level} token at the {what} centre", fontsize=8)
        ax.axis("off")
        for g, wg in enumerate(weights):
            att = wg[0, :, token].mean(0)  # (h_g, w_g), mean over the group's heads
            cell = rates[g] * t_stride / model.teacher_scale  # one reduced teacher cell in student pixels
            size = (max(1, round(att.shape[0] * cell)), max(1, round(att.shape[1] * cell)))
            up = F.interpolate(att[None, None], size=size, mode="nearest")[0, 0, :h, :w].numpy()
            ax = axes[row, 1 + g]
            ax.imshow(image)
            ax.imshow(up, cmap="jet", alpha=0.5, extent=(0, up.shape[1], up.shape[0], 0))
            ax.plot([cx], [cy], "w+", ms=12, mew=2)
            ax.set_xlim(0, w)
            ax.set_ylim(h, 0)
            # the colour scale is per panel: the title says how far the weights are from uniform
            ax.set_title(
                f"group {g}: teacher {t_level}, rate {rates[g]} ({att.shape[0]}x{att.shape[1]} keys)\n"
                f"max weight {float(att.max()):.3f}, uniform {1.0 / att.numel():.3f}",
                fontsize=8,
            )
            ax.axis("off")
    source = "random weights" if args.random_weights else "trained"
    fig.suptitle(f"ScaleKD cross-scale attention ({source}), {name} #{args.image_index}", fontsize=9)
    return _save(fig, args.output_dir, safe_name("csa_attention", args.method_name or "scalekd", name, str(args.image_index)) + ".png")


# --------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("inputs", nargs="*", metavar="input",
                        help="output folder of benchmark_kd_gain.py or quickstart.py, or several results.json (files or folders)")
    parser.add_argument("--as-method", default=None,
                        help="plot the runs of every input as this one method (several inputs: a method and its controls)")
    parser.add_argument("--output-dir", default=None, help="where the PNGs go (default: <first input>/plots, else output/plots)")
    parser.add_argument("--masks", action="store_true", help="draw DETRDistill's feature-KD masks on a real image")
    parser.add_argument("--csa", action="store_true", help="draw ScaleKD's cross-scale attention on a real image")
    parser.add_argument("--run-dir", default=None, help="a distillation run of benchmark_kd_gain.py (config, overrides, checkpoint)")
    parser.add_argument("--config", default=None, help="distillation config (without --run-dir)")
    parser.add_argument("--checkpoint", default=None, help="distillation checkpoint (student, and ScaleKD's assistant)")
    parser.add_argument("--teacher-weights", default=None, help="teacher checkpoint (default: the config's)")
    parser.add_argument("--random-weights", action="store_true", help="random teacher/assistant (no checkpoint needed)")
    parser.add_argument("--dataset", default=None, help="registered dataset (default: the config's test set)")
    parser.add_argument("--image-index", type=int, default=0)
    parser.add_argument("--method-name", default=None, help="name used in the output file (default: detrdistill / scalekd)")
    parser.add_argument("--opts", nargs=argparse.REMAINDER, default=[], help="config overrides (after the run's)")
    return parser


def main(argv=None) -> List[str]:
    args = build_parser().parse_args(argv)
    if not (args.inputs or args.masks or args.csa):
        raise SystemExit(f"[{PREFIX}] nothing to do: give an input folder, --masks or --csa.")
    first = args.inputs[0] if args.inputs else None
    if args.output_dir is None:
        base = "output"
        if first:
            base = first if os.path.isdir(first) else (os.path.dirname(first) or ".")
        args.output_dir = os.path.join(base, "plots")
    written = []
    if first and (len(args.inputs) > 1 or os.path.isfile(first) or args.as_method):
        written += plot_benchmark(merge_results([_load_results(p) for p in args.inputs], args.as_method), args.output_dir)
    elif first:
        if not os.path.isdir(first):
            raise SystemExit(f"[{PREFIX}] {first} is not a folder.")
        results = os.path.join(first, "results.json")
        if os.path.isfile(results):
            with open(results) as f:
                written += plot_benchmark(json.load(f), args.output_dir)
        elif os.path.isfile(os.path.join(first, "student", "metrics.json")):
            written += plot_quickstart(first, args.output_dir)
        else:
            written += plot_run_folders(first, args.output_dir)
    if args.masks:
        written.append(draw_detrdistill_masks(args))
    if args.csa:
        written.append(draw_csa_attention(args))
    return written


if __name__ == "__main__":
    main()
