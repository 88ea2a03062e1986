"""A/B: the same images to two versions of one served model; what changed (``scripts/compare_versions.py``).

Per image and in total: detections of A and of B, matched pairs (same class, IoU >= 0.5, greedy one to
one in A's score order: :func:`yolo_triton.validate.match_detections`), only in A, only in B, the mean
score shift of the matched pairs (B - A), and each version's latency. The latency is the client's wall
time for one image (letterbox, request, post-processing), one request at a time, after one unmeasured
warm-up request per version; both versions go through the same client code, so the difference is the
server's.
"""
from __future__ import annotations

import time
from typing import Sequence

import numpy as np

from yolo_triton import client as cl
from yolo_triton import postprocess as pp
from yolo_triton.validate import match_detections

MATCH_IOU = 0.5


def compare_detections(a: pp.Detections, b: pp.Detections, iou_min: float = MATCH_IOU) -> dict:
    """Counts and score shift of one image's detections from versions A and B."""
    pairs, only_a, only_b = match_detections(a, b, iou_min)
    shifts = [float(b.scores[j] - a.scores[i]) for i, j in pairs]
    return {"a": len(a), "b": len(b), "matched": len(pairs), "only_a": len(only_a), "only_b": len(only_b),
            "score_shift_sum": float(sum(shifts)),
            "mean_score_shift": float(np.mean(shifts)) if shifts else None}


def _timed(client, served: cl.ServedModel, image: np.ndarray, **nms) -> tuple[pp.Detections, float]:
    start = time.perf_counter()
    (detections,) = cl.infer(client, served, [image], **nms)
    return detections, (time.perf_counter() - start) * 1000.0


def compare_versions(client, model: str, versions: Sequence[str], names: Sequence[str],
                     images: Sequence[np.ndarray], conf: float | None = None, iou: float | None = None,
                     topk: int | None = None, mode: str | None = None, iou_min: float = MATCH_IOU) -> dict:
    """Send every image to version A then version B of ``model`` and compare (see the module doc)."""
    if len(versions) != 2:
        raise ValueError(f"compare takes two versions (A,B), got {list(versions)}")
    if not images:
        raise ValueError("no images to compare on")
    served = [cl.describe_model(client, model, model_version=v) for v in versions]
    nms = {"conf": conf, "iou": iou, "topk": topk, "mode": mode}
    for s in served:  # warm-up, not measured
        cl.infer(client, s, [images[0]], **nms)
    rows = []
    for name, image in zip(names, images):
        (det_a, ms_a), (det_b, ms_b) = (_timed(client, s, image, **nms) for s in served)
        row = {"image": str(name), **compare_detections(det_a, det_b, iou_min), "latency_ms_a": ms_a,
               "latency_ms_b": ms_b, "detections_a": det_a.to_list(), "detections_b": det_b.to_list()}
        rows.append(row)
    total = {key: sum(r[key] for r in rows) for key in ("a", "b", "matched", "only_a", "only_b")}
    shift_sum = sum(r["score_shift_sum"] for r in rows)
    total["mean_score_shift"] = shift_sum / total["matched"] if total["matched"] else None
    for side in ("a", "b"):
        values = [r[f"latency_ms_{side}"] for r in rows]
        total[f"latency_ms_{side}"] = float(np.mean(values))
        total[f"latency_ms_{side}_p50"] = float(np.percentile(values, 50))
    return {"model": model, "versions": {"a": str(versions[0]), "b": str(versions[1])}, "match_iou": iou_min,
            "nms": {k: v for k, v in nms.items() if v is not None}, "kind": served[0].kind,
            "latency": "client wall time per image (letterbox + request + post-processing), one request at a "
                       "time, after one warm-up request per version",
            "images": rows, "total": total}


def _shift(value: float | None) -> str:
    return "-" if value is None else f"{value:+.4f}"


def format_table(report: dict) -> str:
    a, b = report["versions"]["a"], report["versions"]["b"]
    header = (f"{'image':<24} {'A dets':>6} {'B dets':>6} {'matched':>7} {'only A':>6} {'only B':>6} "
              f"{'score B-A':>9} {'A ms':>8} {'B ms':>8}")
    lines = [f"compare {report['model']}: A = version {a}, B = version {b}; matched = same class and IoU >= "
             f"{report['match_iou']}; latency = {report['latency']}", header, "-" * len(header)]

    def line(label: str, r: dict) -> str:
        return (f"{label[-24:]:<24} {r['a']:>6} {r['b']:>6} {r['matched']:>7} {r['only_a']:>6} {r['only_b']:>6} "
                f"{_shift(r['mean_score_shift']):>9} {r['latency_ms_a']:>8.2f} {r['latency_ms_b']:>8.2f}")

    for row in report["images"]:
        lines.append(line(row["image"].rsplit("/", 1)[-1], row))
    lines.append("-" * len(header))
    lines.append(line(f"TOTAL ({len(report['images'])} images)", report["total"]))
    return "\n".join(lines)
