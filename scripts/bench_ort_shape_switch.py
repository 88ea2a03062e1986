#!/usr/bin/env python3
"""Reproduce ONNX Runtime's CUDA EP stall on batch-size changes, outside Triton (issue: GPU serving under load).

For each ONNX model and each ``cudnn_conv_algo_search`` value: run every batch size of ``--sizes`` twice
(warm-up, timed too), then ``--repeat`` runs of batch 1 and of batch 8, then an interleaved sequence in
which every run's batch size differs from the previous one's (what Triton's dynamic batcher produces).
The PyTorch anchor (a TorchScript of the same checkpoint, FP16) runs the same sequence. Input: real
letterboxed images (uint8 .npy from ``bench_onnx_gpu.py prepare``), FP32 /255 from the host, outputs
copied back to the host, as a served model does. Writes one JSON (with ``--label`` and the CUDA libraries
the process actually loaded: paths from /proc/self/maps and cuDNN's own cudnnGetVersion); prints a table.
``--summarise A.json B.json ...`` prints one markdown table of several such JSONs (an ONNX Runtime x cuDNN
matrix: tools/h200_ort_matrix_run.sh).

Needs only numpy + onnxruntime(-gpu) (+ torch for the anchor): the GPU machine has neither ultralytics nor
this pipeline's dependencies. Without ``--no-torch`` it imports torch first (onnxruntime-gpu for CUDA 13
then finds CUDA/cuDNN through torch's libraries); ``--no-torch`` never imports it, so that only
LD_LIBRARY_PATH decides which CUDA and cuDNN libraries ONNX Runtime loads (torch would bring its own cuDNN). ``--prepare WEIGHTS DIR`` (here, CPU) writes the anchor and the images:
DIR/model_fp16.torchscript (half, a trace of the checkpoint as ultralytics exports it) and DIR/images_uint8.npy.

    python scripts/bench_ort_shape_switch.py --model plain=models/yolo11s_untrained/1/model.onnx \\
        --model pad16=padded/model.onnx --images bundle/images_uint8.npy --torchscript bundle/model.torchscript \\
        --json results/ort_shape_switch.json
"""
from __future__ import annotations

import argparse
import ctypes
import json
import os
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
                   budget_s: float, min_switches: int = 0) -> dict:
    """Latency (ms) of each run of the three phases; stops a phase early past ``budget_s`` (says so), except
    for the first ``min_switches`` runs of the interleaved phase (so that a stalling pair still has some)."""
    start = time.perf_counter()
    big = min(8, max(sizes))  # the "repeated batch 8" phase (a graph padded to less repeats its pad)
    inputs = {n: batch_of(images, n) for n in sorted(set(sizes) | {1, big})}
    record: dict = {"warm": [], "repeat_b1": [], "repeat_b8": [], "switch": [], "cut_short": False}

    def go(phase: str, n: int) -> bool:
        if time.perf_counter() - start > budget_s:
            record["cut_short"] = True
            if not (phase == "switch" and len(record["switch"]) < min_switches):
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


CUDA_LIBS = ("libcudnn", "libcublas", "libcudart", "libcufft", "libcurand", "libnvrtc", "libonnxruntime")


