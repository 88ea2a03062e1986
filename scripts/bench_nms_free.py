#!/usr/bin/env python3
"""onnxruntime CPU latency of the NMS-free end2end model (``NMS=free``) against the standard-op NMS
end2end model (``NMS=onnx``) for the same YOLO26 checkpoint, at batch 1 and 8.

Default checkpoint: an untrained scratch yolo26n made here (the graphs and their cost are those of the
trained model; detections per image are what the scratch head yields at CONF).

    python scripts/bench_nms_free.py --json results/bench_nms_free.json
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
from yolo_triton.timing import time_calls

REPO = Path(__file__).resolve().parents[1]


def latency(session, batch: np.ndarray, runs: int) -> list[float]:
    return time_calls(lambda: session.run(None, {"images": batch}), runs, warmup=3)


def main(argv=None) -> int:
    import cv2
    import onnxruntime as ort

    from yolo_triton.postprocess import letterbox_batch
    from yolo_triton.scratch import sample_images
    from yolo_triton.settings import defaults

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="yolo26n")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--precision", default=None, help="PRECISION for both exports (default: defaults.mk)")
    parser.add_argument("--json", type=Path, default=REPO / "results/bench_nms_free.json")
    args = parser.parse_args(argv)
    imgsz = int(defaults()["IMGSZ"])
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        base = ["make", "--no-print-directory", "-C", str(REPO), f"WEIGHTS_DIR={root}/w", f"BUILD_DIR={root}/b",
                f"CACHE_DIR={root}/c", f"PYTHON={sys.executable}", f"NAMES={args.arch}_untrained",
                *([f"PRECISION={args.precision}"] if args.precision else [])]
        subprocess.run([*base, "scratch", f"MODEL={args.arch}"], check=True, capture_output=True)
        images = [cv2.imread(str(p)) for p in sample_images()]
        options = ort.SessionOptions()
        options.intra_op_num_threads = args.threads
        for mode in ("free", "onnx"):
            models = root / mode
            subprocess.run([*base, f"MODELS_DIR={models}", f"NMS={mode}", "onnx"], check=True, capture_output=True)
            path = models / f"{args.arch}_untrained_end2end/1/model.onnx"
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            dtype = "uint8" if session.get_inputs()[0].type == "tensor(uint8)" else "float32"  # INPUT_DTYPE
            for batch_size in (1, 8):
                batch, _ = letterbox_batch([images[i % len(images)] for i in range(batch_size)], imgsz, dtype)
                times = latency(session, batch, args.runs)
                num_dets = session.run(["num_dets"], {"images": batch})[0]
                rows.append({"nms": mode, "batch": batch_size, "latency_ms_median": 1000 * statistics.median(times),
                             "latency_ms_p90": 1000 * float(np.quantile(times, 0.9)),
                             "mean_dets_per_image": float(num_dets.mean())})
    result = {"machine": f"{platform.machine()} CPU, {os.cpu_count()} cores, onnxruntime {ort.__version__}, "
                         f"{args.threads} threads", "checkpoint": f"{args.arch}_untrained (scratch)", "imgsz": imgsz,
              "precision": args.precision or defaults()["PRECISION"], "rows": rows}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.json, json.dumps(result, indent=2))
    print(result["machine"], "|", result["checkpoint"], imgsz, "px,", result["precision"])
    print("| NMS | batch | latency median (ms) | p90 (ms) | dets/image |\n|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['nms']} | {r['batch']} | {r['latency_ms_median']:.1f} | {r['latency_ms_p90']:.1f} | "
              f"{r['mean_dets_per_image']:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
