#!/usr/bin/env python3
"""Serve-and-measure harness for a running Triton (written for the real server on the lent H200).

Three verbs, each usable without the CLI (``make bench-serving`` is meant to absorb them):

* ``load``    explicit-mode loads, one model at a time, recording READY or the server's error;
* ``detect``  every track's detections on real images through the project's client
               (``scripts/triton_client.py``: Track A letterbox + NMS here, end2end, Track D bytes);
* ``bench``   closed-loop load at each concurrency: ``C`` synchronous gRPC clients spread over worker
               processes, each sending one image per request back to back for ``--seconds``;
               images/s, latency p50/p99 and, from ``/v2/models/<m>/stats`` before and after, the batch
               sizes the server executed (counts per batch size, per composing model);
* ``compare`` (on a machine with ultralytics) each track's served detections against
               ``YOLO.predict(rect=False)`` with scripts/validate.py's matcher and FP16 tolerances.

What one request costs the client: Track A sends the letterboxed FP32 tensor and runs the NumPy NMS
(``yolo_triton.postprocess``) on ``output0`` inside the timed region; end2end sends the same tensor and
receives the NMS outputs; Track D sends the encoded file. Letterboxing for Tracks A/end2end is done
once per image before timing (it is the same for both; Track D does it on the server).

    python scripts/bench_gpu_serving.py load --url 127.0.0.1:8001 --models a b c
    python scripts/bench_gpu_serving.py detect --url 127.0.0.1:8001 --models a b --images dir --json d.json
    python scripts/bench_gpu_serving.py bench --url 127.0.0.1:8001 --track track_a=yolo11s --images dir \\
        --concurrency 1 2 4 --seconds 5 --json b.json
    python scripts/bench_gpu_serving.py compare --detections d.json --weights w.pt --images dir --json c.json
"""
from __future__ import annotations

import argparse
import json
import logging
import multiprocessing as mp
import time
from pathlib import Path


import numpy as np  # noqa: E402

LOG = logging.getLogger("bench_gpu_serving")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
DEFAULT_CONCURRENCY = (1, 2, 4, 8, 16, 32, 64)
NMS_MODE = "ultralytics"  # Track A client NMS: YOLO.predict's semantics (the reference compared against)


def image_files(items) -> list[Path]:
    paths: list[Path] = []
    for item in items:
        p = Path(item)
        paths += sorted(q for q in p.iterdir() if q.suffix.lower() in IMAGE_SUFFIXES) if p.is_dir() else [p]
    if not paths:
        raise SystemExit(f"error: no images in {list(items)}")
    return paths


def grpc_client(url: str):
    import tritonclient.grpc as grpcclient

    return grpcclient.InferenceServerClient(url=url)


# --------------------------------------------------------------------------------------------------
# load
# --------------------------------------------------------------------------------------------------
def load_models(url: str, models: list[str]) -> dict:
    """Load each model (server in --model-control-mode=explicit); READY or the error, and the seconds."""
    client = grpc_client(url)
    result = {}
    try:
        for name in models:
            t0 = time.perf_counter()
            try:
                client.load_model(name)
                ready = client.is_model_ready(name)
                result[name] = {"ready": bool(ready), "seconds": round(time.perf_counter() - t0, 2)}
            except Exception as exc:  # the server's own message is the finding
                result[name] = {"ready": False, "seconds": round(time.perf_counter() - t0, 2), "error": str(exc)}
            LOG.warning("load %s: %s", name, result[name])
        meta = client.get_server_metadata()
        result["_server"] = {"name": meta.name, "version": meta.version}
    finally:
        client.close()
    return result


# --------------------------------------------------------------------------------------------------
# detect
# --------------------------------------------------------------------------------------------------
def detect(url: str, models: list[str], paths: list[Path]) -> dict:
    from yolo_triton import client as tc

    images = [tc.read_image(p) for p in paths]
    encoded = [p.read_bytes() for p in paths]
    client = tc.connect(url, "grpc")
    out = {"images": [p.name for p in paths], "models": {}}
    try:
        for name in models:
            served = tc.describe_model(client, name)
            dets = tc.infer(client, served, images, encoded=encoded, mode=NMS_MODE)
            out["models"][name] = [{"boxes": d.boxes.tolist(), "scores": d.scores.tolist(),
                                    "classes": d.classes.tolist()} for d in dets]
            LOG.warning("detect %s: %s detections per image", name, [len(d) for d in dets])
    finally:
        client.close()
    return out


