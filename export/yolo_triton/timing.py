"""The one timing loop of the benchmark scripts (standard library only: it also runs on the GPU machine)."""
from __future__ import annotations

import platform
import time
from pathlib import Path
from typing import Callable


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` where there is one), for benchmark reports."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or ""


def time_calls(fn: Callable[[], object], iters: int, warmup: int = 5) -> list[float]:
    """Seconds of each of ``iters`` calls of ``fn``, after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def time_interleaved(fns: dict[str, Callable[[], object]], rounds: int, per_round: int = 1,
                     warmup: int = 5) -> dict[str, list[float]]:
    """Seconds per call of each of ``fns``, measured in ``rounds`` alternating rounds of ``per_round`` calls
    each (after ``warmup`` untimed calls of each): a load that comes and goes on a shared machine then
    affects every contender alike, so ratios between them stay meaningful. Each round starts with one
    untimed call, so what the previous contender left in the caches (or evicted) is not charged to it."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            fn()
            start = time.perf_counter()
            for _ in range(per_round):
                fn()
            times[name].append((time.perf_counter() - start) / per_round)
    return times
