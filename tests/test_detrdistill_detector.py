"""DETRDistillDetector: the three components wired on tiny Deformable DETR models (CPU)."""
import copy
import os

import pytest
import torch
from detectron2.config import LazyConfig, instantiate
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage

from detrdistill.distill.feature_kd import TargetAwareFeatureDistillation
from detrdistill.distill.logits_kd import HungarianLogitsDistillation
from detrdistill.distill.relation_kd import QueryRelationDistillation
from detrdistill.meta_arch import DETRDistillDetector
from kd_core.teacher import FrozenTeacher

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = os.path.join(ROOT, "projects/DETRDistill/configs/deformable_detr/deformable_detr_tiny_cpu.py")


@pytest.fixture(scope="module")
def model_cfg():
    cfg = LazyConfig.load(TINY).model
    cfg.num_encoder_layers = 1
    cfg.num_queries = 20
    return cfg


def _model(cfg, seed=0, **overrides):
    cfg = copy.deepcopy(cfg)
    for k, v in overrides.items():
        setattr(cfg, k, v)
    torch.manual_seed(seed)
    return instantiate(cfg)


def _batch(n=2, size=128, empty_last=False):
    g = torch.Generator().manual_seed(1)
    out = []
    for i in range(n):
        inst = Instances((size, size))
        if empty_last and i == n - 1:
            inst.gt_boxes = Boxes(torch.zeros(0, 4))
            inst.gt_classes = torch.zeros(0, dtype=torch.int64)
        else:
            inst.gt_boxes = Boxes(torch.tensor([[8.0, 10.0, 40.0, 50.0], [60.0, 64.0, 120.0, 100.0]]))
            inst.gt_classes = torch.tensor([1, 3])
        out.append(
            {
                "image": torch.randint(0, 255, (3, size, size), generator=g).float(),
                "instances": inst,
                "height": size,
                "width": size,
            }
        )
    return out


def _detector(student, teacher_model, **kw):
    kw.setdefault("logits_kd", HungarianLogitsDistillation())
    kw.setdefault("feature_kd", TargetAwareFeatureDistillation(num_topk=10))
    return DETRDistillDetector(student=student, teacher=FrozenTeacher(teacher_model, allow_random_init=True), **kw)


def test_training_step_returns_every_term_and_teacher_gets_no_gradient(model_cfg):
    teacher_model = _model(model_cfg, seed=1)
    model = _detector(_model(model_cfg), teacher_model)
    model.train()
    with EventStorage(0):
        losses = model(_batch(empty_last=True))
    expected = {
        "loss_class",
        "loss_bbox",
        "loss_giou",
        "loss_kd_logits_class",
        "loss_kd_logits_bbox",
        "loss_kd_logits_giou",
        "loss_kd_feature",
        "loss_kd_query_class",
        "loss_kd_query_bbox",
        "loss_kd_query_giou",
    }
    assert expected <= set(losses), sorted(losses)
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert all(p.grad is None for p in teacher_model.parameters())  # incl. its query embeddings
    assert model.student.query_embed.weight.grad is not None
    assert not teacher_model.training
    # teacher not registered: nothing of it in the KD checkpoint
    assert all(k.startswith("student.") for k in model.state_dict())


def test_each_component_reaches_the_student(model_cfg):
    teacher_model = _model(model_cfg, seed=1)
    model = _detector(_model(model_cfg), teacher_model)
    model.train()
    with EventStorage(0):
        losses = model(_batch())
    for key in ("loss_kd_logits_class", "loss_kd_feature", "loss_kd_query_class"):
        model.zero_grad()
        losses[key].backward(retain_graph=True)
        grads = [p.grad.abs().sum() for p in model.student.parameters() if p.grad is not None]
        assert grads and sum(grads) > 0, key