# --------------------------------------------------------------------------------------------------
# warmup and raw tensors
# --------------------------------------------------------------------------------------------------
def warmup(url: str, models: list[str], paths: list[Path]) -> dict:
    """Execute each image-input model (FP32 or UINT8) once at every batch size 1..max_batch (ONNX Runtime's CUDA EP sets
    up, and with cudnn_conv_algo_search EXHAUSTIVE benchmarks, its kernels per new input shape on the
    first run of that shape); seconds per batch size."""
    import tritonclient.grpc as grpcclient
    from yolo_triton import postprocess as pp
    import cv2
    from yolo_triton import client as tc

    pixels, _ = pp.letterbox_batch([cv2.imread(str(paths[0]))], 640, dtype="uint8")
    client = grpc_client(url)
    out = {}
    try:
        for name in models:
            served = tc.describe_model(client, name)
            image = pp.to_model_input(pixels, served.input_dtype)
            times = {}
            for b in range(1, served.max_batch + 1):
                data = np.ascontiguousarray(np.repeat(image, b, axis=0))
                inp = grpcclient.InferInput(served.input_name, list(data.shape), served.input_dtype)
                inp.set_data_from_numpy(data)
                t0 = time.perf_counter()
                client.infer(name, [inp])
                times[str(b)] = round(time.perf_counter() - t0, 3)
            out[name] = times
            LOG.warning("warmup %s: %.1f s for batch sizes 1..%d (max %.2f s)", name, sum(times.values()),
                        served.max_batch, max(times.values()))
    finally:
        client.close()
    return out


def raw_tensors(url: str, detectors: list[str], preprocess: str | None, paths: list[Path]) -> dict:
    """Raw outputs for the real images: each Track A model's ``output0`` for the client-letterboxed
    images, and the DALI model's ``images`` (as uint8, x255 rounded) and ``letterbox`` outputs."""
    import tritonclient.grpc as grpcclient
    from yolo_triton import client as tc
    from yolo_triton import postprocess as pp
    import cv2

    pixels, _ = pp.letterbox_batch([cv2.imread(str(p)) for p in paths], 640, dtype="uint8")
    client = grpc_client(url)
    arrays = {}
    try:
        for name in detectors:
            served = tc.describe_model(client, name)
            batch = pp.to_model_input(pixels, served.input_dtype)
            outs = []
            for k in range(len(paths)):
                inp = grpcclient.InferInput(served.input_name, [1, *batch.shape[1:]], served.input_dtype)
                inp.set_data_from_numpy(np.ascontiguousarray(batch[k:k + 1]))
                outs.append(client.infer(name, [inp]).as_numpy("output0").astype(np.float32))  # FP16: OUTPUT_DTYPE
            arrays[f"output0__{name}"] = np.concatenate(outs)
        if preprocess:
            imgs, boxes = [], []
            for p in paths:
                data = np.frombuffer(p.read_bytes(), dtype=np.uint8)[None]
                inp = grpcclient.InferInput("encoded", list(data.shape), "UINT8")
                inp.set_data_from_numpy(data)
                res = client.infer(preprocess, [inp])
                images = res.as_numpy("images")  # FP32 0..1, or the pixels themselves (INPUT_DTYPE=uint8)
                imgs.append(images if images.dtype == np.uint8
                            else np.clip(np.rint(images * 255.0), 0, 255).astype(np.uint8))
                boxes.append(res.as_numpy("letterbox"))
            arrays[f"images_u8__{preprocess}"] = np.concatenate(imgs)
            arrays[f"letterbox__{preprocess}"] = np.concatenate(boxes)
    finally:
        client.close()
    arrays["image_names"] = np.array([p.name for p in paths])
    return arrays


