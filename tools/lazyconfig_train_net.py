#!/usr/bin/env python
"""
Train or evaluate a detector, or a teacher/student distillation model, from a LazyConfig file.

Detectron2's tools/lazyconfig_train_net.py plus what distillation needs:
    * strict ``key=value`` overrides (an unknown key is an error, ``+key=value`` adds one);
    * gradient clipping (``train.clip_grad``), AMP (CUDA fp16, CPU bf16 autocast), ``train.channels_last``,
      DDP on CPU (gloo);
    * auxiliary checkpointables of the model (e.g. ScaleKD's assistant optimizer) in checkpoints;
    * ``--eval-teacher``: evaluate only the frozen teacher of a KD config, on the view it distils from
      (ScaleKD: the test image at teacher_scale x its size) (a teacher whose weights did not load shows ~0 AP);
    * ``--eval-only`` on a distillation config evaluates its student alone (the distillation model's inference)
      from a distillation run's checkpoint or an exported student's; the teacher is not built;
    * ``--eval-assistant``: evaluate ScaleKD's Cross-Scale Assistant of ``train.init_checkpoint`` as a
      detector (are its mimic targets better than the student's own predictions?);
    * with ``train.seed`` >= 0, torch's RNG is seeded again once the model is built, so a student alone and its
      distilled runs of one seed train on the same random draws (e.g. Faster R-CNN's RPN / RoI sampling);
    * a fresh run never overwrites an existing run's checkpoints (use --resume);
    * ``--resume`` from a checkpoint of another model (or without this model's extra state, e.g.
      ScaleKD's assistant) is an error before anything is loaded; a resumed run that stops before its
      checkpoint is loaded leaves the directory's config.yaml as it was.

Examples:
    python tools/lazyconfig_train_net.py --config-file projects/ScaleKD/configs/tiny/retinanet_r34_r18_tiny_cpu.py
    python tools/lazyconfig_train_net.py --config-file CFG --num-gpus 8 train.output_dir=out/x
    python tools/lazyconfig_train_net.py --config-file CFG --eval-only train.init_checkpoint=out/x/model_final.pth
"""
import logging
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # noqa: E402 (run from a clone)
from kd_core.paths import add_project_paths  # noqa: E402

add_project_paths()

from detectron2.config import LazyConfig, instantiate  # noqa: E402
from detectron2.engine import default_argument_parser, default_setup, default_writers, hooks, launch  # noqa: E402
from detectron2.evaluation import inference_on_dataset, print_csv_format  # noqa: E402
from detectron2.utils import comm  # noqa: E402
from detectron2.utils.logger import setup_logger  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

import kd_core.data  # noqa: E402,F401  (registers the toolkit's datasets: kd_synthetic_*, coco128_*, bccd_*)
from kd_core.data import check_dataset_files  # noqa: E402
from kd_core.checkpoint import ClassHeadCheckpointer, ResumeMismatchError, StudentCheckpointer, build_checkpointer  # noqa: E402
from kd_core.config import apply_overrides_strict  # noqa: E402
from kd_core.distributed import teardown_process_group  # noqa: E402
from kd_core.engine import (  # noqa: E402
    GradientClipHook,
    KDLossShareHook,
    SavedRunConfig,
    build_trainer,
    check_output_dir,
    create_ddp_model,
    seed_training_rng,
    to_channels_last,
)
from kd_core.meta_arch import DistillationDetector  # noqa: E402

logger = logging.getLogger("detectron2")


def do_test(cfg, model):
    if "evaluator" in cfg.dataloader:
        ret = inference_on_dataset(model, instantiate(cfg.dataloader.test), instantiate(cfg.dataloader.evaluator))
        print_csv_format(ret)
        return ret


