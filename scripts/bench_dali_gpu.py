#!/usr/bin/env python3
"""Track D on a GPU: the DALI letterbox's accuracy against ultralytics and its speed against the CPU path.

1. Accuracy: the GPU pipeline (``device="gpu"``: nvJPEG decode, GPU resize/pad) on the check set of
   ``yolo_triton.letterbox_check`` vs ultralytics' ``LetterBox`` on ``cv2.imread`` of the same file
   (histogram of |difference| in grey levels, PNG and JPEG separately), and vs the CPU pipeline.
2. Autoserialization: writes the Triton model dir (``1/dali.py``), runs DALI's own autoserialize on it
   (what Triton's DALI backend does at load time), deserializes the result and checks it gives the
   same output as the pipeline built directly.
3. Throughput of decode + letterbox on 1920x1080 JPEGs: DALI on the GPU at each ``--batch``, against
   ultralytics' CPU path (``cv2.imdecode`` + ``LetterBox`` + RGB/CHW//255) on all cores (multiprocessing).

Writes ``bench_dali_gpu.json`` under ``--out`` (default ``$OUT``, else ``results/``) and logs to stderr.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import multiprocessing as mp
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import cv2
import letterbox_check as lc  # scripts/letterbox_check.py, beside this script
import numpy as np

from yolo_triton import settings

ROOT = Path(__file__).resolve().parents[1]


LOG = logging.getLogger("bench_dali_gpu")
REFERENCE_NAMES = {"ultralytics": "ultralytics LetterBox", "numpy": "postprocess.letterbox (numpy)"}


def hd_jpegs(sources: dict[str, np.ndarray], out_dir: Path, count: int) -> list[bytes]:
    """``count`` distinct 1920x1080 JPEGs (quality 90) made from the sample images (resized, flipped, shifted)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    encoded = []
    bases = [cv2.resize(img, (1920, 1080), interpolation=cv2.INTER_LINEAR) for img in sources.values()]
    for i in range(count):
        img = bases[i % len(bases)]
        if (i // len(bases)) % 2:
            img = img[:, ::-1]
        img = np.roll(img, 37 * i, axis=1)
        ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(img), [cv2.IMWRITE_JPEG_QUALITY, 90])
        if not ok:
            raise RuntimeError("cv2.imencode failed")
        encoded.append(buf.tobytes())
        (out_dir / f"hd_{i:02d}.jpg").write_bytes(buf.tobytes())
    return encoded


# ---- accuracy ------------------------------------------------------------------------------------
def accuracy(paths: dict[str, Path], imgsz: int, device: str = "gpu", reference: str = "ultralytics") -> dict:
    from yolo_triton import dali_pipeline as dp

    names = sorted(paths)
    encoded = [np.fromfile(paths[n], np.uint8) for n in names]
    results = {}
    for key, dev in (("gpu", device), ("cpu", "cpu")):  # "gpu" is the device under test
        pipe = dp.letterbox_pipeline(imgsz, dev, len(names), num_threads=settings.dali_threads())
        pipe.build()
        results[key] = lc.run_pipeline(pipe, encoded, dp.INPUT_NAME)
        del pipe
    per_image, info_ok = {}, True
    for i, name in enumerate(names):
        ref = lc.reference(paths[name], imgsz, reference)
        gpu, cpu = results["gpu"][0][i], results["cpu"][0][i]
        per_image[name] = {"gpu_vs_ultralytics": lc.diff_histogram(gpu, ref),
                           "cpu_vs_ultralytics": lc.diff_histogram(cpu, ref),
                           "gpu_vs_cpu": lc.diff_histogram(gpu, cpu),
                           "letterbox": results["gpu"][1][i].tolist()}
        info_ok &= bool(np.array_equal(results["gpu"][1][i], results["cpu"][1][i]))
    summary = {}
    for kind, suffix in (("png", ".png"), ("jpeg", ".jpg")):
        for key in ("gpu_vs_ultralytics", "cpu_vs_ultralytics", "gpu_vs_cpu"):
            summary[f"{kind}_{key}"] = lc.merge(v[key] for n, v in per_image.items() if n.endswith(suffix))
    return {"reference": REFERENCE_NAMES[reference],
            "summary": summary, "letterbox_gpu_equals_cpu": info_ok, "per_image": per_image}


