"""ScaleKDDetector on the tiny CPU models: training steps, gradient isolation, the assistant kept out
of the student's optimizer/state_dict but inside checkpoints, input checks."""
import pytest
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import LazyConfig, instantiate
from detectron2.layers import ShapeSpec
from detectron2.solver.build import get_default_optimizer_params
from detectron2.structures import BitMasks
from detectron2.utils.events import EventStorage

from scalekd import ScaleKDDetector
from scalekd.testing import build_tiny_scalekd, load_tiny_config, random_batch, tiny_models_path

SIZE = (96, 128)
EXPECTED_LOSSES = {
    "retinanet": {"loss_cls", "loss_box_reg"},
    "fcos": {"loss_fcos_cls", "loss_fcos_loc", "loss_fcos_ctr"},
    "faster_rcnn": {"loss_cls", "loss_box_reg", "loss_rpn_cls", "loss_rpn_loc"},
}
KD_KEYS = {"loss_kd_sdf", "loss_kd_csa_cls", "loss_kd_csa_bbox"}


pytestmark = pytest.mark.usefixtures("one_intra_op_thread")


def _student_params(model):
    return [p for p in model.student.parameters() if p.requires_grad]


@pytest.mark.parametrize("kind", ["retinanet", "fcos", "faster_rcnn"])
def test_short_training_finite_losses_with_all_keys(kind):
    torch.manual_seed(0)
    model = build_tiny_scalekd(kind, overrides=["metrics_period=1"], warmup_iters=1)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01)
    with EventStorage(0) as storage:
        for it in range(2):  # iteration 0: CSA warm-up; iteration 1: mimic losses on
            storage.iter = it
            losses = model(random_batch(size=SIZE, seed=it))
            assert set(losses) == EXPECTED_LOSSES[kind] | KD_KEYS
            assert all(torch.isfinite(v).all() for v in losses.values()), losses
            mimic = losses["loss_kd_csa_cls"] + losses["loss_kd_csa_bbox"]
            assert (mimic == 0) if it == 0 else (mimic > 0)
            optimizer.zero_grad()
            sum(losses.values()).backward()
            optimizer.step()
            storage.step()
        csa = {k for k in storage.histories() if k.startswith("csa_")}
    assert {"csa_loss_cls", "csa_loss_box_reg"} <= csa
    assert ("csa_loss_ctr" in csa) == (kind == "fcos")


@pytest.mark.parametrize("kind", ["retinanet", "faster_rcnn"])
def test_sdf_adds_no_host_wait_to_the_students_step(kind):
    """ScaleKD with SDF alone (the quickstart's method): its training step waits for the device at
    the same operators and lines as the student's own step and the teacher's forward, no more
    (``tools/benchmark_overhead.py --list-syncs``; Detectron2's own losses wait many times)."""
    import collections
    import os
    import sys

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools"))
    from benchmark_overhead import find_host_syncs

    torch.manual_seed(0)
    model = build_tiny_scalekd(kind, overrides=["use_csa=False"])
    batch = random_batch(size=SIZE, seed=0)

    def step(net):
        with EventStorage(0):
            losses = net(batch)
        sum(losses.values()).backward()

    def teacher_forward():
        with EventStorage(0):
            model.run_teacher(batch)

    student = collections.Counter(find_host_syncs(lambda: step(model.student)))
    teacher = collections.Counter(find_host_syncs(teacher_forward))
    kd = collections.Counter(find_host_syncs(lambda: step(model)))
    assert student and kd == student + teacher, kd - student - teacher

@pytest.mark.parametrize("kind", ["retinanet", "fcos", "faster_rcnn"])
def test_with_kd_weights_zero_the_student_trains_on_its_own_losses(kind):
    """ScaleKD re-implements the student's training forward (to reach its head outputs and RoIs):
    with the SDF weight 0 and the mimic losses off it must give the detection losses and gradients
    of the student's own forward on the same batch and random state."""
    import copy

    torch.manual_seed(0)
    model = build_tiny_scalekd(kind, overrides=["teacher_scale=1.0", "distillers.sdf.weight=0.0"], warmup_iters=10**6)
    alone = copy.deepcopy(model.student)  # the same weights and loss-normalizer state
    batch = random_batch(size=SIZE, teacher_scale=1.0)
    with EventStorage(0):
        torch.manual_seed(1)
        kd = model(batch)
        torch.manual_seed(1)
        own = alone(batch)
    assert set(own) == EXPECTED_LOSSES[kind]
    for k in own:
        torch.testing.assert_close(kd[k], own[k], rtol=1e-5, atol=1e-6, msg=k)
    assert all(float(kd[k]) == 0.0 for k in KD_KEYS)
    sum(kd.values()).backward()
    sum(own.values()).backward()
    for (name, p), q in zip(model.student.named_parameters(), alone.parameters()):
        if p.grad is not None or q.grad is not None:
            torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize("kind", ["retinanet", "faster_rcnn"])
