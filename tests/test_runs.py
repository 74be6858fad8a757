"""kd_core.runs (metrics parsing, training subprocess), tools/benchmark_kd_gain.py (plan, overrides,
aggregation; nothing is trained) and tools/plot_results.py (file names, plots of fake results)."""
import copy
import importlib
import json
import math
import os
import re
import sys
import textwrap

import pytest
import torch

from kd_core import runs
from kd_core.config import apply_overrides_strict
from kd_core.runs import (
    COCO_BOX_METRICS,
    TrainingRunError,
    coco_metric_history,
    copypaste_metrics,
    final_coco_metrics,
    run_is_complete,
    run_training,
    zero_ap_without_detections,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))
bench = importlib.import_module("benchmark_kd_gain")

SAFE_FILE_NAME = re.compile(r"^[A-Za-z0-9._-]+$")


def _eval_row(iteration, ap, **extra):
    row = {f"bbox/{m}": ap + i for i, m in enumerate(COCO_BOX_METRICS)}
    row.update({"iteration": iteration, "bbox/AP-RBC": 1.0})
    row.update(extra)
    return row


def _write_metrics(folder, rows, final=True):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "metrics.json"), "w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    if final:
        open(os.path.join(folder, "model_final.pth"), "wb").close()


# --------------------------------------------------------------------------- kd_core.runs: parsing


def test_metrics_history_final_and_completion(tmp_path):
    d = str(tmp_path / "run")
    rows = [
        {"iteration": 19, "total_loss": 1.0},
        _eval_row(99, 1.0),
        {"iteration": 119, "total_loss": 0.9},
        _eval_row(199, 2.0),
        _eval_row(99, 1.5),  # a resumed run logged iteration 99 again: the later row wins
        {"iteration": 299, "total_loss": 0.8},
        _eval_row(300, 3.0),
        {"iteration": 300, "lr": 0.001},  # a later non-eval row does not hide the last evaluation
    ]
    _write_metrics(d, rows)
    history = coco_metric_history(d)
    assert [it for it, _ in history] == [99, 199, 300]
    assert history[0][1]["AP"] == 1.5 and history[1][1]["AP50"] == 3.0
    assert set(history[0][1]) == set(COCO_BOX_METRICS)
    assert final_coco_metrics(d) == {m: 3.0 + i for i, m in enumerate(COCO_BOX_METRICS)}
    assert run_is_complete(d, 300)
    assert not run_is_complete(d, 400)
    os.remove(os.path.join(d, "model_final.pth"))
    assert not run_is_complete(d, 300)


def test_metrics_missing_values_and_bad_files(tmp_path):
    d = str(tmp_path / "run")
    _write_metrics(d, [{"iteration": 9, "bbox/AP": 4.0, "bbox/AP50": 9.0}])
    final = final_coco_metrics(d)
    assert final["AP"] == 4.0 and math.isnan(final["APl"])
    _write_metrics(d, [{"iteration": 9, "total_loss": 1.0}])
    assert all(math.isnan(v) for v in final_coco_metrics(d).values())  # no evaluation yet
    assert coco_metric_history(d) == [] and not run_is_complete(d, 10)
    with open(os.path.join(d, "metrics.json"), "a") as f:
        f.write("{not json\n")
    with pytest.raises(ValueError, match="line 2"):
        coco_metric_history(d)
    with pytest.raises(FileNotFoundError, match="metrics.json"):
        final_coco_metrics(str(tmp_path / "nothing"))


def test_zero_ap_without_detections():
    nan = float("nan")
    assert zero_ap_without_detections({m: nan for m in COCO_BOX_METRICS}) == {m: 0.0 for m in COCO_BOX_METRICS}
    some = zero_ap_without_detections({"AP": 3.0, "APl": nan})
    assert some["AP"] == 3.0 and math.isnan(some["APl"])  # a NaN among numbers is kept


def test_copypaste_metrics():
    log = textwrap.dedent(
        """\
        [11/21 06:31:31] d2.evaluation.testing INFO: copypaste: Task: bbox
        [11/21 06:31:31] d2.evaluation.testing INFO: copypaste: AP,AP50,AP75,APs,APm,APl
        [11/21 06:31:31] d2.evaluation.testing INFO: copypaste: 1.0000,2.0000,3.0000,4.0000,5.0000,nan
        [11/21 06:35:00] d2.evaluation.testing INFO: copypaste: Task: bbox
        [11/21 06:35:00] d2.evaluation.testing INFO: copypaste: AP,AP50,AP75,APs,APm,APl
        [11/21 06:35:00] d2.evaluation.testing INFO: copypaste: 11.5000,22.0000,33.0000,4.0000,5.0000,6.0000
        """
    )
    got = copypaste_metrics(log)
    assert got == {"AP": 11.5, "AP50": 22.0, "AP75": 33.0, "APs": 4.0, "APm": 5.0, "APl": 6.0}
    assert math.isnan(copypaste_metrics("\n".join(log.splitlines()[:3]))["APl"])
    with pytest.raises(ValueError, match="copypaste"):
        copypaste_metrics("no evaluation here")