# ---- autoserialization ---------------------------------------------------------------------------
def autoserialize_roundtrip(image: Path, imgsz: int, max_batch: int, queue_delay_us: int) -> dict:
    from nvidia.dali import Pipeline
    from nvidia.dali._utils.autoserialize import invoke_autoserialize

    from yolo_triton import dali_pipeline as dp
    with tempfile.TemporaryDirectory() as tmp:  # the dali.py that ensemble.write_preprocess_model writes
        model_dir = Path(tmp)
        (model_dir / "1").mkdir()
        (model_dir / "1" / "dali.py").write_text(dp.autoserialize_source(imgsz, max_batch, 4, "gpu"))
        spec = importlib.util.spec_from_file_location("dali_model_py", model_dir / "1" / "dali.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        serialized = model_dir / "1" / "model.dali"
        t0 = time.perf_counter()
        invoke_autoserialize(module, str(serialized))
        seconds = time.perf_counter() - t0
        size = serialized.stat().st_size
        pipe = Pipeline.deserialize(filename=str(serialized), batch_size=1, num_threads=settings.dali_threads(), device_id=0)
        pipe.build()
        loaded = lc.run_pipeline(pipe, [np.fromfile(image, np.uint8)], dp.INPUT_NAME)
        direct = dp.letterbox_pipeline(imgsz, "gpu", 1, num_threads=settings.dali_threads())
        direct.build()
        built = lc.run_pipeline(direct, [np.fromfile(image, np.uint8)], dp.INPUT_NAME)
    same = bool(np.array_equal(loaded[0][0], built[0][0]) and np.array_equal(loaded[1][0], built[1][0]))
    return {"serialized_bytes": size, "serialize_s": round(seconds, 3), "deserialized_equals_direct": same}


# ---- throughput ----------------------------------------------------------------------------------
def gpu_throughput(encoded: list[bytes], imgsz: int, batch: int, seconds: float, num_threads: int,
                   device: str = "gpu") -> dict:
    from yolo_triton import dali_pipeline as dp

    arrays = [np.frombuffer(b, np.uint8) for b in encoded]
    state = {"i": 0}

    def source():
        i = state["i"]
        state["i"] = i + batch
        return [arrays[(i + k) % len(arrays)] for k in range(batch)]

    pipe = dp.letterbox_pipeline(imgsz, device, batch, num_threads=num_threads, source=source, prefetch_queue_depth=2)
    pipe.build()
    for _ in range(5):  # warm-up: allocations, nvJPEG/hardware decoder state
        pipe.run()
    iterations, t0 = 0, time.perf_counter()
    while True:
        images, _ = pipe.run()  # returns when the batch is ready on the GPU
        iterations += 1
        elapsed = time.perf_counter() - t0
        if elapsed >= seconds and iterations >= 3:
            break
    shape = [len(images), *images[0].shape()]
    del pipe
    return {"batch": batch, "images_per_s": round(iterations * batch / elapsed, 1), "iterations": iterations,
            "seconds": round(elapsed, 2), "output_shape": shape, "dali_threads": num_threads}


_CPU_IMGSZ = 0


def _cpu_init(imgsz: int) -> None:
    global _CPU_IMGSZ
    _CPU_IMGSZ = imgsz
    cv2.setNumThreads(1)  # one image per process; no nested OpenCV threads


def _cpu_one(data: bytes) -> tuple:
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if lc.LetterBox is not None:
        padded = lc.LetterBox(new_shape=(_CPU_IMGSZ, _CPU_IMGSZ), auto=False)(image=bgr)
        chw = np.ascontiguousarray(padded[..., ::-1].transpose(2, 0, 1)).astype(np.float32) / np.float32(255.0)
    else:
        chw = lc.numpy_letterbox(bgr, _CPU_IMGSZ)[0]
    return chw.shape


def cpu_throughput(encoded: list[bytes], imgsz: int, seconds: float, workers: int) -> dict:
    # fork, and before any DALI pipeline exists: a child forked from a process running DALI/CUDA threads
    # deadlocks (main() therefore measures the CPU first); the timeouts turn a hang into an error.
    limit = 10 * seconds + 60
    with mp.get_context("spawn").Pool(workers, initializer=_cpu_init, initargs=(imgsz,)) as pool:
        pool.map_async(_cpu_one, encoded * 2, chunksize=1).get(limit)  # warm-up (and start-up)
        done, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            chunk = encoded * max(1, (workers * 8) // len(encoded))
            pool.map_async(_cpu_one, chunk, chunksize=4).get(limit)
            done += len(chunk)
        elapsed = time.perf_counter() - t0
    _cpu_init(imgsz)  # the same work in this one process: the per-core figure, to sanity-check the pool's
    n, t1 = 0, time.perf_counter()
    while time.perf_counter() - t1 < min(seconds, 3.0):
        _cpu_one(encoded[n % len(encoded)])
        n += 1
    single = n / (time.perf_counter() - t1)
    return {"workers": workers, "images_per_s": round(done / elapsed, 1), "images": done, "seconds": round(elapsed, 2),
            "single_process_images_per_s": round(single, 1),
            "letterbox": "ultralytics LetterBox" if lc.LetterBox is not None else "postprocess.letterbox (numpy)"}


def device_name() -> str:
    try:
        import subprocess

        return subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=20).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--imgsz", type=int, default=int(settings.defaults()["IMGSZ"]))
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 64])
    parser.add_argument("--seconds", type=float, default=8.0, help="timed seconds per measurement")
    parser.add_argument("--workers", type=int, default=os.cpu_count(), help="CPU baseline processes (default: all cores)")
    parser.add_argument("--dali-threads", type=int, default=settings.dali_threads())
    parser.add_argument("--images", type=int, default=32, help="distinct 1080p JPEGs")
    parser.add_argument("--assets", type=Path, default=lc.ultralytics_assets() or ROOT / ".build" / "assets",
                        help="folder with bus.jpg and zidane.jpg (default: ultralytics' assets)")
    parser.add_argument("--device", choices=("gpu", "cpu"), default="gpu", help="cpu: smoke-test this script without a GPU")
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "results")))
    parser.add_argument("--reference", choices=lc.REFERENCES, default="ultralytics",
                        help="what the pipeline is compared with: ultralytics' LetterBox (needs ultralytics) or "
                             "the NumPy port postprocess.letterbox; the JSON records which")
    parser.add_argument("--skip", nargs="*", default=[], choices=["accuracy", "autoserialize", "gpu", "cpu"])
    parser.add_argument("-v", "--verbose", action="store_true")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="[bench_dali_gpu] %(message)s",
                        stream=sys.stderr)
    import nvidia.dali

    args.out.mkdir(parents=True, exist_ok=True)
    report = {"device": device_name(), "pipeline_device": args.device, "host": platform.node(), "cpu_count": os.cpu_count(),
              "dali": nvidia.dali.__version__, "opencv": cv2.__version__, "imgsz": args.imgsz}
    out_json = args.out / "bench_dali_gpu.json"

    def save() -> None:
        out_json.write_text(json.dumps(report, indent=1))

    try:
        with tempfile.TemporaryDirectory() as tmp:
            sources = {stem: cv2.imread(str(args.assets / f"{stem}.jpg")) for stem in ("bus", "zidane")}
            if any(img is None for img in sources.values()):
                raise FileNotFoundError(f"bus.jpg / zidane.jpg not found in {args.assets}")
            paths = lc.sample_images(Path(tmp) / "check", sources)
            encoded = hd_jpegs(sources, Path(tmp) / "hd", args.images)
            report["hd_jpeg_mean_bytes"] = int(np.mean([len(b) for b in encoded]))
            if "cpu" not in args.skip:
                report["cpu"] = cpu_throughput(encoded, args.imgsz, args.seconds, args.workers)
                LOG.info("cpu: %s", report["cpu"])
                save()
            if "accuracy" not in args.skip:
                report["accuracy"] = accuracy(paths, args.imgsz, args.device, args.reference)
                LOG.info("accuracy summary: %s", report["accuracy"]["summary"])
                save()
            if "autoserialize" not in args.skip and args.device == "gpu":
                max_batch = max(settings.max_batch_for_size(s) for s in settings.size_names())
                report["autoserialize"] = autoserialize_roundtrip(
                    paths["bus.jpg"], args.imgsz, max_batch, int(settings.defaults()["QUEUE_DELAY_US"]))
                LOG.info("autoserialize: %s", report["autoserialize"])
                save()
            if "gpu" not in args.skip:
                report["gpu"] = [gpu_throughput(encoded, args.imgsz, b, args.seconds, args.dali_threads, args.device)
                                 for b in args.batch]
                LOG.info("gpu: %s", report["gpu"])
            if "gpu" in report and "cpu" in report:
                report["speedup_vs_cpu"] = {str(g["batch"]): round(g["images_per_s"] / report["cpu"]["images_per_s"], 2)
                                            for g in report["gpu"]}
                LOG.info("speed-up vs CPU: %s", report["speedup_vs_cpu"])
    except Exception as err:  # the JSON keeps what was measured before the failure
        report["error"] = f"{type(err).__name__}: {err}"
        LOG.error("failed: %s", report["error"])
        save()
        raise
    save()
    LOG.info("wrote %s", out_json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
