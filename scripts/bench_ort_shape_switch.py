#!/usr/bin/env python3
"""Reproduce ONNX Runtime's CUDA EP stall on batch-size changes, outside Triton (issue: GPU serving under load).

For each ONNX model and each ``cudnn_conv_algo_search`` value: run every batch size of ``--sizes`` twice
(warm-up, timed too), then ``--repeat`` runs of batch 1 and of batch 8, then an interleaved sequence in
which every run's batch size differs from the previous one's (what Triton's dynamic batcher produces).
The PyTorch anchor (a TorchScript of the same checkpoint, FP16) runs the same sequence. Input: real
letterboxed images (uint8 .npy from ``bench_onnx_gpu.py prepare``), FP32 /255 from the host, outputs
copied back to the host, as a served model does. Writes one JSON; prints a table.

Needs only numpy + onnxruntime(-gpu) (+ torch for the anchor): the GPU machine has neither ultralytics nor
this pipeline's dependencies. ``--prepare WEIGHTS DIR`` (here, CPU) writes the anchor and the images:
DIR/model_fp16.torchscript (half, a trace of the checkpoint as ultralytics exports it) and DIR/images_uint8.npy.

    python scripts/bench_ort_shape_switch.py --model plain=models/yolo11s_untrained/1/model.onnx \\
        --model pad16=padded/model.onnx --images bundle/images_uint8.npy --torchscript bundle/model.torchscript \\
        --json results/ort_shape_switch.json
"""
from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import time
from pathlib import Path

import numpy as np

ALGOS = ("EXHAUSTIVE", "HEURISTIC", "DEFAULT")


def batch_of(images: np.ndarray, n: int) -> np.ndarray:
    """``n`` images (repeating the real ones), FP32 0..1, NCHW."""
    idx = [i % len(images) for i in range(n)]
    return images[idx].astype(np.float32) / np.float32(255.0)


def interleaved(sizes: list[int], count: int, seed: int = 0) -> list[int]:
    """``count`` batch sizes from ``sizes``, each different from the one before."""
    rng = random.Random(seed)
    out = [rng.choice(sizes)]
    while len(out) < count:
        nxt = rng.choice(sizes)
        if nxt != out[-1]:
            out.append(nxt)
    return out


def timed_sequence(run_one, images: np.ndarray, sizes: list[int], repeat: int, switches: int,
                   budget_s: float) -> dict:
    """Latency (ms) of each run of the three phases; stops a phase early past ``budget_s`` (says so)."""
    start = time.perf_counter()
    big = min(8, max(sizes))  # the "repeated batch 8" phase (a graph padded to less repeats its pad)
    inputs = {n: batch_of(images, n) for n in sorted(set(sizes) | {1, big})}
    record: dict = {"warm": [], "repeat_b1": [], "repeat_b8": [], "switch": [], "cut_short": False}

    def go(phase: str, n: int) -> bool:
        if time.perf_counter() - start > budget_s:
            record["cut_short"] = True
            return False
        t0 = time.perf_counter()
        run_one(inputs[n])
        record[phase].append({"batch": n, "ms": (time.perf_counter() - t0) * 1e3})
        return True

    for n in sizes:
        for _ in range(2):
            go("warm", n)
    for phase, n in (("repeat_b1", 1), ("repeat_b8", big)):
        for _ in range(repeat):
            go(phase, n)
    for n in interleaved(sizes, switches):
        go("switch", n)
    return record


def summary(record: dict) -> dict:
    def stats(rows):
        ms = [r["ms"] for r in rows]
        if not ms:
            return None
        return {"n": len(ms), "median_ms": round(statistics.median(ms), 2), "min_ms": round(min(ms), 2),
                "max_ms": round(max(ms), 2)}

    # steady state: drop the first run of each repeated phase (the size was just changed to)
    return {"repeat_b1": stats(record["repeat_b1"][1:]), "repeat_b8": stats(record["repeat_b8"][1:]),
            "switch": stats(record["switch"]), "cut_short": record["cut_short"]}


def ort_runner(path: str, algo: str, provider: str):
    """A run function for ``path`` on ``provider`` and the batch it pads to (None: plain graph)."""
    import onnxruntime as ort

    if provider == "cuda":
        providers = [("CUDAExecutionProvider", {"cudnn_conv_algo_search": algo}), "CPUExecutionProvider"]
    else:
        providers = ["CPUExecutionProvider"]
    session = ort.InferenceSession(path, providers=providers)
    if provider == "cuda" and session.get_providers()[0] != "CUDAExecutionProvider":
        raise SystemExit(f"onnxruntime did not take the CUDA EP for {path}: {session.get_providers()}")
    pad = session.get_modelmeta().custom_metadata_map.get("batch_pad")
    name = session.get_inputs()[0].name
    dtype = {"tensor(uint8)": np.uint8}.get(session.get_inputs()[0].type)

    converted: dict[int, np.ndarray] = {}  # uint8 pixels made once per batch, outside the timed runs
    # (the run of 2026-12-02 converted inside them: its u8pad16 figures include that host work)

    def run_one(batch):
        if dtype is np.uint8:
            batch = converted.setdefault(id(batch), (batch * 255.0).round().astype(np.uint8))
        session.run(None, {name: batch})

    return run_one, int(pad) if pad else None


