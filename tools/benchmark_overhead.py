#!/usr/bin/env python
"""
KD overhead benchmark: time and peak memory of one training iteration.

For a distillation config it measures, on the same fixed batch:
    student step   forward + backward + optimizer step of the student alone
    teacher fwd    the teacher's no-grad forward as the KD model runs it
    KD step        forward + backward + optimizer step of the distillation model
    KD step, cached teacher   (with --teacher-cache-dir) the same step with the teacher's features read
                   from the teacher output cache (the batch repeats, so every step after the first is a hit)
    student step, unfused optimizer   (with --unfused-optimizer) the student step of a copy of the student
                   whose optimizer is built with fused=False (PyTorch's default kernel; the configs'
                   optimizers are fused), to measure what the fused kernel saves
and prints the medians and the ratio  KD step / (student step + teacher fwd)  (target <= 1.10),
plus exported-student inference time vs the plain student (target 1.00).

Timing interleaves the phases in one process, so machine load affects them alike (ratios in one run),
in a new (seeded) random order every iteration, so no phase always runs right after the same other
phase (in a fixed order the student's inference always followed a KD training step, which leaves the
caches and the allocator in another state, and the exported student's always followed an inference).
The networks have random weights (no checkpoint is read: timing does not depend on them), with
their frozen normalization layers set from the batch first (kd_core.testing.calibrate_frozen_norms),
so that activations and losses have a trained network's scale rather than overflowing (a random
R101 with identity FrozenBN statistics gives the COCO configs' assistant non-finite losses), and the
optimizers step at the schedule's first learning rate (lr x lr_multiplier(0), the warm-up's start),
at which the same batch can be stepped on repeatedly without diverging.
Peak memory: CUDA max_memory_allocated per phase on GPU; on CPU each phase runs once more in its own
process and the peak resident set size above the resident size before that step is reported (Linux;
--skip-memory leaves these processes out, e.g. to repeat a timing whose memory is already measured).
Every timed iteration is printed as it ends, and the JSON keeps them all (times_ms, in running order)
besides the medians: on a VM whose speed drifts, the spread shows how far the medians can be trusted.
--count-ops runs each phase once more, after the timing, and counts the ATen operators it dispatches
(forward, backward and optimizer; each is at least one kernel launch on a GPU). Where one Python thread
issuing kernels is the limit (a small batch on a fast GPU: on an H200 at batch 2 the real-scale student
and KD steps took 25-49 us per dispatched op, docs/results.md), a phase's time follows its op count, so the
op-count ratio KD step / (student step + teacher fwd), which a CPU can measure, is the launch side of the
overhead (the same code dispatches about the same operators on either device, except where PyTorch picks
another implementation per device: its default optimizers loop over parameter tensors on the CPU and use
foreach kernels on CUDA; this project's optimizers, the ScaleKD assistant's included, are fused on both.
A GPU count was not taken). --ops-by-source N says where the KD step's extra operators come from: it
counts the student step's, the teacher forward's and the KD step's operators once more per source (the
innermost frame outside PyTorch and its two callers; "backward" for the backward passes and optimizer
steps that the benchmark runs itself) and lists the N sources with the largest difference KD step - (student step + teacher forward).

    python tools/benchmark_overhead.py --config-file configs/tiny/retinanet_r34_r18_fitnet_tiny_cpu.py
    python tools/benchmark_overhead.py --config-file CFG --device cuda --iters 50 --batch-size 2
    python tools/benchmark_overhead.py --config-file CFG --teacher-cache-dir /tmp/teacher_cache
    python tools/benchmark_overhead.py --config-file CFG --amp train.channels_last=True   # as the quickstart trains
    python tools/benchmark_overhead.py --config-file CFG --unfused-optimizer
    python tools/benchmark_overhead.py --config-file CFG --count-ops
    python tools/benchmark_overhead.py --config-file CFG --ops-by-source 30
    python tools/benchmark_overhead.py --config-file CFG --list-syncs

--list-syncs runs each phase once more and lists the operators at which the host waits for a GPU
(a value or a shape computed there: .item(), nonzero, boolean-mask indexing, unique, a blocking copy to
the host), counted per source line: the points where a GPU step stops being queued ahead. On a CPU every
such operator but the copies to the host (no copies there) is listed, also those on tensors that stay on
the host by design (image sizes, targets before their copy to the device), which do not wait for a GPU.
Waits outside the dispatcher (a CUDA event's or a thread's) are not seen.

--amp runs every forward pass under autocast as train.amp.enabled does (fp16 on CUDA, bfloat16 on
CPU; backward and optimizer steps outside it; on CUDA without the gradient scaling of a real AMP step); train.channels_last=True converts the models as the
training script does (kd_core.engine.to_channels_last), the plain student included.
"""
import argparse
import copy
import json
import os
import random
import statistics
import subprocess
import sys
import time
from typing import Dict

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from kd_core.paths import add_project_paths  # noqa: E402

