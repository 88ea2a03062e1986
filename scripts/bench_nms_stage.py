#!/usr/bin/env python3
"""onnxruntime CPU time of the end2end NMS stage alone: ``NMS=onnx`` (multi-label, one NonMaxSuppression
class per class, dense ``[B, A*nc]`` TopK) against ``NMS=ultralytics`` (best class per box, one
class-offset NonMaxSuppression class, ``[B, A]`` TopK), on the real head outputs of scratch checkpoints.

For each checkpoint: ``make scratch`` + the FP32 Track A ONNX at IMGSZ (default 640) in a temporary
tree; the Track A graph runs once per batch to give ``boxes``/``scores``; then graphs holding only the NMS
stage (inputs ``boxes [B, A, 4]``, ``scores [B, A, nc]``, the same nodes ``add_nms`` appends) are timed,
interleaved, at 1 and 2 intra-op threads, batch 1 and 8, on two inputs: the sample images (bus, zidane,
repeated) and a uniform random input tensor in [0, 1) (what ``profile_end2end_ort.py`` feeds by default;
the untrained head then passes CONF on far more anchor-class pairs: a stress case). Each graph's outputs are checked against its NumPy model first (bit for bit).

    python scripts/bench_nms_stage.py --json benchmarks/cpu_nms_stage.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from yolo_triton.files import atomic_write_text
from yolo_triton.timing import cpu_model, time_interleaved

REPO = Path(__file__).resolve().parents[1]
MODES = {"onnx": True, "ultralytics": False}  # NMS mode -> multi_label


def nms_stage(anchors: int, nc: int, conf: float, iou: float, topk: int, multi_label: bool):
    import onnx_graphsurgeon as gs

    from yolo_triton.nms_onnx import add_onnx_nms

    graph = gs.Graph(opset=18)
    boxes = gs.Variable("boxes", np.float32, ["batch", anchors, 4])
    scores = gs.Variable("scores", np.float32, ["batch", anchors, nc])
    graph.inputs = [boxes, scores]
    graph.outputs = add_onnx_nms(graph, boxes, scores, conf, iou, topk, False, multi_label)
    graph.cleanup().toposort()
    return gs.export_onnx(graph).SerializeToString()


def reference(mode: str, boxes, scores, conf, iou, topk):
    from yolo_triton import postprocess as pp

    if mode == "onnx":
        return pp.efficient_nms(boxes, scores, conf, iou, topk, strict_thresholds=True)
    out = [np.zeros((len(boxes), 1), np.int32), np.zeros((len(boxes), topk, 4), np.float32),
           np.zeros((len(boxes), topk), np.float32), np.zeros((len(boxes), topk), np.int32)]
    for b, det in enumerate(pp.ultralytics_nms(boxes, scores, conf, iou, topk, False, pp.BOX_CENTER_SIZE)):
        n = len(det)
        out[0][b, 0], out[1][b, :n], out[2][b, :n], out[3][b, :n] = n, det[:, :4], det[:, 4], det[:, 5]
    return out


def main(argv=None) -> int:
    import cv2
    import onnxruntime as ort

    from yolo_triton.postprocess import letterbox_batch
    from yolo_triton.scratch import sample_images
    from yolo_triton.settings import defaults

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", nargs="+", default=["yolo11n", "yolo11s"])
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--rounds", type=int, default=15, help="interleaved timing rounds per setting")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--json", type=Path, default=REPO / "benchmarks/cpu_nms_stage.json")
    args = parser.parse_args(argv)
    settings = defaults()
    conf, iou, topk = float(settings["CONF"]), float(settings["IOU"]), int(settings["TOPK"])
    images = [cv2.imread(str(p)) for p in sample_images()]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for arch in args.archs:
            name = f"{arch}_untrained"
            base = ["make", "--no-print-directory", "-C", str(REPO), f"WEIGHTS_DIR={root}/w", f"BUILD_DIR={root}/b",
                    f"CACHE_DIR={root}/c", f"MODELS_DIR={root}/m", f"PYTHON={sys.executable}", f"NAMES={name}",
                    "PRECISION=fp32", f"IMGSZ={args.imgsz}"]
            subprocess.run([*base, "scratch", f"MODEL={arch}"], check=True, capture_output=True)
            subprocess.run([*base, f"{root}/m/{name}/1/model.onnx"], check=True, capture_output=True)
            track_a = ort.InferenceSession(str(root / f"m/{name}/1/model.onnx"), providers=["CPUExecutionProvider"])
            for source in ("sample images", "random tensor"):
                for batch_size in args.batches:
                    if source == "sample images":
                        batch, _ = letterbox_batch([images[i % len(images)] for i in range(batch_size)], args.imgsz)
                    else:  # what profile_end2end_ort.py feeds by default
                        batch = np.random.default_rng(0).random((batch_size, 3, args.imgsz, args.imgsz), np.float32)
                    (output0,) = track_a.run(None, {"images": batch})
                    boxes = np.ascontiguousarray(output0[:, :4].transpose(0, 2, 1))
                    scores = np.ascontiguousarray(output0[:, 4:].transpose(0, 2, 1))
                    anchors, nc = scores.shape[1:]
                    feeds = {"boxes": boxes, "scores": scores}
                    for threads in args.threads:
                        options = ort.SessionOptions()
                        options.intra_op_num_threads = threads
                        sessions = {mode: ort.InferenceSession(nms_stage(anchors, nc, conf, iou, topk, multi),
                                                               options, providers=["CPUExecutionProvider"])
                                    for mode, multi in MODES.items()}
                        dets = {}
                        for mode, session in sessions.items():
                            got = session.run(None, feeds)
                            expected = reference(mode, boxes, scores, conf, iou, topk)
                            if not all(np.array_equal(g, e) for g, e in zip(got, expected)):
                                raise SystemExit(f"{arch} {source} batch {batch_size}: NMS={mode} differs from "
                                                 "its NumPy model")
                            dets[mode] = float(got[0].mean())
                        times = time_interleaved({m: (lambda s=s: s.run(None, feeds)) for m, s in sessions.items()},
                                                 args.rounds, warmup=2)
                        row = {"checkpoint": name, "input": source, "batch": batch_size, "threads": threads,
                               "anchors": int(anchors), "classes": int(nc),
                               "candidates_per_image": float((scores > conf).sum() / batch_size),
                               "classes_with_candidates_per_image": float((scores > conf).any(1).sum() / batch_size)}
                        for mode in MODES:
                            row[f"{mode}_ms_median"] = round(1000 * statistics.median(times[mode]), 3)
                            row[f"{mode}_dets_per_image"] = dets[mode]
                        row["speedup"] = round(row["onnx_ms_median"] / row["ultralytics_ms_median"], 2)
                        rows.append(row)
                        print(f"{name} {source} batch {batch_size} threads {threads}: onnx "
                              f"{row['onnx_ms_median']:.2f} ms, ultralytics {row['ultralytics_ms_median']:.2f} ms "
                              f"({row['speedup']}x); candidates/image {row['candidates_per_image']:.0f}", flush=True)
    result = {"what": "NMS stage only (graphs with inputs boxes, scores), onnxruntime CPUExecutionProvider",
              "machine": f"{cpu_model()}, {os.cpu_count()} cores, {platform.machine()}",
              "onnxruntime": ort.__version__, "imgsz": args.imgsz, "conf": conf, "iou": iou, "topk": topk,
              "precision": "fp32 (Track A, for the head outputs)", "rounds": args.rounds, "rows": rows}
    atomic_write_text(args.json, json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
