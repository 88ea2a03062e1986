#!/usr/bin/env python3
"""End2end step: ``models/<name>/1/model.onnx`` -> ``models/<name>_end2end/1/model.onnx``.

Graph surgery on the Track A ONNX: boxes and scores split from the head, then one NMS stage
(EfficientNMS_TRT plugin, or standard ONNX NonMaxSuppression) with four outputs, plus the task's
(segment: mask coefficients and prototypes, pose: keypoints, obb: rotated boxes; the task is read from
the ONNX). NMS=free thresholds a one-to-one (NMS-free) export instead.
"""
from __future__ import annotations

import argparse

import onnx

from yolo_triton.cli import run_step
from yolo_triton.files import atomic_path
from yolo_triton.nms_graph import NMS_MODES, add_nms


def write_end2end(src: str, out: str, mode: str, conf: float, iou: float, topk: int, agnostic: int) -> None:
    model = add_nms(onnx.load(src), mode, conf, iou, topk, agnostic)
    with atomic_path(out) as tmp:
        onnx.save(model, str(tmp))


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--onnx", required=True, help="Track A model.onnx")
    parser.add_argument("--out", required=True, help="end2end model.onnx to write")
    parser.add_argument("--nms", choices=NMS_MODES, required=True)
    parser.add_argument("--conf", type=float, required=True)
    parser.add_argument("--iou", type=float, required=True)
    parser.add_argument("--topk", type=int, required=True)
    parser.add_argument("--agnostic", type=int, required=True)
    parser.add_argument("-v", "--verbose", action="store_true")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    return run_step("add_nms", lambda: write_end2end(args.onnx, args.out, args.nms, args.conf, args.iou,
                                                     args.topk, args.agnostic), args.verbose)


if __name__ == "__main__":
    raise SystemExit(main())