def test_gradients_are_isolated(kind):
    """The assistant's own loss never reaches the student; the mimic losses never reach the assistant."""
    torch.manual_seed(0)
    model = build_tiny_scalekd(kind, warmup_iters=0)
    csa_params = list(model.assistant.parameters())
    before = [p.detach().clone() for p in csa_params]
    with EventStorage(0):
        losses = model(random_batch(size=SIZE))
    # the assistant stepped inside the forward, on its own loss
    assert any(not torch.equal(b, p) for b, p in zip(before, csa_params))
    assert all(p.grad is None for p in csa_params)
    assert all(p.grad is None for p in _student_params(model)), "the assistant's loss reached the student"
    mimic = losses["loss_kd_csa_cls"] + losses["loss_kd_csa_bbox"]
    assert mimic.requires_grad and mimic > 0
    mimic.backward(retain_graph=True)
    assert all(p.grad is None for p in csa_params), "a mimic loss reached the assistant"
    head = model.student.head if kind == "retinanet" else model.student.roi_heads.box_predictor
    assert all(p.grad is not None for p in head.parameters())
    sum(losses.values()).backward()
    assert all(p.grad is None for p in csa_params)
    assert all(p.grad is None for p in model.teacher.model.parameters())


def test_assistant_is_out_of_the_student_optimizer_and_state_dict_but_in_checkpoints(tmp_path):
    torch.manual_seed(0)
    model = build_tiny_scalekd("retinanet", warmup_iters=0)
    csa_ids = {id(p) for p in model.assistant.parameters()}
    teacher_ids = {id(p) for p in model.teacher.model.parameters()}
    model_ids = {id(p) for p in model.parameters()}
    assert not (csa_ids & model_ids) and not (teacher_ids & model_ids)
    optim_ids = {id(p) for g in get_default_optimizer_params(model) for p in g["params"]}
    assert optim_ids and not (csa_ids & optim_ids)
    assert all(k.startswith(("student.", "distillers.sdf.")) for k in model.state_dict())
    assert set(model.extra_checkpointables()) == {"scalekd_assistant"}

    # one training step, then save and restore into a fresh model
    with EventStorage(0):
        losses = model(random_batch(size=SIZE))
    sum(losses.values()).backward()
    checkpointables = model.extra_checkpointables()
    DetectionCheckpointer(model, str(tmp_path), **checkpointables).save("model_0000", iteration=0)
    saved = torch.load(tmp_path / "model_0000.pth", weights_only=False)
    assert set(saved["scalekd_assistant"]) == {"model", "optimizer", "settings"}
    assert not any("assistant" in k for k in saved["model"])

    torch.manual_seed(123)
    fresh = build_tiny_scalekd("retinanet", warmup_iters=0)
    assert not all(torch.equal(a, b) for a, b in zip(fresh.assistant.parameters(), model.assistant.parameters()))
    DetectionCheckpointer(fresh, str(tmp_path), **fresh.extra_checkpointables()).resume_or_load(
        str(tmp_path / "model_0000.pth"), resume=True
    )
    for (k, a), b in zip(model.assistant.module.state_dict().items(), fresh.assistant.module.state_dict().values()):
        assert torch.equal(a, b), k
    s_old, s_new = model.assistant.optimizer.state_dict(), fresh.assistant.optimizer.state_dict()
    assert len(s_new["state"]) == len(s_old["state"]) > 0
    for i, st in s_old["state"].items():
        assert torch.equal(st["exp_avg"], s_new["state"][i]["exp_avg"]) and float(st["step"]) == float(s_new["state"][i]["step"]) == 1
    for (k, a), b in zip(model.state_dict().items(), fresh.state_dict().values()):
        assert torch.equal(a, b), k  # student + the frozen random SDF block


