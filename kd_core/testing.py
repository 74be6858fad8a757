"""Random detection batches for tests and benchmarks (no dataset, no download)."""
from typing import List, Tuple

import torch
from detectron2.structures import Boxes, Instances

__all__ = ["random_detection_batch"]


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
