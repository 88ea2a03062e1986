#!/usr/bin/env python3
"""Diagnose slow dynamic batching on the GPU ONNX Runtime backend: per-batch-size timing breakdown
from Triton's statistics (queue, compute input/infer/output), for (a) one client sending batch-B
requests back to back and (b) C concurrent batch-1 clients (the dynamic batcher merges them).

    python scripts/gpu_serving_diag.py --url 127.0.0.1:8001 --model yolo11s_untrained --image img.jpg
"""
from __future__ import annotations

import argparse
import json
import threading
import time
from pathlib import Path


import cv2  # noqa: E402
import numpy as np  # noqa: E402
import tritonclient.grpc as grpcclient  # noqa: E402

from yolo_triton import postprocess as pp  # noqa: E402
from yolo_triton.client import describe_model  # noqa: E402


def breakdown(client, model: str) -> dict:
    st = client.get_inference_statistics(model_name=model, as_json=True)["model_stats"][0]
    out = {}
    for b in st.get("batch_stats", []):
        n = int(b["compute_infer"]["count"])
        out[int(b["batch_size"])] = {"n": n, **{k: int(b[k].get("ns", 0)) for k in ("compute_input", "compute_infer",
                                                                                  "compute_output")}}
    q = st["inference_stats"]["queue"]
    out["queue"] = {"n": int(q.get("count", 0)), "ns": int(q.get("ns", 0))}
    return out


def delta(a: dict, b: dict) -> dict:
    res = {}
    for k, v in b.items():
        if k == "queue":
            n = v["n"] - a.get("queue", {}).get("n", 0)
            res["queue_ms_mean"] = round((v["ns"] - a.get("queue", {}).get("ns", 0)) / max(n, 1) / 1e6, 2)
            continue
        n = v["n"] - a.get(k, {}).get("n", 0)
        if n:
            res[str(k)] = {"n": n, **{f"{s}_ms": round((v[s] - a.get(k, {}).get(s, 0)) / n / 1e6, 2)
                                      for s in ("compute_input", "compute_infer", "compute_output")}}
    return res


def infer(client, model, data):
    inp = grpcclient.InferInput("images", list(data.shape), "UINT8" if data.dtype == np.uint8 else "FP32")
    inp.set_data_from_numpy(data)
    return client.infer(model, [inp])


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", default="127.0.0.1:8001")
    ap.add_argument("--model", required=True)
    ap.add_argument("--image", required=True)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    client = grpcclient.InferenceServerClient(args.url)
    served = describe_model(client, args.model)  # FP32 or UINT8 images (INPUT_DTYPE)
    image, _ = pp.letterbox_batch([cv2.imread(args.image)], served.imgsz, served.input_dtype)
    result = {"model": args.model, "repeat": {}, "concurrent": {}}
    for b in (1, 2, 4, 8):
        data = np.ascontiguousarray(np.repeat(image, b, axis=0))
        before = breakdown(client, args.model)
        lat = []
        for _ in range(6):
            t0 = time.perf_counter()
            infer(client, args.model, data)
            lat.append(round((time.perf_counter() - t0) * 1e3, 1))
        result["repeat"][b] = {"latency_ms": lat, "server": delta(before, breakdown(client, args.model))}
        print("repeat batch", b, result["repeat"][b], flush=True)
    for c in (2, 4, 8):
        before = breakdown(client, args.model)
        stop = time.perf_counter() + 4.0
        lat: list[float] = []

        def loop():
            cl = grpcclient.InferenceServerClient(args.url)
            while time.perf_counter() < stop:
                t0 = time.perf_counter()
                infer(cl, args.model, image)
                lat.append((time.perf_counter() - t0) * 1e3)
            cl.close()

        threads = [threading.Thread(target=loop) for _ in range(c)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        arr = np.array(lat)
        result["concurrent"][c] = {"requests": int(arr.size), "p50_ms": round(float(np.median(arr)), 1),
                                   "max_ms": round(float(arr.max()), 1),
                                   "server": delta(before, breakdown(client, args.model))}
        print("concurrent", c, result["concurrent"][c], flush=True)
    client.close()
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