# --------------------------------------------------------------------------- kd_core.runs: subprocess

_FAKE_TRAIN = """\
import json, os, sys
out = [a.split("=", 1)[1] for a in sys.argv if a.startswith("train.output_dir=")][0]
os.makedirs(out, exist_ok=True)
with open(os.path.join(out, "argv.json"), "w") as f:
    json.dump({"argv": sys.argv[1:], "cwd": os.getcwd(), "env": os.environ.get("KD_TEST_VAR")}, f)
print("[11/21 06:31:31] d2.utils.events INFO:  eta: 0:02:50  iter: 19  total_loss: 1.228  loss_cls: 0.7")
print("[11/21 06:31:40] d2.utils.events INFO:  eta: 1 day, 2:03:04  iter: 39  loss_cls: 0.5")
for i in range(70):
    print(f"log line {i}")
sys.stdout.flush()
if "crash=1" in sys.argv:
    os.kill(os.getpid(), 11)
sys.exit(3 if "fail=1" in sys.argv else 0)
"""


def test_run_training_command_progress_resume_and_failure(tmp_path, monkeypatch, capsys):
    script = tmp_path / "fake_train.py"
    script.write_text(_FAKE_TRAIN)
    monkeypatch.setattr(runs, "TRAIN_SCRIPT", str(script))
    out = str(tmp_path / "run")

    seconds = run_training("cfg.py", out, ["a=1"], "my run", env={"KD_TEST_VAR": "x"}, prefix="t")
    assert seconds > 0
    with open(os.path.join(out, "argv.json")) as f:
        seen = json.load(f)
    assert seen["argv"] == ["--config-file", "cfg.py", f"train.output_dir={out}", "a=1"]
    assert seen["cwd"] == runs.ROOT and seen["env"] == "x"
    printed = capsys.readouterr().out
    assert "[t] my run: iter 19 total_loss 1.228 (this run's eta 0:02:50)" in printed
    assert "[t] my run: iter 39 total_loss ? (this run's eta 1 day, 2:03:04)" in printed
    assert "log line" not in printed  # only progress lines on success

    open(os.path.join(out, "last_checkpoint"), "w").close()
    run_training("cfg.py", out, ["a=1"], "my run", extra_args=["--num-gpus", "2"], prefix="t")
    with open(os.path.join(out, "argv.json")) as f:
        assert json.load(f)["argv"] == ["--resume", "--config-file", "cfg.py", "--num-gpus", "2", f"train.output_dir={out}", "a=1"]

    capsys.readouterr()
    with pytest.raises(TrainingRunError, match=r"\[t\] bad run failed: exit code 3 \(see .*log.txt"):
        run_training("cfg.py", out, ["fail=1"], "bad run", prefix="t")
    printed = capsys.readouterr().out
    assert "log line 69" in printed and "log line 9\n" not in printed  # the last 60 lines
    # A crash (here SIGSEGV): the error names the signal, and the fault handler's stack of the
    # crashed job is in the printed tail (the job runs with PYTHONFAULTHANDLER=1).
    with pytest.raises(TrainingRunError, match=r"\[t\] bad run failed: killed by signal 11 \(SIGSEGV\)"):
        run_training("cfg.py", out, ["crash=1"], "bad run", prefix="t")
    printed = capsys.readouterr().out
    assert "log line 69" in printed and "Fatal Python error: Segmentation fault" in printed
    assert re.search(r'File ".*fake_train.py", line \d+ in <module>', printed), printed[-1500:]


# --------------------------------------------------------------------------- benchmark_kd_gain: plan


def _args(*argv):
    return bench.resolve_args(bench.build_parser().parse_args(list(argv)))


_CONFIG_CACHE = {}


def _load(config, overrides):
    from detectron2.config import LazyConfig

    path = config if os.path.isabs(config) else os.path.join(ROOT, config)
    if path not in _CONFIG_CACHE:
        _CONFIG_CACHE[path] = LazyConfig.load(path)
    return apply_overrides_strict(copy.deepcopy(_CONFIG_CACHE[path]), overrides)


def _num_classes(model_cfg, family):
    return model_cfg.roi_heads.num_classes if family == "rcnn" else model_cfg.num_classes


