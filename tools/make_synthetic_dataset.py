#!/usr/bin/env python3
"""Write the embedded synthetic shapes dataset (COCO format) to a directory.

    python tools/make_synthetic_dataset.py --output DIR [--num-train 200] [--num-val 50]
        [--image-size 256 | --image-size H W] [--seed 0] [--overwrite]

Without ``--output`` the default location is used: ``$KD_SYNTHETIC_ROOT`` or
``~/.cache/kd_toolkit/kd_synthetic`` (where ``kd_synthetic_train`` / ``kd_synthetic_val``
look for it). An existing dataset with the same parameters is reused; one with other
parameters is replaced only with ``--overwrite``. Prints the paths and box statistics.
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from kd_core.data.synthetic import (  # noqa: E402
    DEFAULT_GENERATION_PARAMS,
    SyntheticDatasetError,
    box_size_statistics,
    generate_synthetic_dataset,
)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--output",
        default=None,
        help="dataset directory (default: $KD_SYNTHETIC_ROOT or ~/.cache/kd_toolkit/kd_synthetic)",
    )
    parser.add_argument("--num-train", type=int, default=DEFAULT_GENERATION_PARAMS["num_train"])
    parser.add_argument("--num-val", type=int, default=DEFAULT_GENERATION_PARAMS["num_val"])
    parser.add_argument(
        "--image-size",
        type=int,
        nargs="+",
        default=[DEFAULT_GENERATION_PARAMS["image_size"]],
        metavar="PX",
        help="side (square) or height width",
    )
    parser.add_argument("--seed", type=int, default=DEFAULT_GENERATION_PARAMS["seed"])
    parser.add_argument(
        "--overwrite", action="store_true", help="replace a dataset made with other parameters"
    )
    args = parser.parse_args(argv)
    if len(args.image_size) not in (1, 2):
        parser.error("--image-size takes one value (square) or two (height width)")
    image_size = args.image_size[0] if len(args.image_size) == 1 else tuple(args.image_size)

    start = time.perf_counter()
    try:
        paths = generate_synthetic_dataset(
            args.output,
            num_train=args.num_train,
            num_val=args.num_val,
            image_size=image_size,
            seed=args.seed,
            overwrite=args.overwrite,
        )
    except (SyntheticDatasetError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    report = {"seconds": round(time.perf_counter() - start, 2), "paths": paths}
    report["statistics"] = {
        split: box_size_statistics(paths[f"{split}_json"]) for split in ("train", "val")
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
