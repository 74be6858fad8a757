"""Random detection batches and random-weight models for tests and benchmarks (no dataset, no download)."""
from typing import Callable, Iterable, List, Tuple

import torch
from detectron2.layers import FrozenBatchNorm2d
from detectron2.structures import Boxes, Instances
from torch import nn

__all__ = ["calibrate_frozen_norms", "random_detection_batch"]


def random_detection_batch(
    num_images: int = 2,
    size: Tuple[int, int] = (128, 160),
    num_boxes: int = 4,
    num_classes: int = 4,
    seed: int = 0,
) -> List[dict]:
    """Inputs as a Detectron2 training mapper gives them: per image a uint8 ``image`` of shape
    (3, H, W), ``instances`` with ``gt_boxes`` (XYXY, absolute pixels of that image) and
    ``gt_classes`` in [0, num_classes), and ``height``/``width`` = (H, W). ``size`` = (H, W).
    Boxes are 8 px to ~35% of the image side, inside the image."""
    g = torch.Generator().manual_seed(seed)
    h, w = size
    batch = []
    for _ in range(num_images):
        image = torch.randint(0, 256, (3, h, w), generator=g, dtype=torch.uint8)
        inst = Instances((h, w))
        xy = torch.rand(num_boxes, 2, generator=g) * torch.tensor([w * 0.6, h * 0.6])
        wh = 8 + torch.rand(num_boxes, 2, generator=g) * torch.tensor([w * 0.35, h * 0.35])
        inst.gt_boxes = Boxes(torch.cat([xy, xy + wh], dim=1))
        inst.gt_classes = torch.randint(0, num_classes, (num_boxes,), generator=g)
        batch.append({"image": image, "instances": inst, "height": h, "width": w})
    return batch


def calibrate_frozen_norms(models: Iterable[nn.Module], run: Callable[[], object]) -> int:
    """Set every frozen normalization layer of ``models`` to the statistics of its own input on one
    forward pass: ``run()`` (called once, under ``torch.no_grad()``) runs whatever forward passes should
    see them, e.g. the teacher's forward and the student's. A frozen layer is a Detectron2
    ``FrozenBatchNorm2d`` or a BatchNorm that is in eval mode when it runs (a frozen teacher's).
    Pass the teacher's network itself (``FrozenTeacher.model``): a distillation model does not register
    its teacher as a submodule.

    For random-weight models only (benchmarks that time a config without its checkpoints): a frozen
    layer holds the identity statistics (mean 0, variance 1) until a checkpoint fills them in, so a
    randomly initialised deep network grows its activations layer after layer (a random R101-FPN
    teacher of the COCO configs gives P3 values ~1e7 on a 256x320 image; the assistant's losses on
    them are not finite). Calibrated, each layer outputs unit-variance channels times its affine weight,
    the scale a trained network works at. Layers are set in the order they run, each from the input
    that the layers before it already produce calibrated. Statistics are per channel (dim 1) over every other dim of
    the input (N, H, W of an NCHW map), in fp32. Returns the number of layers set (each layer once, on its first call).
    """
    done = set()

    def set_statistics(module, inputs):
        if id(module) in done or (not isinstance(module, FrozenBatchNorm2d) and module.training):
            return
        x = inputs[0].detach().float()
        var, mean = torch.var_mean(x, dim=[d for d in range(x.dim()) if d != 1])
        module.running_mean.copy_(mean)
        module.running_var.copy_(var)
        done.add(id(module))

    handles = [
        m.register_forward_pre_hook(set_statistics)
        for model in models
        for m in model.modules()
        if isinstance(m, (FrozenBatchNorm2d, nn.modules.batchnorm._BatchNorm))
    ]
    try:
        with torch.no_grad():
            run()
    finally:
        for h in handles:
            h.remove()
    return len(done)