add_project_paths()

PHASES = ("student_step", "teacher_forward", "kd_step", "student_inference", "exported_inference")
CACHED_PHASE = "kd_step_cached_teacher"
UNFUSED_PHASE = "student_step_unfused_optimizer"
ADDED_OPS_PHASES = ("student_step", "teacher_forward", "kd_step")  # what --ops-by-source compares


def _sync(device):
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def build(args):
    from detectron2.config import LazyConfig, instantiate
    from detectron2.utils.env import seed_all_rng
    from detectron2.utils.events import EventStorage

    import kd_core.data  # noqa: F401  (registers the toolkit's datasets: kd_synthetic_*, coco128_*, bccd_*)
    from kd_core.config import apply_overrides_strict
    from kd_core.engine import check_amp_support, to_channels_last
    from kd_core.testing import calibrate_frozen_norms

    cfg = LazyConfig.load(args.config_file)
    cfg = apply_overrides_strict(cfg, args.opts)
    cfg.dataloader.train.total_batch_size = args.batch_size
    cfg.dataloader.train.num_workers = 0
    if "teacher" in cfg.model:
        cfg.model.teacher.weights = ""
        cfg.model.teacher.allow_random_init = True  # timing does not depend on the weights
    seed_all_rng(0)  # the same weights and the same batch in every process (the memory phases' too)
    model = instantiate(cfg.model).to(args.device)
    batch = next(iter(instantiate(cfg.dataloader.train)))
    # Random weights leave frozen norms at the identity statistics, under which a deep network's
    # activations (and the losses on them) blow up; time them at a trained network's scale instead.
    with EventStorage(0):  # the student's training forward logs to it
        calibrate_frozen_norms([model.student, model.teacher.model], lambda: (model.run_teacher(batch), model.student(batch)))
    if args.amp:
        check_amp_support(model)
    if cfg.train.get("channels_last", False):
        to_channels_last(model)
    return cfg, model, batch


def autocast(args):
    """The forward-pass precision of --amp (as train.amp.enabled trains), else a no-op context."""
    import torch

    device = "cuda" if args.device.startswith("cuda") else "cpu"
    return torch.autocast(device, dtype=torch.float16 if device == "cuda" else torch.bfloat16, enabled=args.amp)


