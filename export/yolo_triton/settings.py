"""Default settings, read from ``export/defaults.mk`` (the single source of truth).

The Makefile includes that file; Python tools that run outside Make (validation, the Triton client,
benchmarks) call :func:`defaults` so that they agree with Make without repeating a number.
"""
from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

DEFAULTS_MK = Path(__file__).resolve().parent.parent / "defaults.mk"
_ASSIGNMENT = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*\?=\s*(.*?)\s*$")


@lru_cache(maxsize=None)
def defaults(path: Path = DEFAULTS_MK) -> dict[str, str]:
    """Return every ``NAME ?= value`` of defaults.mk as strings."""
    values: dict[str, str] = {}
    for line in Path(path).read_text().splitlines():
        match = _ASSIGNMENT.match(line.split("#", 1)[0])
        if match:
            values[match.group(1)] = match.group(2)
    return values


def size_names() -> list[str]:
    """The model sizes the seed knows (nano, small, medium)."""
    return defaults()["SIZES"].split()


def model_name_for_size(size: str) -> str:
    """Model directory name for a size: ``small`` -> ``yolov11_small``."""
    return f"yolov11_{size}"


def weights_stem_for_size(size: str) -> str:
    """Checkpoint stem for a size: ``small`` -> ``yolo11s``."""
    return defaults()[f"WEIGHTS_{size}"]


def max_batch_for_size(size: str) -> int:
    return int(defaults()[f"MAX_BATCH_{size}"])
