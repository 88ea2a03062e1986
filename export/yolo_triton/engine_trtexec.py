"""Build a plan with the ``trtexec`` command line (TensorRT 10.x and 11.x).

Flags: https://github.com/NVIDIA/TensorRT/blob/release/10.16/samples/common/sampleOptions.cpp (10.x);
11.x changes: NVIDIA's "Migrating from TensorRT 10.x to 11.x" (docs.nvidia.com/deeplearning/tensorrt).

Flags are chosen from the version trtexec reports in its banner, never guessed:

* both majors: ``--onnx= --saveEngine= --minShapes= --optShapes= --maxShapes=``
  ``--memPoolSize=workspace:<size> --builderOptimizationLevel=N --timingCacheFile= --skipInference``;
* 10.x adds ``--stronglyTyped`` (precision then comes only from the ONNX graph: AutoCast FP16 or
  Q/DQ INT8); 11.x is always strongly typed and documents the flag as a deprecated no-op, so it is
  left out rather than relied on;
* no ``--inputIOFormats``: trtexec then keeps each input's type as the ONNX parser set it when it is
  UINT8 (an ``INPUT_DTYPE=uint8`` graph; ``samples/common/sampleEngines.cpp`` leaves kUINT8, kINT32,
  kHALF ... "as is" and makes only kFLOAT/kINT8 inputs kFLOAT), so the same command builds both inputs;
* never ``--workspace``, ``--explicitBatch``, ``--buildOnly`` (unknown options since 10.0) nor
  ``--fp16``, ``--int8``, ``--best`` (unknown options in 11.x, deprecated weak typing in 10.x);
* on a chosen GPU: ``--device=N`` with ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` (so CUDA's ordinal N is
  nvidia-smi's index N) and without ``CUDA_VISIBLE_DEVICES``; ``HW_COMPAT=ampere+`` adds
  ``--hardwareCompatibilityLevel=ampere+`` (both flags parsed by trtexec 10.x and 11.x,
  ``samples/common/sampleOptions.cpp`` of release/10.13 and release/11.1).

Timing cache (shared by every build on a GPU of one model): trtexec gets a private copy
(``--timingCacheFile=<cache>.<pid>.tmp``), taken under the cache lock. Afterwards, under the lock again:
if nobody changed the shared cache meanwhile, the copy (old entries + this build's) replaces it; if
another build did, the two are merged with ``ITimingCache.combine`` (TensorRT's Python API, when its
version is trtexec's). Without such a merger the build holds the cache lock from copy to save, so builds
sharing one cache file run one after another and nothing is ever lost.
"""
from __future__ import annotations

import collections
import contextlib
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, TextIO

from yolo_triton.engine import (
    OOM_HINT,
    short_version,
    BuildRequest,
    BuildResult,
    check_supported,
    looks_like_oom,
    parse_trtexec_version,
)
from yolo_triton.engine_fleet import cache_lock, read_bytes_or_empty
from yolo_triton.errors import StepError
from yolo_triton.files import atomic_write_bytes, tmp_name

log = logging.getLogger(__name__)

FORBIDDEN_FLAGS = ("--workspace", "--explicitBatch", "--buildOnly", "--fp16", "--int8", "--best",
                   "--bf16", "--calib", "--maxBatch")
# (pattern in trtexec's log, phase shown to the user); each is reported once, with elapsed time
PHASES = (
    (re.compile(r"Start parsing network model"), "parsing ONNX"),
    (re.compile(r"Finished parsing network model"), "ONNX parsed"),
    (re.compile(r"timing cache", re.IGNORECASE), "building engine (tactic selection)"),
    (re.compile(r"Engine generation completed|Engine built in"), "engine built"),
    (re.compile(r"Created engine with size|Engine size"), "engine serialized"),
    (re.compile(r"Skipped inference phase|&&&& PASSED"), "done"),
)
TAIL_LINES = 8


