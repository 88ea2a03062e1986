#!/usr/bin/env python3
"""Segment end2end: prototypes as an output against masks assembled in the graph, in bytes and time.

The question (issue 20): should the segment end2end graph return ``det_mask_coeffs [B, TOPK, nm]`` and
the prototypes ``output1 [B, nm, S/4, S/4]`` (the client assembles the masks of its ``num_dets``
detections), or the masks themselves at a fixed resolution? The masks are assembled as ultralytics'
predictor does (``ops.process_mask(..., upsample=True)``: ``coeffs @ protos``, bilinear upsampling,
``> 0``, crop to the box). Contenders, all from the same Track A ONNX of an untrained yolo11n-seg
(scratch, outputs varied), NMS=ultralytics, TOPK rows per image:

* ``protos``: what nms_graph writes (coefficients + prototypes); the client's NumPy assembly of the
  detections' masks at input resolution is timed separately (``client_ms``);
* ``logits_s4``: mask logits at prototype resolution, FP32 ``[B, TOPK, S/4, S/4]`` (the client still
  upsamples and thresholds: the same masks as ultralytics);
* ``binary_s4``: binary UINT8 at prototype resolution (thresholded before upsampling: coarser edges);
* ``binary_s``: binary UINT8 at input resolution ``[B, TOPK, S, S]`` (the client only draws).

Bytes are what the model returns per image; times are onnxruntime CPU medians of the whole graph,
interleaved rounds (yolo_triton.timing).

    python scripts/bench_seg_masks.py --json benchmarks/cpu_seg_masks.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
from pathlib import Path

import numpy as np

from yolo_triton.files import atomic_write_text
from yolo_triton.timing import cpu_model, time_calls, time_interleaved

REPO = Path(__file__).resolve().parents[1]
ARCH = "yolo11n-seg"


def scratch_segment(out: Path, imgsz: int) -> Path:
    """An untrained yolo11n-seg with varied outputs (scratch.vary_outputs), saved with its task."""
    import torch
    import ultralytics
    from ultralytics import YOLO

    from yolo_triton.scratch import vary_outputs

    torch.manual_seed(0)  # the random initialisation too: the same checkpoint every run
    yolo = YOLO(f"{ARCH}.yaml")
    vary_outputs(yolo.model, imgsz)
    path = out / f"{ARCH}_untrained.pt"
    torch.save({"model": yolo.model, "train_args": {"task": yolo.task, "imgsz": imgsz}, "untrained": True,
                "version": ultralytics.__version__}, path)
    return path


def track_a(pt: Path, imgsz: int):
    from ultralytics import YOLO

    from yolo_triton import onnx_export
    from yolo_triton.onnx_io import metadata, set_metadata

    model = onnx_export.ultralytics_onnx(YOLO(str(pt)), imgsz, False, None)
    meta = metadata(model)
    onnx_export.fix_image_size(model, imgsz)
    model = onnx_export.simplify(model)
    set_metadata(model, meta)
    return model


def masks_in_graph(end2end, imgsz: int, topk: int, kind: str):
    """The end2end graph with ``det_masks`` in place of the coefficients and prototypes."""
    import onnx_graphsurgeon as gs

    from yolo_triton.nms_onnx import Builder

    graph = gs.import_onnx(end2end)
    t = graph.tensors()
    coeffs, protos, boxes = t["det_mask_coeffs"], t["output1"], t["det_boxes"]
    nm, mh, mw = protos.shape[1:]
    b = Builder(graph, "masks")
    f32, i64 = np.float32, np.int64
    flat = b.op("Reshape", [protos, b.const("flat", np.array([0, nm, -1], i64))], f32, ["batch", nm, mh * mw])
    logits = b.op("MatMul", [coeffs, flat], f32, ["batch", topk, mh * mw])
    size = (mh, mw) if kind.endswith("_s4") else (imgsz, imgsz)
    logits = b.op("Reshape", [logits, b.const("hw", np.array([0, 0, mh, mw], i64))], f32, ["batch", topk, mh, mw])
    if size != (mh, mw):  # F.interpolate(..., mode="bilinear"), align_corners=False
        logits = b.op("Resize", [logits, b.const("roi", np.zeros(0, f32)), b.const("scales", np.array(
            [1, 1, size[0] / mh, size[1] / mw], f32))], f32, ["batch", topk, *size],
            {"mode": "linear", "coordinate_transformation_mode": "half_pixel"})
    # crop_mask: keep x1 <= col < x2, y1 <= row < y2 (boxes scaled to the mask resolution)
    scale = b.const("scale", np.array([size[1] / imgsz, size[0] / imgsz] * 2, f32))
    scaled = b.op("Mul", [boxes, scale], f32, ["batch", topk, 4])
    corner = b.op("Reshape", [scaled, b.const("c", np.array([0, 0, 4, 1, 1], i64))], f32, ["batch", topk, 4, 1, 1])
    x1, y1, x2, y2 = (gs.Variable(b.name(n), f32, ["batch", topk, 1, 1, 1]) for n in "x1 y1 x2 y2".split())
    b.ops("Split", [corner, b.const("s", np.array([1, 1, 1, 1], i64))], [x1, y1, x2, y2], {"axis": 2})
    x1, y1, x2, y2 = (b.op("Squeeze", [v, b.const("ax", np.array([2], i64))], f32, ["batch", topk, 1, 1])
                      for v in (x1, y1, x2, y2))
    cols = b.const("cols", np.arange(size[1], dtype=f32).reshape(1, 1, 1, -1))
    rows = b.const("rows", np.arange(size[0], dtype=f32).reshape(1, 1, -1, 1))
    inside = b.op("And", [b.op("And", [b.op("GreaterOrEqual", [cols, x1], bool, None), b.op("Less", [cols, x2], bool,
                                                                                              None)], bool, None),
                          b.op("And", [b.op("GreaterOrEqual", [rows, y1], bool, None), b.op("Less", [rows, y2], bool,
                                                                                              None)], bool, None)],
                  bool, ["batch", topk, *size])
    if kind == "logits_s4":
        out = gs.Variable("det_masks", f32, ["batch", topk, *size])
        b.op("Where", [inside, logits, b.const("low", np.array(-1e4, f32))], f32, None, out=out)
    else:
        positive = b.op("Greater", [logits, b.const("zero", np.array(0, f32))], bool, ["batch", topk, *size])
        out = gs.Variable("det_masks", np.uint8, ["batch", topk, *size])
        b.op("Cast", [b.op("And", [positive, inside], bool, None)], np.uint8, None, {"to": 2}, out=out)  # UINT8
    graph.outputs = [v for v in graph.outputs if v.name not in ("det_mask_coeffs", "output1")] + [out]
    graph.cleanup().toposort()
    return gs.export_onnx(graph)


def client_masks(coeffs: np.ndarray, protos: np.ndarray, boxes: np.ndarray, imgsz: int) -> np.ndarray:
    """ultralytics' process_mask(upsample=True) in NumPy/OpenCV for one image's n detections."""
    import cv2

    nm, mh, mw = protos.shape
    n = len(coeffs)
    logits = (coeffs @ protos.reshape(nm, -1)).reshape(n, mh, mw)
    out = np.empty((n, imgsz, imgsz), np.uint8)
    cols, rows = np.arange(imgsz, dtype=np.float32), np.arange(imgsz, dtype=np.float32)[:, None]
    for i in range(n):
        up = cv2.resize(logits[i], (imgsz, imgsz), interpolation=cv2.INTER_LINEAR)
        x1, y1, x2, y2 = boxes[i]
        out[i] = (up > 0) & (cols >= x1) & (cols < x2) & (rows >= y1) & (rows < y2)
    return out


def main(argv=None) -> int:
    import cv2
    import onnxruntime as ort

    from yolo_triton.nms_graph import add_nms
    from yolo_triton.postprocess import letterbox_batch
    from yolo_triton.scratch import sample_images
    from yolo_triton.settings import defaults

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--imgsz", type=int, nargs="+", default=[640, 320])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--json", type=Path, default=REPO / "benchmarks/cpu_seg_masks.json")
    args = parser.parse_args(argv)
    settings = defaults()
    conf, iou, topk = float(settings["CONF"]), float(settings["IOU"]), int(settings["TOPK"])
    images = [cv2.imread(str(p)) for p in sample_images()]
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for imgsz in args.imgsz:
            pt = scratch_segment(Path(tmp), imgsz)
            end2end = add_nms(track_a(pt, imgsz), "ultralytics", conf, iou, topk, 0)
            graphs = {"protos": end2end, **{k: masks_in_graph(end2end, imgsz, topk, k)
                                            for k in ("logits_s4", "binary_s4", "binary_s")}}
            sessions = {k: ort.InferenceSession(g.SerializeToString(), options, providers=["CPUExecutionProvider"])
                        for k, g in graphs.items()}
            for batch_size in args.batches:
                batch, _ = letterbox_batch([images[i % len(images)] for i in range(batch_size)], imgsz)
                feeds = {"images": batch}
                outs = {k: dict(zip([o.name for o in s.get_outputs()], s.run(None, feeds))) for k, s in sessions.items()}
                base = outs["protos"]
                nums = base["num_dets"][:, 0]
                # the in-graph masks of the kept detections equal the client's assembly (binary at input size)
                for i, n in enumerate(nums):
                    want = client_masks(base["det_mask_coeffs"][i, :n], base["output1"][i], base["det_boxes"][i, :n],
                                        imgsz)
                    agree = float((outs["binary_s"]["det_masks"][i, :n] == want).mean()) if n else 1.0
                    if agree < 0.999:
                        raise SystemExit(f"imgsz {imgsz}: in-graph masks agree with the client's on {agree:.4f} only")
                times = time_interleaved({k: (lambda s=s: s.run(None, feeds)) for k, s in sessions.items()},
                                         args.rounds, warmup=2)
                client = time_calls(lambda: [client_masks(base["det_mask_coeffs"][i, :n], base["output1"][i],
                                                          base["det_boxes"][i, :n], imgsz)
                                             for i, n in enumerate(nums)], args.rounds, warmup=1)
                row = {"imgsz": imgsz, "batch": batch_size, "threads": args.threads,
                       "dets_per_image": float(nums.mean()), "client_ms": round(1000 * statistics.median(client), 2)}
                for k, out in outs.items():
                    row[f"{k}_bytes_per_image"] = int(sum(v.nbytes for v in out.values()) // batch_size)
                    row[f"{k}_ms"] = round(1000 * statistics.median(times[k]), 2)
                rows.append(row)
                print(json.dumps(row), flush=True)
    result = {"what": __doc__.splitlines()[0], "machine": f"{cpu_model()}, {os.cpu_count()} cores, "
              f"{platform.machine()}", "onnxruntime": ort.__version__, "conf": conf, "iou": iou, "topk": topk,
              "nms": "ultralytics", "precision": "fp32", "rounds": args.rounds, "rows": rows}
    atomic_write_text(args.json, json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