def test_teacher_image_checks():
    model = build_tiny_scalekd("retinanet")
    batch = random_batch(size=SIZE, teacher_scale=1.0)
    with pytest.raises(ValueError, match="no 'teacher_image'"):
        model(batch)
    batch = random_batch(size=SIZE, teacher_scale=1.5)
    with pytest.raises(ValueError, match="is not 2x"):
        model(batch)
    with pytest.raises(ValueError, match="power of two"):
        build_tiny_scalekd("retinanet", overrides=["teacher_scale=1.5"])


def test_teacher_of_the_other_channel_order_gets_its_own_view(monkeypatch):
    # an RGB teacher with a BGR student: training without the mapper's view is an error even at 1x;
    # evaluation (teacher, assistant) makes the view itself, resized and with the channels reversed
    torch.manual_seed(0)
    model = build_tiny_scalekd("retinanet", overrides=["teacher_scale=1.0", "teacher.model.input_format=RGB"])
    assert model.student.input_format == "BGR"
    with pytest.raises(ValueError, match="teacher reads RGB images and the student BGR.*teacher_image_format='RGB'"):
        model(random_batch(size=SIZE, teacher_scale=1.0))
    import kd_core.meta_arch

    batch = random_batch(size=SIZE, teacher_scale=1.0)
    seen = []
    real = kd_core.meta_arch.teacher_inputs
    monkeypatch.setattr(
        kd_core.meta_arch, "teacher_inputs", lambda inputs, key="teacher_image": seen.extend(x["image"] for x in real(inputs, key)) or real(inputs, key)
    )
    model.eval()
    model.teacher_detector()(batch)
    assert len(seen) == len(batch) and all(torch.equal(v, x["image"].flip(0)) for v, x in zip(seen, batch))
    run_teacher, views = model.run_teacher, []
    model.run_teacher = lambda inputs, size: views.extend(x["teacher_image"] for x in inputs) or run_teacher(inputs, size)
    with torch.no_grad():
        model.assistant_detector()(batch)
    assert all(torch.equal(v, x["image"].flip(0)) for v, x in zip(views, batch))
    # the same order on both sides: the student's own images, unchanged
    same = build_tiny_scalekd("retinanet", overrides=["teacher_scale=1.0"])
    assert same.teacher_detector().make_views(batch) is batch


def test_same_resolution_mode():
    torch.manual_seed(0)
    model = build_tiny_scalekd("fcos", overrides=["teacher_scale=1.0"], warmup_iters=0)
    assert model.assistant.module.level_pairs == {f"p{i}": f"p{i}" for i in range(3, 8)}
    with EventStorage(0):
        losses = model(random_batch(size=SIZE, teacher_scale=1.0))
    assert all(torch.isfinite(v) for v in losses.values()) and losses["loss_kd_csa_bbox"] > 0


def test_assistant_init_and_optimizer_switches():
    default = build_tiny_scalekd("retinanet")
    attention = default.assistant.module.attention
    assert not attention.out_proj.weight.any() and not attention.ffn[-1].weight.any()
    assert type(default.assistant.optimizer) is torch.optim.Adam and default.assistant.optimizer.defaults["fused"] is True
    overrides = ["csa_zero_init_residual=False", "csa_optimizer=adamw", "csa_optimizer_fused=False"]
    model = build_tiny_scalekd("retinanet", overrides=overrides)
    attention = model.assistant.module.attention
    assert attention.out_proj.weight.any() and attention.ffn[-1].weight.any()
    assert type(model.assistant.optimizer) is torch.optim.AdamW and not model.assistant.optimizer.defaults["fused"]


def test_assistant_head_starts_from_the_teacher_head():
    model = build_tiny_scalekd("faster_rcnn")
    head = model.assistant.module.head
    teacher_roi = model.teacher.model.roi_heads
    for a, b in zip(head.box_heads[0].state_dict().values(), teacher_roi.box_head.state_dict().values()):
        assert torch.equal(a, b)
    for a, b in zip(head.box_predictors[0].state_dict().values(), teacher_roi.box_predictor.state_dict().values()):
        assert torch.equal(a, b)
    assert all(p.requires_grad for p in head.parameters())
    assert head.box_heads[0].fc1.weight.data_ptr() != teacher_roi.box_head.fc1.weight.data_ptr()
    dense = build_tiny_scalekd("retinanet")
    for a, b in zip(dense.assistant.module.head.state_dict().values(), dense.teacher.model.head.state_dict().values()):
        assert torch.equal(a, b)