def prepare_training(args, cfg):
    """Build the model, optimizer, data loader, trainer and hooks, and load the checkpoint (or resume).
    Returns (trainer, first iteration)."""
    model = instantiate(cfg.model)
    # the same training draws for a student alone and its distilled runs of one seed (see the function)
    seed_training_rng(cfg.train.get("seed", -1))
    logger.info("Model:\n{}".format(model))
    model.to(cfg.train.device)
    if cfg.train.get("channels_last", False):
        to_channels_last(model)

    cfg.optimizer.params.model = model
    optim = instantiate(cfg.optimizer)
    train_loader = instantiate(cfg.dataloader.train)

    model = create_ddp_model(model, **cfg.train.ddp)
    trainer = build_trainer(model, train_loader, optim, cfg.train.amp.enabled)
    checkpointer = build_checkpointer(model, cfg.train.output_dir, trainer=trainer)
    clip = cfg.train.get("clip_grad", None)
    trainer.register_hooks(
        [
            hooks.IterationTimer(),
            GradientClipHook(clip.max_norm, clip.get("norm_type", 2.0)) if clip and clip.enabled else None,
            KDLossShareHook(),
            hooks.LRScheduler(scheduler=instantiate(cfg.lr_multiplier)),
            hooks.PeriodicCheckpointer(checkpointer, **cfg.train.checkpointer) if comm.is_main_process() else None,
            hooks.EvalHook(cfg.train.eval_period, lambda: do_test(cfg, model)),
            hooks.PeriodicWriter(default_writers(cfg.train.output_dir, cfg.train.max_iter), period=cfg.train.log_period)
            if comm.is_main_process()
            else None,
        ]
    )

    resuming = args.resume and checkpointer.has_checkpoint()
    unused = checkpointer.resume_or_load(cfg.train.init_checkpoint, resume=args.resume)
    if resuming:
        left = sorted(k for k in unused if k != "iteration")
        if left:
            logger.warning(
                f"The checkpoint resumed from holds {left}, which this model does not use "
                "(e.g. ScaleKD's assistant with model.use_csa=False); the new checkpoints will not hold them."
            )
        # The checkpoint stores the iteration that just finished: continue at the next one.
        return trainer, trainer.iter + 1
    return trainer, 0


def do_train(args, cfg):
    trainer, start_iter = prepare_training(args, cfg)
    trainer.train(start_iter, cfg.train.max_iter)
    return trainer


#: settings of a training mapper that adds the teacher's view of each image (ScaleKD's ScaleKDDatasetMapper)
TEACHER_VIEW_MAPPER_KEYS = ("teacher_scale", "teacher_image_format", "teacher_image_key", "render_teacher_from_original")


def use_teacher_view_test_mapper(cfg) -> bool:
    """Where the training mapper adds the teacher's view (it has a ``teacher_scale``), give the test
    mapper the same class and teacher settings, so the teacher is scored on the view it distils from
    (ScaleKD: rendered from the original image at teacher_scale x the test size). Returns whether it did."""
    train_mapper = cfg.dataloader.train.get("mapper", None)
    test_mapper = cfg.dataloader.test.get("mapper", None)
    if train_mapper is None or test_mapper is None or "teacher_scale" not in train_mapper:
        return False
    test_mapper._target_ = train_mapper._target_
    for key in TEACHER_VIEW_MAPPER_KEYS:
        if key in train_mapper:
            test_mapper[key] = train_mapper[key]
    logger.info(f"Test images also get the teacher's view (mapper {test_mapper._target_}, teacher_scale={test_mapper.teacher_scale}).")
    return True


def do_eval_teacher(cfg):
    model = instantiate(cfg.model)
    if not isinstance(model, DistillationDetector):
        raise TypeError("--eval-teacher needs a distillation config (cfg.model builds a DistillationDetector).")
    teacher = model.teacher
    teacher.to(cfg.train.device)
    use_teacher_view_test_mapper(cfg)
    logger.info(f"Evaluating the teacher alone, on the view it distils from: {teacher}")
    return do_test(cfg, model.teacher_detector())


def do_eval_only(cfg):
    """Evaluate ``cfg.model`` with the weights of ``train.init_checkpoint``. A distillation model's inference
    is its student alone, so a distillation config evaluates the student built from ``cfg.model.student``,
    with the student tensors of the checkpoint (a distillation run's, or an exported student's): the
    deployed network, and no teacher checkpoint is needed or read."""
    distillation = "student" in cfg.model and "teacher" in cfg.model
    model = instantiate(cfg.model.student if distillation else cfg.model)
    model.to(cfg.train.device)
    model = create_ddp_model(model)
    if distillation:
        logger.info("Evaluating the student alone (a distillation model's inference); the teacher is not built.")
    (StudentCheckpointer if distillation else ClassHeadCheckpointer)(model).load(cfg.train.init_checkpoint)
    return do_test(cfg, model)


