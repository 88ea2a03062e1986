#!/usr/bin/env python3
"""OUTPUT_DTYPE on the H200: images/s of the float32- and FP16-output Track A models, side by side.

Reads the ``make bench-serving`` JSON of tools/h200_output_dtype_run.sh (``bench_<model>_<shm>.json`` in
each run folder: yolo11s_untrained = float32 output, yolo11s_f16o = FP16; *_u8 = INPUT_DTYPE=uint8) and
writes one table (markdown on stdout, JSON with ``--json``): per input type, shared memory and concurrency,
images/s of both and their ratio.
Usage: summarise_output_dtype.py RUN_DIR... [--json out.json]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

PAIRS = {"float32": ("yolo11s_untrained", "yolo11s_f16o"), "uint8": ("yolo11s_u8", "yolo11s_u8f16o")}


def images_per_s(path: Path) -> dict[int, float]:
    cells = json.loads(path.read_text())["cells"]
    return {c["concurrency"]: c["images_per_s"] for c in cells if c["batch"] == 1}


def summarise(run: Path) -> list[dict]:
    rows = []
    for input_dtype, (f32, f16) in PAIRS.items():
        for shm in ("none", "system"):
            a, b = (images_per_s(run / f"bench_{m}_{shm}.json") for m in (f32, f16))
            for c in sorted(set(a) & set(b)):
                rows.append({"run": run.name, "input_dtype": input_dtype, "shared_memory": shm, "concurrency": c,
                             "float32_output": a[c], "float16_output": b[c], "ratio": round(b[c] / a[c], 2)})
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    rows = [row for run in args.runs for row in summarise(run)]
    print("| run | input | shared memory | C | float32 output0 | FP16 output0 | ratio |\n|---|---|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['run']} | {r['input_dtype']} | {r['shared_memory']} | {r['concurrency']} | "
              f"{r['float32_output']:.1f} | {r['float16_output']:.1f} | {r['ratio']:.2f} |")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