def _narrow_teacher(cfg, width=32):
    t = cfg.model.teacher.model
    t.backbone.out_channels = width
    t.head.input_shape = [ShapeSpec(channels=width)] * 5
    t.head.conv_dims = [width, width]
    return cfg


def test_teacher_with_other_fpn_width_gets_adapters_or_a_clear_error():
    cfg = _narrow_teacher(load_tiny_config("retinanet"))
    with pytest.raises(ValueError, match="csa_head_init='teacher'"):
        instantiate(cfg.model)  # the teacher's head cannot initialise the student-shaped assistant head
    cfg.model.csa_head_init = "student"
    cfg.model.csa_cls_weight.start_iter = 0
    torch.manual_seed(0)
    model = instantiate(cfg.model).train()
    assert model.assistant.module.attention.teacher_dim == 32 and model.assistant.module.attention.embed_dim == 64
    with EventStorage(0):
        losses = model(random_batch(size=SIZE))
    assert all(torch.isfinite(v) for v in losses.values())


def test_sdf_channel_mismatch_is_reported_at_construction():
    with pytest.raises(ValueError, match="has 512 channels"):
        build_tiny_scalekd("retinanet", overrides=["distillers.sdf.student_channels=256"])
    with pytest.raises(KeyError, match="no output 'res6'"):
        build_tiny_scalekd("retinanet", overrides=["distillers.sdf.teacher_features=[res6]"])


def test_unsupported_student_is_rejected():
    teacher = build_tiny_scalekd("retinanet", overrides=["use_csa=False"]).teacher
    with pytest.raises(TypeError, match="ScaleKD supports"):
        ScaleKDDetector(student=torch.nn.Linear(2, 2), teacher=teacher, check_num_classes=False)


def test_freeze_student_backbone_switch():
    torch.manual_seed(0)
    model = build_tiny_scalekd("retinanet", overrides=["freeze_student_backbone_iters=3"], warmup_iters=10)
    with EventStorage(0):
        losses = model(random_batch(size=SIZE))
    sum(losses.values()).backward()
    bottom_up = model.student.backbone.bottom_up
    assert all(p.grad is None for p in bottom_up.parameters())
    assert all(p.grad is not None for n, p in model.student.backbone.named_parameters() if not n.startswith("bottom_up."))
    assert model.distillers.sdf.adapters[0].proj.weight.grad is not None
    model.zero_grad(set_to_none=True)
    with EventStorage(3):
        losses = model(random_batch(size=SIZE))
    sum(losses.values()).backward()
    assert any(p.grad is not None for p in bottom_up.parameters())


def test_cascade_all_stages_and_mask_rcnn_box_branch():
    torch.manual_seed(0)
    cascade = build_tiny_scalekd("cascade_rcnn", overrides=["csa_cascade_stages=all", "metrics_period=1"], warmup_iters=0)
    assert cascade.assistant.module.head.stages == [0, 1, 2]
    with EventStorage(0) as storage:
        losses = cascade(random_batch(num_images=1, size=SIZE))
        logged = set(storage.histories())
    assert {f"loss_cls_stage{k}" for k in range(3)} <= set(losses) and KD_KEYS <= set(losses)
    assert {f"csa_loss_box_reg_stage{k}" for k in range(3)} <= logged
    assert all(torch.isfinite(v) for v in losses.values())

    # Mask R-CNN: the box branch is distilled, the mask head trains normally
    mask_rcnn = LazyConfig.load(tiny_models_path(), keys="mask_rcnn")  # a config-building function
    cfg = load_tiny_config("faster_rcnn")
    cfg.model.student = mask_rcnn(18)
    cfg.model.teacher.model = mask_rcnn(34)
    model = instantiate(cfg.model).train()
    batch = random_batch(num_images=1, size=SIZE)
    for x in batch:
        boxes = x["instances"].gt_boxes.tensor
        masks = torch.zeros(len(boxes), *SIZE, dtype=torch.bool)
        for i, (x0, y0, x1, y1) in enumerate(boxes.round().long().tolist()):
            masks[i, y0:y1, x0:x1] = True
        x["instances"].gt_masks = BitMasks(masks)
    with EventStorage(0):
        losses = model(batch)
    assert "loss_mask" in losses and KD_KEYS <= set(losses)
    assert all(torch.isfinite(v) for v in losses.values())