def test_tiny_plan_coco128_overrides_apply_to_every_config(tmp_path):
    import detectron2.data.transforms as T

    args = _args("--dry-run", "--datasets", "coco128", "--seeds", "0", "--ablations", "--output-dir", str(tmp_path))
    assert args.iters == 300 and args.teacher_iters == 400 and args.eval_period == 100
    entries = bench.build_plan(args)
    assert {e.method for e in entries} == set(bench.METHOD_NAMES)
    for e in entries:
        spec = bench.METHODS["tiny"][e.method]
        run = e.run
        cfg = _load(run.config, run.overrides)  # strict: every key exists
        assert cfg.dataloader.train.dataset.names == "coco128_train"
        assert cfg.dataloader.test.dataset.names == "coco128_val"
        assert cfg.train.seed == 0 and cfg.train.eval_period == 100
        if e.variant == "teacher":
            assert cfg.train.max_iter == 400 and _num_classes(cfg.model, spec.family) == 80
            continue
        assert cfg.train.max_iter == 300
        if e.variant == "student":
            assert _num_classes(cfg.model, spec.family) == 80
            continue
        assert _num_classes(cfg.model.student, spec.family) == 80
        assert _num_classes(cfg.model.teacher.model, spec.family) == 80
        assert cfg.model.teacher.weights.endswith("model_final.pth")
        assert os.path.dirname(cfg.model.teacher.weights).startswith(str(tmp_path))
        if spec.family == "detr":
            assert list(cfg.dataloader.train.mapper.augmentation.short_edge_lengths) == [224, 256, 288]
            assert cfg.dataloader.test.mapper.augmentation.short_edge_length == 256
            expected_off = {"kd": set(), "logits_only": {"feature_kd", "query_kd"},
                            "feature_only": {"logits_kd", "query_kd"}, "query_only": {"logits_kd", "feature_kd"}}[e.variant]
            off = {k for k in ("logits_kd", "feature_kd") if cfg.model[k] is None}
            off |= {"query_kd"} if cfg.model.query_kd is False else set()
            assert off == expected_off, (e.variant, off)
        else:
            for split in ("train", "test"):
                resize = cfg.dataloader[split].mapper.augmentations[0]
                assert resize._target_ is T.ResizeShortestEdge and resize.max_size == 384
            if e.method.startswith("scalekd"):
                assert cfg.dataloader.train.mapper.teacher_scale == 1.0
                assert cfg.model.get("use_csa", True) is (e.variant != "sdf_only")
                assert (cfg.model.distillers.sdf.weight == 0.0) is (e.variant == "csa_only")


def test_tiny_plan_shares_runs_and_dry_run_prints_commands(tmp_path, capsys):
    args = _args("--dry-run", "--methods", "scalekd_retinanet", "fitnet", "--datasets", "bccd", "--seeds", "0", "1",
                 "--output-dir", str(tmp_path))
    entries = bench.build_plan(args)
    runs_ = bench.unique_runs(entries)
    # RetinaNet R34 teacher and R18 baselines are shared by scalekd_retinanet and fitnet
    assert len(runs_) == 1 + 2 + 2 * 2
    teacher = [e.run for e in entries if e.variant == "teacher"]
    assert teacher[0] is teacher[1]
    assert [r.label for r in runs_].index(teacher[0].label) == 0  # the teacher runs first
    assert len({r.output_dir for r in runs_}) == len(runs_)
    assert all(SAFE_FILE_NAME.match(os.path.basename(r.output_dir)) for r in runs_)
    # so are the Faster R-CNN and FCOS pairs' by scalekd_faster_rcnn / scalekd_fcos and their FitNet controls
    for detector in ("faster_rcnn", "fcos"):
        pair = bench.build_plan(_args("--dry-run", "--methods", f"scalekd_{detector}", f"fitnet_{detector}", "--datasets",
                                      "bccd", "--seeds", "0", "--output-dir", str(tmp_path)))
        by = {(e.method, e.variant): e.run for e in pair}
        for variant in ("teacher", "student"):
            assert by[(f"scalekd_{detector}", variant)] is by[(f"fitnet_{detector}", variant)]
        assert len(bench.unique_runs(pair)) == 4

    # a different teacher gives the distilled runs new folders (no stale reuse); the rest is unchanged
    other = bench.build_plan(_args("--dry-run", "--methods", "scalekd_retinanet", "fitnet", "--datasets", "bccd", "--seeds", "0", "1",
                                   "--output-dir", str(tmp_path), "--teacher-weights", "fitnet=/x/teacher.pth"))
    dirs = {(e.method, e.variant, e.seed): e.run.output_dir for e in entries}
    other_dirs = {(e.method, e.variant, e.seed): e.run.output_dir for e in other}
    changed = {k for k in dirs if dirs[k] != other_dirs[k]}
    assert changed == {("fitnet", "teacher", 0), ("fitnet", "kd", 0), ("fitnet", "kd", 1)}
    assert [e.run.kind for e in other if e.method == "fitnet" and e.variant == "teacher"] == ["eval_teacher"]
    # a given ScaleKD teacher is evaluated at the distilled runs' teacher scale (the view they distil from)
    for scale in ("1", "2"):
        plan = bench.build_plan(_args("--dry-run", "--methods", "scalekd_retinanet", "--datasets", "bccd", "--seeds", "0",
                                      "--output-dir", str(tmp_path), "--scalekd-teacher-scale", scale,
                                      "--teacher-weights", "scalekd_retinanet=/x/teacher.pth"))
        by = {e.variant: e.run for e in plan}
        assert by["teacher"].kind == "eval_teacher"
        assert f"dataloader.train.mapper.teacher_scale={scale}" in by["teacher"].overrides
        assert f"dataloader.train.mapper.teacher_scale={scale}" in by["kd"].overrides

    bench.main(["--dry-run", "--methods", "scalekd_faster_rcnn", "--datasets", "bccd", "--seeds", "0",
                "--datasets-root", str(tmp_path), "--output-dir", str(tmp_path / "o")])
    printed = capsys.readouterr().out
    assert "model.student.roi_heads.num_classes=3" in printed
    assert "model.teacher.model.roi_heads.num_classes=3" in printed
    assert f"KD_DATASETS={tmp_path} python tools/lazyconfig_train_net.py" in printed
    assert not os.path.exists(tmp_path / "o")  # a dry run writes nothing


