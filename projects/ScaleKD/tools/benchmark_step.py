#!/usr/bin/env python
"""Time per training iteration of a ScaleKD step vs the student alone (tiny models, CPU by default).

One iteration = forward + backward + SGD step (the ScaleKD step includes the teacher forward, SDF,
the assistant's forward/backward/Adam step and the mimic losses). The two are interleaved
iteration by iteration so that machine load affects both alike; medians are reported.

``--amp`` runs the forward passes under bfloat16 autocast (as ``train.amp.enabled=True`` on CPU) and
``--channels-last`` converts the models as ``train.channels_last=True`` does. ``--csa-autocast`` (with
``--amp``) also times the same ScaleKD model with ``csa_autocast=True`` (its assistant under the bf16 autocast
too), interleaved with the other two, and prints the paired per-iteration difference.

Examples:
    python projects/ScaleKD/tools/benchmark_step.py --kind retinanet --size 256 --batch 2 --iters 10
    python projects/ScaleKD/tools/benchmark_step.py --kind faster_rcnn --teacher-scale 1 --threads 2 --amp --channels-last --csa-autocast
"""
import argparse
import contextlib
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
sys.path.insert(0, ROOT)
from kd_core.paths import add_project_paths  # noqa: E402

add_project_paths()

import torch  # noqa: E402
from detectron2.utils.events import EventStorage  # noqa: E402

from kd_core.engine import to_channels_last  # noqa: E402
from scalekd.testing import build_tiny_scalekd, random_batch  # noqa: E402


def _step(model, optimizer, batch, amp=False):
    t = time.perf_counter()
    device = next(model.parameters()).device.type
    with torch.autocast(device, dtype=torch.bfloat16) if amp else contextlib.nullcontext():
        losses = model(batch)
    optimizer.zero_grad(set_to_none=True)
    sum(losses.values()).backward()
    optimizer.step()
    if torch.cuda.is_available() and next(model.parameters()).is_cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - t


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kind", default="retinanet", choices=["retinanet", "fcos", "faster_rcnn", "cascade_rcnn"])
    parser.add_argument("--size", type=int, default=256, help="student input height = width (teacher: 2x)")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2, help="untimed iterations first")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--teacher-scale", type=float, default=2.0)
    parser.add_argument("--no-refresh", action="store_true", help="csa_refresh_targets=False")
    parser.add_argument("--amp", action="store_true", help="forward passes under bfloat16 autocast")
    parser.add_argument("--channels-last", action="store_true", help="NHWC convolutions (train.channels_last=True)")
    parser.add_argument("--csa-autocast", action="store_true", help="also time csa_autocast=True (needs --amp)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    if args.csa_autocast and not args.amp:
        parser.error("--csa-autocast compares the assistant under the step's bf16 autocast: add --amp.")

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    overrides = [f"teacher_scale={args.teacher_scale}", f"csa_refresh_targets={not args.no_refresh}"]
    model = build_tiny_scalekd(args.kind, overrides=overrides, warmup_iters=0).to(args.device)
    if args.channels_last:
        to_channels_last(model)
    student = model.student
    kd_optim = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-3, momentum=0.9)
    student_optim = torch.optim.SGD([p for p in student.parameters() if p.requires_grad], lr=1e-3, momentum=0.9)
    batch = random_batch(args.batch, (args.size, args.size), teacher_scale=args.teacher_scale)

    variants = ["student", "scalekd"] + (["scalekd_csa_autocast"] if args.csa_autocast else [])
    times = {k: [] for k in variants}
    with EventStorage(0) as storage:
        for it in range(args.warmup + args.iters):
            storage.iter = it
            for name in variants[it % len(variants) :] + variants[: it % len(variants)]:  # rotate the order
                model.csa_autocast = name == "scalekd_csa_autocast"
                seconds = _step(student if name == "student" else model, student_optim if name == "student" else kd_optim, batch, args.amp)
                if it >= args.warmup:
                    times[name].append(seconds)
    med = {k: statistics.median(v) for k, v in times.items()}
    n_csa = sum(p.numel() for p in model.assistant.parameters())
    n_student = sum(p.numel() for p in student.parameters())
    print(
        f"{args.kind}: input {args.size}px (teacher {args.size * args.teacher_scale:g}px), batch {args.batch}, "
        f"{args.threads} thread(s), {args.iters} iterations, refresh={not args.no_refresh}, "
        f"{'bf16 autocast' if args.amp else 'fp32'}{', channels_last' if args.channels_last else ''}"
    )
    print(f"  student alone : median {med['student'] * 1000:.0f} ms/iter  ({n_student / 1e6:.2f} M params)")
    print(f"  ScaleKD step  : median {med['scalekd'] * 1000:.0f} ms/iter  (assistant {n_csa / 1e6:.2f} M params)")
    print(f"  ratio         : {med['scalekd'] / med['student']:.2f}x")
    if args.csa_autocast:
        diff = statistics.median(a - b for a, b in zip(times["scalekd_csa_autocast"], times["scalekd"]))
        print(f"  ScaleKD step, csa_autocast=True: median {med['scalekd_csa_autocast'] * 1000:.0f} ms/iter "
              f"({med['scalekd_csa_autocast'] / med['student']:.2f}x the student; paired difference {diff * 1000:+.0f} ms/iter)")


if __name__ == "__main__":
    main()