def compare_raw(raw: dict, weights: Path, paths: list[Path]) -> dict:
    """Served raw tensors against PyTorch FP32 (output0) and the client's cv2 letterbox (DALI images)."""
    import validate as v
    from yolo_triton import postprocess as pp
    from yolo_triton.settings import defaults
    import cv2

    conf = float(defaults()["CONF"])
    by_name = {p.name: p for p in paths}
    ordered = [by_name[str(n)] for n in raw["image_names"]]
    batch, infos = pp.letterbox_batch([cv2.imread(str(p)) for p in ordered], 640, dtype="uint8")
    ref, _ = v.torch_reference(weights, batch, infos, conf, 0.45, 100, False)
    out = {"images": [p.name for p in ordered], "reference": "PyTorch FP32 output0 of the same letterboxed images"}
    for key in raw:
        if key.startswith("output0__"):
            name = key.split("__", 1)[1]
            precision = "fp32" if name.endswith("_fp32") else "fp16"
            box_tol, score_tol = v.TOLERANCES[precision]
            got = raw[key].astype(np.float64)
            r = v.compare_raw(ref, got[:, :4, :].transpose(0, 2, 1), got[:, 4:, :].transpose(0, 2, 1), box_tol,
                              score_tol, conf)
            r["precision"], r["tolerances"] = precision, {"box_px": box_tol, "score": score_tol}
            r["mean_abs_score_diff"] = float(np.abs(ref[:, 4:, :] - got[:, 4:, :]).mean())
            out[name] = r
            LOG.warning("raw %s: max box diff %.3f px, max score diff %.4f (mean %.2e), passed=%s", name,
                        r["max_box_diff_px"], r["max_score_diff"], r["mean_abs_score_diff"], r["passed"])
        elif key.startswith("images_u8__"):
            name = key.split("__", 1)[1]
            client_u8 = batch.astype(np.int16)
            diff = np.abs(raw[key].astype(np.int16) - client_u8)
            out[name] = {"what": "DALI letterbox (GPU) vs the client's cv2 letterbox = ultralytics LetterBox",
                         "max_abs_diff_u8": int(diff.max()), "mean_abs_diff_u8": float(diff.mean()),
                         "share_pixels_differing": float((diff > 0).mean()),
                         "share_pixels_diff_gt1": float((diff > 1).mean()),
                         "letterbox": raw[f"letterbox__{name}"].tolist(),
                         "client_letterbox": [[i.ratio, i.pad_x, i.pad_y, i.orig_h, i.orig_w] for i in infos]}
            LOG.warning("raw %s: max |diff| %d/255, mean %.3f, %.1f%% of values differ", name,
                        out[name]["max_abs_diff_u8"], out[name]["mean_abs_diff_u8"],
                        100 * out[name]["share_pixels_differing"])
    return out


# --------------------------------------------------------------------------------------------------
# bench
# --------------------------------------------------------------------------------------------------
def _payloads(kind: str, paths: list[Path], imgsz: int, input_dtype: str = "FP32"):
    """Per image: what one request sends, and what the client needs after it (letterbox info)."""
    from yolo_triton import postprocess as pp
    import cv2

    items = []
    for p in paths:
        if kind == "encoded":
            items.append((np.frombuffer(p.read_bytes(), dtype=np.uint8)[None], None))
        else:
            batch, infos = pp.letterbox_batch([cv2.imread(str(p))], imgsz, input_dtype)
            items.append((np.ascontiguousarray(batch), infos))
    return items