def test_kd_opts_change_only_the_distilled_runs(tmp_path):
    common = ("--dry-run", "--methods", "scalekd_faster_rcnn", "--datasets", "kd_synthetic", "--seeds", "0", "1",
              "--ablations", "--output-dir", str(tmp_path))
    base = {(e.variant, e.seed): e.run for e in bench.build_plan(_args(*common))}
    swept = {(e.variant, e.seed): e.run
             for e in bench.build_plan(_args(*common, "--kd-opts", "model.distillers.sdf.weight=0.01",
                                             "--opts", "train.amp.enabled=True"))}
    amp_only = {(e.variant, e.seed): e.run for e in bench.build_plan(_args(*common, "--opts", "train.amp.enabled=True"))}
    for key, run in swept.items():
        cfg = _load(run.config, run.overrides)
        assert cfg.train.amp.enabled is True  # --opts: every run
        if key[0] in ("teacher", "student"):
            assert run.output_dir == amp_only[key].output_dir  # reused by a sweep
        else:
            assert run.output_dir not in (amp_only[key].output_dir, base[key].output_dir)
            # the ablation's own switch wins: CSA only stays CSA only
            assert cfg.model.distillers.sdf.weight == (0.0 if key[0] == "csa_only" else 0.01)


def test_kd_name_renames_the_distilled_variant_not_its_runs(tmp_path):
    common = ("--dry-run", "--methods", "scalekd_faster_rcnn", "--datasets", "bccd", "--seeds", "0", "1", "--ablations",
              "--output-dir", str(tmp_path))
    default = {(e.variant, e.seed): e.run.output_dir for e in bench.build_plan(_args(*common))}
    named = {(e.variant, e.seed): e.run.output_dir for e in bench.build_plan(_args(*common, "--kd-name", "sdf_c5"))}
    assert {v for v, _ in named} == {"teacher", "student", "sdf_c5", "sdf_only", "csa_only"}
    for (variant, seed), folder in named.items():
        assert folder == default[("kd" if variant == "sdf_c5" else variant, seed)]  # the same runs, reused
    assert bench._model_names(_args(*common, "--kd-name", "sdf_c5"))[("scalekd_faster_rcnn", "sdf_c5")] == (
        "Faster R-CNN R18 + scalekd_faster_rcnn (sdf_c5)")
    for taken in ("student", "csa_only", "a b", ""):
        with pytest.raises(SystemExit, match="--kd-name"):
            _args(*common, "--kd-name", taken)


def test_benchmark_option_after_opts_is_an_early_error(tmp_path):
    with pytest.raises(SystemExit, match="'--dry-run' was read as a config override"):
        _args("--output-dir", str(tmp_path), "--opts", "train.amp.enabled=True", "--dry-run")


def test_missing_dataset_is_an_early_error(tmp_path):
    with pytest.raises(SystemExit, match="bccd.*datasets-root"):
        bench.main(["--datasets", "bccd", "--datasets-root", str(tmp_path), "--output-dir", str(tmp_path / "o")])


