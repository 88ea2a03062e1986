#!/usr/bin/env python3
"""Summarise one GPU serving run (tools/h200_issue19_run.sh): every make-config series of
``make bench-serving`` JSONs, the collapse check, the goals against the PyTorch anchor of the same run
(``bench_ort_shape_switch.py``), into one JSON and one PNG.

    python scripts/summarise_gpu_serving.py benchmarks/h200_2026-12-02 --out benchmarks/h200_serving_under_load

Collapse: a series collapses when images/s at some concurrency is more than 10 % below the best of the
lower concurrencies. Goals: Track A >= 0.5x the anchor's best images/s; end2end >= 0.8x Track A in the
same series.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from yolo_triton.files import atomic_write_text

COLLAPSE_DROP = 0.10
GOAL_TRACK_A = 0.5
GOAL_END2END = 0.8
# file stem -> the make settings that produced the series (tools/h200_issue19_run.sh, README)
SETTINGS = {
    "bench_default": "defaults: ORT_BATCHING=auto (pad 16), INPUT_DTYPE=float32, NMS=onnx, 1 instance",
    "bench_shm": "defaults + BENCH_SHARED_MEMORY=system",
    "bench_ul": "NMS=ultralytics (pad 16, float32, 1 instance)",
    "bench_u8": "INPUT_DTYPE=uint8 NMS=ultralytics (pad 16, 1 instance)",
    "bench_u8shm": "INPUT_DTYPE=uint8 NMS=ultralytics + BENCH_SHARED_MEMORY=system",
    "bench_u8i3_none": "INPUT_DTYPE=uint8 NMS=ultralytics INSTANCES_PER_GPU=3",
    "bench_u8i3_system": "INPUT_DTYPE=uint8 NMS=ultralytics INSTANCES_PER_GPU=3 + BENCH_SHARED_MEMORY=system",
    "bench_fixed": "ORT_BATCHING=fixed INSTANCES_PER_GPU=4",
    "bench_dynamic": "ORT_BATCHING=dynamic (the old default: dynamic batching up to 32)",
}


def collapse(points: list[tuple[int, float]]) -> dict:
    """The worst drop below the best lower-concurrency figure, and whether it exceeds COLLAPSE_DROP."""
    worst, best_before = 0.0, 0.0
    where = None
    for conc, ips in sorted(points):
        if best_before > 0:
            drop = 1 - ips / best_before
            if drop > worst:
                worst, where = drop, conc
        best_before = max(best_before, ips)
    return {"worst_drop": round(worst, 3), "at_concurrency": where, "collapses": worst > COLLAPSE_DROP}


def series(folder: Path) -> list[dict]:
    out = []
    for stem, settings in SETTINGS.items():
        path = folder / f"{stem}.json"
        if not path.is_file():
            continue
        run = json.loads(path.read_text())
        tracks: dict[str, list] = {}
        for cell in run["cells"]:
            tracks.setdefault(cell["track"], []).append((cell["concurrency"], cell["images_per_s"]))
        for track, points in tracks.items():
            best = max(points, key=lambda p: p[1])
            out.append({"file": path.name, "settings": settings, "track": track, "shared_memory":
                        run["settings"].get("shared_memory", "none"), "images_per_s": dict(sorted(points)),
                        "best": {"concurrency": best[0], "images_per_s": best[1]}, **collapse(points)})
    return out


def goals(rows: list[dict], anchor_best: float) -> list[dict]:
    results = []
    for row in rows:
        if row["track"] == "A":
            need = GOAL_TRACK_A * anchor_best
            results.append({"goal": f"Track A >= {GOAL_TRACK_A} x PyTorch FP16 best ({anchor_best:.0f} img/s)",
                            "series": row["settings"], "best": row["best"]["images_per_s"], "needed": round(need, 1),
                            "met": row["best"]["images_per_s"] >= need,
                            "ratio": round(row["best"]["images_per_s"] / anchor_best, 3)})
        if row["track"] == "end2end":
            track_a = [r for r in rows if r["file"] == row["file"] and r["track"] == "A"]
            if track_a:
                a = track_a[0]["best"]["images_per_s"]
                results.append({"goal": f"end2end >= {GOAL_END2END} x Track A (same run)", "series": row["settings"],
                                "best": row["best"]["images_per_s"], "needed": round(GOAL_END2END * a, 1),
                                "met": row["best"]["images_per_s"] >= GOAL_END2END * a,
                                "ratio": round(row["best"]["images_per_s"] / a, 3)})
    return results


def plot(rows: list[dict], path: Path, anchor_best: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(11, 6.5))
    ax.set_prop_cycle(color=plt.cm.tab20.colors)
    for row in rows:
        xs = list(map(int, row["images_per_s"]))
        ys = list(row["images_per_s"].values())
        style = "-" if row["track"] == "A" else "--"
        ax.plot(xs, ys, style, marker="o", label=f"{row['track']}: {row['settings']}")
    ax.axhline(anchor_best, color="k", lw=0.8, ls=":", label=f"PyTorch FP16 best, batch 64 ({anchor_best:.0f})")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("concurrent gRPC clients (8 processes)")
    ax.set_ylabel("images/s (client-inclusive)")
    ax.set_title("H200, real Triton 2.51 + ONNX Runtime 1.31.1 CUDA EP, yolo11s FP16 640 (untrained), make's configs")
    ax.legend(fontsize=6.5, loc="upper left")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    with path.open("wb") as handle:
        fig.savefig(handle, format="png", dpi=110)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--out", type=Path, required=True, help="writes OUT.json and OUT.png")
    args = parser.parse_args(argv)
    switch = json.loads((args.folder / "ort_shape_switch.json").read_text())
    anchor_best = max(r["images_per_s"] for r in switch["anchor_throughput"])
    rows = series(args.folder)
    summary = {"source": str(args.folder), "gpu": switch.get("gpu"), "onnxruntime": switch.get("onnxruntime"),
               "cudnn": switch.get("cudnn"), "torch": switch.get("torch"),
               "anchor_pytorch_fp16": switch["anchor_throughput"], "series": rows, "goals": goals(rows, anchor_best),
               "shape_switch": [{k: r[k] for k in ("model", "algo", "batch_pad", "repeat_b1", "repeat_b8", "switch",
                                                   "cut_short")} for r in switch["runs"]]}
    atomic_write_text(args.out.with_suffix(".json"), json.dumps(summary, indent=1) + "\n")
    plot(rows, args.out.with_suffix(".png"), anchor_best)
    for row in rows:
        print(f"{row['track']:>8} {row['settings'][:70]:<70} best {row['best']['images_per_s']:>7} "
              f"@C={row['best']['concurrency']:<3} {'COLLAPSES' if row['collapses'] else 'no collapse'} "
              f"(worst drop {row['worst_drop']:.0%})")
    for goal in summary["goals"]:
        print(f"{'MET ' if goal['met'] else 'MISS'} {goal['goal']}: {goal['series'][:60]} {goal['best']} "
              f"(needed {goal['needed']}, ratio {goal['ratio']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