def shape_arg(name: str, shape: tuple[int, ...]) -> str:
    """``images:1x3x640x640``; names with ``:`` or ``,`` are quoted as trtexec expects."""
    if re.search(r"[:,' ]", name):
        name = "'" + name + "'"
    return f"{name}:" + "x".join(str(d) for d in shape)


def trtexec_version(trtexec: str, run=subprocess.run) -> str:
    """The TensorRT version of ``trtexec``, read from the banner ``trtexec --help`` prints."""
    try:
        done = run([trtexec, "--help"], capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.SubprocessError) as err:
        raise StepError(f"cannot run {trtexec} --help ({err}); check TRTEXEC= or PATH") from err
    version = parse_trtexec_version((done.stdout or "") + (done.stderr or ""))
    if version is None:
        raise StepError(f"{trtexec} printed no '[TensorRT vNNNNNN]' banner; is it NVIDIA trtexec? "
                        "Set TRTEXEC= to the right binary")
    return version


def trtexec_command(trtexec: str, request: BuildRequest, trt_version: str, plan_out: Path,
                    cache_file: Path) -> list[str]:
    """The exact trtexec argv (``=`` syntax everywhere, as sampleOptions.cpp parses it)."""
    major = check_supported(trt_version)
    profile = request.profile
    cmd = [
        trtexec,
        f"--onnx={request.onnx}",
        f"--saveEngine={plan_out}",
        f"--minShapes={shape_arg(profile.input_name, profile.min)}",
        f"--optShapes={shape_arg(profile.input_name, profile.opt)}",
        f"--maxShapes={shape_arg(profile.input_name, profile.max)}",
    ]
    if major == 10:
        cmd.append("--stronglyTyped")  # opt-in on 10.x; always on (flag is a no-op) on 11.x
    cmd += [
        f"--memPoolSize=workspace:{request.workspace}",
        f"--builderOptimizationLevel={request.opt_level}",
        f"--timingCacheFile={cache_file}",
        "--skipInference",
    ]
    if request.hw_compat == "ampere+":
        cmd.append("--hardwareCompatibilityLevel=ampere+")
    if request.gpu_index is not None:
        cmd.append(f"--device={int(request.gpu_index)}")
    if request.verbose:
        cmd.append("--verbose")
    forbidden = [arg for arg in cmd[1:] if arg.split("=", 1)[0] in FORBIDDEN_FLAGS]
    if forbidden:  # a bug here, not a user error: these flags are gone or deprecated in TensorRT 10/11
        raise RuntimeError(f"refusing to run trtexec with {forbidden}: not valid for TensorRT 10.x/11.x")
    return cmd


def device_env(gpu_index: int | None, base: dict[str, str] | None = None) -> dict[str, str]:
    """trtexec's environment: with ``--device=N``, CUDA numbers GPUs in PCI bus order like nvidia-smi and
    sees all of them (a CUDA_VISIBLE_DEVICES would renumber them)."""
    env = dict(os.environ if base is None else base)
    if gpu_index is not None:
        env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
        env.pop("CUDA_VISIBLE_DEVICES", None)
    return env


def stream_process(cmd: list[str], out: TextIO, clock=time.monotonic,
                   env: dict[str, str] | None = None) -> tuple[int, list[str], bool]:
    """Run ``cmd``, echo its output to ``out`` and log phases; returns (exit code, last lines, oom seen)."""
    start = clock()
    tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
    seen: set[str] = set()
    oom = False
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          bufsize=1, errors="replace", env=env) as proc:
        assert proc.stdout is not None  # noqa: S101 - guaranteed by stdout=PIPE
        try:
            for line in proc.stdout:
                out.write("  | " + line)
                stripped = line.strip()
                if stripped:
                    tail.append(stripped)
                oom = oom or looks_like_oom(stripped)
                for pattern, phase in PHASES:
                    if phase not in seen and pattern.search(stripped):
                        seen.add(phase)
                        log.info("trtexec: %s (+%.1f s)", phase, clock() - start)
        except BaseException:  # interrupted (SIGTERM, Ctrl-C): do not wait for the build to finish
            proc.kill()
            raise
        code = proc.wait()
    out.flush()
    return code, list(tail), oom