def test_logits_matching_is_solved_while_the_other_losses_are_issued(model_cfg, monkeypatch):
    """The step starts every matching (the student's and the query group's to ground truth, the
    logits KD's to the teacher), all solved in the background thread, and issues the feature KD
    before it waits for any: the solver here holds the student-to-teacher matrices until the
    feature KD has run. The losses (same keys, same order) and gradients are bit-identical to the
    step with the logits KD's matching solved synchronously."""
    import threading

    from detrdistill.distill import logits_kd as logits_kd_module
    from kd_core import matching
    from kd_core.matching import PendingAssignments, linear_sum_assignment_batch

    def step(model):
        model.zero_grad()
        with EventStorage(0):
            losses = model(_batch())
        sum(losses.values()).backward()
        return losses, [p.grad.clone() for p in model.student.parameters() if p.grad is not None]

    teacher_model = _model(model_cfg, seed=1)
    model = _detector(_model(model_cfg), teacher_model)
    model.train()

    with monkeypatch.context() as m:  # the reference: solved in the calling thread, before the other losses
        m.setattr(logits_kd_module, "linear_sum_assignment_batch_async", lambda costs: PendingAssignments.finished(linear_sum_assignment_batch(costs)))
        ref_losses, ref_grads = step(model)

    feature_kd_ran = threading.Event()
    feature_forward = model.feature_kd.forward

    def feature_kd_forward(*args, **kwargs):
        feature_kd_ran.set()
        return feature_forward(*args, **kwargs)

    scipy_solver = matching.linear_sum_assignment
    solved_in_background = []
    queries = model_cfg.num_queries

    def solver(block):
        if threading.current_thread().name.startswith("kd_matching"):
            solved_in_background.append(block.shape)
            if block.shape == (queries, queries):  # student to teacher: held until the feature KD is issued
                assert feature_kd_ran.wait(30), "the step waited for the logits KD's matching before issuing the feature KD"
        return scipy_solver(block)

    monkeypatch.setattr(model.feature_kd, "forward", feature_kd_forward)
    monkeypatch.setattr(matching, "linear_sum_assignment", solver)
    losses, grads = step(model)
    per_call = 2 * model_cfg.num_decoder_layers  # layers x images
    # the student's and the query group's matchings to the 2 ground-truth boxes, then the logits KD's
    assert solved_in_background == [(queries, 2)] * (2 * per_call) + [(queries, queries)] * per_call
    # the order of the step before the matchings went to the background (Detectron2 sums the losses in it)
    query_group = [k for k in losses if k.startswith("loss_kd_query")]
    student_terms = [k for k in losses if not k.startswith("loss_kd")]
    assert list(losses) == student_terms + list(HungarianLogitsDistillation.LOSS_NAMES) + ["loss_kd_feature"] + query_group
    assert list(losses) == list(ref_losses) and query_group and student_terms
    assert all(torch.equal(losses[k], ref_losses[k]) for k in losses)
    assert len(grads) == len(ref_grads) and all(torch.equal(a, b) for a, b in zip(grads, ref_grads))

def test_distillation_step_waits_for_no_device_result_outside_the_host_side_targets(model_cfg):
    """No host wait on a GPU in the DETRDistill training step (forward and backward) outside
    ``prepare_targets``, which reads the targets while they are still on the host: no ``.item()``,
    ``nonzero`` or boolean-mask indexing in the losses, the matchings' costs or the feature KD
    (``tools/benchmark_overhead.py --list-syncs``; the matchings' copies are asynchronous)."""
    import sys

    sys.path.insert(0, os.path.join(ROOT, "tools"))
    from benchmark_overhead import find_host_syncs

    model = _detector(_model(model_cfg), _model(model_cfg, seed=1))
    model.train()
    batch = _batch(empty_last=True)

    def step():
        with EventStorage(0):
            losses = model(batch)
        sum(losses.values()).backward()

    syncs = find_host_syncs(step)
    # host-side by design: the targets before their copy, Detectron2's ImageList reading the image sizes
    host_side = {site for site in syncs if "(prepare_targets)" in site or "structures/image_list.py" in site}
    assert any("(prepare_targets)" in site for site in host_side), syncs  # the finder sees them
    assert set(syncs) == host_side, {site: n for site, n in syncs.items() if site not in host_side}

def test_student_equal_to_teacher_gives_minimal_kd(model_cfg):
    teacher_model = _model(model_cfg, seed=3)
    student = copy.deepcopy(teacher_model)
    model = _detector(student, teacher_model, query_kd=False)
    model.train()
    student.eval()  # no dropout anyway; same BN statistics as the teacher
    with EventStorage(0):
        losses = model.forward_train(_batch())
    assert losses["loss_kd_logits_bbox"].item() == pytest.approx(0.0, abs=1e-5)
    assert losses["loss_kd_logits_giou"].item() == pytest.approx(0.0, abs=1e-4)
    assert losses["loss_kd_feature"].item() == pytest.approx(0.0, abs=1e-8)


def test_fewer_student_decoder_layers_use_grouped_mapping(model_cfg):
    teacher_model = _model(model_cfg, seed=1, num_decoder_layers=2)
    model = _detector(_model(model_cfg, num_decoder_layers=1), teacher_model, relation_kd=QueryRelationDistillation(student_dim=64, teacher_dim=64))
    model.train()
    with EventStorage(0):
        losses = model(_batch())
    assert torch.isfinite(losses["loss_kd_logits_class"]) and torch.isfinite(losses["loss_kd_relation"])
    assert "loss_kd_query_class" in losses  # the group has a single layer, fed the teacher's last assignment


def test_query_kd_needs_same_hidden_size(model_cfg):
    teacher_model = _model(model_cfg, hidden_dim=32)
    with pytest.raises(ValueError, match="hidden sizes"):
        _detector(_model(model_cfg), teacher_model, feature_kd=None)