def test_real_plan_generated_student_config_and_teacher_checks(tmp_path):
    from detectron2.config import LazyConfig
    from detectron2.data import DatasetMapper

    args = _args("--scale", "real", "--dry-run", "--methods", "scalekd_faster_rcnn", "detrdistill", "--seeds", "0",
                 "--iters", "100", "--output-dir", str(tmp_path))
    assert args.datasets == ["coco"] and args.eval_period is None and args.scalekd_teacher_scale is None
    entries = bench.build_plan(args)
    by = {(e.method, e.variant): e.run for e in entries}
    assert by[("scalekd_faster_rcnn", "teacher")].kind == "eval_teacher"
    assert any(o.startswith("model.teacher.weights=detectron2://") for o in by[("scalekd_faster_rcnn", "teacher")].overrides)
    assert by[("detrdistill", "teacher")].kind == "train"

    student = by[("scalekd_faster_rcnn", "student")]
    assert student.generated_config is not None
    os.makedirs(os.path.dirname(student.config))
    with open(student.config, "w") as f:
        f.write(student.generated_config)
    cfg = apply_overrides_strict(LazyConfig.load(student.config), student.overrides)
    assert cfg.model.roi_heads.num_classes == 80 and cfg.train.max_iter == 100
    assert cfg.dataloader.train.mapper._target_ is DatasetMapper
    assert "teacher_scale" not in cfg.dataloader.train.mapper
    kd = by[("scalekd_faster_rcnn", "kd")]
    cfg = _load(kd.config, kd.overrides)
    assert cfg.model.student.roi_heads.num_classes == 80 and cfg.dataloader.train.mapper.teacher_scale == 2.0

    with pytest.raises(SystemExit, match="COCO teacher"):
        bench.build_plan(_args("--scale", "real", "--dry-run", "--methods", "scalekd_retinanet", "--datasets", "bccd"))
    with pytest.raises(SystemExit, match="fitnet"):
        bench.build_plan(_args("--scale", "real", "--dry-run", "--methods", "fitnet"))


# --------------------------------------------------------------------------- benchmark_kd_gain: aggregation


def _fake_rows():
    rows = []
    for seed, (student_ap, kd_ap) in enumerate([(10.0, 12.0), (11.0, 14.0), (12.0, 13.0)]):
        for variant, ap in (("student", student_ap), ("kd", kd_ap)):
            rows.append({"method": "m", "dataset": "d", "variant": variant, "seed": seed,
                         "metrics": {k: ap + (0.0 if k != "APl" else math.nan) for k in COCO_BOX_METRICS}})
    rows.append({"method": "m", "dataset": "d", "variant": "teacher", "seed": 0, "metrics": {k: 20.0 for k in COCO_BOX_METRICS}})
    return rows


def test_aggregate_mean_std_and_paired_gain():
    summary = {s["variant"]: s for s in bench.aggregate(_fake_rows())}
    assert summary["student"]["n"] == 3 and summary["student"]["mean"]["AP"] == pytest.approx(11.0)
    assert summary["student"]["std"]["AP"] == pytest.approx(1.0)  # sample std of 10, 11, 12
    assert summary["kd"]["mean"]["AP"] == pytest.approx(13.0)
    assert summary["kd"]["gain_mean"]["AP"] == pytest.approx(2.0)  # gains 2, 3, 1
    assert summary["kd"]["gain_std"]["AP"] == pytest.approx(1.0)
    assert summary["kd"]["gain_n"] == 3
    assert math.isnan(summary["kd"]["mean"]["APl"])
    assert summary["teacher"]["n"] == 1 and math.isnan(summary["teacher"]["std"]["AP"])
    assert "gain_mean" not in summary["teacher"] and "gain_mean" not in summary["student"]
    table = bench.markdown_table(bench.aggregate(_fake_rows()), {("m", "kd"): "R18 + m"})
    assert "| m | R18 + m | 3 | 13.0 ± 1.0 |" in table and "+2.0 ± 1.0 |" in table
    assert "| m | teacher | 1 | 20.0 |" in table
    with pytest.raises(ValueError, match="Duplicate"):
        bench.aggregate(_fake_rows() + _fake_rows()[:1])
    assert bench.mean_std([]) == pytest.approx((math.nan, math.nan), nan_ok=True)


# --------------------------------------------------------------------------- plot_results