CacheMerger = Callable[[bytes, bytes], "bytes | None"]  # (shared, this build's) -> merged, None if refused


def build_with_trtexec(request: BuildRequest, trtexec: str, trt_version: str, plan_out: Path,
                       out: TextIO | None = None, clock=time.monotonic,
                       merger: CacheMerger | None = None) -> BuildResult:
    """Build ``request`` into ``plan_out`` (a temporary path; the caller renames it).

    The shared timing cache is copied under its lock to a private file that trtexec loads and updates;
    see the module docstring for how it goes back (replaced, merged, or held locked throughout)."""
    out = out or sys.stderr
    cache = request.timing_cache
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache_tmp = tmp_name(cache)
    cmd = trtexec_command(trtexec, request, trt_version, plan_out, cache_tmp)
    start = clock()
    with contextlib.ExitStack() as stack:
        stack.callback(cache_tmp.unlink, missing_ok=True)
        if merger is None:  # nothing can merge two caches: builds sharing this one take turns
            stack.enter_context(cache_lock(cache))
            log.info("timing cache %s: no TensorRT %s Python module to merge caches, so builds sharing it "
                     "run one at a time", cache.name, short_version(trt_version))
        with cache_lock(cache) if merger else contextlib.nullcontext():
            snapshot = read_bytes_or_empty(cache)
            if snapshot:
                cache_tmp.write_bytes(snapshot)
        log.info("timing cache: %s (%s)", cache, f"{len(snapshot)} bytes, loaded" if snapshot else "new")
        log.info("running: %s", " ".join(cmd))
        try:
            code, tail, oom = stream_process(cmd, out, clock, env=device_env(request.gpu_index))
        except OSError as err:
            raise StepError(f"cannot run {trtexec} ({err}); check TRTEXEC= or PATH") from err
        if code != 0:
            last = " | ".join(tail) or "(no output)"
            if oom:
                raise StepError(f"trtexec ran out of GPU memory; {OOM_HINT}; last lines: {last}")
            raise StepError(f"trtexec exited with {code}; last lines: {last}; rerun with -v for "
                            "trtexec --verbose")
        if not plan_out.is_file() or plan_out.stat().st_size == 0:
            raise StepError(f"trtexec exited 0 but wrote no engine at {plan_out}; rerun with -v")
        if cache_tmp.is_file() and cache_tmp.stat().st_size > 0:
            with cache_lock(cache) if merger else contextlib.nullcontext():
                save_timing_cache(cache, snapshot, cache_tmp, merger)
    return BuildResult("trtexec", trt_version, clock() - start)


def save_timing_cache(cache: Path, snapshot: bytes, built: Path, merger: CacheMerger | None) -> None:
    """Under the cache lock: put this build's cache back without losing what others saved meanwhile."""
    current = read_bytes_or_empty(cache)
    if current == snapshot:  # nobody saved since we copied: ours holds everything
        os.replace(built, cache)
        log.info("timing cache saved: %s (%d bytes)", cache, cache.stat().st_size)
        return
    merged = merger(current, built.read_bytes()) if merger else None
    if merged is None:  # only reachable if combine() refuses; the shared cache keeps what it has
        log.warning("timing cache %s changed during this build and could not be merged; it keeps the other "
                    "builds' entries, this build's new ones are not saved", cache)
        return
    atomic_write_bytes(cache, merged, fsync=True)
    log.info("timing cache merged: %s (%d bytes, with another build's entries)", cache, len(merged))


class TrtexecBuilder:
    """:class:`yolo_triton.engine.Builder` through the ``trtexec`` command line."""

    name = "trtexec"

    def __init__(self, trtexec: str, trt_version: str, merger: CacheMerger | None = None):
        self.trtexec, self.trt_version, self.merger = trtexec, trt_version, merger

    def build(self, request: BuildRequest, plan_out: Path) -> BuildResult:
        return build_with_trtexec(request, self.trtexec, self.trt_version, plan_out, merger=self.merger)
