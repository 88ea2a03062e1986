#!/usr/bin/env python3
"""Benchmark the NumPy client post-processing against ultralytics' ``non_max_suppression``.

Input: the real ``output0 [1, 4+nc, A]`` of a yolo11 detector on ``bus.jpg``. No weights are downloaded:
the model is built from ultralytics' architecture file and made output-varied by
``yolo_triton.scratch.vary_outputs`` (BatchNorm recalibrated on the sample images, class convolutions
rescaled) and one class-bias shift that puts exactly ``--pairs`` (anchor, class) pairs above CONF (300 by
default: a realistic load); an untrained model would score every anchor alike and make timing meaningless. One CPU thread (torch and OpenMP) for every contender.

Prints a table and writes JSON: median milliseconds per image, the speed-up of each NumPy path over
ultralytics, and whether the targets hold (>= 5x faster, < 1 ms per image). Not a unit test.

    python scripts/bench_postprocess.py [--arch yolo11s] [--imgsz 640] [--pairs 300] [--repeats 200] [--json OUT]
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before numpy/torch load their thread pools

import argparse
import json
import logging
import platform
from pathlib import Path

from yolo_triton.files import atomic_write_text
from yolo_triton.timing import time_calls

import numpy as np

from yolo_triton import postprocess as pp
from yolo_triton.errors import StepError
from yolo_triton.settings import defaults

LOG = logging.getLogger("bench_postprocess")
TARGET_SPEEDUP = 5.0
TARGET_MS = 1.0


def sample_image(name: str = "bus.jpg") -> np.ndarray:
    import cv2
    from ultralytics.utils import ASSETS

    image = cv2.imread(str(Path(ASSETS) / name))
    if image is None:
        raise StepError(f"cannot read ultralytics sample image {name} under {ASSETS}")
    return image


TARGET_PAIRS = 300  # (anchor, class) pairs above CONF on the calibration image: "tens to a few hundred"


def varied_model(arch: str, imgsz: int, conf: float | None = None, target_pairs: int | None = TARGET_PAIRS,
                 image: np.ndarray | None = None):
    """An untrained ``arch`` DetectionModel with varied outputs (eval mode, CPU).

    ``yolo_triton.scratch.vary_outputs`` recalibrates BatchNorm and spreads the class logits; then, so that
    the workload does not depend on how that calibration lands on one image, the class biases are shifted
    by one constant so that exactly ``target_pairs`` (anchor, class) pairs of ``image`` (bus.jpg) score
    >= ``conf`` (default CONF). ``target_pairs=None`` keeps vary_outputs' result as is.
    """
    import torch
    from ultralytics.nn.tasks import DetectionModel

    from yolo_triton.scratch import vary_outputs

    torch.manual_seed(0)
    model = DetectionModel(cfg=f"{arch}.yaml", verbose=False)
    vary_outputs(model, imgsz)
    model.eval()
    if target_pairs is not None:
        conf = float(defaults()["CONF"]) if conf is None else conf
        _shift_class_bias(model, imgsz, conf, target_pairs, sample_image() if image is None else image)
    return model


def _shift_class_bias(model, imgsz: int, conf: float, target_pairs: int, image: np.ndarray) -> None:
    """Add one constant to every last class-conv bias so that ``target_pairs`` logits of ``image`` pass
    ``logit(conf)`` (the threshold sits half-way between the target-th and the next logit)."""
    import torch

    head = model.model[-1]
    convs = [seq[-1] for seq in head.cv3]
    captured: list[torch.Tensor] = []
    hooks = [conv.register_forward_hook(lambda _m, _i, out: captured.append(out.flatten())) for conv in convs]
    batch, _ = pp.letterbox_batch([image], imgsz)
    with torch.no_grad():
        model(torch.from_numpy(batch))
    for hook in hooks:
        hook.remove()
    logits = torch.sort(torch.cat(captured), descending=True).values
    if not 0 < target_pairs < len(logits):
        raise StepError(f"target_pairs={target_pairs} must be between 1 and {len(logits) - 1}")
    middle = float(logits[target_pairs - 1] + logits[target_pairs]) / 2
    shift = float(np.log(conf / (1 - conf))) - middle
    with torch.no_grad():
        for conv in convs:
            conv.bias.add_(shift)


def model_output(model, images_bgr: list[np.ndarray], imgsz: int) -> tuple[np.ndarray, list[pp.LetterboxInfo]]:
    """``output0 [B, 4+nc, A]`` float32 of ``model`` on letterboxed images, and their LetterboxInfo."""
    import torch

    batch, infos = pp.letterbox_batch(images_bgr, imgsz)
    with torch.no_grad():
        out = model(torch.from_numpy(batch))
    out = out[0] if isinstance(out, (list, tuple)) else out
    return out.numpy().astype(np.float32), infos


def varied_output(arch: str = "yolo11s", imgsz: int = 640, conf: float | None = None,
                  target_pairs: int | None = TARGET_PAIRS) -> np.ndarray:
    """The varied ``output0 [1, 4+nc, A]`` of ``arch`` on bus.jpg."""
    output0, _ = model_output(varied_model(arch, imgsz, conf, target_pairs), [sample_image()], imgsz)
    return output0


def median_ms(fn, repeats: int, warmup: int = 5) -> float:
    return float(np.median(time_calls(fn, repeats, warmup)) * 1e3)


def run_bench(output0: np.ndarray, imgsz: int, conf: float, iou: float, topk: int, repeats: int) -> dict:
    """Time ultralytics' NMS and the NumPy paths on the same ``output0``; returns the report dict."""
    import torch
    import torchvision  # noqa: F401  (ultralytics uses torchvision.ops.nms when it is imported)
    from ultralytics.utils.nms import non_max_suppression

    torch.set_num_threads(1)
    tensor = torch.from_numpy(output0)
    scores = output0[:, 4:, :]
    infos = [pp.letterbox_params(1080, 810, imgsz)[0]] * output0.shape[0]  # bus.jpg's size
    boxes_xywh = np.ascontiguousarray(output0[:, :4, :].transpose(0, 2, 1))
    scores_anchor_major = output0[:, 4:, :].transpose(0, 2, 1)
    contenders = {
        "ultralytics non_max_suppression (torch)": lambda: non_max_suppression(
            tensor, conf, iou, max_det=topk),
        "pp.ultralytics_nms (numpy, same semantics)": lambda: pp.ultralytics_nms(
            *pp.decode_yolo_output(output0), conf, iou, topk),
        "pp.efficient_nms (numpy EfficientNMS model)": lambda: pp.efficient_nms(
            boxes_xywh, scores_anchor_major, conf, iou, topk),
        "pp.postprocess_track_a mode=efficient (+map back)": lambda: pp.postprocess_track_a(
            output0, infos, conf, iou, topk, mode="efficient"),
        "pp.postprocess_track_a mode=ultralytics (+map back)": lambda: pp.postprocess_track_a(
            output0, infos, conf, iou, topk, mode="ultralytics"),
    }
    batch = output0.shape[0]
    results = {name: median_ms(fn, repeats) / batch for name, fn in contenders.items()}
    # The floor of any exact CPU implementation: one pass over every score (A * nc floats).
    floor_ms = median_ms(lambda: scores.max(axis=1), repeats) / batch
    reference = results["ultralytics non_max_suppression (torch)"]
    rows = [
        {"path": name, "ms_per_image": round(ms, 4), "speedup_vs_ultralytics": round(reference / ms, 2)}
        for name, ms in results.items()
    ]
    numpy_rows = rows[1:]
    counts = pp.efficient_nms(boxes_xywh, scores_anchor_major, conf, iou, topk)[0]
    return {
        "machine": f"{platform.machine()} {platform.processor() or ''} {os.cpu_count()} CPUs".strip(),
        "threads": 1,
        "shape": list(output0.shape),
        "conf": conf, "iou": iou, "topk": topk, "repeats": repeats,
        "pairs_above_conf": int((scores >= np.float32(conf)).sum()),
        "score_std": float(scores.std()),
        "detections_efficient": int(counts.sum()),
        "floor_one_pass_over_scores_ms": round(floor_ms, 4),
        "rows": rows,
        "targets": {
            f"speedup >= {TARGET_SPEEDUP:g}x (every numpy path)": all(
                r["speedup_vs_ultralytics"] >= TARGET_SPEEDUP for r in numpy_rows),
            f"< {TARGET_MS:g} ms per image (every numpy path)": all(r["ms_per_image"] < TARGET_MS for r in numpy_rows),
        },
    }


