"""End-to-end runs of tools/lazyconfig_train_net.py and tools/export_student.py on the tiny CPU configs."""
import copy
import json
import os
import shutil
import statistics
import subprocess
import sys

import pytest
import torch

from file_digest import sha256  # noqa: E402 (tests/ helper)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN = os.path.join(ROOT, "tools", "lazyconfig_train_net.py")
EXPORT = os.path.join(ROOT, "tools", "export_student.py")
GRADIENT_SHARE = os.path.join(ROOT, "tools", "kd_gradient_share.py")
TEACHER_CFG = "configs/tiny/retinanet_r34_tiny_cpu.py"
STUDENT_CFG = "configs/tiny/retinanet_r18_tiny_cpu.py"
KD_CFG = "configs/tiny/retinanet_r34_r18_fitnet_tiny_cpu.py"
# small and fast: 2 images a batch at ~160 px, no periodic evaluation
FAST = [
    "dataloader.train.total_batch_size=2",
    "dataloader.train.mapper.augmentations.0.short_edge_length=[160]",
    "dataloader.test.mapper.augmentations.0.short_edge_length=160",
    "train.log_period=1",
    "train.eval_period=0",
]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    e = dict(os.environ)
    e["KD_SYNTHETIC_ROOT"] = str(tmp_path_factory.mktemp("synthetic") / "kd_synthetic")
    e["OMP_NUM_THREADS"] = "1"
    e["PYTHONPATH"] = ROOT
    return e