def make_steps(args, cfg, model, batch):
    """One callable per phase, all on the same model, batch and device; and the networks besides
    the KD model that phases train or run: the plain student of the exported-student phase and,
    with --unfused-optimizer, the student copy that the unfused optimizer trains."""
    import torch
    from detectron2.config import instantiate

    from kd_core.engine import to_channels_last
    from kd_core.export import extract_student_state_dict

    model.train()
    model.teacher.to(args.device)
    # The optimizers step at the schedule's first learning rate (the warm-up's start, as iteration 0
    # trains): random networks stepped again and again on one batch at the full rate diverge (a random
    # Faster R-CNN R50 at lr 0.02 gave NaN boxes within 2 steps). The rate does not change the timing.
    if "lr_multiplier" in cfg:
        cfg.optimizer.lr = cfg.optimizer.lr * float(instantiate(cfg.lr_multiplier)(0.0))
    cfg.optimizer.params.model = model.student
    student_opt = instantiate_optimizer(cfg)
    cfg.optimizer.params.model = model
    kd_opt = instantiate_optimizer(cfg)
    plain = instantiate_student(cfg).to(args.device).eval()
    if cfg.train.get("channels_last", False):
        to_channels_last(plain)
    # The exported student is built from the config and loaded through the export path; assign=True
    # makes it hold the KD model's student tensors themselves (state_dict() shares their storage), so
    # the two inference phases run the same weights however many steps the other phases take. With a
    # copy, the trained student and the frozen copy detect different boxes, and NMS, whose work and
    # (torchvision's batched NMS over many boxes) operator count depend on them, differs between them.
    plain.load_state_dict(extract_student_state_dict(model.state_dict()), assign=True)
    cache = None
    if args.teacher_cache_dir:
        from kd_core.teacher_cache import TeacherOutputCache, teacher_fingerprint

        if getattr(model, "teacher_forward", None) != "backbone":
            raise SystemExit(
                f"--teacher-cache-dir: the teacher of {type(model).__name__} does not run as a backbone forward "
                "(teacher_forward='backbone'), so its outputs cannot be cached."
            )
        cache = TeacherOutputCache(args.teacher_cache_dir, teacher_fingerprint(model.teacher))

    def train_step(net, opt):
        with autocast(args):
            losses = net(batch)
        opt.zero_grad(set_to_none=True)
        sum(losses.values()).backward()
        opt.step()

    def cached_train_step():
        model.teacher_cache = cache  # the teacher's features come from the cache ...
        try:
            train_step(model, kd_opt)
        finally:
            model.teacher_cache = None  # ... only in this phase

    def teacher_forward():
        with autocast(args):
            model.run_teacher(batch)

    def inference(net):
        was_training = net.training
        net.eval()
        with torch.no_grad(), autocast(args):
            net(batch)
        net.train(was_training)

    steps = {
        "student_step": lambda: train_step(model.student, student_opt),
        "teacher_forward": teacher_forward,
        "kd_step": lambda: train_step(model, kd_opt),
        "student_inference": lambda: inference(model.student),
        "exported_inference": lambda: inference(plain),
    }
    if cache is not None:
        steps[CACHED_PHASE] = cached_train_step
    if args.unfused_optimizer:
        if cfg.optimizer.get("fused") is not True:
            raise SystemExit(
                f"--unfused-optimizer compares with the config's fused optimizer, but optimizer.fused is "
                f"{cfg.optimizer.get('fused')!r} in {args.config_file}."
            )
        twin = copy.deepcopy(model.student)  # its own weights, so both students take the same steps
        cfg.optimizer.params.model = twin
        unfused_opt = instantiate_optimizer(cfg, fused=False)
        steps[UNFUSED_PHASE] = lambda: train_step(twin, unfused_opt)
        return steps, [plain, twin]
    return steps, [plain]


