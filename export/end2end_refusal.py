#!/usr/bin/env python3
"""Print why a checkpoint has no end2end model under an NMS mode (empty when it has one).

``make validate`` asks this before it builds ``<name>_end2end``: a classify model, a YOLO11/v8 OBB model,
or a segment/pose model with NMS=efficient has no end2end graph (yolo_triton.options), and its validation
covers Track A (and the plans) only, saying why.

    python export/end2end_refusal.py pytorch_models/yolo11n-cls.pt --nms onnx
"""
from __future__ import annotations

import argparse

from yolo_triton import checkpoint as ckpt
from yolo_triton.cli import run_step
from yolo_triton.options import violations, Options


def end2end_refusal(pt_path: str, nms: str) -> str:
    """The refusal of the end2end step for this checkpoint and NMS mode, or '' when it can be made."""
    info = ckpt.inspect(ckpt.load_yolo(pt_path), pt_path)
    return "; ".join(violations(Options(nms=nms, task=info.task, has_one2one_head=info.has_one2one_head)))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--nms", required=True)
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    return run_step("end2end_refusal", lambda: print(end2end_refusal(args.checkpoint, args.nms)), args.verbose)


if __name__ == "__main__":
    raise SystemExit(main())