def run(args, env, check=True, timeout=600):
    proc = subprocess.run([sys.executable] + args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    out = proc.stdout + proc.stderr
    if check and proc.returncode != 0:
        raise AssertionError(f"command failed ({proc.returncode}): {args}\n{out[-4000:]}")
    return proc.returncode, out


def metrics(output_dir):
    with open(os.path.join(output_dir, "metrics.json")) as f:
        return [json.loads(line) for line in f if line.strip()]


@pytest.fixture(scope="module")
def teacher_checkpoint(tmp_path_factory, env):
    out = str(tmp_path_factory.mktemp("teacher"))
    run([TRAIN, "--config-file", TEACHER_CFG, "train.max_iter=2", f"train.output_dir={out}"] + FAST, env)
    path = os.path.join(out, "model_final.pth")
    assert os.path.isfile(path)
    return path


@pytest.fixture(scope="module")
def kd_run(tmp_path_factory, env, teacher_checkpoint):
    """4 iterations of FitNet KD with the KD weight switched on at iteration 2, then resumed to 6."""
    out = str(tmp_path_factory.mktemp("kd"))
    common = [
        "--config-file",
        KD_CFG,
        f"model.teacher.weights={teacher_checkpoint}",
        f"train.output_dir={out}",
        "train.checkpointer.period=4",
        "model.distillers.feature_mimic.weight.start_iter=2",
    ] + FAST
    run([TRAIN] + common + ["train.max_iter=4"], env)
    first = sha256(os.path.join(out, "model_final.pth"))
    _, log = run([TRAIN, "--resume"] + common + ["train.max_iter=6"], env)
    return out, first, log


def test_kd_training_logs_every_term_and_schedule_survives_resume(kd_run):
    out, _, log = kd_run
    # metrics.json holds window medians; the resumed process starts a fresh history at iteration 4,
    # so its rows show only post-resume values.
    rows = {r["iteration"]: r for r in metrics(out) if "loss_kd_feature_mimic" in r}
    assert sorted(rows) == [0, 1, 2, 3, 4, 5]  # the resumed run continued at iteration 4
    assert all(rows[i]["loss_kd_feature_mimic"] == 0.0 for i in (0, 1))  # before start_iter
    assert all(rows[i]["loss_kd_feature_mimic"] > 0.0 for i in (4, 5))  # schedule still on after resume
    assert all("loss_cls" in r and "loss_box_reg" in r for r in rows.values())
    assert "Starting training from iteration 4" in log
    # kd_loss_share = sum(loss_kd_*) / sum(loss_*); at iteration 4 each window holds one value
    assert all(rows[i]["kd_loss_share"] == 0.0 for i in (0, 1))
    first = rows[4]
    assert first["kd_loss_share"] == pytest.approx(
        first["loss_kd_feature_mimic"] / sum(v for k, v in first.items() if k.startswith("loss_")), rel=1e-5
    )
    assert 0.0 < rows[5]["kd_loss_share"] < 1.0


def test_fresh_run_refuses_to_overwrite_existing_checkpoints(kd_run, env, teacher_checkpoint):
    out, _, _ = kd_run
    before = sha256(os.path.join(out, "model_final.pth"))
    rc, log = run(
        [TRAIN, "--config-file", KD_CFG, f"model.teacher.weights={teacher_checkpoint}", f"train.output_dir={out}"],
        env,
        check=False,
    )
    assert rc != 0 and "already holds a training run" in log
    assert sha256(os.path.join(out, "model_final.pth")) == before


def test_resuming_another_models_checkpoint_is_a_clear_error(env, teacher_checkpoint, tmp_path):
    """--resume in (a copy of) the teacher's output directory with the half-width teacher's config:
    Detectron2 would load the checkpoint with shape warnings, restore its iteration and end at once.
    Nothing there changes: neither the checkpoints nor the directory's config.yaml."""
    out = str(tmp_path / "teacher")
    shutil.copytree(os.path.dirname(teacher_checkpoint), out)
    kept = [name for name in os.listdir(out) if name.endswith(".pth") or name in ("last_checkpoint", "config.yaml")]
    assert "config.yaml" in kept
    before = {name: sha256(os.path.join(out, name)) for name in kept}
    cfg = "configs/tiny/retinanet_r34_w32_tiny_cpu.py"
    rc, log = run([TRAIN, "--resume", "--config-file", cfg, f"train.output_dir={out}", "train.max_iter=4"] + FAST, env, check=False)
    assert rc != 0
    assert f"Cannot resume from {os.path.join(out, 'model_final.pth')}: it is a checkpoint of another model or config" in log
    # the first differences in state-dict order, then a count of the others
    assert "'backbone.fpn_lateral3.weight' has shape (64, 128, 1, 1) in the checkpoint and (64, 64, 1, 1) in the model" in log
    assert "; and 181 more)" in log
    # config.yaml too: Detectron2's default_setup rewrote it with the refused run's config, which was put back
    assert {name: sha256(os.path.join(out, name)) for name in kept} == before
    assert not [name for name in os.listdir(out) if name.endswith(".restoring")]


def test_resume_stopped_by_a_missing_teacher_leaves_the_run_as_it_was(kd_run, env, tmp_path):
    """A resumed run that fails before its checkpoint is loaded never ran with the config that
    Detectron2's default_setup wrote over config.yaml: the old one is put back."""
    out = str(tmp_path / "kd")
    shutil.copytree(kd_run[0], out)
    kept = [name for name in os.listdir(out) if name.endswith(".pth") or name in ("last_checkpoint", "config.yaml")]
    before = {name: sha256(os.path.join(out, name)) for name in kept}
    missing = str(tmp_path / "no_teacher.pth")
    rc, log = run(
        [TRAIN, "--resume", "--config-file", KD_CFG, f"model.teacher.weights={missing}", f"train.output_dir={out}", "train.max_iter=8"]
        + FAST,
        env,
        check=False,
    )
    assert rc != 0 and f"Teacher checkpoint not found: '{missing}'" in log
    assert {name: sha256(os.path.join(out, name)) for name in kept} == before


def test_nan_kd_loss_is_named_and_checkpoints_survive(kd_run, env, teacher_checkpoint):
    out, _, _ = kd_run
    before = sha256(os.path.join(out, "model_final.pth"))
    rc, log = run(
        [
            TRAIN,
            "--resume",
            "--config-file",
            KD_CFG,
            f"model.teacher.weights={teacher_checkpoint}",
            f"train.output_dir={out}",
            "train.max_iter=8",
            "model.distillers.feature_mimic.weight.weight=nan",
        ]
        + FAST,
        env,
        check=False,
    )
    assert rc != 0
    assert "Non-finite KD loss term(s) ['loss_kd_feature_mimic']" in log
    assert sha256(os.path.join(out, "model_final.pth")) == before


def test_unknown_override_key_fails_before_writing(tmp_path, env):
    out = tmp_path / "never"
    rc, log = run([TRAIN, "--config-file", STUDENT_CFG, f"train.output_dir={out}", "train.max_iters=3"], env, check=False)
    assert rc != 0 and "Unknown config key 'train.max_iters'" in log and "train.max_iter" in log
    assert not out.exists()


def test_missing_or_unregistered_dataset_fails_before_building_or_writing(tmp_path, env):
    """A dataset whose annotation file is absent (Detectron2's COCO under an empty $DETECTRON2_DATASETS) or a
    misspelled dataset name stops the job before the models are built and before the output folder is
    made, with the dataset, the path and the variable that sets it (not pycocotools' traceback)."""
    out = tmp_path / "never"
    no_coco = dict(env, DETECTRON2_DATASETS=str(tmp_path / "empty"))
    args = [TRAIN, "--config-file", KD_CFG, f"train.output_dir={out}", f"model.teacher.weights={tmp_path}/nope.pth"]
    rc, log = run(args + ["dataloader.train.dataset.names=coco_2017_train"], no_coco, check=False)
    assert rc != 0 and "FileNotFoundError: Dataset 'coco_2017_train': its json_file " in log, log[-2000:]
    assert f"{tmp_path / 'empty'}/coco/annotations/instances_train2017.json does not exist" in log
    assert "DETECTRON2_DATASETS" in log and "Teacher checkpoint not found" not in log
    rc, log = run(args + ["dataloader.test.dataset.names=kd_synthetic_vla"], env, check=False)
    assert rc != 0 and "Dataset 'kd_synthetic_vla' is not registered. Did you mean kd_synthetic_val" in log, log[-2000:]
    rc, log = run([TRAIN, "--eval-only", "--config-file", STUDENT_CFG, "dataloader.test.dataset.names=coco_2017_val"], no_coco, check=False)
    assert rc != 0 and "Dataset 'coco_2017_val': its json_file" in log
    assert not out.exists()


def test_missing_teacher_checkpoint_is_a_clear_error(tmp_path, env):
    rc, log = run(
        [TRAIN, "--config-file", KD_CFG, f"train.output_dir={tmp_path / 'o'}", f"model.teacher.weights={tmp_path}/nope.pth"],
        env,
        check=False,
    )
    assert rc != 0 and "Teacher checkpoint not found" in log


def test_export_student_gives_identical_outputs_and_parameter_count(kd_run, tmp_path, env):
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.config import LazyConfig, instantiate

    out, _, _ = kd_run
    exported = str(tmp_path / "student.pth")
    _, log = run([EXPORT, "--input", os.path.join(out, "model_final.pth"), "--output", exported, "--student-config", STUDENT_CFG], env)
    assert "verified" in log

    kd_cfg = LazyConfig.load(os.path.join(ROOT, KD_CFG))
    kd_cfg.model.teacher.weights = ""
    kd_cfg.model.teacher.allow_random_init = True
    kd_model = instantiate(kd_cfg.model).eval()
    DetectionCheckpointer(kd_model).load(os.path.join(out, "model_final.pth"))
    student = instantiate(LazyConfig.load(os.path.join(ROOT, STUDENT_CFG)).model).eval()
    DetectionCheckpointer(student).load(exported)
    assert sum(p.numel() for p in student.parameters()) == sum(p.numel() for p in kd_model.student.parameters())

    kd_model.student.test_score_thresh = student.test_score_thresh = 0.0  # barely trained: keep all boxes
    torch.manual_seed(0)
    batch = [{"image": torch.randint(0, 255, (3, 160, 160)).float(), "height": 160, "width": 160}]
    with torch.no_grad():
        a = kd_model(batch)[0]["instances"]
        b = student(batch)[0]["instances"]
    assert len(a) > 0 and torch.equal(a.scores, b.scores) and torch.equal(a.pred_boxes.tensor, b.pred_boxes.tensor)
    rc, log = run([EXPORT, "--input", exported, "--output", exported], env, check=False)
    assert rc != 0


def test_eval_only_evaluates_the_student_alone_without_the_teachers_checkpoint(kd_run, tmp_path, env):
    """--eval-only on a distillation config builds the student alone (a distillation model's inference):
    the teacher's checkpoint is not read (here it does not exist). From the run's checkpoint and from the
    exported student's, the AP equals the exported student's under the student's own config."""
    import math

    from kd_core.runs import copypaste_metrics

    out, _, _ = kd_run
    exported = str(tmp_path / "student.pth")
    run([EXPORT, "--input", os.path.join(out, "model_final.pth"), "--output", exported], env)

    def evaluate(config, checkpoint, *opts):
        _, log = run([TRAIN, "--eval-only", "--config-file", config, f"train.init_checkpoint={checkpoint}"] + list(opts) + FAST, env)
        return log, copypaste_metrics(log)

    # barely trained: keep every box, so that AP is a number
    _, plain = evaluate(STUDENT_CFG, exported, "+model.test_score_thresh=0.0", f"train.output_dir={tmp_path / 'plain'}")
    assert not any(math.isnan(v) for v in plain.values()), plain
    for checkpoint in (os.path.join(out, "model_final.pth"), exported):
        log, kd = evaluate(
            KD_CFG,
            checkpoint,
            "+model.student.test_score_thresh=0.0",
            f"model.teacher.weights={tmp_path / 'no_teacher.pth'}",  # building the teacher would fail
            f"train.output_dir={tmp_path / 'kd'}",
        )
        assert "Evaluating the student alone" in log
        assert kd == plain, (checkpoint, kd, plain)


def test_eval_teacher_runs_the_teacher_alone(env, teacher_checkpoint, tmp_path):
    _, log = run(
        [
            TRAIN,
            "--eval-teacher",
            "--config-file",
            KD_CFG,
            f"model.teacher.weights={teacher_checkpoint}",
            f"train.output_dir={tmp_path}",
            "dataloader.test.mapper.augmentations.0.short_edge_length=160",
        ],
        env,
    )
    assert "Evaluating the teacher alone" in log and "copypaste: AP,AP50,AP75,APs,APm,APl" in log


def test_two_process_ddp_on_cpu_and_amp_flag_and_a_refused_resume(env, teacher_checkpoint, tmp_path):
    out = str(tmp_path / "ddp")
    _, log = run(
        [
            TRAIN,
            "--num-gpus",
            "2",
            "--config-file",
            KD_CFG,
            f"model.teacher.weights={teacher_checkpoint}",
            f"train.output_dir={out}",
            "train.max_iter=2",
            "train.amp.enabled=True",
        ]
        + FAST,
        env,
    )
    assert "train.amp.enabled=True on CPU: the forward pass runs under bfloat16 autocast" in log
    assert "DistributedDataParallel" in log or os.path.isfile(os.path.join(out, "model_final.pth"))
    assert os.path.isfile(os.path.join(out, "model_final.pth"))
    keys = torch.load(os.path.join(out, "model_final.pth"), weights_only=False)["model"].keys()
    assert keys and all(k.startswith(("student.", "distillers.")) for k in keys)  # no teacher tensors

    # --resume of that run with another model's config in 2 processes: every rank refuses, rank 0 puts
    # config.yaml back while the others wait, and the command ends (no hang) with nothing changed
    kept = [name for name in os.listdir(out) if name.endswith(".pth") or name in ("last_checkpoint", "config.yaml")]
    before = {name: sha256(os.path.join(out, name)) for name in kept}
    rc, log = run([TRAIN, "--resume", "--num-gpus", "2", "--config-file", STUDENT_CFG, f"train.output_dir={out}", "train.max_iter=4"] + FAST,
                  env, check=False, timeout=300)
    assert rc != 0 and "Cannot resume from" in log and "it is a checkpoint of another model or config" in log
    assert {name: sha256(os.path.join(out, name)) for name in kept} == before


OVERHEAD = os.path.join(ROOT, "tools", "benchmark_overhead.py")


def test_gradient_share_tool_reports_every_term_and_scales_with_the_kd_weight(env, teacher_checkpoint, tmp_path):
    """tools/kd_gradient_share.py on the FitNet config with a trained teacher: a gradient norm per loss
    term on the student's backbone and parameters; doubling the KD weight doubles the KD gradient and
    leaves the detection gradient as it is (same seed, same batch)."""
    summaries = []
    for weight in (1.0, 2.0):
        out = tmp_path / f"share{weight}.json"
        args = [GRADIENT_SHARE, "--config-file", KD_CFG, "--json", str(out), f"model.teacher.weights={teacher_checkpoint}",
                f"model.distillers.feature_mimic.weight.weight={weight}"] + FAST[:2]
        _, log = run(args, env)
        assert "|grad KD terms| / |grad detection terms|" in log
        with open(out) as f:
            summaries.append(json.load(f))
    one, two = summaries
    norms = one["gradient_norms"]
    assert {"loss_cls", "loss_box_reg", "loss_kd_feature_mimic", "detection terms", "KD terms (loss_kd_*)"} == set(norms)
    assert all(v["student backbone"] > 0 and v["student"] >= v["student backbone"] for v in norms.values())
    assert norms["KD terms (loss_kd_*)"] == norms["loss_kd_feature_mimic"]
    det = norms["detection terms"]["student"]
    assert det <= norms["loss_cls"]["student"] + norms["loss_box_reg"]["student"] + 1e-6  # the norm of the summed gradient
    for group in ("student backbone", "student"):
        assert two["gradient_norms"]["KD terms (loss_kd_*)"][group] == pytest.approx(2 * norms["KD terms (loss_kd_*)"][group], rel=1e-4)
        assert two["gradient_norms"]["detection terms"][group] == pytest.approx(norms["detection terms"][group], rel=1e-5)
        assert two["kd_over_detection"][group] == pytest.approx(2 * one["kd_over_detection"][group], rel=1e-4)


def test_training_tool_registers_the_toolkit_datasets_for_any_config(env):
    """A config that names the embedded or a shared dataset without importing ``kd_core.data`` itself (a COCO
    config with ``dataloader.train.dataset.names=bccd_train``) must find it: the tool registers them, as
    Detectron2's tools register COCO. Checked in a fresh process, where nothing else imported ``kd_core.data``."""
    code = (
        "import runpy, sys; from detectron2.data import DatasetCatalog; "
        "assert 'kd_synthetic_train' not in DatasetCatalog.list(); "
        f"runpy.run_path({TRAIN!r}, run_name='not_main'); "
        "names = set(DatasetCatalog.list()); "
        "print(sorted(n for n in ('kd_synthetic_train', 'kd_synthetic_val') if n in names))"
    )
    _, out = run(["-c", code], env)  # (the shared real datasets are registered only where their folder exists)
    assert "['kd_synthetic_train', 'kd_synthetic_val']" in out, out[-2000:]


def test_overhead_unfused_optimizer_leaves_the_config_fused():
    sys.path.insert(0, os.path.join(ROOT, "tools"))
    from benchmark_overhead import instantiate_optimizer
    from detectron2.config import LazyConfig

    cfg = LazyConfig.load(os.path.join(ROOT, KD_CFG))
    cfg.optimizer.params.model = torch.nn.Linear(3, 2)
    assert instantiate_optimizer(cfg, fused=False).defaults["fused"] is False
    assert cfg.optimizer.fused is True and instantiate_optimizer(cfg).defaults["fused"] is True


def test_overhead_phase_order_varies_the_predecessors():
    sys.path.insert(0, os.path.join(ROOT, "tools"))
    from benchmark_overhead import phase_order

    phases = ("student_step", "teacher_forward", "kd_step", "student_inference", "exported_inference")
    orders = [phase_order(phases, i) for i in range(8)]
    assert all(sorted(o) == sorted(phases) for o in orders)
    assert orders == [phase_order(phases, i) for i in range(8)]  # reproducible
    sequence = [p for o in orders for p in o]
    before_exported = {sequence[k - 1] for k in range(1, len(sequence)) if sequence[k] == "exported_inference"}
    assert len(before_exported) >= 2, before_exported


def test_overhead_list_syncs_names_each_host_wait_and_its_line():
    """--list-syncs: the operators that wait for a device (value read, nonzero, boolean-mask indexing,
    its backward), each with the source line that issued it; plain arithmetic is not listed."""
    import inspect

    sys.path.insert(0, os.path.join(ROOT, "tools"))
    from benchmark_overhead import find_host_syncs

    x = torch.rand(6, requires_grad=True)

    def step():
        y = x * 2 + 1  # no wait
        kept = y[y > 1.5]  # boolean-mask indexing
        float(kept.detach().sum())  # a value read
        torch.nonzero(x.detach())
        kept.sum().backward()  # the indexing's backward: boolean-mask index_put

    first = inspect.getsourcelines(step)[1]
    syncs = find_host_syncs(step)
    here = os.path.relpath(__file__, ROOT)
    assert syncs == {
        f"boolean-mask indexing at {here}:{first + 2} (step)": 1,
        f".item() / bool() / float() at {here}:{first + 3} (step)": 1,
        f"nonzero at {here}:{first + 4} (step)": 1,
        f"boolean-mask indexing at {here}:{first + 5} (step)": 1,
    }, syncs

def test_overhead_ops_by_source_counts_each_line_and_the_kd_steps_difference():
    """count_ops_by_source: every dispatched operator counted once, at the line that issued it (a CPU
    backward pass at the line that called it), summing to count_dispatched_ops; added_ops_by_source:
    KD step - (student step + teacher forward) per source, zero differences dropped, largest first."""
    import inspect

    sys.path.insert(0, os.path.join(ROOT, "tools"))
    from benchmark_overhead import added_ops_by_source, count_dispatched_ops, count_ops_by_source

    x = torch.rand(6, requires_grad=True)

    def step():
        y = x * 2
        z = (y + 1).sum()
        z.backward()

    first = inspect.getsourcelines(step)[1]
    here = os.path.relpath(__file__, ROOT)
    by_line = count_ops_by_source(step, depth=1)
    assert by_line[f"{here}:{first + 1} (step)"] == 1  # mul
    assert by_line[f"{here}:{first + 2} (step)"] == 2  # add, sum
    assert by_line[f"{here}:{first + 3} (step)"] > 0  # the backward pass, run by this thread on the CPU
    assert len(by_line) == 3 and sum(by_line.values()) == count_dispatched_ops(step)
    call_line = inspect.currentframe().f_lineno + 1
    with_callers = count_ops_by_source(step, depth=2)  # each line of step, then this line
    callers = {k.split(" < ")[1] for k in with_callers}
    assert callers == {f"{here}:{call_line} ({inspect.currentframe().f_code.co_name})"}, callers

    phases = {
        "student_step": {"a": 5, "b": 2, "backward": 10},
        "teacher_forward": {"a": 3},
        "kd_step": {"a": 8, "b": 1, "c": 4, "backward": 17},
    }
    assert list(added_ops_by_source(phases).items()) == [("backward", 7), ("c", 4), ("b", -1)]


def test_calibrate_frozen_norms_gives_a_random_network_unit_scale_activations():
    """A random ResNet-50 with FrozenBN (as the COCO configs build it before their checkpoint is read)
    grows its activations block after block; calibrated on a batch, every frozen layer outputs
    per-channel mean 0 / variance 1 (its affine weight 1, bias 0) on that batch. A BatchNorm in train
    mode normalizes itself and is left alone; one in eval mode (a frozen teacher's) is set too."""
    from detectron2.layers import FrozenBatchNorm2d
    from detectron2.modeling.backbone.resnet import BasicStem, ResNet

    from kd_core.testing import calibrate_frozen_norms

    torch.manual_seed(0)
    resnet = ResNet(BasicStem(3, 64, norm="FrozenBN"), ResNet.make_default_stages(50, norm="FrozenBN"), out_features=["res5"])
    trained_bn, eval_bn = torch.nn.BatchNorm2d(3), torch.nn.BatchNorm2d(3).eval()
    x = torch.randn(2, 3, 64, 64) * 50 + 10
    with torch.no_grad():
        before = resnet(x)["res5"].abs().max()
    frozen = [m for m in resnet.modules() if isinstance(m, FrozenBatchNorm2d)]
    reference_bn = copy.deepcopy(trained_bn)
    with torch.no_grad():
        reference_bn(x)  # its own momentum update of the running statistics, nothing else
    n = calibrate_frozen_norms([resnet, trained_bn, eval_bn], lambda: (resnet(x), trained_bn(x), eval_bn(x)))
    assert n == len(frozen) + 1
    assert torch.equal(trained_bn.running_mean, reference_bn.running_mean) and torch.equal(trained_bn.running_var, reference_bn.running_var)
    assert torch.allclose(eval_bn.running_mean, x.mean((0, 2, 3)))
    outputs = {}

    def record(module, inputs, output):
        outputs[module] = output.clone()  # a copy: the blocks apply relu_ in place to the norm's output

    hooks = [m.register_forward_hook(record) for m in frozen]
    with torch.no_grad():
        after = resnet(x)["res5"].abs().max()
    for h in hooks:
        h.remove()
    assert len(outputs) == len(frozen)
    for out in outputs.values():
        var, mean = torch.var_mean(out, dim=(0, 2, 3))
        assert torch.allclose(mean, torch.zeros_like(mean), atol=1e-3) and torch.allclose(var, torch.ones_like(var), rtol=1e-2)
    assert before > 100 * after and torch.isfinite(after), (before, after)


def test_overhead_benchmark_runs_a_coco_config_on_a_toolkit_dataset(env, tmp_path):
    """A real-scale COCO config (Faster R-CNN R101 teacher at 2x -> R50, SDF + the two-stage assistant)
    timed on the embedded dataset at 128 px: the tool registers the dataset; with random weights the
    frozen norms are calibrated (without, the R101 teacher's features reach ~1e7) and the optimizers
    step at the warm-up's first rate (at the full 0.02 the student's boxes went NaN within 2 steps).
    --skip-memory: timing only, no per-phase memory processes."""
    out = tmp_path / "overhead.json"
    args = [OVERHEAD, "--config-file", "projects/ScaleKD/configs/coco/faster_rcnn_r101_r50_1x_scalekd.py", "--skip-memory"]
    args += ["--iters", "2", "--warmup", "0", "--batch-size", "1", "--json", str(out), "dataloader.train.dataset.names=kd_synthetic_train"]
    args += ["dataloader.train.mapper.augmentations.0.short_edge_length=[128]", "dataloader.train.mapper.augmentations.0.max_size=160"]
    _, log = run(args, env)
    with open(out) as f:
        phases = json.load(f)["phases"]
    assert all(p["median_ms"] > 0 and len(p["times_ms"]) == 2 and p["peak_mb"] is None for p in phases.values())
    assert "kd_step" in phases and "[timed 2/2] " in log


def test_overhead_benchmark_times_every_phase(env, tmp_path):
    """tools/benchmark_overhead.py end to end on the FitNet config, as the quickstart trains (CPU
    AMP, channels_last): every phase timed and measured, ratios consistent with the phase figures,
    the cached-teacher phase, the unfused-optimizer phase and the dispatched-op counts."""
    out = tmp_path / "overhead.json"
    args = [OVERHEAD, "--config-file", KD_CFG, "--iters", "2", "--warmup", "0", "--json", str(out), "--amp", "--count-ops"]
    args += ["--ops-by-source", "3", "--teacher-cache-dir", str(tmp_path / "cache"), "--unfused-optimizer"] + FAST[1:3] + ["train.channels_last=True"]
    _, log = run(args, env)
    with open(out) as f:
        summary = json.load(f)
    phases = summary["phases"]
    expected = {"student_step", "teacher_forward", "kd_step", "student_inference", "exported_inference"}
    expected |= {"kd_step_cached_teacher", "student_step_unfused_optimizer"}
    assert set(phases) == expected
    assert all(p["median_ms"] > 0 and p["peak_mb"] >= 0 for p in phases.values())
    ms = {k: v["median_ms"] for k, v in phases.items()}
    assert all(v["median_ms"] == pytest.approx(statistics.median(v["times_ms"])) and len(v["times_ms"]) == 2 for v in phases.values())
    assert summary["kd_step_over_student_plus_teacher"] == pytest.approx(ms["kd_step"] / (ms["student_step"] + ms["teacher_forward"]))
    assert summary["exported_over_student_inference"] == pytest.approx(ms["exported_inference"] / ms["student_inference"])
    assert summary["kd_step_cached_teacher_over_kd_step"] == pytest.approx(ms["kd_step_cached_teacher"] / ms["kd_step"])
    assert summary["student_step_over_unfused_optimizer_step"] == pytest.approx(ms["student_step"] / ms["student_step_unfused_optimizer"])
    assert summary["amp"] is True and "train.channels_last=True" in summary["opts"]
    # the timed phases that run the student computed in bf16 (--amp on CPU)
    assert summary["student_backbone_dtype"] == {p: "bfloat16" for p in expected - {"teacher_forward"}}
    assert "KD step / (student step + teacher forward)" in log
    assert os.path.isfile(tmp_path / "cache" / "cache_info.json")
    # --count-ops: the exported student dispatches exactly the student's ops; the KD step runs the student's
    # step and the teacher's forward and more; the fused optimizer is one op where the default loops.
    ops = {k: v["ops"] for k, v in phases.items()}
    assert all(n > 0 for n in ops.values())
    assert ops["exported_inference"] == ops["student_inference"]
    assert ops["kd_step"] > ops["student_step"] + ops["teacher_forward"]
    assert ops["student_step_unfused_optimizer"] > ops["student_step"]
    assert summary["kd_step_ops_over_student_plus_teacher_ops"] == pytest.approx(ops["kd_step"] / (ops["student_step"] + ops["teacher_forward"]))
    assert "KD step ops / (student step ops + teacher forward ops)" in log
    # --ops-by-source: the KD step's added operators split by source; they add up to the counts' difference
    added = summary["kd_step_added_ops_by_source"]
    assert sum(added.values()) == ops["kd_step"] - ops["student_step"] - ops["teacher_forward"]
    assert any("kd_core/" in site for site in added) and "backward" in added
    assert f"KD step: {sum(added.values()):+d} operators against student step + teacher forward; the 3 sources" in log


def test_overhead_exported_student_runs_the_trained_students_weights(tmp_path, monkeypatch):
    """The exported-student phase is built through the export path but holds the KD model's own
    student tensors, so after any number of training steps both inference phases run the same
    weights and give the same detections (with a frozen copy, NMS would see different boxes)."""
    import importlib.util
    import types

    monkeypatch.setenv("KD_SYNTHETIC_ROOT", str(tmp_path / "kd_synthetic"))
    spec = importlib.util.spec_from_file_location("benchmark_overhead", OVERHEAD)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    args = types.SimpleNamespace(config_file=os.path.join(ROOT, KD_CFG), opts=FAST[1:3], batch_size=2, device="cpu", amp=False)
    args.teacher_cache_dir, args.unfused_optimizer = "", False
    cfg, model, batch = bench.build(args)
    steps, (plain,) = bench.make_steps(args, cfg, model, batch)
    from detectron2.utils.events import EventStorage

    with EventStorage(10**9):
        for _ in range(2):
            steps["kd_step"]()
    student = dict(model.student.named_parameters())
    assert all(torch.equal(p, student[k]) for k, p in plain.named_parameters())
    model.student.eval()
    with torch.no_grad():
        a, b = model.student(batch), plain(batch)
    assert len(a) == len(b) == len(batch)
    for x, y in zip(a, b):
        assert torch.equal(x["instances"].pred_boxes.tensor, y["instances"].pred_boxes.tensor)


DETR_TEACHER_CFG = "projects/DETRDistill/configs/deformable_detr/deformable_detr_r34_tiny_cpu.py"
DETR_KD_CFG = "projects/DETRDistill/configs/detrdistill/deformable_detr_r34_r18_tiny_cpu.py"
DETR_FAST = [
    "dataloader.train.mapper.augmentation.short_edge_lengths=[160]",
    "dataloader.train.mapper.augmentation.max_size=224",
    "dataloader.train.mapper.crop_probability=0.0",
    "dataloader.test.mapper.augmentation.short_edge_length=160",
    "dataloader.test.mapper.augmentation.max_size=224",
    "train.log_period=1",
    "train.eval_period=0",
]


def test_detrdistill_trains_resumes_and_evaluates(env, tmp_path):
    """The DETRDistill project's main command end to end: the tiny Deformable DETR teacher (2
    iterations), DETRDistill (2), --resume to 4, each run evaluated by Detectron2's COCOEvaluator."""
    teacher_out, out = str(tmp_path / "teacher"), str(tmp_path / "kd")
    run([TRAIN, "--config-file", DETR_TEACHER_CFG, "train.max_iter=2", f"train.output_dir={teacher_out}"] + DETR_FAST, env)
    teacher = [f"model.teacher.weights={os.path.join(teacher_out, 'model_final.pth')}", f"train.output_dir={out}"]
    run([TRAIN, "--config-file", DETR_KD_CFG, "train.max_iter=2"] + teacher + DETR_FAST, env)
    _, log = run([TRAIN, "--resume", "--config-file", DETR_KD_CFG, "train.max_iter=4"] + teacher + DETR_FAST, env)
    assert "Loading trainer from" in log
    assert torch.load(os.path.join(out, "model_final.pth"), weights_only=False)["iteration"] == 3

    rows = metrics(out)
    steps = {r["iteration"]: r for r in rows if "total_loss" in r}
    assert sorted(steps) == [0, 1, 2, 3]  # the resumed run continued at iteration 2
    for row in steps.values():
        kd = {k: v for k, v in row.items() if k.startswith("loss_kd_")}
        # the three DETRDistill components: logits KD per decoder stage, feature KD, the query group
        assert any(k.startswith("loss_kd_logits") for k in kd) and "loss_kd_feature" in kd
        assert any(k.startswith("loss_kd_query") for k in kd)
        assert all(v == v and abs(v) != float("inf") for v in kd.values())
        assert kd["loss_kd_feature"] > 0.0
    evals = [r for r in rows if "bbox/AP" in r]
    assert len(evals) == 2 and all(0.0 <= r["bbox/AP"] <= 100.0 for r in evals)  # after iteration 1 and after 3