def torch_runner(path: str):
    import torch

    model = torch.jit.load(path, map_location="cuda").half().eval()

    def run_one(batch):
        with torch.no_grad():
            out = model(torch.from_numpy(batch).cuda().half())
            out = out[0] if isinstance(out, (list, tuple)) else out
            out.float().cpu()

    return run_one


def prepare(weights: str, out: str, imgsz: int) -> None:
    """The anchor and the images, on a machine with ultralytics (bench_onnx_gpu.py's trace, saved in FP16)."""
    import cv2
    import torch
    from ultralytics import YOLO

    from yolo_triton.postprocess import letterbox_uint8
    from yolo_triton.scratch import sample_images

    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    model = YOLO(weights).model.float().fuse().eval()
    for module in model.modules():
        if hasattr(module, "export"):
            module.export = True  # output0 only, as ultralytics' own exports return
    with torch.no_grad():
        traced = torch.jit.trace(model, torch.zeros(1, 3, imgsz, imgsz), strict=False, check_trace=False)
    traced.half().save(str(folder / "model_fp16.torchscript"))
    boxed = [letterbox_uint8(cv2.imread(str(p)), imgsz)[0][..., ::-1].transpose(2, 0, 1) for p in sample_images()]
    np.save(folder / "images_uint8.npy", np.ascontiguousarray(np.stack(boxed)))


def torch_throughput(path: str, images: np.ndarray, batches: list[int], seconds: float = 3.0) -> list[dict]:
    """PyTorch FP16 images/s per batch with the input already on the GPU (the anchor's best case)."""
    import torch

    model = torch.jit.load(path, map_location="cuda").half().eval()
    rows = []
    for n in batches:
        x = torch.from_numpy(batch_of(images, n)).cuda().half()
        with torch.no_grad():
            for _ in range(5):
                model(x)
            torch.cuda.synchronize()
            runs, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < seconds:
                model(x)
                runs += 1
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - t0
        rows.append({"batch": n, "images_per_s": round(runs * n / elapsed, 1), "ms_per_batch": round(elapsed / runs * 1e3, 2)})
        print(f"pytorch fp16 batch {n:>3}: {rows[-1]['images_per_s']:>8} img/s", flush=True)
    return rows


def main(argv=None) -> int:
    if argv is None:
        import sys

        argv = sys.argv[1:]
    if argv[:1] == ["--prepare"]:
        prepare(argv[1], argv[2], int(argv[3]) if len(argv) > 3 else 640)
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", default=[], metavar="LABEL=PATH", help="ONNX model (repeat)")
    parser.add_argument("--images", required=True, help="uint8 [N,3,H,W] .npy of letterboxed images")
    parser.add_argument("--torchscript", help="PyTorch anchor: TorchScript of the same checkpoint")
    parser.add_argument("--algos", nargs="+", default=["EXHAUSTIVE", "HEURISTIC"], choices=ALGOS)
    parser.add_argument("--sizes", nargs="+", type=int, default=[1, 2, 4, 8, 16, 32])
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--switches", type=int, default=16)
    parser.add_argument("--budget-s", type=float, default=120.0, help="per model x algo")
    parser.add_argument("--provider", choices=("cuda", "cpu"), default="cuda", help="cpu: a check of the script")
    parser.add_argument("--anchor-batches", nargs="*", type=int, default=[1, 16, 32, 64],
                        help="PyTorch FP16 throughput at these batches (input on the GPU); empty: skip")
    parser.add_argument("--json", required=True)
    args = parser.parse_args(argv)
    try:
        import torch  # noqa: F401  (onnxruntime-gpu finds CUDA/cuDNN through torch's libraries there)
    except ImportError:
        torch = None
    import onnxruntime as ort

    images = np.load(args.images)
    results = {"onnxruntime": ort.__version__, "python": platform.python_version(), "sizes": args.sizes,
               "repeat": args.repeat, "switches": args.switches, "runs": []}
    if torch is not None and torch.cuda.is_available():
        results["gpu"] = torch.cuda.get_device_name(0)
        results["torch"] = torch.__version__
        results["cudnn"] = torch.backends.cudnn.version()
    if args.torchscript and args.anchor_batches:
        results["anchor_throughput"] = torch_throughput(args.torchscript, images, args.anchor_batches)
        Path(args.json).write_text(json.dumps(results, indent=1))
    jobs = [(label, algo) for label in args.model for algo in args.algos]
    if args.torchscript:
        jobs.append((f"pytorch_fp16={args.torchscript}", "torch"))
    for spec, algo in jobs:
        label, path = spec.split("=", 1)
        runner, pad = (torch_runner(path), None) if algo == "torch" else ort_runner(path, algo, args.provider)
        sizes = [n for n in args.sizes if pad is None or n <= pad]  # a padded graph serves up to its pad
        record = timed_sequence(runner, images, sizes, args.repeat, args.switches, args.budget_s)
        row = {"model": label, "path": path, "algo": algo, "batch_pad": pad, "sizes": sizes, **summary(record),
               "raw": record}
        results["runs"].append(row)
        s = row["switch"] or {}
        print(f"{label:>14} {algo:>10}  b1 {row['repeat_b1']['median_ms'] if row['repeat_b1'] else '-':>8} ms"
              f"  b8 {row['repeat_b8']['median_ms'] if row['repeat_b8'] else '-':>8} ms"
              f"  switch median {s.get('median_ms', '-')} max {s.get('max_ms', '-')} ms"
              f"{'  (cut short)' if row['cut_short'] else ''}", flush=True)
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
