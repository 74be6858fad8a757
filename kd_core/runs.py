"""Run helpers of the tools that train several models and compare them (quickstart, KD-gain benchmark).

Every job is ``tools/lazyconfig_train_net.py`` in a subprocess (the same script and configs users
run), and its results are read back from the files Detectron2 writes in ``train.output_dir``:

* :func:`run_training`: one training job, with ``--resume`` when the output dir already has a
  checkpoint, a short progress line per logged iteration, and a clear failure with the log tail;
* :func:`final_coco_metrics`, :func:`coco_metric_history`: the COCO box metrics (``bbox/AP`` ...)
  that ``EvalHook`` wrote to ``metrics.json`` (one JSON object per line);
* :func:`run_is_complete`: whether a run reached ``max_iter`` and its final evaluation;
* :func:`copypaste_metrics`: the metrics of an evaluation-only job (``--eval-only`` /
  ``--eval-teacher``), parsed from Detectron2's ``copypaste:`` log lines.

Iteration numbers are Detectron2's: a periodic evaluation after ``k * eval_period`` iterations is
logged at iteration index ``k * eval_period - 1``; the evaluation after the last iteration is logged
at ``max_iter``.
"""
import json
import math
import os
import signal
import subprocess
import sys
import time
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

__all__ = [
    "COCO_BOX_METRICS",
    "ROOT",
    "TRAIN_SCRIPT",
    "TrainingRunError",
    "run_training",
    "final_coco_metrics",
    "coco_metric_history",
    "run_is_complete",
    "copypaste_metrics",
    "zero_ap_without_detections",
]

#: The repository root (configs and tools are resolved against it) and the training script.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN_SCRIPT = os.path.join(ROOT, "tools", "lazyconfig_train_net.py")
#: COCO box metrics reported by the tools (keys ``bbox/<name>`` in metrics.json).
COCO_BOX_METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl")
_LOG_TAIL_LINES = 60


class TrainingRunError(RuntimeError):
    """A training subprocess exited with a non-zero status (the message names the run and its log)."""


def _display(arg: str) -> str:
    return os.path.relpath(arg, ROOT) if arg.startswith(ROOT) else arg


def describe_exit_status(returncode: int) -> str:
    """``subprocess`` return code in words: ``exit code 3``, or the signal that killed the process
    (``killed by signal 11 (SIGSEGV)``), which leaves no Python traceback in the log."""
    if returncode >= 0:
        return f"exit code {returncode}"
    try:
        name = f" ({signal.Signals(-returncode).name})"
    except ValueError:
        name = ""
    return f"killed by signal {-returncode}{name}"


def run_training(
    config: str,
    output_dir: str,
    overrides: Sequence[str],
    label: str,
    env: Optional[Mapping[str, str]] = None,
    *,
    extra_args: Sequence[str] = (),
    prefix: str = "run",
) -> float:
    """Train one model with ``tools/lazyconfig_train_net.py`` in a subprocess; return its wall time (s).

    Args:
        config: LazyConfig file, absolute or relative to the repository root (the subprocess runs there).
        output_dir: ``train.output_dir`` of the run; when it holds ``last_checkpoint`` the run is
            started with ``--resume`` (an interrupted run continues, a finished one is not redone).
        overrides: ``key=value`` overrides appended after ``train.output_dir=...``.
        label: short name of the run in the progress lines.
        env: extra environment variables for the subprocess, added to ``os.environ``
            (e.g. ``{"KD_DATASETS": "/data"}``).
        extra_args: more command-line options of the training script (e.g. ``["--num-gpus", "8"]``).
        prefix: tag at the start of every printed line (``[prefix] label: ...``).

    Prints the command, then ``iter N total_loss X (this run's eta H:MM:SS)`` for every iteration the
    script logs (the eta is Detectron2's estimate for the rest of this run, evaluation excluded). On a
    non-zero exit prints the last 60 lines of the job's output and raises :class:`TrainingRunError`, whose
    message gives the exit code or the signal that killed the job. The job runs with Python's fault
    handler on (``PYTHONFAULTHANDLER=1`` unless the environment sets it), so a crash in native code
    leaves the Python stack of every thread in that tail; a SIGKILL (e.g. the kernel's OOM killer)
    leaves nothing but its signal.
    """
    if not os.path.isfile(TRAIN_SCRIPT):
        raise FileNotFoundError(
            f"Training script {TRAIN_SCRIPT} not found: kd_core.runs needs the repository checkout "
            "(pip install -e .), not a copy of the package alone."
        )
    cmd = [sys.executable, TRAIN_SCRIPT, "--config-file", config, *extra_args, f"train.output_dir={output_dir}"]
    cmd += list(overrides)
    if os.path.isfile(os.path.join(output_dir, "last_checkpoint")):
        cmd.insert(2, "--resume")  # a finished run is not redone; an interrupted one continues
    print(f"[{prefix}] {label}: {' '.join(_display(c) for c in cmd[1:])}", flush=True)
    # PYTHONFAULTHANDLER: a crash in native code (SIGSEGV, SIGABRT, ...) prints every thread's Python
    # stack to the job's output before the process dies, so the log tail shows where it happened.
    full_env = {**os.environ, "PYTHONFAULTHANDLER": os.environ.get("PYTHONFAULTHANDLER", "1")}
    full_env.update({k: str(v) for k, v in (env or {}).items()})
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=full_env)
    tail: List[str] = []
    for line in proc.stdout:
        tail = (tail + [line])[-_LOG_TAIL_LINES:]
        if " iter: " in line and "eta:" in line:
            parts = line.split()
            it = parts[parts.index("iter:") + 1]
            loss = parts[parts.index("total_loss:") + 1] if "total_loss:" in parts else "?"
            eta = line.split("eta:", 1)[1].split("iter:", 1)[0].strip()  # "0:02:50", "1 day, 2:03:04"
            print(f"[{prefix}] {label}: iter {it} total_loss {loss} (this run's eta {eta})", flush=True)
    returncode = proc.wait()
    if returncode != 0:
        sys.stdout.write("".join(tail))
        raise TrainingRunError(
            f"[{prefix}] {label} failed: {describe_exit_status(returncode)} (see the log above and {output_dir}/log.txt)"
        )
    return time.perf_counter() - start


