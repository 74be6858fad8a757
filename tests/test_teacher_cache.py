"""The teacher output cache: exact keys, batch assembly, fingerprint checks, FitNet and ScaleKD integration."""
import copy
import os

import pytest
import torch
from detectron2.config import instantiate
from detectron2.utils.events import EventStorage

from kd_core.config import get_config
from kd_core.feature_mimic import FeatureMimicDistiller
from kd_core.meta_arch import DistillationDetector, run_backbone
from kd_core.teacher import FrozenTeacher
from kd_core.teacher_cache import TeacherCacheError, teacher_fingerprint, teacher_precision
from kd_core.testing import random_detection_batch


@pytest.fixture(scope="module")
def tiny_cfg():
    return get_config("common/models/tiny.py")


def _teacher(tiny_cfg, seed=0):
    torch.manual_seed(seed)
    return FrozenTeacher(instantiate(copy.deepcopy(tiny_cfg.retinanet_r34)), allow_random_init=True)


def _fitnet(tiny_cfg, teacher, cache_dir="", levels=("p3", "p4")):
    torch.manual_seed(1)
    return DistillationDetector(
        student=instantiate(copy.deepcopy(tiny_cfg.retinanet_r18)),
        teacher=teacher,
        distillers={
            "feature_mimic": FeatureMimicDistiller(
                levels=list(levels), student_channels=[64] * len(levels), teacher_channels=[64] * len(levels)
            )
        },
        teacher_cache_dir=cache_dir,
    ).train()


def test_cache_hits_give_each_image_its_own_teacher_features(tiny_cfg, tmp_path):
    teacher = _teacher(tiny_cfg)
    model = _fitnet(tiny_cfg, teacher, str(tmp_path / "cache"))
    live = _fitnet(tiny_cfg, teacher)  # same teacher, no cache
    batch = random_detection_batch(1, (96, 128), seed=0) + random_detection_batch(1, (64, 80), seed=1)

    with EventStorage(0) as storage:
        _, first = model.teacher_backbone_features(batch)
        assert storage.history("teacher_cache_hit_fraction").latest() == 0.0
        _, second = model.teacher_backbone_features(batch)
        assert storage.history("teacher_cache_hit_fraction").latest() == 1.0
    cache = model.teacher_cache
    assert (cache.hits, cache.misses) == (2, 2)
    assert len([f for _, _, files in os.walk(cache.directory) for f in files if f.endswith(".pt")]) == 2
    _, batched = live.teacher_backbone_features(batch)
    assert set(first) == {"backbone"} and set(first["backbone"]) == {"p3", "p4"}  # only what the distiller reads
    for level in ("p3", "p4"):
        a, b = first["backbone"][level], second["backbone"][level]
        assert torch.equal(a, b) and a.shape == batched["backbone"][level].shape  # the batch's padded size
        # image 1 (64x80, padded to 64x96 alone) holds its own teacher features, zeros beyond them
        alone = teacher.run(run_backbone, [batch[1]])[level][0]
        h, w = alone.shape[-2:]
        assert torch.allclose(a[1, :, :h, :w], alone, rtol=1e-5, atol=1e-4)
        assert a[1, :, h:].abs().sum() == 0 and a[1, :, :, w:].abs().sum() == 0
        # image 0 fills the batch: its features equal the batched teacher's
        assert torch.allclose(a[0], batched["backbone"][level][0], rtol=1e-4, atol=1e-3)

    flipped = [dict(batch[0], image=batch[0]["image"].flip(-1)), batch[1]]  # another view: a miss
    model.teacher_backbone_features(flipped)
    assert cache.last_batch_hits == 1 and (cache.hits, cache.misses) == (3, 3)


def test_cached_kd_step_equals_the_uncached_one_without_batch_padding(tiny_cfg, tmp_path):
    teacher = _teacher(tiny_cfg)
    batch = random_detection_batch(2, (96, 128), seed=3)  # multiples of 32: no batch padding
    losses = []
    for cache_dir in ("", str(tmp_path / "c"), str(tmp_path / "c")):  # live, cold cache, warm cache
        model = _fitnet(tiny_cfg, teacher, cache_dir)
        with EventStorage(0):
            losses.append(model(batch))
    for cold_or_warm in losses[1:]:
        assert set(cold_or_warm) == set(losses[0])
        for k, v in losses[0].items():
            assert torch.allclose(cold_or_warm[k], v, rtol=1e-4, atol=1e-6), k
    loss = losses[2]["loss_kd_feature_mimic"]
    assert loss > 0 and loss.requires_grad


def test_cache_of_another_teacher_is_refused_and_kept(tiny_cfg, tmp_path):
    directory = str(tmp_path / "cache")
    model = _fitnet(tiny_cfg, _teacher(tiny_cfg, seed=0), directory)
    batch = random_detection_batch(1, (64, 64), seed=0)
    model.teacher_backbone_features(batch)
    before = sorted(os.path.join(r, f) for r, _, fs in os.walk(directory) for f in fs)
    with pytest.raises(TeacherCacheError, match="another teacher.*weights"):
        _fitnet(tiny_cfg, _teacher(tiny_cfg, seed=1), directory)
    assert sorted(os.path.join(r, f) for r, _, fs in os.walk(directory) for f in fs) == before
    # other distiller levels: the entry lacks p5, so it is recomputed (a miss), not a KeyError
    wider = _fitnet(tiny_cfg, model.teacher, directory, levels=("p3", "p4", "p5"))
    wider.teacher_backbone_features(batch)
    assert wider.teacher_cache.misses == 1