def _worker(url: str, model: str, kind: str, input_name: str, input_dtype: str, outputs: list[str],
            paths: list[str], imgsz: int, threads: int, start_at: float, stop_at: float, queue) -> None:
    """One process: ``threads`` closed loops; latencies (s) of requests that finished inside the window."""
    import threading

    import tritonclient.grpc as grpcclient
    from yolo_triton import postprocess as pp
    from yolo_triton.settings import defaults

    settings = defaults()
    conf, iou, topk = float(settings["CONF"]), float(settings["IOU"]), int(settings["TOPK"])
    items = _payloads(kind, [Path(p) for p in paths], imgsz, input_dtype)
    lat: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    def loop(offset: int) -> None:
        client = grpcclient.InferenceServerClient(url=url)
        requested = [grpcclient.InferRequestedOutput(n) for n in outputs]
        i = offset
        mine = []
        try:
            while True:
                data, infos = items[i % len(items)]
                i += 1
                t0 = time.perf_counter()
                if t0 >= stop_at:
                    break
                inp = grpcclient.InferInput(input_name, list(data.shape), input_dtype)
                inp.set_data_from_numpy(data)
                res = client.infer(model, [inp], outputs=requested)
                if kind == "output0":  # Track A: the client's NMS is part of the request's cost
                    pp.postprocess_track_a(res.as_numpy("output0").astype(np.float32), infos, conf, iou, topk, NMS_MODE, False)
                else:
                    res.as_numpy(outputs[0])
                t1 = time.perf_counter()
                if t0 >= start_at and t1 <= stop_at:
                    mine.append(t1 - t0)
        except Exception as exc:
            errors.append(str(exc))
        finally:
            client.close()
            with lock:
                lat.extend(mine)

    pool = [threading.Thread(target=loop, args=(k,)) for k in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    queue.put((lat, errors[:3]))


def _stats(client, model: str) -> dict:
    """Cumulative per-batch-size execution counts and the request count of ``model``."""
    st = client.get_inference_statistics(model_name=model, as_json=True)
    out = {"requests": 0, "executions": 0, "batches": {}}
    for m in st.get("model_stats", []):
        out["requests"] += int(m.get("inference_count", 0))
        out["executions"] += int(m.get("execution_count", 0))
        for b in m.get("batch_stats", []):
            size = int(b["batch_size"])
            out["batches"][size] = out["batches"].get(size, 0) + int(b["compute_infer"].get("count", 0))
    return out


def _delta(before: dict, after: dict) -> dict:
    batches = {s: after["batches"][s] - before["batches"].get(s, 0) for s in after["batches"]}
    batches = {s: n for s, n in sorted(batches.items()) if n}
    total = sum(batches.values())
    return {"inferences": after["requests"] - before["requests"],
            "executions": after["executions"] - before["executions"],
            "batch_sizes": {str(s): n for s, n in batches.items()},
            "mean_batch": round(sum(s * n for s, n in batches.items()) / total, 2) if total else 0.0}


def describe(url: str, model: str) -> dict:
    from yolo_triton import client as tc

    client = tc.connect(url, "grpc")
    try:
        served = tc.describe_model(client, model)
    finally:
        client.close()
    outputs = ["output0"] if served.kind == tc.KIND_OUTPUT0 else list(tc.END2END_OUTPUTS)
    return {"kind": served.kind, "input_name": served.input_name, "input_dtype": served.input_dtype,
            "imgsz": served.imgsz or 640, "outputs": outputs, "steps": list(served.steps) or [model]}


def bench_one(url: str, model: str, paths: list[Path], concurrency: int, seconds: float,
              warmup: float = 1.0, max_procs: int = 8) -> dict:
    info = describe(url, model)
    procs = max(1, min(concurrency, max_procs))
    per = [concurrency // procs + (1 if k < concurrency % procs else 0) for k in range(procs)]
    client = grpc_client(url)
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    try:
        start_at = time.perf_counter() + 4.0 + warmup  # process start + payload preparation, then warm-up
        stop_at = start_at + seconds
        workers = [ctx.Process(target=_worker, args=(url, model, info["kind"], info["input_name"],
                                                     info["input_dtype"], info["outputs"],
                                                     [str(p) for p in paths], info["imgsz"], n,
                                                     start_at, stop_at, queue)) for n in per]
        for w in workers:
            w.start()
        time.sleep(max(0.0, start_at - time.perf_counter()))
        before = {m: _stats(client, m) for m in info["steps"]}
        time.sleep(max(0.0, stop_at - time.perf_counter()))
        after = {m: _stats(client, m) for m in info["steps"]}
        lat: list[float] = []
        errors: list[str] = []
        for _ in workers:
            part, errs = queue.get(timeout=120)
            lat += part
            errors += errs
        for w in workers:
            w.join(timeout=30)
    finally:
        client.close()
    arr = np.array(lat) * 1e3
    row = {"model": model, "kind": info["kind"], "concurrency": concurrency, "processes": procs,
           "seconds": seconds, "requests": int(arr.size), "images_per_s": round(arr.size / seconds, 1),
           "p50_ms": round(float(np.percentile(arr, 50)), 2) if arr.size else None,
           "p99_ms": round(float(np.percentile(arr, 99)), 2) if arr.size else None,
           "server": {m: _delta(before[m], after[m]) for m in info["steps"]}}
    if errors:
        row["errors"] = errors[:3]
    LOG.warning("bench %s c=%d: %s img/s p50 %s ms p99 %s ms batches %s", model, concurrency, row["images_per_s"],
                row["p50_ms"], row["p99_ms"], {m: d["batch_sizes"] for m, d in row["server"].items()})
    return row


def bench(url: str, tracks: dict[str, str], paths: list[Path], concurrency, seconds: float,
          json_path: Path | None = None) -> dict:
    """Every track at every concurrency; with ``json_path`` the file is rewritten after each point."""
    out = {"tracks": tracks, "images": [p.name for p in paths], "rows": []}
    for track, model in tracks.items():
        for c in concurrency:
            row = bench_one(url, model, paths, c, seconds)
            row["track"] = track
            out["rows"].append(row)
            if json_path is not None:
                write_json(json_path, out)
    return out


# --------------------------------------------------------------------------------------------------
# compare (needs ultralytics: run where the project's venv is)
# --------------------------------------------------------------------------------------------------
def ultralytics_reference(weights: Path, paths: list[Path], conf: float, iou: float, topk: int, imgsz: int):
    from ultralytics import YOLO

    from yolo_triton import postprocess as pp

    model = YOLO(str(weights))
    refs = []
    for p in paths:
        r = model.predict(str(p), imgsz=imgsz, conf=conf, iou=iou, max_det=topk, rect=False, verbose=False,
                          device="cpu")[0]
        b = r.boxes
        refs.append(pp.Detections(b.xyxy.numpy().astype(np.float32), b.conf.numpy().astype(np.float32),
                                  b.cls.numpy().astype(np.int32)))
    return refs


def _dets(per_image) -> list:
    from yolo_triton import postprocess as pp

    return [pp.Detections(np.array(d["boxes"], np.float32).reshape(-1, 4), np.array(d["scores"], np.float32),
                          np.array(d["classes"], np.int32)) for d in per_image]


def onnx_nms_reference(weights: Path, paths: list[Path], conf: float, iou: float, topk: int, imgsz: int):
    """PyTorch's raw output through the NMS=onnx semantics (what the end2end graph computes)."""
    import cv2
    import validate as v
    from yolo_triton import postprocess as pp

    batch, infos = pp.letterbox_batch([cv2.imread(str(p)) for p in paths], imgsz, dtype="uint8")
    raw, _ = v.torch_reference(weights, batch, infos, conf, iou, topk, False)
    return pp.postprocess_track_a(raw, infos, conf, iou, topk, "onnx", False)


def compare(detections: dict, weights: Path, paths: list[Path], other: dict | None = None) -> dict:
    """Each served model's detections against (1) ``YOLO.predict(rect=False)`` (FP32 PyTorch, its own
    NMS), (2) for NMS=onnx end2end models, PyTorch's raw output through the NMS=onnx semantics, and
    (3) with ``other`` (a ``detect`` run elsewhere, e.g. the same artefacts on a CPU server), those."""
    import validate as v
    from yolo_triton.settings import defaults

    s = defaults()
    conf, iou, topk, imgsz = float(s["CONF"]), float(s["IOU"]), int(s["TOPK"]), int(s["IMGSZ"])
    by_name = {p.name: p for p in paths}
    ordered = [by_name[n] for n in detections["images"]]
    refs = {"ultralytics": ultralytics_reference(weights, ordered, conf, iou, topk, imgsz)}
    refs["onnx_nms"] = onnx_nms_reference(weights, ordered, conf, iou, topk, imgsz)
    out = {"references": {"ultralytics": "YOLO.predict(rect=False), CPU, FP32 PyTorch, its own NMS",
                          "onnx_nms": "PyTorch FP32 raw output0 through the NMS=onnx semantics",
                          "other": "the same model names in another detect run (CPU server)"},
           "weights": weights.name, "conf": conf, "iou": iou, "topk": topk, "match_iou": v.MATCH_IOU,
           "tolerances": {k: {"box_px": t[0], "score": t[1]} for k, t in v.TOLERANCES.items()},
           "reference_counts": {k: [len(d) for d in r] for k, r in refs.items()}, "models": {}}
    for name, per_image in detections["models"].items():
        precision = "fp32" if name.endswith("_fp32") else "fp16"
        _, score_tol = v.TOLERANCES[precision]
        tests = _dets(per_image)
        res = {"precision": precision, "counts": [len(d) for d in tests]}
        res["vs_ultralytics"] = v.compare_detections(refs["ultralytics"], tests, conf, topk, score_tol, nms_iou=iou)
        if "end2end" in name or "ensemble" in name:
            res["vs_onnx_nms"] = v.compare_detections(refs["onnx_nms"], tests, conf, topk, score_tol, nms_iou=iou)
        if other is not None and name in other["models"] and other["images"] == detections["images"]:
            res["vs_other"] = v.compare_detections(_dets(other["models"][name]), tests, conf, topk, score_tol,
                                                   nms_iou=iou)
        for key in ("vs_ultralytics", "vs_onnx_nms", "vs_other"):
            if key in res:
                r = res[key]
                LOG.warning("compare %s %s: passed=%s matched %d/%d (test %d, excused %d), max score diff %.4f",
                            name, key, r["passed"], r["matched"], r["reference"], r["test"], r["excused"],
                            r["max_score_diff"])
        out["models"][name] = res
    return out


# --------------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------------
def write_json(path: Path | None, data: dict) -> None:
    text = json.dumps(data, indent=1)
    if path is None:
        print(text)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text + "\n")
    tmp.replace(path)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="verb", required=True)
    for verb in ("load", "detect", "warmup", "raw", "bench", "compare", "compare-raw"):
        p = sub.add_parser(verb)
        p.add_argument("--json", type=Path)
        if not verb.startswith("compare"):
            p.add_argument("--url", default="127.0.0.1:8001", help="gRPC host:port")
        if verb in ("load", "detect", "warmup", "raw"):
            p.add_argument("--models", nargs="+", required=True)
        if verb != "load":
            p.add_argument("--images", nargs="+", required=True)
    sub.choices["raw"].add_argument("--preprocess", help="the DALI letterbox model")
    sub.choices["raw"].add_argument("--npz", type=Path, required=True, help="output directory")
    sub.choices["compare-raw"].add_argument("--npz", type=Path, nargs="+", required=True)
    sub.choices["compare-raw"].add_argument("--weights", type=Path, required=True)
    b = sub.choices["bench"]
    b.add_argument("--track", action="append", required=True, metavar="TRACK=MODEL")
    b.add_argument("--concurrency", type=int, nargs="+", default=list(DEFAULT_CONCURRENCY))
    b.add_argument("--seconds", type=float, default=5.0)
    c = sub.choices["compare"]
    c.add_argument("--detections", type=Path, required=True)
    c.add_argument("--weights", type=Path, required=True)
    c.add_argument("--other", type=Path, help="another detect JSON of the same images (e.g. a CPU server run)")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    logging.basicConfig(format="[bench_gpu_serving] %(message)s")
    args = parse_args(argv)
    if args.verb == "load":
        data = load_models(args.url, args.models)
        write_json(args.json, data)
        return 0 if all(v.get("ready") for k, v in data.items() if not k.startswith("_")) else 1
    paths = image_files(args.images)
    if args.verb == "detect":
        write_json(args.json, detect(args.url, args.models, paths))
    elif args.verb == "warmup":
        write_json(args.json, warmup(args.url, args.models, paths))
    elif args.verb == "raw":
        arrays = raw_tensors(args.url, args.models, args.preprocess, paths)
        args.npz.mkdir(parents=True, exist_ok=True)  # one file per model (the device tool's 16 MiB limit)
        names = arrays.pop("image_names")
        for key, value in arrays.items():
            model = key.split("__", 1)[1]
            group = {k: v for k, v in arrays.items() if k.split("__", 1)[1] == model}
            if key == next(iter(group)):
                np.savez_compressed(args.npz / f"raw_{model}.npz", image_names=names, **group)
    elif args.verb == "compare-raw":
        raw = {}
        for f in args.npz:
            with np.load(f) as z:
                raw.update({k: z[k] for k in z.files})
        write_json(args.json, compare_raw(raw, args.weights, paths))
    elif args.verb == "bench":
        tracks = dict(t.split("=", 1) for t in args.track)
        write_json(args.json, bench(args.url, tracks, paths, args.concurrency, args.seconds, args.json))
    elif args.verb == "compare":
        other = json.loads(args.other.read_text()) if args.other else None
        result = compare(json.loads(args.detections.read_text()), args.weights, paths, other)
        write_json(args.json, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
