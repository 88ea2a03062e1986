#!/usr/bin/env python3
"""The seed's entry point: ``python export/export_models.py --models small --formats trt``.

A thin driver over the Make graph (one graph, no second code path): it maps sizes and formats to
Make targets, asks Make which are already up to date, builds the rest one by one, and prints a
summary table of what was built, skipped (up to date) or failed, with artefact sizes.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from yolo_triton.errors import StepError
from yolo_triton.options import check_options
from yolo_triton.settings import (
    CONFIG_FILE,
    artefact_path,
    defaults,
    directory,
    model_name_for_size,
    size_names,
)

REPO = Path(__file__).resolve().parents[1]
# the seed's format names -> artefact kinds of yolo_triton.settings.ARTEFACTS
FORMATS = {"onnx": "onnx", "onnx_end2end": "end2end", "trt": "trt", "trt_end2end": "trt_end2end"}


@dataclass
class Outcome:
    size: str
    fmt: str
    artefact: Path
    status: str
    seconds: float = 0.0


def targets_for(sizes: list[str], formats: list[str], models_dir: str) -> list[tuple[str, str, Path, Path]]:
    """(size, format, artefact, config) for each combination, in build order."""
    rows = []
    for size in sizes:
        for fmt in formats:
            artefact = artefact_path(models_dir, model_name_for_size(size), FORMATS[fmt])
            rows.append((size, fmt, artefact, artefact.parent.parent / CONFIG_FILE))
    return rows


def make(args: list[str], make_vars: list[str]) -> int:
    return subprocess.call(["make", "--no-print-directory", "-C", str(REPO), *make_vars, *args])


def build(sizes, formats, make_vars, models_dir) -> list[Outcome]:
    outcomes = []
    for size, fmt, artefact, config in targets_for(sizes, formats, models_dir):
        goals = [str(artefact), str(config)]
        if make(["-q", *goals], make_vars) == 0:
            outcomes.append(Outcome(size, fmt, artefact, "skipped (up to date)"))
            continue
        start = time.monotonic()
        rc = make(goals, make_vars)
        outcomes.append(Outcome(size, fmt, artefact, "built" if rc == 0 else f"FAILED (make exit {rc})",
                                time.monotonic() - start))
    return outcomes


def summary(outcomes: list[Outcome]) -> str:
    lines = [f"{'size':<8} {'format':<12} {'status':<24} {'size MB':>8} {'time s':>7}  artefact"]
    for o in outcomes:
        path = o.artefact if o.artefact.is_absolute() else REPO / o.artefact
        mb = f"{path.stat().st_size / 1e6:.1f}" if path.is_file() else "-"
        lines.append(f"{o.size:<8} {o.fmt:<12} {o.status:<24} {mb:>8} {o.seconds:>7.1f}  {o.artefact}")
    return "\n".join(lines)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["all"], choices=[*size_names(), "all"])
    parser.add_argument("--formats", nargs="+", default=["all"], choices=[*FORMATS, "all"])
    parser.add_argument("--models-dir", default=str(directory("MODELS_DIR")))
    parser.add_argument("make_vars", nargs="*", metavar="VAR=VALUE", help="extra Make settings, e.g. TOPK=50")
    return parser.parse_args(argv)


def preflight(make_vars: list[str]) -> None:
    """The option combinations Make will use (defaults.mk overridden by VAR=VALUE), before any build."""
    values = {**defaults(), **dict(v.split("=", 1) for v in make_vars)}
    check_options(nms=values["NMS"], precision=values["PRECISION"], calib_dir=values.get("CALIB_DIR", ""))


def main(argv=None) -> int:
    args = parse_args(argv)
    bad = [v for v in args.make_vars if "=" not in v]
    if bad:
        print(f"error: expected VAR=VALUE settings, got {bad}", file=sys.stderr)
        return 2
    try:
        preflight(args.make_vars)
    except StepError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    sizes = size_names() if "all" in args.models else list(dict.fromkeys(args.models))
    formats = list(FORMATS) if "all" in args.formats else list(dict.fromkeys(args.formats))
    make_vars = [f"MODELS_DIR={args.models_dir}", *args.make_vars]
    outcomes = build(sizes, formats, make_vars, args.models_dir)
    print(summary(outcomes))
    return 1 if any(o.status.startswith("FAILED") for o in outcomes) else 0


if __name__ == "__main__":
    raise SystemExit(main())
