#!/usr/bin/env python3
"""Track A step: ``pytorch_models/<m>.pt`` -> ``models/<name>/1/model.onnx``.

Ultralytics' own ONNX export with a dynamic batch and a fixed image size, simplified, at the
requested precision (fp16 = ModelOpt AutoCast mixed precision with FP32 I/O; fp32; int8 = Q/DQ), with a
float32 image input or (``--input-dtype uint8``) a UINT8 one that the graph casts and divides by 255,
float32 outputs or (``--output-dtype float16``) FP16 ones;
with ORT_BATCHING=pad the graph pads every execution to one batch size (yolo_triton.batch_pad).
"""
from __future__ import annotations

import argparse

from yolo_triton.cli import run_step
from yolo_triton.errors import StepError
from yolo_triton.input_uint8 import INPUT_DTYPES
from yolo_triton.onnx_export import PRECISIONS, export_onnx
from yolo_triton.output_dtype import OUTPUT_DTYPE_SETTINGS, resolve_output_dtype
from yolo_triton.settings import ORT_BATCHING_MODES, ort_pad_batch


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", required=True, help="ultralytics .pt checkpoint")
    parser.add_argument("--out", required=True, help="model.onnx to write")
    parser.add_argument("--imgsz", type=int, required=True)
    parser.add_argument("--precision", choices=PRECISIONS, required=True)
    parser.add_argument("--calib-dir", default="", help="calibration images (PRECISION=int8)")
    parser.add_argument("--one2one", action="store_true", help="export the NMS-free one-to-one head")
    parser.add_argument("--topk", type=int, help="max detections of the one-to-one head")
    parser.add_argument("--input-dtype", choices=INPUT_DTYPES, default="float32",
                        help="image input: float32 (client sends /255 values) or uint8 (the graph casts and divides)")
    parser.add_argument("--output-dtype", choices=OUTPUT_DTYPE_SETTINGS, default="float32",
                        help="raw-head outputs: float32, float16 (half the bytes; yolo_triton/output_dtype.py says what "
                             "rounds), auto (float16 at --precision fp16)")
    parser.add_argument("--ort-batching", choices=ORT_BATCHING_MODES, default="dynamic",
                        help="ORT_BATCHING: pad wraps the graph to run every execution at one batch size")
    parser.add_argument("--ort-pad-batch", type=int, default=16, help="ORT_PAD_BATCH: the padded batch")
    parser.add_argument("--instance-kind", default="gpu", help="INSTANCE_KIND (auto batching depends on it)")
    parser.add_argument("--max-batch", type=int, default=1, help="the model's MAX_BATCH (bounds the padded batch)")
    parser.add_argument("-v", "--verbose", action="store_true")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    def step():
        try:
            pad = ort_pad_batch(args.ort_batching, args.instance_kind, args.max_batch, args.ort_pad_batch)
        except ValueError as err:
            raise StepError(str(err)) from None
        return export_onnx(args.weights, args.out, args.imgsz, args.precision, args.calib_dir or None,
                           args.one2one, args.topk, args.input_dtype, batch_pad=pad,
                           output_dtype=resolve_output_dtype(args.output_dtype, args.precision))

    return run_step("export_onnx", step, args.verbose)


if __name__ == "__main__":
    raise SystemExit(main())