def test_non_finite_assistant_loss_stops_training_at_the_next_log():
    model = build_tiny_scalekd("retinanet", overrides=["metrics_period=5"])
    with EventStorage(0) as storage:
        model._log_assistant({"loss_cls": torch.tensor(0.5)}, iteration=5)
        assert storage.histories()["csa_loss_cls"].latest() == 0.5
        model._log_assistant({"loss_cls": torch.tensor(float("nan"))}, iteration=6)  # not a logging iteration
        with pytest.raises(FloatingPointError, match="csa_loss_cls"):
            model._log_assistant({"loss_cls": torch.tensor(float("nan"))}, iteration=10)


def test_sdf_on_fpn_levels_option():
    overrides = [
        "distillers.sdf.student_module=backbone",
        "distillers.sdf.teacher_module=backbone",
        "distillers.sdf.student_features=[p3,p4,p5]",
        "distillers.sdf.teacher_features=[p4,p5,p6]",  # a 2x teacher's P_{l+1} has the student's P_l size
        "distillers.sdf.student_channels=64",
        "distillers.sdf.teacher_channels=64",
        "distillers.sdf.spatial_align=exact",
    ]
    model = build_tiny_scalekd("retinanet", overrides=overrides, warmup_iters=10)
    assert len(model.distillers.sdf.embeddings) == 3
    with EventStorage(0):
        losses = model(random_batch(size=SIZE))
    assert torch.isfinite(losses["loss_kd_sdf"]) and losses["loss_kd_sdf"] > 0


@pytest.mark.parametrize("kind", ["retinanet", "fcos", "faster_rcnn"])
def test_assistant_detector_is_the_student_when_it_starts_as_the_students_head(kind):
    # csa_head_init=student + zero-init residual: the fused maps are the student's own features and the
    # assistant's head is a copy of the student's, so its detections must be the student's.
    torch.manual_seed(0)
    model = build_tiny_scalekd(kind, overrides=["csa_head_init=student"])
    if kind == "faster_rcnn":  # random heads score low: keep every detection
        for predictor in (model.student.roi_heads.box_predictor, model.assistant.module.head.box_predictors[0]):
            predictor.test_score_thresh = 0.0
    else:
        model.student.test_score_thresh = 0.0
    detector = model.assistant_detector()
    assert not model.training and not detector.training
    batch = random_batch(size=SIZE)
    for d in batch:
        d["height"], d["width"] = 2 * SIZE[0], 2 * SIZE[1]  # outputs in the original image's coordinates
    with torch.no_grad():
        ours, student = detector(batch), model(batch)
    for a, s in zip(ours, student):
        a, s = a["instances"], s["instances"]
        assert a.image_size == (2 * SIZE[0], 2 * SIZE[1]) and len(a) == len(s) > 0
        assert torch.allclose(a.pred_boxes.tensor, s.pred_boxes.tensor, atol=1e-4)
        assert torch.allclose(a.scores, s.scores, atol=1e-5) and torch.equal(a.pred_classes, s.pred_classes)
    # a trained-looking attention makes it a different detector
    torch.nn.init.normal_(model.assistant.module.attention.out_proj.weight, std=0.5)
    with torch.no_grad():
        changed = detector(batch)
    assert not torch.allclose(changed[0]["instances"].scores[:5], ours[0]["instances"].scores[:5])
    with pytest.raises(RuntimeError, match="evaluation only"):
        detector.train()


