#!/usr/bin/env python
"""Training-step and inference time (and peak memory) of the DETR-family models, per image.

For each config it builds ``cfg.model`` with random weights (nothing is downloaded), feeds a fixed
random batch (``kd_core.testing.random_detection_batch``: ``--batch`` images of ``--size`` H W,
``--num-boxes`` boxes each) and reports medians over ``--iters`` timed iterations after
``--warmup`` untimed ones:
    train step   forward + loss + backward + AdamW step, per image (batch time / batch size)
    inference    eval-mode forward of one image
    peak memory  CUDA: max_memory_allocated during the training steps; CPU: the process's peak
                 resident set size so far (ru_maxrss; configs run in order, so it only grows)

    python projects/DETRDistill/tools/benchmark_models.py                       # R50 configs, CPU, 512x512
    python projects/DETRDistill/tools/benchmark_models.py --device cuda --amp --size 800 1088 --batch 2
    python projects/DETRDistill/tools/benchmark_models.py --config-files projects/DETRDistill/configs/adamixer/adamixer_tiny_cpu.py
"""
import argparse
import os
import resource
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
sys.path.insert(0, ROOT)
from kd_core.paths import add_project_paths  # noqa: E402

add_project_paths()

import torch  # noqa: E402
from detectron2.config import LazyConfig, instantiate  # noqa: E402
from detectron2.utils.events import EventStorage  # noqa: E402

from kd_core.config import apply_overrides_strict  # noqa: E402
from kd_core.testing import random_detection_batch  # noqa: E402

_CONFIGS = os.path.join(ROOT, "projects", "DETRDistill", "configs")
DEFAULT_CONFIGS = [
    os.path.join(_CONFIGS, "deformable_detr", "deformable_detr_r50_50ep.py"),
    os.path.join(_CONFIGS, "conditional_detr", "conditional_detr_r50_50ep.py"),
    os.path.join(_CONFIGS, "adamixer", "adamixer_r50_12ep.py"),
]


def _sync(device: str):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _timed(fn, device: str) -> float:
    _sync(device)
    t = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - t


def benchmark(config_file: str, args) -> dict:
    cfg = apply_overrides_strict(LazyConfig.load(config_file), args.opts)
    torch.manual_seed(0)
    model = instantiate(cfg.model).to(args.device)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    batch = random_detection_batch(
        args.batch, tuple(args.size), num_boxes=args.num_boxes, num_classes=cfg.model.num_classes
    )
    amp = torch.autocast(args.device.split(":")[0], enabled=args.amp)

    def train_step():
        with amp:
            losses = model(batch)
        optimizer.zero_grad(set_to_none=True)
        sum(losses.values()).backward()
        optimizer.step()

    def inference():
        with torch.no_grad(), amp:
            model(batch[:1])

    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats(args.device)
    train_times, infer_times = [], []
    with EventStorage(0) as storage:
        model.train()
        for it in range(args.warmup + args.iters):
            storage.iter = it
            t = _timed(train_step, args.device)
            if it >= args.warmup:
                train_times.append(t / args.batch)
        peak = (
            torch.cuda.max_memory_allocated(args.device) / 2**20
            if args.device.startswith("cuda")
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        )
        model.eval()
        for it in range(args.warmup + args.iters):
            t = _timed(inference, args.device)
            if it >= args.warmup:
                infer_times.append(t)
    return {
        "config": os.path.relpath(config_file, ROOT),
        "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
        "train_s_per_image": statistics.median(train_times),
        "inference_s_per_image": statistics.median(infer_times),
        "peak_mib": peak,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-files", nargs="+", default=DEFAULT_CONFIGS)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--size", type=int, nargs=2, default=(512, 512), metavar=("H", "W"))
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--num-boxes", type=int, default=10)
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--amp", action="store_true", help="autocast (CUDA: fp16; CPU: bf16)")
    parser.add_argument("opts", nargs=argparse.REMAINDER, default=[], help="model overrides key=value, all configs")
    args = parser.parse_args()

    memory = "CUDA peak allocated" if args.device.startswith("cuda") else "process peak RSS"
    print(
        f"device {args.device}, {torch.get_num_threads()} threads, input {args.size[0]}x{args.size[1]}, "
        f"batch {args.batch}, {args.num_boxes} boxes/image, amp={args.amp}, medians of {args.iters} iterations"
    )
    print(f"{'config':<72} {'params M':>8} {'train s/img':>11} {'infer s/img':>11} {memory + ' MiB':>24}")
    for config_file in args.config_files:
        r = benchmark(config_file, args)
        print(
            f"{r['config']:<72} {r['params_m']:>8.1f} {r['train_s_per_image']:>11.3f} "
            f"{r['inference_s_per_image']:>11.3f} {r['peak_mib']:>24.0f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