def test_plots_from_fake_benchmark_results(tmp_path):
    plot = importlib.import_module("plot_results")
    rows = _fake_rows()
    for r in rows:
        r["output_dir"] = str(tmp_path / f"{r['variant']}-seed{r['seed']}")
        ap = r["metrics"]["AP"]
        _write_metrics(r["output_dir"], [_eval_row(99, ap / 2), _eval_row(300, ap)])
    results = {"runs": rows, "summary": bench._json_safe(bench.aggregate(rows)), "model_names": {"m/kd": "R18 + m"}}
    written = plot.plot_benchmark(json.loads(json.dumps(results)), str(tmp_path / "plots"))
    names = sorted(os.path.basename(p) for p in written)
    assert names == ["ap_gain_d.png", "ap_vs_iter_m_d.png"]
    assert all(os.path.getsize(p) > 1000 for p in written)
    # ablations: dashed, each its own colour, none of the teacher's / student's / distilled student's
    ablations = ["sdf_only", "csa_only"]
    styles = [plot.variant_style(v, ablations) for v in ["teacher", "student", "kd"] + ablations]
    assert len({c for c, _ in styles}) == 5 and [st for _, st in styles] == ["-", "-", "-", "--", "--"]
    assert plot.safe_name("ap gain", "coco/128", "x:1") == "ap-gain_coco-128_x-1"
    assert all(SAFE_FILE_NAME.match(plot.safe_name(*parts)) for parts in [("a b",), ("é", "1"), ("x", "")])
    its, mean, std = plot.mean_curve([coco_metric_history(r["output_dir"]) for r in rows if r["variant"] == "kd"])
    assert list(its) == [99, 300] and mean[-1] == pytest.approx(13.0) and std[-1] == pytest.approx(1.0)


def test_plots_of_a_method_and_its_control_merged_from_two_results(tmp_path):
    """Two benchmark invocations on the same teacher and baselines (FitNet and SDF, each with its own
    --kd-name), drawn as one method: shared runs once, paired gains recomputed, conflicts an error."""
    plot = importlib.import_module("plot_results")
    shared = [r for r in _fake_rows() if r["variant"] != "kd"]
    for r in shared:
        r["output_dir"] = str(tmp_path / f"{r['variant']}-seed{r['seed']}")
        _write_metrics(r["output_dir"], [_eval_row(300, r["metrics"]["AP"])])
    files = []
    for method, name, offset in (("fitnet_x", "fitnet_p2p5", 4.0), ("scalekd_x", "sdf_c5", -1.0)):
        rows = [dict(r, method=method) for r in shared]
        for r in (r for r in shared if r["variant"] == "student"):
            metrics = {k: v + offset for k, v in r["metrics"].items()}
            out = str(tmp_path / f"{name}-seed{r['seed']}")
            _write_metrics(out, [_eval_row(300, metrics["AP"])])
            rows.append(dict(r, method=method, variant=name, metrics=metrics, output_dir=out))
        results = {"runs": bench._json_safe(rows), "summary": bench._json_safe(bench.aggregate(rows)),
                   "model_names": {f"{method}/{name}": f"R18 + {name}", f"{method}/student": "R18"}}
        files.append(str(tmp_path / f"results_{name}.json"))
        with open(files[-1], "w") as f:
            json.dump(results, f)
    merged = plot.merge_results([json.load(open(f)) for f in files], as_method="x")
    summary = {s["variant"]: s for s in merged["summary"]}
    assert sorted(summary) == ["fitnet_p2p5", "sdf_c5", "student", "teacher"]
    assert summary["student"]["n"] == 3 and summary["teacher"]["n"] == 1  # each shared run once
    assert summary["fitnet_p2p5"]["gain_mean"]["AP"] == pytest.approx(4.0)
    assert summary["sdf_c5"]["gain_mean"]["AP"] == pytest.approx(-1.0)
    assert merged["model_names"]["x/sdf_c5"] == "R18 + sdf_c5"
    written = plot.main(files + ["--as-method", "x", "--output-dir", str(tmp_path / "plots")])
    assert sorted(os.path.basename(p) for p in written) == ["ap_gain_d.png", "ap_vs_iter_x_d.png"]
    # without --as-method each method keeps its own curve plot
    written = plot.main(files + ["--output-dir", str(tmp_path / "plots2")])
    assert sorted(os.path.basename(p) for p in written) == ["ap_gain_d.png", "ap_vs_iter_fitnet_x_d.png", "ap_vs_iter_scalekd_x_d.png"]
    # the same variant name for two different runs: the benchmark runs need their own --kd-name
    clash = json.load(open(files[1]))
    for r in clash["runs"]:
        r["variant"] = "fitnet_p2p5" if r["variant"] == "sdf_c5" else r["variant"]
    with pytest.raises(SystemExit, match="--kd-name"):
        plot.merge_results([json.load(open(files[0])), clash], as_method="x")
    with pytest.raises(SystemExit, match="no results.json"):
        plot.main([files[0], str(tmp_path / "missing")])


# --------------------------------------------------------------------------- scalekd.csa visualisation hook


