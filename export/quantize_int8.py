"""Quantize an FP32 detector ONNX to INT8 Q/DQ with NVIDIA ModelOpt, calibrated on real images.

    python export/quantize_int8.py --onnx build/yolov11_nano.fp32.onnx \
        --out models/yolov11_nano/1/model.onnx --calib-dir data/calib --imgsz 640 [--max-images 256] \
        [--high-precision fp16|fp32] [--calibration-method entropy|max]

Calibration runs on the CPU through ONNX Runtime, on images letterboxed exactly as at inference.
No images, no INT8: an empty or missing CALIB_DIR is refused (never random scales). The output is
written atomically and keeps the input's metadata (plus ``precision=int8``).
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

import onnx

from yolo_triton.cli import run_step
from yolo_triton.errors import StepError
from yolo_triton.files import atomic_path
from yolo_triton.int8 import CALIBRATION_METHODS, DEFAULT_MAX_IMAGES, HIGH_PRECISIONS, quantize_onnx
from yolo_triton.onnx_io import onnx_metadata, set_metadata

log = logging.getLogger("quantize_int8")


def quantize_file(src: Path, out: Path, calib_dir: Path | None, imgsz: int, max_images: int,
                  high_precision: str = "fp16", method: str = "entropy") -> Path:
    if not src.is_file():
        raise StepError(f"{src} does not exist; export the FP32 ONNX first (make onnx PRECISION=fp32)")
    model = quantize_onnx(src, calib_dir, imgsz, max_images, high_precision, method)
    meta = onnx_metadata(src)
    meta["precision"] = "int8"
    set_metadata(model, meta)
    with atomic_path(out) as tmp:
        onnx.save(model, str(tmp))
    log.info("wrote %s (%.1f MB, int8 Q/DQ + %s)", out, out.stat().st_size / 1e6, high_precision)
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--onnx", required=True, type=Path, help="FP32 input ONNX")
    parser.add_argument("--out", required=True, type=Path, help="INT8 Q/DQ output ONNX")
    parser.add_argument("--calib-dir", required=True, help="folder of calibration images (CALIB_DIR)")
    parser.add_argument("--imgsz", required=True, type=int, help="square input size (IMGSZ)")
    parser.add_argument("--max-images", type=int, default=DEFAULT_MAX_IMAGES,
                        help=f"use at most this many images, spread over the folder (default {DEFAULT_MAX_IMAGES})")
    parser.add_argument("--high-precision", default="fp16", choices=HIGH_PRECISIONS,
                        help="type of the layers left unquantized (default fp16)")
    parser.add_argument("--calibration-method", default="entropy", choices=CALIBRATION_METHODS,
                        help="activation range calibration (default entropy)")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    if args.imgsz < 1:  # the stride is checked against the checkpoint at export; the ONNX fixes the size
        parser.error(f"--imgsz {args.imgsz} must be positive")
    if args.max_images < 1:
        parser.error(f"--max-images {args.max_images} must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_step("quantize_int8", lambda: quantize_file(
        args.onnx, args.out, Path(args.calib_dir) if args.calib_dir else None, args.imgsz, args.max_images,
        args.high_precision, args.calibration_method), args.verbose)


if __name__ == "__main__":
    raise SystemExit(main())
