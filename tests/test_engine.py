"""kd_core.engine: the training loops build_trainer picks."""
import pytest
import torch
from torch import nn

from detectron2.utils.events import EventStorage

from kd_core.engine import KDCPUAMPTrainer, KDLossShareHook, KDSimpleTrainer, build_trainer, to_channels_last


class _RecordingModel(nn.Module):
    """A linear model whose forward records the autocast state and returns a loss dict."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(8, 8)
        self.seen = []

    def forward(self, batch):
        self.seen.append((torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")))
        out = self.linear(batch)
        self.seen.append(out.dtype)
        return {"loss_a": out.float().pow(2).mean(), "loss_b": out.float().abs().mean()}


def _loader(batch=None):
    """``batch`` forever, or (default) random (4, 8) inputs for ``_RecordingModel``."""
    torch.manual_seed(0)
    while True:
        yield torch.randn(4, 8) if batch is None else batch


def test_cpu_amp_runs_the_forward_in_bfloat16_and_steps_fp32_weights():
    model = _RecordingModel()
    before = model.linear.weight.detach().clone()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    trainer = build_trainer(model, _loader(), optimizer, amp_enabled=True)
    assert type(trainer) is KDCPUAMPTrainer
    with EventStorage(0) as storage:
        trainer.storage = storage
        trainer.iter = 0
        trainer.run_step()
    assert model.seen == [(True, torch.bfloat16), torch.bfloat16]
    assert model.linear.weight.dtype == torch.float32 and model.linear.weight.grad.dtype == torch.float32
    assert not torch.equal(model.linear.weight, before)  # the optimizer stepped
    assert "loss_a" in storage.histories()


def test_without_amp_the_forward_is_fp32():
    model = _RecordingModel()
    trainer = build_trainer(model, _loader(), torch.optim.SGD(model.parameters(), lr=0.1), amp_enabled=False)
    assert type(trainer) is KDSimpleTrainer
    with EventStorage(0) as storage:
        trainer.storage = storage
        trainer.iter = 0
        trainer.run_step()
    assert model.seen[0][0] is False and model.seen[1] == torch.float32



def test_to_channels_last_reaches_the_teacher_and_the_assistant_and_keeps_the_losses():
    """Student, frozen teacher and ScaleKD's assistant get NHWC conv weights; the same parameters
    (optimizers keep working) and the same losses as the NCHW model, up to float rounding."""
    from scalekd.testing import build_tiny_scalekd, random_batch

    torch.manual_seed(0)
    model = build_tiny_scalekd("retinanet", warmup_iters=0)
    torch.manual_seed(0)
    reference = build_tiny_scalekd("retinanet", warmup_iters=0)  # the same weights, NCHW
    params = {id(p) for p in model.parameters()}
    assert to_channels_last(model) is model
    assert {id(p) for p in model.parameters()} == params
    nets = {"student": model.student, "teacher": model.teacher.model, "assistant": model.assistant.module}
    for name, net in nets.items():
        convs = [m.weight for m in net.modules() if isinstance(m, nn.Conv2d)]
        assert convs and all(w.is_contiguous(memory_format=torch.channels_last) for w in convs), name
        assert not all(w.is_contiguous() for w in convs), name
    batch = random_batch(size=(96, 128), teacher_scale=2.0)
    with EventStorage(0):
        losses = model(batch)
    with EventStorage(0):
        expected = reference(batch)
    assert set(losses) == set(expected)
    for k in expected:
        torch.testing.assert_close(losses[k], expected[k], rtol=1e-4, atol=1e-5, msg=k)


def _one_step(trainer):
    with EventStorage(0) as storage:
        trainer.storage = storage
        trainer.iter = 0
        trainer.run_step()
    return storage


def test_fcos_trains_under_cpu_amp_alone_and_as_scalekd_student():
    """The repository's FCOS (FCOSWithFloat32Losses) takes a bf16 autocast step with finite fp32
    losses, alone and as a ScaleKD student with the CSA mimic losses on (they decode boxes and
    take fvcore's GIoU too); the weights it steps stay fp32."""
    from detectron2.config import instantiate

    from kd_core.config import get_config
    from kd_core.modeling import FCOSWithFloat32Losses
    from scalekd.testing import build_tiny_scalekd, random_batch

    torch.manual_seed(0)
    student = instantiate(get_config("common/models/tiny.py").fcos_r18)
    student.train()
    assert type(student) is FCOSWithFloat32Losses
    kd = build_tiny_scalekd("fcos", warmup_iters=0)
    assert type(kd.student) is FCOSWithFloat32Losses
    for model, batch, names in [
        (student, random_batch(teacher_scale=1.0), {"loss_fcos_cls", "loss_fcos_loc", "loss_fcos_ctr"}),
        (kd, random_batch(teacher_scale=2.0), {"loss_fcos_loc", "loss_kd_sdf", "loss_kd_csa_cls", "loss_kd_csa_bbox"}),
    ]:
        trainer = build_trainer(model, _loader(batch), torch.optim.SGD(model.parameters(), lr=0.01), amp_enabled=True)
        assert type(trainer) is KDCPUAMPTrainer
        storage = _one_step(trainer)
        logged = {k: v.latest() for k, v in storage.histories().items()}
        assert names <= set(logged), names - set(logged)
        assert all(torch.isfinite(torch.tensor(logged[k])) for k in names), logged
        assert all(p.dtype == torch.float32 for p in model.parameters())


def test_amp_refuses_detectron2_fcos_before_any_step():
    """Detectron2's own FCOS fails under autocast at its first step (fvcore giou_loss dtype mix): a
    clear error when the trainer is built instead, also for an FCOS student inside a distillation
    model; the error names the class that works."""
    from detectron2.modeling.meta_arch.fcos import FCOS
    from scalekd.testing import build_tiny_scalekd

    model = build_tiny_scalekd("fcos")
    model.student.__class__ = FCOS  # as a config built from Detectron2's common/models/fcos.py would give
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="FCOS cannot train under autocast.*FCOSWithFloat32Losses"):
        build_trainer(model, _loader(), optimizer, amp_enabled=True)
    assert type(build_trainer(model, _loader(), optimizer, amp_enabled=False)) is KDSimpleTrainer