def test_csa_attention_weights_are_the_weights_forward_applies():
    from scalekd.csa import MultiScaleCrossAttention

    torch.manual_seed(0)
    m = MultiScaleCrossAttention(32, 16, num_heads=4, num_groups=2, level_rates={"p3": (4, 2)}, zero_init_residual=False).eval()
    s, t = torch.randn(2, 32, 5, 6), torch.randn(2, 16, 10, 12)
    weights = m.attention_weights(s, t, "p3")
    assert [tuple(w.shape) for w in weights] == [(2, 2, 30, 3, 3), (2, 2, 30, 5, 6)]
    assert torch.allclose(weights[1].sum((-2, -1)), torch.ones(2, 2, 30), atol=1e-5)
    # rebuild forward() from the weights and the module's value path
    b, c, h, w = s.shape
    tokens = s.flatten(2).transpose(1, 2)
    outs = []
    for g, rate in enumerate((4, 2)):
        x = m.reductions[f"group{g}_rate{rate}"](t)
        hr, wr = x.shape[-2:]
        v = m.kv_proj[g](x.flatten(2).transpose(1, 2)).chunk(2, dim=-1)[1]
        v = v + m.value_pos[g](v.transpose(1, 2).reshape(b, m.group_dim, hr, wr)).flatten(2).transpose(1, 2)
        v = v.reshape(b, hr * wr, 2, m.head_dim).transpose(1, 2)
        outs.append(weights[g].flatten(-2) @ v)
    y = tokens + m.out_proj(torch.cat(outs, dim=1).transpose(1, 2).reshape(b, h * w, c))
    y = y + m.ffn(m.ffn_norm(y))
    with torch.no_grad():
        expected = m(s, t, "p3")
    assert torch.allclose(y.transpose(1, 2).reshape(b, c, h, w), expected, atol=1e-5)


def test_run_done_for_finished_pruned_and_unfinished_runs(tmp_path):
    d = str(tmp_path / "run")
    run = bench.Run(output_dir=d, config="c.py", overrides=[], label="r", max_iter=300)
    assert not run.done()
    _write_metrics(d, [_eval_row(99, 1.0), _eval_row(300, 2.0)], final=False)
    assert not run.done()  # evaluated but neither a final checkpoint nor a pruned record
    with open(os.path.join(d, bench.RUN_INFO), "w") as f:
        json.dump({"seconds": 1.0, "pruned": True}, f)
    assert run.done() and run.metrics()["AP"] == 2.0
    _write_metrics(d, [_eval_row(99, 1.0)], final=False)
    assert not run.done()  # pruned record, but the final evaluation is missing
    assert bench.schedule_overrides(300, 100, 1) == ["train.max_iter=300", "train.checkpointer.period=301", "train.eval_period=100", "train.seed=1"]


def test_config_digest_follows_the_resolved_contents(tmp_path):
    """Run folders are keyed by the resolved config: editing a config file that the config imports
    gives a new digest (a new run folder), an unchanged config the same one."""
    (tmp_path / "base.py").write_text("solver = dict(lr=0.1, max_iter=10)\n")
    (tmp_path / "cfg.py").write_text("from .base import solver\n\nsolver.max_iter = 20\n")
    config = str(tmp_path / "cfg.py")
    bench.config_digest.cache_clear()
    first = bench.config_digest(config)
    bench.config_digest.cache_clear()
    assert bench.config_digest(config) == first
    (tmp_path / "base.py").write_text("solver = dict(lr=0.2, max_iter=10)\n")
    bench.config_digest.cache_clear()
    assert bench.config_digest(config) != first
    bench.config_digest.cache_clear()


