#!/usr/bin/env python
"""Convert a torchvision MobileNetV2 ImageNet checkpoint for the ScaleKD MobileNetV2 students.

Keeps ``features.*`` (drops the classifier) and writes a ``.pkl`` that Detectron2's
``DetectionCheckpointer`` loads with its matching heuristics, so the keys land under
``student.backbone.bottom_up.features.*`` of a ScaleKD model (or ``backbone.bottom_up.features.*``
of the student alone). Nothing is downloaded: pass the file torchvision saved, e.g.
``~/.cache/torch/hub/checkpoints/mobilenet_v2-b0353104.pth``.

    python projects/ScaleKD/tools/convert_torchvision_mobilenet_v2.py mobilenet_v2-b0353104.pth pretrained/mobilenet_v2-torchvision.pkl
"""
import argparse
import os
import pickle

import torch


def convert(state_dict):
    """torchvision MobileNetV2 state dict -> {name: ndarray} of the ``features`` weights."""
    if "state_dict" in state_dict:
        state_dict = state_dict["state_dict"]
    out = {k: v.numpy() for k, v in state_dict.items() if k.startswith("features.")}
    if not out:
        raise KeyError(f"No 'features.*' weights found (keys like {sorted(state_dict)[:3]}): not a torchvision MobileNetV2 checkpoint?")
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input", help="torchvision mobilenet_v2 .pth")
    parser.add_argument("output", help="output .pkl")
    args = parser.parse_args()
    weights = convert(torch.load(args.input, map_location="cpu", weights_only=True))
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "wb") as f:
        pickle.dump({"model": weights, "__author__": "torchvision", "matching_heuristics": True}, f)
    print(f"Wrote {len(weights)} tensors to {args.output}")


if __name__ == "__main__":
    main()