def test_assistant_detector_makes_the_teacher_view_and_rejects_what_it_cannot_run():
    torch.manual_seed(0)
    model = build_tiny_scalekd("retinanet")  # teacher at 2x
    batch = random_batch(size=SIZE, teacher_scale=1.0)  # test-time inputs: no teacher image
    # (the teacher's backbone input is padded to 2x the student's either way: look at the teacher's images)
    run_teacher, seen = model.run_teacher, []
    model.run_teacher = lambda inputs, size: seen.append([tuple(x["teacher_image"].shape) for x in inputs]) or run_teacher(inputs, size)
    with torch.no_grad():
        model.assistant_detector()(batch)
    assert seen == [[(3, 2 * SIZE[0], 2 * SIZE[1])] * len(batch)]
    with pytest.raises(ValueError, match="no Cross-Scale Assistant"):
        build_tiny_scalekd("retinanet", overrides=["use_csa=False"]).assistant_detector()
    with pytest.raises(ValueError, match="Cascade R-CNN"):
        build_tiny_scalekd("cascade_rcnn").assistant_detector()


@pytest.mark.parametrize("kind", ["retinanet", "fcos", "faster_rcnn"])
def test_csa_autocast_runs_the_assistant_in_bfloat16_only_under_bfloat16_autocast(kind, caplog):
    """csa_autocast=True: under the step's bf16 autocast the assistant's attention and head compute
    in bf16, its losses and the mimic losses are fp32 and finite, and its weights stay fp32 and are
    stepped. The default (False), or no autocast around the step, keeps the assistant in fp32. The
    mimic targets come from the stepped assistant in both precisions (autocast's weight-cast cache,
    filled by the assistant's first forward, would otherwise give the refresh the pre-step weights:
    a mimic loss 9x smaller than fp32's on the tiny Faster R-CNN)."""
    mimic = []
    for csa_autocast, step_autocast, expected in [(True, True, torch.bfloat16), (False, True, torch.float32), (True, False, torch.float32)]:
        torch.manual_seed(0)
        model = build_tiny_scalekd(kind, overrides=[f"csa_autocast={csa_autocast}"], warmup_iters=0)
        module = model.assistant.module
        dtypes = []
        first_head_layer = next(m for m in module.head.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)))
        for layer in (module.attention.q_proj, first_head_layer):
            layer.register_forward_hook(lambda m, i, o: dtypes.append(o.dtype))
        before = [p.detach().clone() for p in module.parameters()]
        caplog.clear()
        with EventStorage(0), torch.autocast("cpu", dtype=torch.bfloat16, enabled=step_autocast):
            losses = model(random_batch(size=SIZE, teacher_scale=2.0))
        assert dtypes and set(dtypes) == {expected}, (csa_autocast, step_autocast, dtypes)
        assert ("csa_autocast=True has no effect" in caplog.text) == (csa_autocast and not step_autocast)
        for k in ("loss_kd_csa_cls", "loss_kd_csa_bbox"):
            assert losses[k].dtype == torch.float32 and torch.isfinite(losses[k]) and losses[k] > 0, (k, losses[k])
        assert all(p.dtype == torch.float32 for p in module.parameters())
        assert any(not torch.equal(a, b) for a, b in zip(before, module.parameters()))  # its Adam stepped
        mimic.append({k: losses[k].detach() for k in ("loss_kd_csa_cls", "loss_kd_csa_bbox")})
    for k in mimic[0]:
        torch.testing.assert_close(mimic[0][k], mimic[1][k], rtol=0.1, atol=1e-3, msg=k)  # bf16 rounding only


def test_benchmark_step_times_the_assistant_under_autocast_against_fp32(capsys):
    """projects/ScaleKD/tools/benchmark_step.py --amp --channels-last --csa-autocast: the three
    interleaved variants are timed and printed, and --csa-autocast without --amp is refused."""
    import importlib.util
    import os

    path = os.path.join(os.path.dirname(tiny_models_path()), os.pardir, os.pardir, "tools", "benchmark_step.py")
    spec = importlib.util.spec_from_file_location("scalekd_benchmark_step", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    threads = ["--threads", str(torch.get_num_threads())]  # the tool sets the process's thread count
    bench.main(["--kind", "faster_rcnn", "--size", "64", "--iters", "1", "--warmup", "0", "--teacher-scale", "1", "--amp", "--channels-last", "--csa-autocast"] + threads)
    out = capsys.readouterr().out
    assert "bf16 autocast, channels_last" in out and "csa_autocast=True: median" in out and "paired difference" in out
    with pytest.raises(SystemExit):
        bench.main(["--csa-autocast"])
    assert "add --amp" in capsys.readouterr().err