def test_config_digest_follows_constructor_defaults(tmp_path, monkeypatch):
    """A constructor default that the config leaves in place is part of the digest: changing it
    (as the nineteenth session did with ScaleKDDetector(csa_optimizer_fused=True)) gives a new run folder."""
    from detectron2.config import LazyCall as L
    from detectron2.config import LazyConfig

    from kd_core.config import constructor_defaults

    module = tmp_path / "digest_probe_net.py"
    module.write_text("class Net:\n    def __init__(self, width, fused=True, *args, **kwargs):\n        pass\n")
    (tmp_path / "cfg.py").write_text(
        "from detectron2.config import LazyCall as L\nfrom digest_probe_net import Net\n\nmodel = L(Net)(width=4)\nother = dict(x=[L(Net)(width=1, fused=False)])\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(bench, "ROOT", str(tmp_path))  # the probe is "this repository's" class
    config = str(tmp_path / "cfg.py")
    cfg = LazyConfig.load(config)
    assert constructor_defaults(cfg, roots=[str(tmp_path)]) == ["model: digest_probe_net.Net.fused=True"]  # not width, not the set one
    cfg.optimizer = L(torch.optim.SGD)(params=[], lr=0.1)  # PyTorch's defaults: only without roots
    assert any("SGD.momentum=0" in line for line in constructor_defaults(cfg))
    assert constructor_defaults(cfg, roots=[str(tmp_path)]) == ["model: digest_probe_net.Net.fused=True"]
    bench.config_digest.cache_clear()
    first = bench.config_digest(config)
    module.write_text("class Net:\n    def __init__(self, width, fused=False, *args, **kwargs):\n        pass\n")
    monkeypatch.delitem(sys.modules, "digest_probe_net")
    importlib.invalidate_caches()
    bench.config_digest.cache_clear()
    assert bench.config_digest(config) != first
    bench.config_digest.cache_clear()


def test_library_code_digest_and_the_note_on_reused_runs(tmp_path, monkeypatch):
    """The library code digest covers kd_core and the projects' packages, not their configs; a reused
    run says whether it was trained with other library code or with code that was not recorded."""
    for rel in ("kd_core/a.py", "projects/P/pkg/b.py", "projects/P/configs/c.py", "tools/lazyconfig_train_net.py"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x = 1\n")
    monkeypatch.setattr(bench, "ROOT", str(tmp_path))
    first = bench.library_code_digest()
    (tmp_path / "projects/P/configs/c.py").write_text("x = 2\n")
    assert bench.library_code_digest() == first
    (tmp_path / "projects/P/pkg/b.py").write_text("x = 2\n")
    now = bench.library_code_digest()
    assert now != first

    run = bench.Run(output_dir=str(tmp_path / "run"), config="c.py", overrides=[], label="r", max_iter=300)
    os.makedirs(run.output_dir)
    assert "not recorded" in bench._code_note(run)
    info = os.path.join(run.output_dir, bench.RUN_INFO)
    for recorded, note in ((first, "trained with other library code"), (now, "")):
        with open(info, "w") as f:
            json.dump({"seconds": 1.0, "library_code": recorded}, f)
        assert (note in bench._code_note(run)) if note else bench._code_note(run) == ""


# --------------------------------------------------------------------------- quickstart


@pytest.mark.parametrize("method,precision", [("scalekd", "bf16"), ("scalekd_sdf", "fp32"), ("fitnet", "fp32")])
def test_quickstart_runs_three_models_with_overrides_that_exist(method, precision, tmp_path, monkeypatch, capsys):
    from omegaconf import OmegaConf

    quickstart = importlib.import_module("quickstart")
    calls = []
    monkeypatch.setattr(quickstart, "train", lambda config, out, overrides, label: calls.append((config, out, list(overrides))) or 1.0)
    monkeypatch.setattr(quickstart, "final_coco_metrics", lambda d: {m: 1.0 for m in COCO_BOX_METRICS})
    args = ["--method", method, "--output-dir", str(tmp_path), "--iters", "7", "--teacher-iters", "9", "--precision", precision]
    table = quickstart.main(args)
    assert [c[0] for c in calls] == list(quickstart.METHODS[method][:3])
    teacher, student, kd = (_load(config, overrides) for config, _, overrides in calls)  # strict: every key exists
    assert teacher.train.max_iter == 9 and student.train.max_iter == kd.train.max_iter == 7
    assert teacher.train.amp.enabled == student.train.amp.enabled == kd.train.amp.enabled == (precision == "bf16")
    assert teacher.train.channels_last == student.train.channels_last == kd.train.channels_last == (precision == "bf16")
    assert kd.model.teacher.weights == os.path.join(calls[0][1], "model_final.pth")
    # the distilled student is the baseline's architecture, its teacher the trained teacher's, same test data
    assert OmegaConf.to_yaml(kd.model.student) == OmegaConf.to_yaml(student.model)
    assert OmegaConf.to_yaml(kd.model.teacher.model) == OmegaConf.to_yaml(teacher.model)
    assert OmegaConf.to_yaml(kd.dataloader.test) == OmegaConf.to_yaml(student.dataloader.test)
    assert f"student + {method}" in table and f"method {method}, {precision}" in capsys.readouterr().out
    assert open(tmp_path / "results.txt").read() == table + "\n"
    if method.startswith("scalekd"):  # same-resolution mode; the assistant only in the full method
        assert kd.dataloader.train.mapper.teacher_scale == 1.0
        assert kd.model.get("use_csa", True) == (method == "scalekd")


def test_quickstart_default_is_scalekd_sdf():
    quickstart = importlib.import_module("quickstart")
    assert quickstart.DEFAULT_METHOD == "scalekd_sdf" and quickstart.DEFAULT_METHOD in quickstart.METHODS