def test_unreadable_entry_is_recomputed(tiny_cfg, tmp_path):
    model = _fitnet(tiny_cfg, _teacher(tiny_cfg), str(tmp_path / "cache"))
    batch = random_detection_batch(1, (64, 64), seed=0)
    _, good = model.teacher_backbone_features(batch)
    key = model.teacher_cache.image_key(batch[0]["image"], teacher_precision(model.teacher))
    with open(model.teacher_cache._path(key), "wb") as f:
        f.write(b"truncated")
    _, again = model.teacher_backbone_features(batch)
    assert model.teacher_cache.misses == 2
    assert torch.equal(again["backbone"]["p3"], good["backbone"]["p3"])
    assert model.teacher_cache.load(key) is not None  # rewritten


def test_cache_needs_a_backbone_teacher_forward(tiny_cfg, tmp_path):
    with pytest.raises(ValueError, match="teacher_forward='backbone'"):
        DistillationDetector(
            student=instantiate(copy.deepcopy(tiny_cfg.retinanet_r18)),
            teacher=_teacher(tiny_cfg),
            teacher_forward="full",
            teacher_cache_dir=str(tmp_path / "c"),
        )


def test_warm_cache_runs_no_teacher_forward_and_keeps_every_configurations_features(tiny_cfg, tmp_path):
    teacher = _teacher(tiny_cfg)
    model = _fitnet(tiny_cfg, teacher, str(tmp_path / "cache"))
    calls = []
    teacher.model.backbone.register_forward_hook(lambda *a: calls.append(1))
    batch = random_detection_batch(2, (96, 128), seed=5)
    model.teacher_backbone_features(batch, output_keys=())  # FitNet training: records only
    assert len(calls) == 3  # the batch's shape probe + one forward per image
    _, records = model.teacher_backbone_features(batch, output_keys=())
    assert len(calls) == 3 and model.teacher_cache.last_batch_hits == 2  # warm: the teacher does not run
    outputs, again = model.teacher_backbone_features(batch)  # all outputs: the entries are completed ...
    assert set(outputs) == {"p3", "p4", "p5", "p6", "p7"} and model.teacher_cache.last_batch_hits == 0
    assert torch.equal(again["backbone"]["p3"], records["backbone"]["p3"])
    outputs_2, _ = model.teacher_backbone_features(batch, output_keys=())  # ... and keep the records
    assert outputs_2 == {} and model.teacher_cache.last_batch_hits == 2


def test_precision_is_part_of_the_key_and_bf16_teachers_have_a_fingerprint(tiny_cfg, tmp_path):
    model = _fitnet(tiny_cfg, _teacher(tiny_cfg), str(tmp_path / "cache"))
    batch = random_detection_batch(1, (64, 64), seed=0)
    model.teacher_backbone_features(batch)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # e.g. the trainer's AMP: other features
        assert teacher_precision(model.teacher) == "cpu:autocast-torch.bfloat16"
        model.teacher_backbone_features(batch)
    assert model.teacher_cache.misses == 2
    model.teacher_backbone_features(batch)
    assert model.teacher_cache.hits == 1
    bf16 = _teacher(tiny_cfg)
    bf16.model.to(torch.bfloat16)
    assert teacher_fingerprint(bf16)["weights"] != teacher_fingerprint(model.teacher)["weights"]


def test_scalekd_with_a_2x_teacher_trains_from_the_cache(tmp_path):
    from scalekd.testing import load_tiny_config, random_batch

    cfg = load_tiny_config("retinanet", warmup_iters=0)
    cfg.model.teacher_cache_dir = str(tmp_path / "cache")
    torch.manual_seed(0)
    model = instantiate(cfg.model).train()
    batch = random_batch(2, size=(128, 160), teacher_scale=2.0, seed=0)
    padded = model.student.preprocess_image(batch).tensor.shape[-2:]
    pairs = model.assistant.module.level_pairs
    features, records = model.teacher_backbone_features(batch, model.teacher_padded_size(padded), list(pairs.values()))
    live = model.run_teacher(batch, padded)
    assert set(features) == set(pairs.values()) and set(records) == {"backbone.bottom_up"}
    assert set(records["backbone.bottom_up"]) == {"res5"}  # what the SDF distiller reads
    for level in features:  # 256x320 teacher images: no batch padding, so equal to the live teacher
        assert features[level].shape == live[level].shape
        assert torch.allclose(features[level], live[level], rtol=1e-4, atol=1e-3)
    # student 100x150 -> padded 128x160; teacher image 200x300 pads alone to 224x320, but ScaleKD pads the
    # teacher's batch to 256x320: the cached maps have the live shapes, zero beyond the image's own padding
    odd = random_batch(1, size=(100, 150), teacher_scale=2.0, seed=1)
    odd_padded = model.student.preprocess_image(odd).tensor.shape[-2:]
    assert tuple(odd_padded) == (128, 160)
    odd_features, odd_records = model.teacher_backbone_features(odd, model.teacher_padded_size(odd_padded), list(pairs.values()))
    odd_live = model.run_teacher(odd, odd_padded)
    for level in odd_features:
        assert odd_features[level].shape == odd_live[level].shape
    res5 = odd_records["backbone.bottom_up"]["res5"]
    assert res5.shape[-2:] == (8, 10) and res5[..., 7:, :].abs().sum() == 0 and res5[..., :7, :].abs().sum() > 0
    with EventStorage(0):
        for _ in range(2):
            losses = model(batch)
    assert model.teacher_cache.hits == 4 and model.teacher_cache.misses == 3  # 2 + 1 above, then all hits
    assert all(torch.isfinite(v) for v in losses.values()) and losses["loss_kd_sdf"] > 0
