#!/usr/bin/env python
"""
Gradient share of each loss term: how hard each detection and distillation loss pulls on the student.

A KD loss weight is usually set by comparing loss values (the training script logs kd_loss_share).
Under AdamW, and whenever two losses reach the same weights through different paths, the loss values
say little about which term steers the student. This tool builds the distillation model of a config,
takes one training batch and, for every loss term the model returns, back-propagates that term alone
and prints the L2 norm of its gradient on the student's backbone and on all the student's parameters
(teacher, assistants and other unregistered modules excluded), plus the sums over detection terms and
over KD terms (loss_kd_*):

    python tools/kd_gradient_share.py --config-file projects/ScaleKD/configs/tiny/faster_rcnn_r34_r18_scalekd_tiny_cpu.py \\
        model.teacher.weights=output/.../model_final.pth dataloader.train.mapper.teacher_scale=1.0

The teacher's weights come from the config (model.teacher.weights), as in training: a trained teacher
gives the gradients of a real run. Schedules see --iteration (default: late enough for every KD term to
be on). The student is at its initial weights (seed 0), or at train.init_checkpoint's when one is set.
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


DETECTION = "detection terms"
KD = "KD terms (loss_kd_*)"


def gradient_norms(losses, groups):
    """{term: {group: L2 norm of d term / d params}}, one backward per term.

    Args:
        losses: {name: scalar tensor} from one forward pass; the graph must still be alive.
        groups: {group name: list of parameters}.
    """
    import torch

    params = [p for ps in groups.values() for p in ps]
    out = {}
    names = list(losses)
    for i, name in enumerate(names):
        grads = torch.autograd.grad(losses[name], params, retain_graph=i < len(names) - 1, allow_unused=True)
        by_param = {id(p): g for p, g in zip(params, grads)}
        out[name] = {}
        for group, ps in groups.items():
            squares = [by_param[id(p)].float().pow(2).sum() for p in ps if by_param[id(p)] is not None]
            out[name][group] = float(torch.stack(squares).sum().sqrt()) if squares else 0.0
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", required=True, help="a distillation LazyConfig")
    parser.add_argument("--batch-size", type=int, default=0, help="images in the batch (default: the config's)")
    parser.add_argument("--iteration", type=int, default=10**9, help="iteration seen by loss-weight schedules")
    parser.add_argument("--json", default="", help="also write the figures to this file")
    parser.add_argument("opts", nargs=argparse.REMAINDER, default=[], help="config overrides key=value")
    args = parser.parse_args(argv)

    from detectron2.config import LazyConfig, instantiate
    from detectron2.utils.env import seed_all_rng
    from detectron2.utils.events import EventStorage

    import kd_core.data  # noqa: F401  (registers the toolkit's datasets: kd_synthetic_*, coco128_*, bccd_*)
    from kd_core.checkpoint import build_checkpointer
    from kd_core.config import apply_overrides_strict

    cfg = apply_overrides_strict(LazyConfig.load(args.config_file), args.opts)
    if "student" not in cfg.model:
        raise SystemExit(f"{args.config_file}: model has no 'student': give a distillation config.")
    if args.batch_size:
        cfg.dataloader.train.total_batch_size = args.batch_size
    cfg.dataloader.train.num_workers = 0
    seed_all_rng(0)  # the same student init and batch on every call
    model = instantiate(cfg.model)
    if cfg.train.get("init_checkpoint"):
        build_checkpointer(model).load(cfg.train.init_checkpoint)  # the student and, for ScaleKD, the assistant
    model.train()
    batch = next(iter(instantiate(cfg.dataloader.train)))
    with EventStorage(args.iteration):
        losses = model(batch)
    groups = {
        "student backbone": [p for p in model.student.backbone.parameters() if p.requires_grad],
        "student": [p for p in model.student.parameters() if p.requires_grad],
    }
    terms = {k: v for k, v in losses.items() if v.requires_grad}
    kd_terms = [k for k in terms if k.startswith("loss_kd_")]
    det_terms = [k for k in terms if not k.startswith("loss_kd_")]
    if not kd_terms:
        raise SystemExit(f"{args.config_file}: no loss_kd_* term needs a gradient at iteration {args.iteration} (all KD weights 0?).")
    combined = {DETECTION: sum(terms[k] for k in det_terms), KD: sum(terms[k] for k in kd_terms)}
    norms = gradient_norms({**terms, **combined}, groups)
    values = {k: float(v.detach()) for k, v in {**terms, **combined}.items()}

    print(f"{'loss term':<22} {'value':>9} " + " ".join(f"{'|grad| on ' + g:>28}" for g in groups))
    for k in det_terms + kd_terms + [DETECTION, KD]:
        print(f"{k:<22} {values[k]:9.4f} " + " ".join(f"{norms[k][g]:28.4g}" for g in groups))
    summary = {"config": args.config_file, "opts": list(args.opts), "iteration": args.iteration,
               "values": values, "gradient_norms": norms, "kd_over_detection": {}}
    for g in groups:
        det, kd = norms[DETECTION][g], norms[KD][g]
        summary["kd_over_detection"][g] = kd / det if det > 0 else float("inf")
        print(f"{g}: |grad KD terms| / |grad detection terms| = {summary['kd_over_detection'][g]:.3f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=1)
    return summary


if __name__ == "__main__":
    main()
