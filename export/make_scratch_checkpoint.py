#!/usr/bin/env python3
"""Write an UNTRAINED checkpoint ``<arch>_untrained.pt`` from an architecture file inside ultralytics.

For offline tests only: random weights with BatchNorm recalibrated on ultralytics' sample images and
class convolutions rescaled so that outputs vary. Never mistake it for trained weights.
"""
from __future__ import annotations

import argparse
import logging

from yolo_triton.cli import run_step
from yolo_triton.scratch import make_scratch_checkpoint


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", required=True, help="architecture, e.g. yolo11n, yolov8n, yolo26n, yolov10n")
    parser.add_argument("--out", required=True)
    parser.add_argument("--nc", type=int, default=None, help="class count (default: the yaml's 80)")
    parser.add_argument("-v", "--verbose", action="store_true")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)

    def body():
        path = make_scratch_checkpoint(args.arch, args.out, args.nc)
        logging.getLogger("make_scratch_checkpoint").warning("wrote %s (UNTRAINED, for tests only)", path)

    return run_step("make_scratch_checkpoint", body, args.verbose)


if __name__ == "__main__":
    raise SystemExit(main())
