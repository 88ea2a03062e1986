#!/usr/bin/env python3
"""Build-side figures for one checkpoint (default: an untrained scratch yolo11s, made here):

* the end2end step (graph surgery on the Track A ONNX, ``export/add_nms.py``) against re-exporting the
  ``.pt`` with ultralytics' own ``nms=True`` (what one would do without this pipeline), in one run;
* a no-op ``make`` over the built tree (the size 'small' pointed at the checkpoint), median of N runs.

    python scripts/bench_build_steps.py --json results/bench_build_steps.json
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from yolo_triton.files import atomic_write_text
from yolo_triton.settings import defaults

REPO = Path(__file__).resolve().parents[1]


def timed(cmd: list[str], **kwargs) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, **kwargs)
    return time.perf_counter() - start


def ultralytics_nms_export(weights: Path, workdir: Path, imgsz: int) -> float:
    """ultralytics' own end2end export from the .pt (nms=True), in a child process like the step."""
    code = (f"from ultralytics import YOLO; YOLO({str(weights)!r}).export(format='onnx', nms=True, "
            f"dynamic=True, simplify=True, imgsz={imgsz}, conf={defaults()['CONF']}, iou={defaults()['IOU']}, "
            f"max_det={defaults()['TOPK']}, verbose=False)")
    return timed([sys.executable, "-c", code], cwd=workdir)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="yolo11s", help="scratch architecture (untrained)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--noop-runs", type=int, default=10)
    parser.add_argument("--json", type=Path, default=REPO / "results/bench_build_steps.json")
    args = parser.parse_args(argv)
    d = defaults()
    imgsz = int(d["IMGSZ"])
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make = ["make", "--no-print-directory", "-C", str(REPO), f"MODELS_DIR={root}/models",
                f"WEIGHTS_DIR={root}/w", f"BUILD_DIR={root}/b", f"CACHE_DIR={root}/c", f"PYTHON={sys.executable}",
                f"WEIGHTS_small={args.arch}_untrained", "SIZES=small"]
        subprocess.run([*make, "scratch", f"MODEL={args.arch}"], check=True, capture_output=True)
        weights = root / "w" / f"{args.arch}_untrained.pt"
        subprocess.run([*make, "onnx"], check=True, capture_output=True)
        track_a = root / "models/yolov11_small/1/model.onnx"
        surgery, reexport = [], []
        for i in range(args.repeats):
            out = root / f"e2e_{i}.onnx"
            surgery.append(timed([sys.executable, str(REPO / "export/add_nms.py"), "--onnx", str(track_a), "--out",
                                  str(out), "--nms", d["NMS"], "--conf", d["CONF"], "--iou", d["IOU"],
                                  "--topk", d["TOPK"], "--agnostic", d["AGNOSTIC"]]))
            work = root / f"ultra_{i}"
            work.mkdir()
            (work / weights.name).symlink_to(weights)
            reexport.append(ultralytics_nms_export(work / weights.name, work, imgsz))
        noop = [timed([*make, "onnx"]) for _ in range(args.noop_runs)]
        question = subprocess.run([*make, "-q", "onnx"]).returncode
    result = {
        "machine": f"{platform.node()} ({platform.processor() or platform.machine()}), CPU",
        "checkpoint": f"{args.arch}_untrained (scratch)", "imgsz": imgsz,
        "end2end_step_s": {"median": statistics.median(surgery), "runs": surgery},
        "ultralytics_nms_true_export_s": {"median": statistics.median(reexport), "runs": reexport},
        "speedup": statistics.median(reexport) / statistics.median(surgery),
        "noop_make_s": {"median": statistics.median(noop), "max": max(noop), "runs": noop},
        "make_q_exit": question,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.json, json.dumps(result, indent=2))
    print(f"end2end step (add_nms.py): {result['end2end_step_s']['median']:.2f} s median of {args.repeats}")
    print(f"ultralytics export nms=True from the .pt: {result['ultralytics_nms_true_export_s']['median']:.2f} s")
    print(f"speed-up: {result['speedup']:.1f}x (target >= 10x)")
    print(f"no-op make over the built small tree: median {result['noop_make_s']['median'] * 1000:.1f} ms, "
          f"max {result['noop_make_s']['max'] * 1000:.1f} ms (target < 500 ms); make -q exit {question}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
