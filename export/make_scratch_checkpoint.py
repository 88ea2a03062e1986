#!/usr/bin/env python3
"""Write an UNTRAINED checkpoint ``<arch>_untrained.pt`` from an architecture file inside ultralytics.

For offline tests only: random weights with BatchNorm recalibrated on ultralytics' sample images and
the head's outputs (class scores, and masks, keypoints, angles or class probabilities by task) made to
vary (yolo_triton.scratch). Any task: yolo11n, yolo11n-seg, yolo26n-pose, yolo11n-obb, yolo11n-cls, ...
Never mistake it for trained weights.
"""
from __future__ import annotations

import argparse
import logging

from yolo_triton.cli import run_step
from yolo_triton.errors import StepError
from yolo_triton.scratch import make_scratch_checkpoint


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", required=True, help="architecture, e.g. yolo11n, yolov8n, yolo26n, yolov10n, "
                        "yolo11n-seg, yolo26n-pose, yolo11n-obb, yolo11n-cls")
    parser.add_argument("--out", required=True)
    parser.add_argument("--nc", type=int, default=None,
                        help="class count (default: the task's dataset's: COCO 80, COCO-pose 1, DOTAv1 15, "
                        "ImageNet 1000)")
    parser.add_argument("--imgsz", type=int, default=640,
                        help="IMGSZ: the size the outputs are calibrated at (and at half of it)")
    parser.add_argument("--kpt-shape", default=None,
                        help="pose: keypoints and values each, e.g. 5,3 (default: COCO-pose's 17,3)")
    parser.add_argument("-v", "--verbose", action="store_true")
    return parser.parse_args(argv)


def parse_kpt_shape(text: str | None) -> tuple[int, int] | None:
    """``"5,3"`` -> ``(5, 3)``; a bad value is a StepError naming the form."""
    if not text:
        return None
    try:
        keypoints, values = (int(part) for part in text.split(","))
    except ValueError:
        raise StepError(f"KPT_SHAPE={text!r} is not <keypoints>,<values> (e.g. 17,3 or 5,2)") from None
    if keypoints < 1 or values not in (2, 3):
        raise StepError(f"KPT_SHAPE={text}: needs >= 1 keypoint and 2 (x, y) or 3 (x, y, visibility) values each")
    return keypoints, values


def main(argv=None) -> int:
    args = parse_args(argv)

    def body():
        if args.nc is not None and args.nc < 1:
            raise StepError(f"NC={args.nc} must be >= 1")
        if args.imgsz < 64 or args.imgsz % 32:
            raise StepError(f"IMGSZ={args.imgsz}: a scratch checkpoint is calibrated at a multiple of 32, >= 64")
        try:
            path = make_scratch_checkpoint(args.arch, args.out, args.nc, args.imgsz, parse_kpt_shape(args.kpt_shape))
        except ValueError as err:  # an unknown architecture, kpt_shape for a model that is not pose
            raise StepError(str(err)) from None
        logging.getLogger("make_scratch_checkpoint").warning("wrote %s (UNTRAINED, for tests only)", path)

    return run_step("make_scratch_checkpoint", body, args.verbose)


if __name__ == "__main__":
    raise SystemExit(main())
