#!/usr/bin/env python3
"""Track A FP16 ONNX in onnxruntime-gpu against PyTorch FP16 on the same GPU.

Two halves, because the GPU machine has PyTorch but neither ultralytics nor this pipeline:

* ``prepare`` (here, CPU): build the Track A FP16 ONNX of a checkpoint through the Make graph's own
  export step, a TorchScript trace of the same checkpoint, and a batch of letterboxed real images.
* ``run`` (GPU): load both, check that their outputs agree (stated tolerances), then time images/s and
  latency at batch 1 and at the size's max batch. Writes a JSON and a Markdown table.

    python scripts/bench_onnx_gpu.py prepare --weights pytorch_models/yolo11s.pt --out .build/bench
    python scripts/bench_onnx_gpu.py run --bundle .build/bench --max-batch 64 --json results/onnx_gpu.json
"""
from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import numpy as np

from yolo_triton.files import atomic_write_text
from yolo_triton.timing import time_calls

# Agreement bounds between ORT-GPU FP16 (AutoCast, FP32 I/O) and PyTorch FP16 (model.half()).
SCORE_P999_TOL = 0.05   # 99.9th percentile of |score difference|
BOX_P99_TOL = 2.0       # 99th percentile of |box coordinate difference|, input pixels


def prepare(weights: Path, out: Path, imgsz: int) -> None:
    import torch
    from ultralytics import YOLO

    from yolo_triton.onnx_export import export_onnx
    from yolo_triton.postprocess import letterbox_uint8
    from yolo_triton.scratch import sample_images

    import cv2

    out.mkdir(parents=True, exist_ok=True)
    export_onnx(weights, out / "model.onnx", imgsz, "fp16")
    model = YOLO(str(weights)).model.float().fuse().eval()
    for module in model.modules():
        if hasattr(module, "export"):
            module.export = True  # the head returns output0 only, as in ultralytics' own exports
    example = torch.zeros(1, 3, imgsz, imgsz)
    with torch.no_grad():
        traced = torch.jit.trace(model, example, strict=False, check_trace=False)
    traced.save(str(out / "model.torchscript"))
    # uint8 RGB CHW (a quarter of the float size); ``run`` divides by 255 like the pipeline.
    boxed = [letterbox_uint8(cv2.imread(str(p)), imgsz)[0][..., ::-1].transpose(2, 0, 1) for p in sample_images()]
    np.save(out / "images_uint8.npy", np.ascontiguousarray(np.stack(boxed)))
    (out / "meta.json").write_text(json.dumps({"weights": weights.name, "imgsz": imgsz}))


def run(bundle: Path, max_batch: int, out_json: Path, iters: int) -> dict:
    import onnxruntime as ort
    import torch

    ort.preload_dlls()
    meta = json.loads((bundle / "meta.json").read_text())
    images = np.load(bundle / "images_uint8.npy").astype(np.float32) / np.float32(255.0)
    session = ort.InferenceSession(str(bundle / "model.onnx"),
                                   providers=[("CUDAExecutionProvider", {"device_id": 0}), "CPUExecutionProvider"])
    assert session.get_providers()[0] == "CUDAExecutionProvider", session.get_providers()
    model = torch.jit.load(str(bundle / "model.torchscript")).cuda().half().eval()

    def torch_out(batch: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            y = model(torch.from_numpy(batch).cuda().half())
            y = y[0] if isinstance(y, (list, tuple)) else y
            torch.cuda.synchronize()
            return y.float().cpu().numpy()

    ort_y = session.run(["output0"], {"images": images})[0]
    torch_y = torch_out(images)
    score_diff = np.abs(ort_y[:, 4:] - torch_y[:, 4:])
    box_diff = np.abs(ort_y[:, :4] - torch_y[:, :4])
    agreement = {
        "score_abs_diff_max": float(score_diff.max()), "score_abs_diff_p999": float(np.quantile(score_diff, 0.999)),
        "box_abs_diff_max_px": float(box_diff.max()), "box_abs_diff_p99_px": float(np.quantile(box_diff, 0.99)),
        "score_p999_tol": SCORE_P999_TOL, "box_p99_tol_px": BOX_P99_TOL,
    }
    agreement["ok"] = agreement["score_abs_diff_p999"] <= SCORE_P999_TOL and agreement["box_abs_diff_p99_px"] <= BOX_P99_TOL

    rows = []
    for batch_size in (1, max_batch):
        reps = int(np.ceil(batch_size / len(images)))
        batch = np.ascontiguousarray(np.concatenate([images] * reps)[:batch_size])
        io = session.io_binding()
        gpu_in = ort.OrtValue.ortvalue_from_numpy(batch, "cuda", 0)
        io.bind_ortvalue_input("images", gpu_in)
        io.bind_output("output0", "cuda")
        x = torch.from_numpy(batch).cuda().half()

        def ort_step():
            session.run_with_iobinding(io)

        def torch_step():
            with torch.no_grad():
                model(x)
            torch.cuda.synchronize()

        n = max(10, iters // batch_size)
        for name, fn in (("onnxruntime-gpu fp16 (AutoCast)", ort_step), ("pytorch fp16", torch_step)):
            times = time_calls(fn, iters=n)
            rows.append({"runtime": name, "batch": batch_size, "latency_ms_median": 1000 * float(np.median(times)),
                         "latency_ms_p90": 1000 * float(np.quantile(times, 0.9)),
                         "images_per_s": batch_size / float(np.median(times))})
    result = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__, "onnxruntime": ort.__version__,
              "python": platform.python_version(), "checkpoint": meta["weights"], "imgsz": meta["imgsz"],
              "note": "input already on the GPU for both runtimes (I/O binding); no pre/post-processing",
              "agreement": agreement, "rows": rows}
    out_json.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_json, json.dumps(result, indent=2))
    print(markdown(result))
    return result


def markdown(result: dict) -> str:
    lines = [f"Device: {result['device']} (torch {result['torch']}, onnxruntime {result['onnxruntime']}), "
             f"{result['checkpoint']} at {result['imgsz']} px",
             "", "| runtime | batch | latency median (ms) | latency p90 (ms) | images/s |", "|---|---:|---:|---:|---:|"]
    for row in result["rows"]:
        lines.append(f"| {row['runtime']} | {row['batch']} | {row['latency_ms_median']:.2f} | "
                     f"{row['latency_ms_p90']:.2f} | {row['images_per_s']:.0f} |")
    a = result["agreement"]
    lines.append(f"\nAgreement ORT-GPU FP16 vs PyTorch FP16: score |diff| max {a['score_abs_diff_max']:.4f}, "
                 f"p99.9 {a['score_abs_diff_p999']:.4f} (tol {a['score_p999_tol']}); box |diff| max "
                 f"{a['box_abs_diff_max_px']:.2f} px, p99 {a['box_abs_diff_p99_px']:.2f} px (tol {a['box_p99_tol_px']}) "
                 f"-> {'OK' if a['ok'] else 'FAIL'}")
    return "\n".join(lines)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--weights", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--imgsz", type=int, default=640)
    r = sub.add_parser("run")
    r.add_argument("--bundle", type=Path, required=True)
    r.add_argument("--max-batch", type=int, required=True)
    r.add_argument("--json", type=Path, required=True)
    r.add_argument("--iters", type=int, default=400, help="images per timing (at least 10 runs)")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.command == "prepare":
        prepare(args.weights, args.out, args.imgsz)
        return 0
    result = run(args.bundle, args.max_batch, args.json, args.iters)
    return 0 if result["agreement"]["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
