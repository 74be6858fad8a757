"""The DETR-family overfitting configs and the model benchmark script."""

import os
import subprocess
import sys

import pytest
from detectron2.config import LazyConfig, instantiate
from detectron2.data import DatasetCatalog

from kd_core.evaluation import SubsetCOCOEvaluator

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_DIR = os.path.join(ROOT, "projects", "DETRDistill", "configs")
OVERFIT = [
    "deformable_detr/deformable_detr_overfit_bccd_cpu.py",
    "conditional_detr/conditional_detr_overfit_bccd_cpu.py",
    "adamixer/adamixer_overfit_bccd_cpu.py",
]


@pytest.mark.parametrize("name", OVERFIT)
def test_overfit_config_evaluates_on_its_training_images(name):
    cfg = LazyConfig.load(os.path.join(CONFIG_DIR, name))
    assert cfg.model.num_classes == 3 and cfg.dataloader.train.mapper.crop_probability == 0.0
    assert cfg.dataloader.evaluator._target_ is SubsetCOCOEvaluator
    cfg.dataloader.train.dataset.num_images = 5  # the test side follows the train side
    assert cfg.dataloader.test.dataset.num_images == 5 and cfg.dataloader.test.dataset.names == "bccd_train"
    assert cfg.dataloader.evaluator.dataset_name == "bccd_train"
    instantiate(cfg.model)
    if "bccd_train" not in DatasetCatalog.list():
        pytest.skip("bccd is not in ../shared/datasets (or $KD_DATASETS)")
    train, test = instantiate(cfg.dataloader.train.dataset), instantiate(cfg.dataloader.test.dataset)
    assert [d["image_id"] for d in train] == [d["image_id"] for d in test] and len(test) == 5


def test_benchmark_models_prints_a_row_per_config():
    configs = [
        os.path.join(CONFIG_DIR, c)
        for c in ("adamixer/adamixer_tiny_cpu.py", "conditional_detr/conditional_detr_tiny_cpu.py")
    ]
    script = os.path.join(ROOT, "projects", "DETRDistill", "tools", "benchmark_models.py")
    args = ["--config-files", *configs, "--size", "64", "96", "--batch", "1", "--iters", "1", "--warmup", "0"]
    proc = subprocess.run(
        [sys.executable, script, *args], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [line.split() for line in proc.stdout.splitlines() if line.startswith("projects/")]
    assert [r[0] for r in rows] == [os.path.relpath(c, ROOT) for c in configs]
    assert all(float(v) > 0 for r in rows for v in r[1:])


@pytest.mark.parametrize("arch", ["deformable_detr", "conditional_detr", "adamixer"])
def test_tiny_kd_config_reads_what_its_teacher_config_writes(arch):
    teacher = LazyConfig.load(os.path.join(CONFIG_DIR, arch, f"{arch}_r34_tiny_cpu.py"))
    kd = LazyConfig.load(os.path.join(CONFIG_DIR, "detrdistill", f"{arch}_r34_r18_tiny_cpu.py"))
    assert kd.model.teacher.weights == os.path.join(teacher.train.output_dir, "model_final.pth")
    assert LazyConfig.to_py(kd.model.teacher.model) == LazyConfig.to_py(teacher.model)
    assert kd.model.student.backbone.depth == 18 and teacher.model.backbone.depth == 34