def test_encoder_runs_once_per_step_and_inference_is_the_student(model_cfg):
    student = _model(model_cfg)
    model = _detector(student, _model(model_cfg, seed=1))
    calls = []
    original = student.transformer.encode

    def counting_encode(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    student.transformer.encode = counting_encode
    model.train()
    with EventStorage(0):
        model(_batch())
    assert len(calls) == 1  # the teacher-query group shares the student's single encoder pass
    model.eval()
    with torch.no_grad():
        a = model(_batch(1))[0]["instances"]
        b = student(_batch(1))[0]["instances"]
    assert torch.equal(a.scores, b.scores)


def test_fresh_assignment_switch_and_warmup_zero_terms(model_cfg):
    from kd_core.schedules import LossWeightSchedule

    model = _detector(
        _model(model_cfg),
        _model(model_cfg, seed=1),
        query_kd_assignment="fresh",
        feature_kd_weight=LossWeightSchedule(1.0, start_iter=10),
    )
    model.train()
    with EventStorage(0):
        losses = model(_batch())
    assert losses["loss_kd_feature"].item() == 0.0 and losses["loss_kd_query_class"].item() > 0
    with pytest.raises(ValueError, match="query_kd_assignment"):
        _detector(_model(model_cfg), _model(model_cfg), query_kd_assignment="teachers")


@pytest.mark.parametrize("teacher_references", [True, False])
def test_query_group_starts_from_the_teachers_reference_points(model_cfg, teacher_references):
    student, teacher_model = _model(model_cfg), _model(model_cfg, seed=1)
    model = _detector(student, teacher_model, query_kd_teacher_references=teacher_references)
    seen = []
    original = student.run

    def recording_run(images, extra_queries=None):
        seen.append(extra_queries)
        return original(images, extra_queries=extra_queries)

    student.run = recording_run
    model.train()
    with EventStorage(0):
        losses = model(_batch())
    assert torch.isfinite(losses["loss_kd_query_giou"])
    (extra,) = seen
    assert not extra.requires_grad
    hidden = model_cfg.hidden_dim
    if teacher_references:  # [positional | content | the teacher's reference xy]
        queries = teacher_model.query_embed.weight
        refs = teacher_model.transformer.reference_points(queries[:, :hidden]).sigmoid()
        assert extra.shape == (2, 20, 2 * hidden + 2)
        assert torch.allclose(extra[0], torch.cat([queries, refs], -1))
    else:  # the bare query embedding: the student's reference layer maps it
        assert torch.equal(extra, teacher_model.query_embed.weight)


@pytest.mark.parametrize("family", ["deformable_detr", "conditional_detr", "adamixer"])
def test_distillation_step_under_cpu_bf16_autocast(family):
    """train.amp.enabled on CPU: one KDCPUAMPTrainer step of each tiny DETRDistill config gives
    finite fp32 losses for every term and steps fp32 student weights."""
    from kd_core.engine import KDCPUAMPTrainer, build_trainer

    cfg = LazyConfig.load(os.path.join(ROOT, f"projects/DETRDistill/configs/detrdistill/{family}_r34_r18_tiny_cpu.py"))
    cfg.model.teacher.weights = None
    cfg.model.teacher.allow_random_init = True
    torch.manual_seed(0)
    model = instantiate(cfg.model)
    model.train()
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    batch = _batch(size=96)

    def loader():
        while True:
            yield batch

    trainer = build_trainer(model, loader(), torch.optim.AdamW(model.parameters(), lr=1e-4), amp_enabled=True)
    assert type(trainer) is KDCPUAMPTrainer
    with EventStorage(0) as storage:
        trainer.storage, trainer.iter = storage, 0
        trainer.run_step()
    logged = {k: v.latest() for k, v in storage.histories().items() if k.startswith("loss_")}
    assert {"loss_class", "loss_kd_logits_class", "loss_kd_feature", "loss_kd_query_class"} <= set(logged)
    assert all(torch.isfinite(torch.tensor(v)) for v in logged.values()), logged
    assert all(p.dtype == torch.float32 for p in model.parameters())
    changed = [k for k, p in model.named_parameters() if not torch.equal(p, before[k])]
    assert changed and all(k.startswith("student.") for k in changed)


def test_distillation_configs_default_to_the_official_codes_query_group():
    """Every DETRDistill config loads; the query group is matched anew and mapped by the student's
    reference layer (the official code) unless the config names the teacher-assignment variant."""
    config_dir = os.path.join(ROOT, "projects/DETRDistill/configs/detrdistill")
    paths = sorted(p for p in os.listdir(config_dir) if p.endswith(".py"))
    assert "deformable_detr_r101_r50_50ep_teacher_assignment.py" in paths and len(paths) > 10
    for name in paths:
        model = LazyConfig.load(os.path.join(config_dir, name)).model
        variant = name.endswith("_teacher_assignment.py")
        assert model.query_kd_assignment == ("teacher" if variant else "fresh"), name
        assert model.query_kd_teacher_references is variant, name