def count_dispatched(fn, key) -> Dict[str, int]:
    """Run ``fn`` once and count the ATen operators it dispatches (below autograd, so the backward's and
    the optimizer's count too; views and in-place ops included) by ``key(func, args, kwargs)``, a string
    or None (not counted); returns ``{key: count}``, the largest first."""
    import collections

    from torch.utils._python_dispatch import TorchDispatchMode

    found = collections.Counter()

    class _Counter(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            k = key(func, args, kwargs)
            if k is not None:
                found[k] += 1
            return func(*args, **(kwargs or {}))

    with _Counter():
        fn()
    return dict(found.most_common())


def count_dispatched_ops(fn) -> int:
    """Run ``fn`` once; return how many ATen operators it dispatched."""
    return sum(count_dispatched(fn, lambda func, args, kwargs: "all").values())


_SYNC_OPS = {  # ATen operators that return a value or a shape computed on the device
    "_local_scalar_dense": ".item() / bool() / float()",
    "nonzero": "nonzero",
    "masked_select": "masked_select",
    "_unique2": "unique",
    "unique_consecutive": "unique",
    "unique_dim": "unique",
    "equal": "equal",
    "is_nonzero": "bool()",
}


def _host_sync_kind(func, args, kwargs):
    """What makes ``func(*args, **kwargs)`` wait for the device, or None."""
    import torch

    name = func.__name__.split(".")[0]
    if name in _SYNC_OPS:
        return _SYNC_OPS[name]
    if name in ("index", "index_put", "index_put_") and len(args) > 1 and isinstance(args[1], (list, tuple)):
        if any(torch.is_tensor(i) and i.dtype == torch.bool for i in args[1]):
            return "boolean-mask indexing"
    if name == "repeat_interleave" and torch.is_tensor(args[0]) and (kwargs or {}).get("output_size") is None:
        return "repeat_interleave without output_size"
    if name == "_to_copy" and torch.is_tensor(args[0]) and args[0].is_cuda:
        device = (kwargs or {}).get("device")
        if device is not None and torch.device(device).type == "cpu" and not (kwargs or {}).get("non_blocking", False):
            return "copy to the host"
    return None


def _source_of_caller(depth: int = 1) -> str:
    """Where the operator being dispatched was called: the ``depth`` innermost frames outside PyTorch
    and this script, innermost first and joined by " < "; "backward" where there is none: the
    operators of the backward passes and optimizer steps that this script calls itself (the code of
    an autograd Function's backward counts at its own lines); on CUDA, of every backward pass, which
    autograd runs on threads of its own."""
    import traceback

    here = os.path.abspath(__file__)
    shown = []
    for frame in reversed(traceback.extract_stack()):
        path = os.path.abspath(frame.filename)
        if path == here or f"{os.sep}torch{os.sep}" in path:
            continue
        if path.startswith(ROOT + os.sep):
            name = os.path.relpath(path, ROOT)
        else:  # an installed package's file, from its top package (detectron2/..., fvcore/...)
            top = os.path.dirname(path)
            while os.path.isfile(os.path.join(top, "__init__.py")):
                top = os.path.dirname(top)
            name = os.path.relpath(path, top)
        shown.append(f"{name}:{frame.lineno} ({frame.name})")
        if len(shown) == depth:
            break
    return " < ".join(shown) if shown else "backward"


def find_host_syncs(fn) -> Dict[str, int]:
    """Run ``fn`` once; return ``{"<kind> at <source line>": count}`` for every operator it dispatched
    at which the host waits for a GPU (see ``_host_sync_kind``). The source is the innermost frame
    outside PyTorch and this script (see :func:`_source_of_caller`)."""

    def kind_and_source(func, args, kwargs):
        kind = _host_sync_kind(func, args, kwargs)
        return None if kind is None else f"{kind} at {_source_of_caller()}"

    return count_dispatched(fn, kind_and_source)


def count_ops_by_source(fn, depth: int = 3) -> Dict[str, int]:
    """Run ``fn`` once; return ``{source: operators}``: :func:`count_dispatched_ops`'s count split by
    where each operator was called (:func:`_source_of_caller` with ``depth`` frames)."""
    return count_dispatched(fn, lambda func, args, kwargs: _source_of_caller(depth))


def added_ops_by_source(by_source: Dict[str, Dict[str, int]]) -> Dict[str, int]:
    """Per source, the KD step's operators minus the student step's and the teacher forward's (from
    :func:`count_ops_by_source` of each phase); sources with no difference left out, the largest
    differences (either sign) first. They sum to the KD step's added operators."""
    import collections

    added = collections.Counter(by_source["kd_step"])
    added.subtract(by_source["student_step"])
    added.subtract(by_source["teacher_forward"])
    return dict(sorted(((k, v) for k, v in added.items() if v), key=lambda kv: (-abs(kv[1]), kv[0])))


def phase_order(phases, iteration, seed=0):
    """The phases in the order they run at ``iteration``: a random permutation, the same for the
    same (iteration, seed), so that over a run every phase follows various other phases."""
    return tuple(random.Random(f"{seed}-{iteration}").sample(list(phases), len(phases)))


def time_phases(args, phases):
    """Interleaved timing (phase after phase, iteration after iteration, order from
    :func:`phase_order`) so that drifting machine load and the state a phase leaves behind affect
    every phase alike; returns {phase: [seconds]}, CUDA peaks when on GPU, and {phase: dtype of
    the student backbone's output} for the phases that run the student, the exported student or
    the student copy of --unfused-optimizer (what --amp computes in)."""
    import torch
    from detectron2.utils.events import EventStorage

    cfg, model, batch = build(args)
    steps, other_students = make_steps(args, cfg, model, batch)
    times = {p: [] for p in phases}
    peaks = {}
    dtypes = {}
    running = [None]

    def record_dtype(module, inputs, outputs):
        first = next(iter(outputs.values())) if isinstance(outputs, dict) else outputs
        dtypes[running[0]] = str(first.dtype).replace("torch.", "")

    model.student.backbone.register_forward_hook(record_dtype)
    for student in other_students:
        student.backbone.register_forward_hook(record_dtype)
    with EventStorage(args.storage_iter):
        for i in range(args.warmup + args.iters):
            for p in phase_order(phases, i):
                running[0] = p
                if args.device.startswith("cuda"):
                    torch.cuda.reset_peak_memory_stats()
                _sync(args.device)
                t0 = time.perf_counter()
                steps[p]()
                _sync(args.device)
                if i >= args.warmup:
                    times[p].append(time.perf_counter() - t0)
                if args.device.startswith("cuda"):
                    peaks[p] = max(peaks.get(p, 0.0), torch.cuda.max_memory_allocated() / 2**20)
            if i < args.warmup:
                print(f"[warm-up {i + 1}/{args.warmup}] done", flush=True)
            else:
                figures = ", ".join(f"{p} {times[p][-1] * 1000:.0f} ms" for p in phases)
                print(f"[timed {i - args.warmup + 1}/{args.iters}] {figures}", flush=True)
        ops = {p: count_dispatched_ops(steps[p]) for p in phases} if args.count_ops else {}
        syncs = {p: find_host_syncs(steps[p]) for p in phases} if args.list_syncs else {}
        by_source = {p: count_ops_by_source(steps[p]) for p in ADDED_OPS_PHASES} if args.ops_by_source else {}
    return times, peaks, dtypes, ops, syncs, by_source


def cpu_peak_rss(args, phase):
    """Peak resident memory (MB) added by running one phase, in this fresh process."""
    from detectron2.utils.events import EventStorage

    import gc

    cfg, model, batch = build(args)
    steps, _ = make_steps(args, cfg, model, batch)
    with EventStorage(args.storage_iter):
        steps[phase]()  # first call allocates lazily created state (optimizer, caches)
        gc.collect()
        with open("/proc/self/clear_refs", "w") as f:  # reset the peak (VmHWM) to the current RSS
            f.write("5")
        base = _proc_status_kb("VmRSS")
        steps[phase]()
    return max(0, _proc_status_kb("VmHWM") - base) / 1024


def _proc_status_kb(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def instantiate_optimizer(cfg, **overrides):
    """``cfg.optimizer`` with ``overrides`` (e.g. ``fused=False``) applied to a copy."""
    from detectron2.config import instantiate

    optimizer = copy.deepcopy(cfg.optimizer) if overrides else cfg.optimizer
    for key, value in overrides.items():
        optimizer[key] = value
    return instantiate(optimizer)


def instantiate_student(cfg):
    from detectron2.config import instantiate

    return instantiate(copy.deepcopy(cfg.model.student))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", required=True, help="a distillation LazyConfig")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument(
        "--storage-iter",
        type=int,
        default=10**9 + 7,
        help="iteration seen by loss-weight schedules (default: after every warm-up, all KD terms on; a prime, so "
        "that no logging period divides it and periodic host reads, such as ScaleKD's assistant metrics every "
        "20 iterations, stay out of the timed steps as they do in most training steps)",
    )
    parser.add_argument(
        "--teacher-cache-dir",
        default="",
        help="also time the KD step with the teacher's features read from a teacher output cache in this directory",
    )
    parser.add_argument("--amp", action="store_true", help="forward passes under autocast (CUDA fp16, CPU bf16)")
    parser.add_argument(
        "--unfused-optimizer",
        action="store_true",
        help="also time the student step with the optimizer's default (unfused) kernel",
    )
    parser.add_argument(
        "--count-ops",
        action="store_true",
        help="also count the ATen operators each phase dispatches (one more run per phase, after the timing)",
    )
    parser.add_argument(
        "--list-syncs",
        action="store_true",
        help="also list the operators at which each phase's host waits for a GPU (one more run per phase, after the timing)",
    )
    parser.add_argument(
        "--ops-by-source",
        type=int,
        default=0,
        metavar="N",
        help="also list the N source lines (with two callers) at which the KD step dispatches the most operators "
        "more (or fewer) than the student step and the teacher forward together (one more run of these phases)",
    )
    parser.add_argument("--phase", choices=PHASES + (CACHED_PHASE, UNFUSED_PHASE), help=argparse.SUPPRESS)
    parser.add_argument(
        "--skip-memory",
        action="store_true",
        help="CPU: time only, without the per-phase memory processes (peak memory reported as n/a)",
    )
    parser.add_argument("--json", default="", help="also write the figures to this file")
    parser.add_argument("opts", nargs=argparse.REMAINDER, default=[], help="config overrides key=value")
    args = parser.parse_args(argv)

    if args.phase:  # child process: CPU memory of one phase
        print("RESULT " + json.dumps({"peak_mb": cpu_peak_rss(args, args.phase)}), flush=True)
        return

    phases = PHASES + ((CACHED_PHASE,) if args.teacher_cache_dir else ())
    phases += (UNFUSED_PHASE,) if args.unfused_optimizer else ()
    times, peaks, dtypes, ops, syncs, by_source = time_phases(args, phases)
    if not args.device.startswith("cuda"):
        for phase in () if args.skip_memory else phases:
            cmd = [sys.executable, os.path.abspath(__file__), "--phase", phase, "--config-file", args.config_file]
            cmd += ["--device", args.device, "--batch-size", str(args.batch_size), "--storage-iter", str(args.storage_iter)]
            cmd += ["--teacher-cache-dir", args.teacher_cache_dir] if args.teacher_cache_dir else []
            cmd += ["--amp"] if args.amp else []
            cmd += ["--unfused-optimizer"] if args.unfused_optimizer else []
            proc = subprocess.run(cmd + list(args.opts), capture_output=True, text=True)
            lines = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
            if proc.returncode != 0 or not lines:
                sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
                raise SystemExit(f"memory measurement of {phase} failed")
            peaks[phase] = json.loads(lines[-1][len("RESULT ") :])["peak_mb"]
    results = {p: {"median_s": statistics.median(times[p]), "peak_mb": peaks.get(p)} for p in phases}
    mem_kind = "CUDA max allocated" if args.device.startswith("cuda") else "peak RSS increase"
    width = max(len(p) for p in results)
    for p, r in results.items():
        peak = "     n/a" if r["peak_mb"] is None else f"{r['peak_mb']:8.1f} MB"
        count = f"   {ops[p]:6d} ops" if ops else ""
        print(f"{p:<{width}} median {r['median_s'] * 1000:8.1f} ms   {mem_kind} {peak}{count}", flush=True)

    s, t, k = (results[p]["median_s"] for p in ("student_step", "teacher_forward", "kd_step"))
    ratio = k / (s + t)
    infer_ratio = results["exported_inference"]["median_s"] / results["student_inference"]["median_s"]
    summary = {
        "config": args.config_file,
        "device": args.device,
        "batch_size": args.batch_size,
        "amp": args.amp,
        "opts": list(args.opts),
        "iters": args.iters,
        "kd_step_over_student_plus_teacher": ratio,
        "exported_over_student_inference": infer_ratio,
        "phases": {
            p: {"median_ms": r["median_s"] * 1000, "peak_mb": r["peak_mb"], "times_ms": [t * 1000 for t in times[p]]}
            | ({"ops": ops[p]} if ops else {})
            for p, r in results.items()
        },
        "student_backbone_dtype": dtypes,
    }
    print(f"KD step / (student step + teacher forward) = {ratio:.3f}  (target <= 1.10)")
    print(f"exported student / student inference time  = {infer_ratio:.3f}  (target 1.00)")
    if ops:
        op_ratio = ops["kd_step"] / (ops["student_step"] + ops["teacher_forward"])
        summary["kd_step_ops_over_student_plus_teacher_ops"] = op_ratio
        print(f"KD step ops / (student step ops + teacher forward ops) = {op_ratio:.3f}")
    if by_source:
        added = added_ops_by_source(by_source)
        summary["kd_step_added_ops_by_source"] = added
        total = sum(added.values())
        print(f"KD step: {total:+d} operators against student step + teacher forward; the {args.ops_by_source} "
              "sources that differ most (innermost frame outside PyTorch < its callers):")
        for site, count in list(added.items())[: args.ops_by_source]:
            print(f"    {count:+6d}  {site}")
    if syncs:
        summary["host_syncs"] = syncs
        where = "" if args.device.startswith("cuda") else " (CPU run: host-side tensors included, see --help)"
        for p in phases:
            print(f"{p}: {sum(syncs[p].values())} operators at which the host waits for a GPU{where}")
            for site, count in syncs[p].items():
                print(f"    {count:4d}  {site}")
    if args.teacher_cache_dir:
        cached = results[CACHED_PHASE]["median_s"]
        summary["kd_step_cached_teacher_over_kd_step"] = cached / k
        summary["kd_step_cached_teacher_over_student_step"] = cached / s
        print(f"KD step, cached teacher / KD step            = {cached / k:.3f}")
        print(f"KD step, cached teacher / student step       = {cached / s:.3f}")
    if args.unfused_optimizer:
        unfused = results[UNFUSED_PHASE]["median_s"]
        summary["student_step_over_unfused_optimizer_step"] = s / unfused
        print(f"student step / student step, unfused optimizer = {s / unfused:.3f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=2)
    return summary


if __name__ == "__main__":
    main()