def format_table(report: dict) -> str:
    width = max(len(r["path"]) for r in report["rows"])
    lines = [
        f"output0 {report['shape']}  conf={report['conf']} iou={report['iou']} topk={report['topk']}  "
        f"pairs>=conf={report['pairs_above_conf']}  detections={report['detections_efficient']}  "
        f"1 thread, {report['machine']}",
        f"{'path':<{width}}  {'ms/image':>9}  {'speed-up':>8}",
    ]
    lines += [f"{r['path']:<{width}}  {r['ms_per_image']:>9.3f}  {r['speedup_vs_ultralytics']:>7.1f}x"
              for r in report["rows"]]
    lines.append(f"{'(floor: one max-reduction over all scores)':<{width}}  "
                 f"{report['floor_one_pass_over_scores_ms']:>9.3f}")
    lines += [f"target {name}: {'PASS' if ok else 'FAIL'}" for name, ok in report["targets"].items()]
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    d = defaults()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="yolo11s", help="ultralytics architecture file stem (default yolo11s)")
    parser.add_argument("--imgsz", type=int, default=int(d["IMGSZ"]))
    parser.add_argument("--conf", type=float, default=float(d["CONF"]))
    parser.add_argument("--iou", type=float, default=float(d["IOU"]))
    parser.add_argument("--topk", type=int, default=int(d["TOPK"]))
    parser.add_argument("--pairs", type=int, default=TARGET_PAIRS,
                        help=f"(anchor, class) pairs above CONF on bus.jpg (default {TARGET_PAIRS}; 0: as vary_outputs leaves it)")
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--json", type=Path, default=Path("results/bench_postprocess.json"))
    parser.add_argument("-v", "--verbose", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s")
    try:
        LOG.info("building a varied %s at imgsz %d (untrained weights, BN recalibrated)", args.arch, args.imgsz)
        output0 = varied_output(args.arch, args.imgsz, args.conf, args.pairs or None)
        report = run_bench(output0, args.imgsz, args.conf, args.iou, args.topk, args.repeats)
    except StepError as err:
        LOG.error("%s", err)
        return 1
    print(format_table(report))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.json, json.dumps(report, indent=2) + "\n")
    LOG.info("wrote %s", args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