def _metrics_rows(output_dir: str) -> List[dict]:
    path = os.path.join(output_dir, "metrics.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No metrics.json in {output_dir}: the run has not logged anything (or is not a run dir).")
    rows = []
    with open(path) as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}, line {number}: not a JSON object ({e}).") from None
            if not isinstance(row, dict):
                raise ValueError(f"{path}, line {number}: expected a JSON object, got {type(row).__name__}.")
            rows.append(row)
    return rows


def final_coco_metrics(output_dir: str) -> Dict[str, float]:
    """The last ``bbox/*`` evaluation row of ``output_dir/metrics.json``.

    Returns ``{"AP", "AP50", "AP75", "APs", "APm", "APl"}`` (COCO percentages); a metric the row
    lacks (or a run with no evaluation at all) is NaN. Raises ``FileNotFoundError`` without metrics.json.
    """
    last: dict = {}
    for row in _metrics_rows(output_dir):
        if "bbox/AP" in row:
            last = row
    return {m: last.get(f"bbox/{m}", float("nan")) for m in COCO_BOX_METRICS}


def coco_metric_history(output_dir: str) -> List[Tuple[int, Dict[str, float]]]:
    """Every COCO box evaluation of a run: ``[(iteration, {"AP": ..., ..., "APl": ...}), ...]``.

    Sorted by iteration; when a resumed run logged an iteration twice, the later row wins.
    Missing metrics are NaN. Iterations follow Detectron2 (see the module docstring).
    """
    by_iter: Dict[int, Dict[str, float]] = {}
    for row in _metrics_rows(output_dir):
        if "bbox/AP" in row:
            if "iteration" not in row:
                raise ValueError(f"{output_dir}/metrics.json: an evaluation row has no 'iteration': {row}")
            by_iter[int(row["iteration"])] = {m: row.get(f"bbox/{m}", float("nan")) for m in COCO_BOX_METRICS}
    return sorted(by_iter.items())


def zero_ap_without_detections(metrics: Mapping[str, float]) -> Dict[str, float]:
    """``metrics`` with every value 0.0 when every value is NaN, else unchanged.

    Detectron2's COCOEvaluator reports NaN for all metrics when the model made no detection at
    all (e.g. early in training, every score under the test threshold); the AP of such a model is
    0. A single NaN among numbers (e.g. APl of a dataset without large objects) is kept.
    """
    values = dict(metrics)
    if values and all(isinstance(v, float) and math.isnan(v) for v in values.values()):
        return {k: 0.0 for k in values}
    return values


def run_is_complete(output_dir: str, max_iter: int) -> bool:
    """True when ``output_dir`` holds ``model_final.pth`` and an evaluation logged at iteration
    ``>= max_iter`` (the one after the last training iteration)."""
    if not os.path.isfile(os.path.join(output_dir, "model_final.pth")):
        return False
    try:
        history = coco_metric_history(output_dir)
    except (FileNotFoundError, ValueError):
        return False
    return bool(history) and history[-1][0] >= max_iter


def copypaste_metrics(log_text: str, task: str = "bbox") -> Dict[str, float]:
    """The metrics of ``task`` from Detectron2's ``print_csv_format`` lines in a log::

        ... copypaste: Task: bbox
        ... copypaste: AP,AP50,AP75,APs,APm,APl
        ... copypaste: 37.4012,56.1000,...

    The last block of ``task`` wins. Raises ``ValueError`` when the log has none.
    """
    lines = [l.split("copypaste: ", 1)[1].strip() for l in log_text.splitlines() if "copypaste: " in l]
    found = None
    for i, line in enumerate(lines):
        if line == f"Task: {task}" and i + 2 < len(lines):
            names, values = lines[i + 1].split(","), lines[i + 2].split(",")
            if len(names) != len(values):
                raise ValueError(f"copypaste block of task '{task}' has {len(names)} names but {len(values)} values.")
            found = {n: (float(v) if v.lower() != "nan" else math.nan) for n, v in zip(names, values)}
    if found is None:
        raise ValueError(f"No 'copypaste: Task: {task}' block (Detectron2's print_csv_format) in the log.")
    return found