def do_eval_assistant(cfg):
    model = instantiate(cfg.model)
    if not hasattr(model, "assistant_detector"):
        raise TypeError("--eval-assistant needs a ScaleKD config (cfg.model builds a ScaleKDDetector).")
    if not cfg.train.init_checkpoint:
        raise ValueError("--eval-assistant needs train.init_checkpoint=<a ScaleKD run's checkpoint> (it holds the assistant).")
    model.to(cfg.train.device)
    detector = model.assistant_detector()  # checks that the model has an assistant
    use_teacher_view_test_mapper(cfg)
    build_checkpointer(model, cfg.train.output_dir).load(cfg.train.init_checkpoint)
    if not model.assistant.restored:
        raise ValueError(f"{cfg.train.init_checkpoint} holds no Cross-Scale Assistant: it is not a ScaleKD training checkpoint.")
    logger.info("Evaluating the Cross-Scale Assistant as a detector (student backbone + teacher backbone + assistant head).")
    return do_test(cfg, detector)


def main(args):
    result = run(args)
    teardown_process_group()  # a multi-process run's workers end here (Detectron2's launch does not)
    return result


def run(args):
    cfg = LazyConfig.load(args.config_file)
    cfg = apply_overrides_strict(cfg, args.opts)
    training = not (args.eval_only or args.eval_teacher or args.eval_assistant)
    # every dataset the job reads is registered and its files exist, before anything is built or written
    # (a training job reads the test set only to evaluate, do_test: with an evaluator)
    for split in ("train", "test") if training else ("test",):
        if split == "test" and training and "evaluator" not in cfg.dataloader:
            continue
        dataset = cfg.dataloader[split].get("dataset") if split in cfg.dataloader else None
        if isinstance(dataset, DictConfig) and dataset.get("names") is not None:
            check_dataset_files(dataset.names)
    if training:
        check_output_dir(cfg.train.output_dir, args.resume)
    # default_setup rewrites the output directory's config.yaml; a resumed run that stops before its
    # checkpoint is loaded (e.g. a refused checkpoint) never ran with that config and puts it back
    saved_config = SavedRunConfig(cfg.train.output_dir) if training and args.resume else None
    default_setup(cfg, args)
    # this toolkit's modules log under their package names: to the console and log.txt like detectron2's
    for package in ("kd_core", "scalekd", "detrdistill"):
        setup_logger(cfg.train.output_dir, distributed_rank=comm.get_rank(), name=package, abbrev_name=package)

    if args.eval_teacher:
        return do_eval_teacher(cfg)
    if args.eval_assistant:
        return do_eval_assistant(cfg)
    if args.eval_only:
        return do_eval_only(cfg)
    try:
        trainer, start_iter = prepare_training(args, cfg)
    except Exception as e:
        if saved_config is not None:
            # a refusal is raised by every process alike: all wait until rank 0 has restored
            put_back_saved_config(saved_config, wait_for_all=isinstance(e, ResumeMismatchError))
        raise
    trainer.train(start_iter, cfg.train.max_iter)


def put_back_saved_config(saved_config, wait_for_all):
    """Rank 0 restores the config files of ``saved_config``; a failure to do so is logged, so the error
    that stopped the run stays the one reported. ``wait_for_all``: all processes synchronize after it
    (otherwise the first process to exit could make the launcher stop rank 0 midway)."""
    if comm.is_main_process():
        try:
            saved_config.restore()
        except OSError as e:
            logger.error(f"Could not put back the config files of {saved_config.output_dir}: {e}")
    if wait_for_all:
        comm.synchronize()


def build_parser():
    parser = default_argument_parser()
    parser.add_argument(
        "--eval-teacher",
        action="store_true",
        help="evaluate only the frozen teacher of a distillation config (sanity check of its weights)",
    )
    parser.add_argument(
        "--eval-assistant",
        action="store_true",
        help="evaluate ScaleKD's Cross-Scale Assistant of train.init_checkpoint as a detector",
    )
    return parser


def invoke_main() -> None:
    args = build_parser().parse_args()
    launch(
        main,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args,),
    )


if __name__ == "__main__":
    invoke_main()  # pragma: no cover
