#!/usr/bin/env python
"""
Quickstart: teacher / student baseline / distilled student on the embedded synthetic dataset, on CPU.

    python tools/quickstart.py                      # default method and schedule, < 10 min on 2 cores
    python tools/quickstart.py --method fitnet      # the FitNet feature-mimicking baseline instead

Each model is trained with tools/lazyconfig_train_net.py (the same script and configs users run) and
evaluated with Detectron2's COCOEvaluator at the end of training; the script then prints one table.
Nothing is downloaded: the dataset is generated on first use (see README, "Embedded dataset").
"""
import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN = os.path.join(ROOT, "tools", "lazyconfig_train_net.py")

# method -> (teacher config, student config, distillation config)
METHODS = {
    "fitnet": (
        "configs/tiny/retinanet_r34_tiny_cpu.py",
        "configs/tiny/retinanet_r18_tiny_cpu.py",
        "configs/tiny/retinanet_r34_r18_fitnet_tiny_cpu.py",
    ),
    "scalekd": (
        "configs/tiny/retinanet_r34_tiny_cpu.py",
        "configs/tiny/retinanet_r18_tiny_cpu.py",
        "projects/ScaleKD/configs/tiny/retinanet_r34_r18_scalekd_tiny_cpu.py",
    ),
}
METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl")


def train(config, output_dir, overrides, label):
    """Run one training job; stream a short progress line per logged iteration."""
    cmd = [sys.executable, TRAIN, "--config-file", config, f"train.output_dir={output_dir}"] + overrides
    if os.path.isfile(os.path.join(output_dir, "last_checkpoint")):
        cmd.insert(2, "--resume")  # a finished run is not redone; an interrupted one continues
    print(f"[quickstart] {label}: {' '.join(os.path.relpath(c, ROOT) if c.startswith(ROOT) else c for c in cmd[1:])}", flush=True)
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    tail = []
    for line in proc.stdout:
        tail = (tail + [line])[-60:]
        if " iter: " in line and "eta:" in line:
            parts = line.split()
            it = parts[parts.index("iter:") + 1]
            loss = parts[parts.index("total_loss:") + 1] if "total_loss:" in parts else "?"
            print(f"[quickstart] {label}: iter {it} total_loss {loss}", flush=True)
    if proc.wait() != 0:
        sys.stdout.write("".join(tail))
        raise SystemExit(f"[quickstart] {label} failed (see the log above and {output_dir}/log.txt)")
    return time.perf_counter() - start


def final_metrics(output_dir):
    """The last bbox/* evaluation row of a run's metrics.json."""
    last = {}
    with open(os.path.join(output_dir, "metrics.json")) as f:
        for line in f:
            row = json.loads(line)
            if "bbox/AP" in row:
                last = row
    return {m: last.get(f"bbox/{m}", float("nan")) for m in METRICS}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--method", choices=sorted(METHODS), default="scalekd")
    parser.add_argument("--iters", type=int, default=300, help="training iterations of each model")
    parser.add_argument("--output-dir", default="output/quickstart")
    parser.add_argument("--opts", nargs=argparse.REMAINDER, default=[], help="extra overrides for every run")
    args = parser.parse_args(argv)

    teacher_cfg, student_cfg, kd_cfg = METHODS[args.method]
    if not os.path.isfile(os.path.join(ROOT, kd_cfg)):
        raise SystemExit(f"[quickstart] config {kd_cfg} is missing from this checkout.")
    out = os.path.abspath(args.output_dir)
    common = [f"train.max_iter={args.iters}", "train.eval_period=0", f"train.checkpointer.period={args.iters}"]
    common += list(args.opts)
    runs = {}
    teacher_dir = os.path.join(out, "teacher")
    runs["teacher (R34)"] = (teacher_dir, train(teacher_cfg, teacher_dir, common, "teacher"))
    student_dir = os.path.join(out, "student")
    runs["student (R18)"] = (student_dir, train(student_cfg, student_dir, common, "student baseline"))
    kd_dir = os.path.join(out, f"student_{args.method}")
    teacher_weights = os.path.join(teacher_dir, "model_final.pth")
    runs[f"student + {args.method}"] = (
        kd_dir,
        train(kd_cfg, kd_dir, common + [f"model.teacher.weights={teacher_weights}"], f"distilled student ({args.method})"),
    )

    header = f"{'model':<22}" + "".join(f"{m:>8}" for m in METRICS) + f"{'train s':>10}"
    lines = [header, "-" * len(header)]
    for name, (d, seconds) in runs.items():
        vals = final_metrics(d)
        lines.append(f"{name:<22}" + "".join(f"{vals[m]:>8.1f}" for m in METRICS) + f"{seconds:>10.0f}")
    table = "\n".join(lines)
    print(f"\nCOCO box AP on kd_synthetic_val ({args.iters} iterations each, method {args.method}):\n{table}")
    with open(os.path.join(out, "results.txt"), "w") as f:
        f.write(table + "\n")
    return table


if __name__ == "__main__":
    main()
