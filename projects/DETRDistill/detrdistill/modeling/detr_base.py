"""What every DETR-family meta-architecture of this project shares.

:class:`DETRBase` implements Detectron2's model interface (``forward(batched_inputs)``) on top
of one method a subclass provides, ``run(images, extra_queries=None) -> DETROutputs``:
image normalization and padding, padding masks, target preparation, the set-prediction loss
and top-k inference. It also provides the class-head check used when loading checkpoints
(``kd_core.checkpoint.ClassHeadCheckpointer``) and the name-based learning-rate factor of DETR recipes.
"""
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import box_convert

from detectron2.modeling import detector_postprocess
from detectron2.structures import Boxes, ImageList, Instances

from .criterion import LayerIndices, SetCriterion
from .outputs import DETROutputs

__all__ = [
    "DETRBase",
    "ParamNameLRFactor",
    "inverse_sigmoid",
    "MLP",
]


def inverse_sigmoid(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """logit(x) with x clamped to [0, 1] and both terms to >= eps (finite for 0 and 1)."""
    x = x.clamp(min=0, max=1)
    return torch.log(x.clamp(min=eps) / (1 - x).clamp(min=eps))


class MLP(nn.Module):
    """Plain multi-layer perceptron with ReLU between layers (DETR's box head)."""

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int):
        super().__init__()
        dims = [input_dim] + [hidden_dim] * (num_layers - 1) + [output_dim]
        self.layers = nn.ModuleList(nn.Linear(i, o) for i, o in zip(dims[:-1], dims[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x


class DETRBase(nn.Module):
    """Detectron2 meta-architecture skeleton of a set-prediction detector.

    Subclasses implement :meth:`run` and :meth:`class_head_parameter_names`, and set the
    attributes ``num_queries``, ``hidden_dim`` and ``num_decoder_layers``.
    """

    def __init__(
        self,
        *,
        num_classes: int,
        criterion: SetCriterion,
        pixel_mean: Sequence[float],
        pixel_std: Sequence[float],
        size_divisibility: int = 32,
        select_box_nums_for_evaluation: int = 100,
    ):
        """
        Args:
            num_classes: number of foreground classes.
            criterion: the training loss; its ``num_classes`` must equal ``num_classes``.
            pixel_mean, pixel_std: per-channel normalization of input images (in the channel
                order the mapper produces, e.g. RGB for torchvision-pretrained backbones).
            size_divisibility: pad the batch to a multiple of this.
            select_box_nums_for_evaluation: top-k (query, class) pairs kept per image at test.
        """
        super().__init__()
        if criterion.num_classes != num_classes:
            raise ValueError(
                f"{type(self).__name__}: criterion.num_classes={criterion.num_classes} differs from "
                f"num_classes={num_classes}."
            )
        self.num_classes = num_classes
        self.criterion = criterion
        self.size_divisibility = size_divisibility
        self.select_box_nums_for_evaluation = select_box_nums_for_evaluation
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean, dtype=torch.float32).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std, dtype=torch.float32).view(-1, 1, 1), False)

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    def backbone_shapes(self, backbone, features: Sequence[str]):
        """``backbone.output_shape()``, after checking that it provides every name in ``features``."""
        shapes = backbone.output_shape()
        missing = [f for f in features if f not in shapes]
        if missing:
            raise ValueError(f"{type(self).__name__}: backbone has no outputs {missing}; it provides {sorted(shapes)}.")
        return shapes

    # ------------------------------------------------------------------ interface
    def run(self, images: ImageList, extra_queries=None) -> DETROutputs:
        raise NotImplementedError

    def class_head_parameter_names(self) -> List[str]:
        """Names (relative to this module) of the parameters whose first dim is num_classes."""
        raise NotImplementedError

    def query_prior(self, outputs: DETROutputs) -> torch.Tensor:
        """The queries of ``outputs`` (this model's ``run``) with their initial geometry, in a form
        ``run(extra_queries=...)`` of a model of the same class accepts.

        Default: ``outputs.query_embed``, for models whose queries already hold their boxes
        (AdaMixer, two-stage Deformable DETR). Models that derive reference points from the
        queries with a learned layer (Deformable DETR, Conditional DETR) override this so that the
        receiver uses this model's reference points, not its own layer's mapping.
        """
        return outputs.query_embed

    # ------------------------------------------------------------------ inputs
    def preprocess_image(self, batched_inputs: Sequence[dict]) -> ImageList:
        """Normalize the (3, H, W) images and pad them into one (B, 3, H_pad, W_pad) batch."""
        images = [(x["image"].to(self.device) - self.pixel_mean) / self.pixel_std for x in batched_inputs]
        return ImageList.from_tensors(images, self.size_divisibility)

    @staticmethod
    def padding_mask(images: ImageList) -> torch.Tensor:
        """(B, H_pad, W_pad) bool, True where a pixel is padding."""
        _, _, h_pad, w_pad = images.tensor.shape
        sizes = torch.as_tensor(images.image_sizes, dtype=torch.int64).to(images.tensor.device, non_blocking=True)
        ys = torch.arange(h_pad, device=images.tensor.device)
        xs = torch.arange(w_pad, device=images.tensor.device)
        return (ys[None, :, None] >= sizes[:, 0, None, None]) | (xs[None, None, :] >= sizes[:, 1, None, None])

    @staticmethod
    def level_masks(mask: torch.Tensor, features: Sequence[torch.Tensor]) -> List[torch.Tensor]:
        """Nearest-neighbour resize of a (B, H, W) padding mask to each (B, C, H_l, W_l) feature."""
        return [F.interpolate(mask[None].float(), size=f.shape[-2:]).to(torch.bool)[0] for f in features]

    def prepare_targets(self, batched_inputs: Sequence[dict]) -> List[Dict[str, torch.Tensor]]:
        """Ground truth of each image as ``{"labels": (M,) int64, "boxes": (M, 4)}``.

        Boxes are normalized cxcywh relative to the image's unpadded (augmented) size, clipped
        to the image; boxes with zero width or height are dropped (they carry no location and
        make IoU undefined). The work happens on the CPU tensors from the data loader, so no
        device synchronization is needed.
        """
        targets = []
        for i, x in enumerate(batched_inputs):
            if "instances" not in x:
                raise ValueError(
                    f"{type(self).__name__} in training mode needs 'instances' in every input; "
                    f"input {i} has keys {sorted(x.keys())}."
                )
            inst = x["instances"]
            h, w = inst.image_size
            labels = inst.gt_classes.to(torch.int64)
            boxes = inst.gt_boxes.tensor.float()
            if labels.numel() > 0 and labels.device.type == "cpu":
                lo, hi = int(labels.min()), int(labels.max())
                if lo < 0 or hi >= self.num_classes:
                    raise ValueError(
                        f"Image {i} ({x.get('file_name', 'unnamed')}) has class ids in [{lo}, {hi}] but the "
                        f"model has num_classes={self.num_classes}; set model.num_classes (and the "
                        "criterion's) to the dataset's class count."
                    )
            scale = boxes.new_tensor([w, h, w, h])
            boxes = (boxes / scale).clamp(0.0, 1.0)
            keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
            boxes = box_convert(boxes[keep], "xyxy", "cxcywh")
            targets.append(
                {
                    "labels": labels[keep].to(self.device, non_blocking=True),
                    "boxes": boxes.to(self.device, non_blocking=True),
                }
            )
        return targets

    # ------------------------------------------------------------------ losses / outputs
    def compute_losses(
        self, outputs: DETROutputs, targets: Sequence[dict], indices: Optional[LayerIndices] = None
    ) -> Tuple[Dict[str, torch.Tensor], LayerIndices]:
        """Set-prediction loss on every decoder layer (+ "_enc" losses of two-stage proposals).

        Args:
            indices: the decoder outputs' matching to ``targets`` if already made
                (``self.criterion.start_match(outputs.logits, outputs.boxes, targets).result()``);
                None: matched here.
        Returns:
            ``(losses, indices)``, indices being the per-layer matching of the decoder outputs.
        """
        losses, indices = self.criterion(outputs.logits, outputs.boxes, targets, indices=indices)
        if outputs.enc_outputs is not None:
            # Two-stage proposals are class-agnostic: every target is class 0.
            binary_targets = [{"labels": torch.zeros_like(t["labels"]), "boxes": t["boxes"]} for t in targets]
            enc_losses, _ = self.criterion(
                outputs.enc_outputs["logits"][None], outputs.enc_outputs["boxes"][None], binary_targets
            )
            losses.update({f"{k}_enc": v for k, v in enc_losses.items()})
        return losses, indices

    def forward(self, batched_inputs: Sequence[dict]):
        """Training: dict of weighted losses. Eval: per image ``{"instances": Instances}``."""
        images = self.preprocess_image(batched_inputs)
        if self.training:
            targets = self.prepare_targets(batched_inputs)
            outputs = self.run(images)
            losses, _ = self.compute_losses(outputs, targets)
            return losses
        outputs = self.run(images)
        results = self.inference(outputs.logits[-1], outputs.boxes[-1], images.image_sizes)
        processed = []
        for result, x, image_size in zip(results, batched_inputs, images.image_sizes):
            height = x.get("height", image_size[0])
            width = x.get("width", image_size[1])
            processed.append({"instances": detector_postprocess(result, height, width)})
        return processed

    def inference(
        self, logits: torch.Tensor, boxes: torch.Tensor, image_sizes: Sequence[Tuple[int, int]]
    ) -> List[Instances]:
        """Top-k (query, class) pairs of the sigmoid scores.

        Args:
            logits: (B, Q, C); boxes: (B, Q, 4) normalized cxcywh.
            image_sizes: per image the unpadded (h, w) of the network input.
        Returns:
            per image ``Instances`` with ``pred_boxes`` (absolute xyxy in the network input),
            ``scores`` and ``pred_classes``.
        """
        bs, num_queries, num_classes = logits.shape
        k = min(self.select_box_nums_for_evaluation, num_queries * num_classes)
        scores, flat_idx = logits.sigmoid().flatten(1).topk(k, dim=1)
        query_idx = torch.div(flat_idx, num_classes, rounding_mode="floor")
        labels = flat_idx % num_classes
        selected = boxes.gather(1, query_idx[..., None].expand(-1, -1, 4))
        xyxy = box_convert(selected, "cxcywh", "xyxy")
        results = []
        for i, (h, w) in enumerate(image_sizes):
            result = Instances((h, w))
            result.pred_boxes = Boxes(xyxy[i] * xyxy.new_tensor([w, h, w, h]))
            result.scores = scores[i]
            result.pred_classes = labels[i]
            results.append(result)
        return results


class ParamNameLRFactor:
    """Learning-rate factor by parameter name, for ``get_default_optimizer_params(lr_factor_func=)``.

    Returns ``factor`` for every parameter whose full name contains one of ``keywords``
    (e.g. Deformable DETR: "backbone", "sampling_offsets", "reference_points" at 0.1), else 1.
    """

    def __init__(self, keywords: Sequence[str], factor: float):
        self.keywords = tuple(keywords)
        self.factor = float(factor)

    def __call__(self, param_name: str) -> float:
        return self.factor if any(k in param_name for k in self.keywords) else 1.0

    def __repr__(self) -> str:
        return f"ParamNameLRFactor(keywords={self.keywords}, factor={self.factor})"