def loaded_libraries(maps: str | None = None) -> dict:
    """The CUDA libraries mapped into this process (``/proc/self/maps``) and the version that the loaded
    ``libcudnn.so*`` reports (``cudnnGetVersion``: 91900 is 9.19.0); ``cudnn`` None when none is loaded."""
    if maps is None:
        maps = Path("/proc/self/maps").read_text() if os.path.exists("/proc/self/maps") else ""
    paths = set()
    for line in maps.splitlines():
        fields = line.split(None, 5)  # address perms offset dev inode [path]
        if len(fields) == 6 and Path(fields[5]).name.startswith(CUDA_LIBS):
            paths.add(fields[5])
    shim = sorted(p for p in paths if Path(p).name.startswith("libcudnn.so"))
    out: dict = {"libraries": sorted(paths), "cudnn_path": shim[0] if shim else None, "cudnn_version": None,
                 "cudnn": None}
    if shim:
        get_version = ctypes.CDLL(shim[0]).cudnnGetVersion  # the mapped library: dlopen returns its handle
        get_version.restype = ctypes.c_size_t
        v = int(get_version())
        major, rest = (v // 10000, v % 10000) if v >= 10000 else (v // 1000, v % 1000)  # 9.x: 91900; 8.x: 8907
        out.update(cudnn_version=v, cudnn=f"{major}.{rest // 100}.{rest % 100}")
    return out


def ort_runner(path: str, algo: str, provider: str):
    """A run function for ``path`` on ``provider`` and the batch it pads to (None: plain graph)."""
    import onnxruntime as ort

    if provider == "cuda":
        providers = [("CUDAExecutionProvider", {"cudnn_conv_algo_search": algo}), "CPUExecutionProvider"]
    else:
        providers = ["CPUExecutionProvider"]
    session = ort.InferenceSession(path, providers=providers)
    if provider == "cuda" and session.get_providers()[0] != "CUDAExecutionProvider":
        raise RuntimeError(f"onnxruntime did not take the CUDA EP for {path}: {session.get_providers()}")
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


def switch_runs(raw: dict) -> tuple[list[float], list[float]]:
    """The interleaved phase's ms after a batch-size change, split: changes to a size this sequence had run
    before (a stall there is a re-plan) and to a size seen for the first time (every version searches then;
    a cut-short warm phase leaves such sizes to the interleaved one). A run of the size just run (the
    phase's first run can repeat the last phase's size) is no change and is left out."""
    earlier = [r["batch"] for phase in ("warm", "repeat_b1", "repeat_b8") for r in raw[phase]]
    seen, prev = set(earlier), (earlier[-1] if earlier else None)
    again, first = [], []
    for r in raw["switch"]:
        if r["batch"] != prev:
            (again if r["batch"] in seen else first).append(r["ms"])
        seen.add(r["batch"])
        prev = r["batch"]
    return again, first


def cell(row: dict | None) -> str:
    """One matrix cell: median / max ms of the interleaved runs after a change to a size already run (how
    many; cut short), plus the first-time sizes' range where there were any; or the error."""
    if row is None:
        return "-"
    if row.get("error"):
        return f"error: {row['error'][:60]}"
    again, first = switch_runs(row["raw"])
    text = f"{statistics.median(again):,.1f} / {max(again):,.1f} ({len(again)}" if again else "- (0"
    text += ", cut short)" if row["cut_short"] else ")"
    if first:
        text += f"; {len(first)} first-time sizes {min(first):,.0f}-{max(first):,.0f}"
    return text


def summarise(paths: list[str]) -> str:
    """A markdown table: one line per JSON (ONNX Runtime, the cuDNN it loaded), one column per model x algo;
    each cell: a run after a batch-size change, to a size already run (``cell``)."""
    files = [json.loads(Path(p).read_text()) for p in paths]
    columns = list(dict.fromkeys((r["model"], r["algo"]) for f in files for r in f["runs"]))
    lines = ["| label | onnxruntime | cuDNN loaded | " + " | ".join(f"{m} {a}" for m, a in columns) + " |",
             "|---|---|---|" + "---:|" * len(columns)]
    for path, f in zip(paths, files):
        rows = {(r["model"], r["algo"]): r for r in f["runs"]}
        loaded = f.get("loaded") or {}
        lines.append(f"| {f.get('label') or Path(path).stem} | {f['onnxruntime']} | {loaded.get('cudnn') or '-'} | "
                     + " | ".join(cell(rows.get(c)) for c in columns) + " |")
    return "\n".join(lines)


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", default=[], metavar="LABEL=PATH", help="ONNX model (repeat)")
    parser.add_argument("--images", required=True, help="uint8 [N,3,H,W] .npy of letterboxed images")
    parser.add_argument("--torchscript", help="PyTorch anchor: TorchScript of the same checkpoint")
    parser.add_argument("--algos", nargs="+", default=["EXHAUSTIVE", "HEURISTIC"], choices=ALGOS)
    parser.add_argument("--sizes", nargs="+", type=int, default=[1, 2, 4, 8, 16, 32])
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--switches", type=int, default=16)
    parser.add_argument("--budget-s", type=float, default=120.0, help="per model x algo")
    parser.add_argument("--min-switches", type=int, default=0,
                        help="interleaved runs made even past the budget (the earlier phases are cut short first)")
    parser.add_argument("--provider", choices=("cuda", "cpu"), default="cuda", help="cpu: a check of the script")
    parser.add_argument("--anchor-batches", nargs="*", type=int, default=[1, 16, 32, 64],
                        help="PyTorch FP16 throughput at these batches (input on the GPU); empty: skip")
    parser.add_argument("--no-torch", action="store_true",
                        help="never import torch: LD_LIBRARY_PATH alone picks CUDA and cuDNN (no anchor)")
    parser.add_argument("--label", default="", help="recorded in the JSON (e.g. ort1.19.2_cudnn9.1)")
    parser.add_argument("--json", required=True)
    args = parser.parse_args(argv)
    if args.no_torch and args.torchscript:
        parser.error("--torchscript needs torch; drop it or --no-torch")
    return args


def main(argv=None) -> int:
    if argv is None:
        import sys

        argv = sys.argv[1:]
    if argv[:1] == ["--prepare"]:
        prepare(argv[1], argv[2], int(argv[3]) if len(argv) > 3 else 640)
        return 0
    if argv[:1] == ["--summarise"]:
        print(summarise(argv[1:]))
        return 0
    args = parse_args(argv)
    torch = None
    if not args.no_torch:
        try:
            import torch  # noqa: F401  (onnxruntime-gpu finds CUDA/cuDNN through torch's libraries there)
        except ImportError:
            torch = None
    import onnxruntime as ort

    images = np.load(args.images)
    results = {"label": args.label, "onnxruntime": ort.__version__, "onnxruntime_path": ort.__file__,
               "python": platform.python_version(), "provider": args.provider, "no_torch": args.no_torch,
               "sizes": args.sizes, "repeat": args.repeat, "switches": args.switches, "budget_s": args.budget_s,
               "min_switches": args.min_switches,
               "runs": []}
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
    failed = 0
    for spec, algo in jobs:
        label, path = spec.split("=", 1)
        try:
            runner, pad = (torch_runner(path), None) if algo == "torch" else ort_runner(path, algo, args.provider)
            sizes = [n for n in args.sizes if pad is None or n <= pad]  # a padded graph serves up to its pad
            record = timed_sequence(runner, images, sizes, args.repeat, args.switches, args.budget_s,
                                    args.min_switches)
        except Exception as e:  # a pair that cannot run (no CUDA EP, a cuDNN error) is a result too
            failed += 1
            results["runs"].append({"model": label, "path": path, "algo": algo, "error": f"{type(e).__name__}: {e}"})
            results["loaded"] = loaded_libraries()
            Path(args.json).write_text(json.dumps(results, indent=1))
            print(f"{label:>14} {algo:>10}  error: {type(e).__name__}: {e}", flush=True)
            continue
        row = {"model": label, "path": path, "algo": algo, "batch_pad": pad, "sizes": sizes, **summary(record),
               "raw": record}
        results["runs"].append(row)
        results["loaded"] = loaded_libraries()  # after a session ran: what ONNX Runtime actually loaded
        s = row["switch"] or {}
        print(f"{label:>14} {algo:>10}  b1 {row['repeat_b1']['median_ms'] if row['repeat_b1'] else '-':>8} ms"
              f"  b8 {row['repeat_b8']['median_ms'] if row['repeat_b8'] else '-':>8} ms"
              f"  switch median {s.get('median_ms', '-')} max {s.get('max_ms', '-')} ms"
              f"{'  (cut short)' if row['cut_short'] else ''}", flush=True)
        Path(args.json).write_text(json.dumps(results, indent=1))
    loaded = results.get("loaded") or {}
    print(f"cuDNN loaded: {loaded.get('cudnn')} ({loaded.get('cudnn_path')})", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
