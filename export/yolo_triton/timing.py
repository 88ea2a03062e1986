"""The one timing loop of the benchmark scripts (standard library only: it also runs on the GPU machine)."""
from __future__ import annotations

import time
from typing import Callable


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