def test_kd_loss_share_hook_uses_this_steps_losses_only():
    class _Trainer:
        pass

    hook = KDLossShareHook()
    hook.trainer = _Trainer()
    with EventStorage(0) as storage:
        hook.trainer.storage = storage
        storage.put_scalars(loss_cls=1.0, loss_box_reg=0.5, loss_kd_sdf=0.25, loss_kd_csa_cls=0.25, csa_loss_cls=9.0)
        hook.after_step()
        assert storage.latest()["kd_loss_share"][0] == pytest.approx(0.25)  # 0.5 / 2.0; csa_loss_* is not the student's
        storage.iter = 1
        storage.put_scalars(loss_cls=1.0)  # a student alone: no KD term this step, and last step's are stale
        hook.after_step()
        assert storage.latest()["kd_loss_share"] == (pytest.approx(0.25), 0)  # nothing new logged


def test_config_optimizers_are_fused_and_a_checkpoint_of_the_default_kernel_resumes_with_it():
    """The shared optimizers (kd_core's SGD and AdamW, DETRDistill's AdamW) use PyTorch's fused
    kernels. An optimizer state saved by the default (unfused) AdamW, i.e. a checkpoint of a run
    started before fused became the default, loads into the configured optimizer and continues
    that run's update with its kernel: PyTorch's load_state_dict restores every param-group
    setting, ``fused`` included, from the checkpoint."""
    import copy
    import os

    from detectron2.config import LazyConfig, instantiate

    from kd_core.config import get_config

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    detr_optim = LazyConfig.load(os.path.join(repo, "projects", "DETRDistill", "configs", "common", "optim.py"))
    common = get_config("common/optim.py")
    model = _RecordingModel()
    for cfg in (common.SGD, common.AdamW, detr_optim.optimizer):
        cfg.params.model = model
        assert instantiate(cfg).defaults["fused"] is True

    def step(net, optimizer, x):
        optimizer.zero_grad()
        sum(net(x).values()).backward()
        optimizer.step()

    torch.manual_seed(0)
    inputs = torch.randn(5, 4, 8)
    unfused = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=1e-4)
    for x in inputs[:3]:
        step(model, unfused, x)
    resumed_model = copy.deepcopy(model)
    common.AdamW.params.model = resumed_model
    common.AdamW.lr = 1e-2
    resumed = instantiate(common.AdamW)
    resumed.load_state_dict(copy.deepcopy(unfused.state_dict()))  # as if read from a checkpoint file
    for x in inputs[3:]:
        step(model, unfused, x)
        step(resumed_model, resumed, x)
    assert resumed.state_dict()["state"][0]["step"].item() == 5
    assert not any(group["fused"] for group in resumed.param_groups)  # the kernel the run started with
    for a, b in zip(model.parameters(), resumed_model.parameters()):
        torch.testing.assert_close(a, b)
