#!/usr/bin/env python
"""Convert a detrex Deformable DETR checkpoint to detrdistill's DeformableDETR naming.

Example:
    python tools/convert_detrex_checkpoint.py --input deformable_detr_r50_50ep.pth \
        --output deformable_detr_r50_50ep_detrdistill.pth
    # then: train.init_checkpoint=deformable_detr_r50_50ep_detrdistill.pth (model.with_box_refine /
    # model.as_two_stage as in the detrex config; detrex evaluates without padding masks, we use them,
    # so AP can differ slightly on padded batches).
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # noqa: E402 (run from a clone)
from kd_core.paths import add_project_paths  # noqa: E402

add_project_paths()

import torch  # noqa: E402

from detrdistill.converters.detrex import convert_detrex_state_dict  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", required=True, help="detrex checkpoint (.pth, with a 'model' entry or a bare state dict)")
    parser.add_argument("--output", required=True, help="where to write the converted checkpoint")
    parser.add_argument(
        "--with-box-refine",
        choices=("auto", "yes", "no"),
        default="auto",
        help="per-layer heads; 'auto' infers it from transformer.decoder.bbox_embed.* keys",
    )
    parser.add_argument(
        "--allow-pickle",
        action="store_true",
        help="load with torch.load(weights_only=False); only for checkpoints you trust",
    )
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if not os.path.isfile(args.input):
        raise SystemExit(f"Input checkpoint not found: {args.input}")
    try:
        checkpoint = torch.load(args.input, map_location="cpu", weights_only=not args.allow_pickle)
    except Exception as e:  # weights_only refuses arbitrary pickled objects
        raise SystemExit(
            f"Could not load {args.input} with weights_only={not args.allow_pickle}: {e}\n"
            "If you trust this file, rerun with --allow-pickle."
        )
    state_dict = checkpoint.get("model", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state_dict, dict):
        raise SystemExit(f"{args.input} holds no state dict (type {type(checkpoint).__name__}).")
    refine = {"auto": None, "yes": True, "no": False}[args.with_box_refine]
    converted = convert_detrex_state_dict(state_dict, with_box_refine=refine)
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    torch.save({"model": converted, "__author__": "detrex, converted by tools/convert_detrex_checkpoint.py"}, args.output)
    print(f"Converted {len(state_dict)} detrex keys into {len(converted)} keys -> {args.output}")


if __name__ == "__main__":
    main()
