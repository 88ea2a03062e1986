#!/usr/bin/env python3
"""Validate one model's artefacts against its PyTorch checkpoint on real images.

    python scripts/validate.py --model NAME --models-dir models --weights-dir pytorch_models \
        [--images DIR] [--conf C] [--iou I] [--json OUT]

A thin command line over :mod:`yolo_triton.validate` (formats, tolerances and pass criteria are
described there). A table goes to the terminal, the full report to JSON; exit 1 when any format fails.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from yolo_triton.errors import StepError
from yolo_triton.files import atomic_write_text
from yolo_triton.settings import defaults, directory
from yolo_triton.validate import LOG, Settings, format_table, validate


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    d = defaults()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="model name, e.g. yolov11_small or yolo11n_untrained")
    parser.add_argument("--models-dir", type=Path, default=directory("MODELS_DIR"))
    parser.add_argument("--weights-dir", type=Path, default=directory("WEIGHTS_DIR"))
    parser.add_argument("--images", type=Path, default=None, help="folder of images (default: ultralytics samples)")
    parser.add_argument("--conf", type=float, default=float(d["CONF"]))
    parser.add_argument("--iou", type=float, default=float(d["IOU"]))
    parser.add_argument("--topk", type=int, default=int(d["TOPK"]))
    parser.add_argument("--agnostic", type=int, choices=(0, 1), default=int(d["AGNOSTIC"]))
    parser.add_argument("--box-tol", type=float, default=None, help="override the raw box tolerance (px)")
    parser.add_argument("--score-tol", type=float, default=None, help="override the score tolerance")
    parser.add_argument("--json", type=Path, default=None, help="report path (default results/validate_<model>.json)")
    parser.add_argument("-v", "--verbose", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="[validate] %(message)s",
                        stream=sys.stderr)
    for noisy in ("ultralytics", "onnx_graphsurgeon", "PIL", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    settings = Settings(args.conf, args.iou, args.topk, bool(args.agnostic), args.box_tol, args.score_tol)
    try:
        report = validate(args.model, args.models_dir, args.weights_dir, args.images, settings)
    except StepError as err:
        print(f"[validate] error: {err}", file=sys.stderr)
        return 1
    print(format_table(report))
    out = args.json or Path("results") / f"validate_{args.model}.json"
    atomic_write_text(out, json.dumps(report, indent=2, default=float) + "\n")
    LOG.info("wrote %s", out)
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
