"""ScaleKD through tools/lazyconfig_train_net.py (in-process): train, checkpoint, --resume, --eval-assistant.

The run continues the CSA warm-up schedule and the assistant's Adam state after resuming; resuming
from a checkpoint whose assistant is missing or of another shape is a clear error."""
import importlib.util
import json
import os
import types

import cv2
import numpy as np
import pytest
import torch
import detectron2.data.transforms as T
from detectron2.config import LazyCall as L
from detectron2.config import instantiate
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation import COCOEvaluator
from detectron2.structures import BoxMode

from file_digest import sha256  # noqa: E402 (tests/ helper)
from kd_core.checkpoint import ResumeMismatchError
from scalekd.testing import load_tiny_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATASET = "scalekd_test_tiny_train"


pytestmark = pytest.mark.usefixtures("one_intra_op_thread")


def _train_net():
    spec = importlib.util.spec_from_file_location("scalekd_test_train_net", os.path.join(ROOT, "tools", "lazyconfig_train_net.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    """4 random 96x128 images with 3 boxes each, registered in-process."""
    root = tmp_path_factory.mktemp("scalekd_data")
    rng = np.random.default_rng(0)
    dicts = []
    for i in range(4):
        path = str(root / f"{i}.png")
        cv2.imwrite(path, rng.integers(0, 256, (96, 128, 3), dtype=np.uint8))
        anns = []
        for _ in range(3):
            x, y = rng.uniform(0, 80), rng.uniform(0, 50)
            w, h = rng.uniform(8, 40), rng.uniform(8, 40)
            anns.append({"bbox": [x, y, w, h], "bbox_mode": BoxMode.XYWH_ABS, "category_id": int(rng.integers(0, 4)), "iscrowd": 0})
        dicts.append({"file_name": path, "height": 96, "width": 128, "image_id": i, "annotations": anns})
    if DATASET in DatasetCatalog.list():
        DatasetCatalog.remove(DATASET)
    DatasetCatalog.register(DATASET, lambda: dicts)
    MetadataCatalog.get(DATASET).set(thing_classes=["a", "b", "c", "d"])
    return DATASET


def _config(output_dir, teacher_ckpt, max_iter):
    cfg = load_tiny_config("retinanet", random_teacher=False, warmup_iters=3)
    cfg.model.teacher.weights = teacher_ckpt
    cfg.dataloader.train.dataset.names = DATASET
    cfg.dataloader.train.mapper.augmentations = [L(T.ResizeShortestEdge)(short_edge_length=96, max_size=128)]
    cfg.dataloader.train.total_batch_size = 2
    cfg.train.output_dir = output_dir
    cfg.train.max_iter = max_iter
    cfg.train.log_period = 1
    cfg.train.checkpointer.period = 100
    cfg.train.eval_period = 0
    del cfg.dataloader.evaluator  # Detectron2's EvalHook evaluates after the last iteration otherwise
    return cfg


def test_train_and_resume_continue_warmup_and_assistant_state(tmp_path, tiny_dataset, monkeypatch):
    train_net = _train_net()
    # a teacher checkpoint made here (random weights) instead of a trained one
    teacher = load_tiny_config("retinanet").model.teacher.model
    torch.manual_seed(0)
    teacher_ckpt = str(tmp_path / "teacher.pth")
    torch.save({"model": instantiate(teacher).state_dict()}, teacher_ckpt)
    out = str(tmp_path / "run")

    train_net.do_train(types.SimpleNamespace(resume=False), _config(out, teacher_ckpt, max_iter=3))
    first = torch.load(os.path.join(out, "model_final.pth"), weights_only=False)
    assert first["iteration"] == 2
    steps = {float(s["step"]) for s in first["scalekd_assistant"]["optimizer"]["state"].values()}
    assert steps == {3.0}

    train_net.do_train(types.SimpleNamespace(resume=True), _config(out, teacher_ckpt, max_iter=5))
    final = torch.load(os.path.join(out, "model_final.pth"), weights_only=False)
    assert final["iteration"] == 4
    steps = {float(s["step"]) for s in final["scalekd_assistant"]["optimizer"]["state"].values()}
    assert steps == {5.0}  # the assistant's Adam continued from the checkpoint (3 + 2 steps)

    with open(os.path.join(out, "metrics.json")) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    by_iter = {r["iteration"]: r for r in rows if "loss_kd_csa_cls" in r}
    assert sorted(by_iter) == [0, 1, 2, 3, 4]
    for it, row in by_iter.items():
        assert all(np.isfinite(v) for k, v in row.items() if k.startswith(("loss", "csa_")))
        assert "csa_loss_cls" in row and "loss_kd_sdf" in row
        if it < 3:  # warm-up: the mimic terms are off, the assistant trains
            assert row["loss_kd_csa_cls"] == 0.0
        else:  # the resumed run switched them on at the configured iteration
            assert row["loss_kd_csa_cls"] > 0.0

    # --resume with an assistant of another shape: a clear error before anything is loaded or written
    final_sha = sha256(os.path.join(out, "model_final.pth"))
    other = _config(out, teacher_ckpt, max_iter=7)
    other.model.csa_ffn_dim = 32
    with pytest.raises(ResumeMismatchError, match=r"scalekd_assistant: 'attention\.ffn\.0\.weight' has shape \(\d+, \d+\) in the checkpoint and \(32, \d+\)"):
        train_net.do_train(types.SimpleNamespace(resume=True), other)
    assert sha256(os.path.join(out, "model_final.pth")) == final_sha
    # ... or with settings that keep every shape: the recorded settings differ
    for key, value, message in [
        ("csa_num_heads", 2, r"scalekd_assistant: the assistant's 'num_heads' is 8 in the checkpoint and 2 in this model"),
        ("csa_lr", 1e-3, r"scalekd_assistant: the assistant's 'lr' is 0\.0003 in the checkpoint and 0\.001 in this model"),
    ]:
        other = _config(out, teacher_ckpt, max_iter=7)
        other.model[key] = value
        with pytest.raises(ResumeMismatchError, match=message):
            train_net.do_train(types.SimpleNamespace(resume=True), other)
        assert sha256(os.path.join(out, "model_final.pth")) == final_sha

    # --eval-assistant: the trained assistant of the checkpoint, scored by Detectron2's COCOEvaluator
    cfg = _config(str(tmp_path / "eval"), teacher_ckpt, max_iter=5)
    cfg.dataloader.test.dataset.names = DATASET
    cfg.dataloader.test.mapper.augmentations = [L(T.ResizeShortestEdge)(short_edge_length=96, max_size=128)]
    cfg.dataloader.evaluator = L(COCOEvaluator)(dataset_name=DATASET, output_dir=str(tmp_path / "coco"))
    cfg.train.init_checkpoint = os.path.join(out, "model_final.pth")
    results = train_net.do_eval_assistant(cfg)
    assert set(results["bbox"]) >= {"AP", "AP50", "APs"}
    cfg.train.init_checkpoint = teacher_ckpt  # a checkpoint without an assistant
    with pytest.raises(ValueError, match="holds no Cross-Scale Assistant"):
        train_net.do_eval_assistant(cfg)
    cfg.train.init_checkpoint = ""
    with pytest.raises(ValueError, match="needs train.init_checkpoint"):
        train_net.do_eval_assistant(cfg)

    # --eval-teacher: the teacher scored on the view it distils from (the mapper's 2x rendering of the test image)
    import kd_core.meta_arch

    seen, real_teacher_inputs = [], kd_core.meta_arch.teacher_inputs

    def spy(batched_inputs, image_key="teacher_image"):
        out = real_teacher_inputs(batched_inputs, image_key)
        seen.extend(tuple(x["image"].shape[-2:]) for x in out)
        return out

    monkeypatch.setattr(kd_core.meta_arch, "teacher_inputs", spy)
    results = train_net.do_eval_teacher(cfg)
    assert set(results["bbox"]) >= {"AP", "AP50", "APs"} and seen and set(seen) == {(192, 256)}
    # without the mapper's view (another test loader): the input image resized by teacher_scale
    seen.clear()
    teacher = instantiate(cfg.model).teacher_detector()
    teacher.model.test_score_thresh = 0.0
    image = torch.randint(0, 256, (3, 96, 128), dtype=torch.uint8)
    boxes = teacher([{"image": image, "height": 48, "width": 64}])[0]["instances"].pred_boxes.tensor
    assert seen == [(192, 256)] and len(boxes) and boxes[:, 2].max() <= 64 and boxes[:, 3].max() <= 48
    with pytest.raises(RuntimeError, match="evaluation only"):
        teacher.train()

    # the reverse: resuming the assistant's checkpoint without an assistant trains on, with a warning
    warnings = []
    monkeypatch.setattr(train_net.logger, "warning", warnings.append)
    without = _config(out, teacher_ckpt, max_iter=6)
    without.model.use_csa = False
    train_net.do_train(types.SimpleNamespace(resume=True), without)
    assert any("holds ['scalekd_assistant'], which this model does not use" in w for w in warnings)
    assert "scalekd_assistant" not in torch.load(os.path.join(out, "model_final.pth"), weights_only=False)


def test_resuming_without_the_assistants_state_is_a_clear_error(tmp_path, tiny_dataset):
    """A checkpoint of the same student and SDF but no assistant (model.use_csa=False): Detectron2 would
    skip the missing checkpointable and train on at the restored iteration with a fresh assistant."""
    train_net = _train_net()
    torch.manual_seed(0)
    teacher_ckpt = str(tmp_path / "teacher.pth")
    torch.save({"model": instantiate(load_tiny_config("retinanet").model.teacher.model).state_dict()}, teacher_ckpt)
    out = str(tmp_path / "run")
    without = _config(out, teacher_ckpt, max_iter=2)
    without.model.use_csa = False
    train_net.do_train(types.SimpleNamespace(resume=False), without)
    before = sha256(os.path.join(out, "model_final.pth"))
    with pytest.raises(ResumeMismatchError, match=r"'scalekd_assistant' \(AssistantTrainer\) is missing from the checkpoint"):
        train_net.do_train(types.SimpleNamespace(resume=True), _config(out, teacher_ckpt, max_iter=3))
    assert sha256(os.path.join(out, "model_final.pth")) == before


def _faster_rcnn_losses(train_net, cfg, out):
    """Seed as default_setup does, train 2 iterations, return {iteration: losses} from metrics.json."""
    from detectron2.utils.env import seed_all_rng

    cfg.dataloader.train.dataset.names = DATASET
    cfg.dataloader.train.mapper.augmentations = [L(T.ResizeShortestEdge)(short_edge_length=96, max_size=128)]
    cfg.dataloader.train.total_batch_size = 2
    cfg.train.update(output_dir=out, max_iter=2, log_period=1, eval_period=0, seed=7)
    cfg.train.checkpointer.period = 100
    del cfg.dataloader.evaluator
    seed_all_rng(7)
    train_net.do_train(types.SimpleNamespace(resume=False), cfg)
    with open(os.path.join(out, "metrics.json")) as f:
        rows = [json.loads(line) for line in f]
    keys = ("loss_cls", "loss_box_reg", "loss_rpn_cls", "loss_rpn_loc")
    return {r["iteration"]: [r[k] for k in keys] for r in rows if "loss_cls" in r}


def test_a_student_alone_and_its_distilled_run_of_one_seed_draw_the_same_samples(tmp_path, tiny_dataset, monkeypatch):
    """The distillation model builds a teacher, an SDF block and an assistant, which draw from torch's RNG;
    training re-seeds after the build, so a Faster R-CNN student alone and the ScaleKD run with every KD
    weight 0 sample the same RPN anchors and RoIs, and log the same losses."""
    from detectron2.config import LazyConfig

    train_net = _train_net()
    kd = load_tiny_config("faster_rcnn", random_teacher=False)
    torch.manual_seed(0)
    teacher_ckpt = str(tmp_path / "teacher.pth")
    torch.save({"model": instantiate(kd.model.teacher.model).state_dict()}, teacher_ckpt)

    def kd_config():
        cfg = load_tiny_config("faster_rcnn", random_teacher=False)
        cfg.model.teacher.weights = teacher_ckpt
        cfg.model.teacher_scale = cfg.dataloader.train.mapper.teacher_scale = 1.0
        cfg.model.distillers.sdf.weight = 0.0
        cfg.model.use_csa = False
        return cfg

    alone = _faster_rcnn_losses(train_net, LazyConfig.load(os.path.join(ROOT, "projects/ScaleKD/configs/tiny/faster_rcnn_r18_tiny_cpu.py")), str(tmp_path / "a"))
    distilled = _faster_rcnn_losses(train_net, kd_config(), str(tmp_path / "kd"))
    assert sorted(alone) == sorted(distilled) == [0, 1]
    for it in alone:
        assert distilled[it] == pytest.approx(alone[it], rel=1e-5, abs=1e-7)
    # without the re-seed the runs sample differently (the check above can fail)
    monkeypatch.setattr(train_net, "seed_training_rng", lambda seed: None)
    unpaired = _faster_rcnn_losses(train_net, kd_config(), str(tmp_path / "kd_unpaired"))
    assert any(unpaired[it] != pytest.approx(alone[it], rel=1e-5, abs=1e-7) for it in alone)
