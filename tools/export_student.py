#!/usr/bin/env python
"""
Export the student of a distillation checkpoint as a plain checkpoint for the student's own config.

    python tools/export_student.py --input output/x/model_final.pth --output student.pth \
        [--student-config configs/tiny/retinanet_r18_tiny_cpu.py]

With --student-config the exported weights are loaded into that config's model with
DetectionCheckpointer (strictly: every parameter must be present) and the parameter count is printed.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from kd_core.paths import add_project_paths  # noqa: E402

add_project_paths()

from kd_core.export import export_student_checkpoint  # noqa: E402


def verify(student_config: str, checkpoint: str) -> int:
    import torch
    from detectron2.config import LazyConfig, instantiate

    model = instantiate(LazyConfig.load(student_config).model)
    model.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=False)["model"], strict=True)
    n = sum(p.numel() for p in model.parameters())
    print(f"verified: {checkpoint} loads strictly into {student_config}; {n} parameters")
    return n


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", required=True, help="distillation checkpoint (model_final.pth)")
    parser.add_argument("--output", required=True, help="where to write the student checkpoint")
    parser.add_argument("--student-config", default="", help="student LazyConfig to verify the export against")
    args = parser.parse_args(argv)
    if os.path.abspath(args.input) == os.path.abspath(args.output):
        parser.error("--output must differ from --input (the distillation checkpoint is never overwritten)")
    kept, dropped = export_student_checkpoint(args.input, args.output)
    print(f"wrote {args.output}: {kept} student tensors ({dropped} distillation-only tensors dropped)")
    if args.student_config:
        verify(args.student_config, args.output)


if __name__ == "__main__":
    main()
