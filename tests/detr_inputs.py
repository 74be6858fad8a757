"""Batched inputs shared by the DETR-family model tests."""
import torch
from detectron2.structures import Boxes, Instances

NUM_CLASSES = 5


def make_inputs(sizes=((96, 128), (64, 96)), boxes=None, seed=0, num_classes=NUM_CLASSES):
    """Batched inputs with random images; ``boxes[i]`` = (M, 4) absolute xyxy (default: 1-2 boxes).

    Labels cycle through ``num_classes``; "height"/"width" ask for outputs at twice the input size.
    """
    g = torch.Generator().manual_seed(seed)
    inputs = []
    for i, (h, w) in enumerate(sizes):
        if boxes is None:
            b = torch.tensor([[10.0, 20.0, 60.0, 80.0], [30.0, 20.0, 90.0, 60.0]])[: i + 1]
        else:
            b = torch.as_tensor(boxes[i], dtype=torch.float32).reshape(-1, 4)
        inst = Instances((h, w))
        inst.gt_boxes = Boxes(b)
        inst.gt_classes = torch.arange(len(b), dtype=torch.int64) % num_classes
        image = torch.randint(0, 256, (3, h, w), generator=g).to(torch.uint8)
        inputs.append({"image": image, "instances": inst, "height": 2 * h, "width": 2 * w})
    return inputs


def total_loss(losses):
    return sum(losses.values())
