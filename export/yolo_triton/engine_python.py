"""Build a plan with the TensorRT Python API (10.x and 11.x).

Bindings: https://github.com/NVIDIA/TensorRT/blob/release/10.16/python/src/infer/pyCore.cpp (10.x);
11.x changes: NVIDIA's "Migrating from TensorRT 10.x to 11.x" (docs.nvidia.com/deeplearning/tensorrt).

The same profile, precision and timing cache as the trtexec path:

* the network is strongly typed (``NetworkDefinitionCreationFlag.STRONGLY_TYPED`` on 10.x; 11.x is
  always strongly typed and ignores the flag, so none is passed), hence precision comes only from
  the ONNX graph. No ``BuilderFlag.FP16``/``INT8``, no ``EXPLICIT_BATCH``, no INT8 calibrator:
  those are deprecated in 10.x and gone in 11.x;
* ``init_libnvinfer_plugins(logger, "")`` runs before parsing so ``EfficientNMS_TRT`` resolves;
* input types are the ONNX graph's (a UINT8 ``images`` of ``INPUT_DTYPE=uint8`` stays UINT8, its Cast and
  Div are ordinary layers); nothing here sets a tensor type or format;
* every parser error is reported, an ``IProgressMonitor`` draws a text progress bar on stderr;
* ``HW_COMPAT=ampere+`` sets ``hardware_compatibility_level = HardwareCompatibilityLevel.AMPERE_PLUS``;
  the GPU is chosen by the caller through ``CUDA_VISIBLE_DEVICES`` before TensorRT starts CUDA;
* the timing cache is read under its lock and saved under it again: when another build saved the
  shared cache meanwhile, the two are merged with ``ITimingCache.combine`` (nothing is lost).
  :func:`cache_merger` does the same merge for the trtexec path.

Every TensorRT attribute this module touches is listed in :data:`TRT_API`; the API-surface test
checks that list against the real 10.13 and 11.4 bindings and against what this code really uses.
"""
from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import TextIO

from yolo_triton.engine import (
    OOM_HINT,
    BuildRequest,
    BuildResult,
    check_supported,
    looks_like_oom,
    short_version,
)
from yolo_triton.engine_fleet import cache_lock, read_bytes_or_empty
from yolo_triton.errors import StepError
from yolo_triton.files import atomic_write_bytes
from yolo_triton.onnx_io import TensorSpec

log = logging.getLogger(__name__)

# Every tensorrt name used below (module attributes, methods, properties, enum members and the
# callbacks TensorRT calls on our subclasses). One place: tests/test_tensorrt_api_surface.py checks it.
TRT_API = (
    # module level
    "__version__", "ILogger", "Severity", "init_libnvinfer_plugins", "Builder", "OnnxParser",
    "NetworkDefinitionCreationFlag", "STRONGLY_TYPED", "MemoryPoolType", "WORKSPACE",
    "IProgressMonitor", "Runtime", "TensorIOMode", "INPUT",
    # logger severities and the callback TensorRT calls
    "INTERNAL_ERROR", "ERROR", "WARNING", "INFO", "VERBOSE", "log",
    # builder / network / parser
    "create_network", "create_builder_config", "create_optimization_profile",
    "build_serialized_network", "parse_from_file", "num_errors", "get_error",
    # builder config, profile, timing cache
    "set_memory_pool_limit", "builder_optimization_level", "add_optimization_profile", "set_shape",
    "create_timing_cache", "set_timing_cache", "get_timing_cache", "serialize", "progress_monitor",
    "combine", "hardware_compatibility_level", "HardwareCompatibilityLevel", "AMPERE_PLUS",
    # progress monitor callbacks TensorRT calls
    "phase_start", "step_complete", "phase_finish",
    # engine inspection (engine_io)
    "deserialize_cuda_engine", "num_io_tensors", "get_tensor_name", "get_tensor_mode",
    "get_tensor_shape", "get_tensor_dtype",
)
# TensorRT DataType member -> numpy dtype name (str(dtype) is "DataType.HALF")
_NP_DTYPES = {"FLOAT": "float32", "HALF": "float16", "BF16": "bfloat16", "INT8": "int8",
              "INT32": "int32", "INT64": "int64", "UINT8": "uint8", "BOOL": "bool"}


def import_tensorrt():
    """The ``tensorrt`` module, or None when it is not installed.

    A TensorRT that is installed but does not load (a missing ``libnvinfer``, a CUDA mismatch, a broken
    wheel) is not "missing": that raises a one-line StepError carrying the import error itself.
    """
    try:
        import tensorrt  # noqa: PLC0415 - optional; only inside the TensorRT images
    except ModuleNotFoundError as err:
        if err.name != "tensorrt":
            raise StepError(f"TensorRT is installed but does not import: {err}") from err
        log.debug("no Python module 'tensorrt': %s", err)
        return None
    except Exception as err:  # noqa: BLE001 - ImportError or OSError from libnvinfer, a bad wheel, ...
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise StepError(f"TensorRT is installed but does not import: {type(err).__name__}: {first}") from err
    return tensorrt


def make_logger(trt, verbose: bool):
    """An ``ILogger`` that forwards to :mod:`logging` and keeps every error message."""
    severity = trt.ILogger.Severity
    errors = (severity.INTERNAL_ERROR, severity.ERROR)
    warning, info, chatty = severity.WARNING, severity.INFO, severity.VERBOSE

    class _Logger(trt.ILogger):
        def __init__(self):
            trt.ILogger.__init__(self)
            self._errors: list[str] = []

        def log(self, sev, msg):  # called by TensorRT
            text = str(msg).replace("\n", " ")
            if sev in errors:
                self._errors.append(text)
                log.error("TensorRT: %s", text)
            elif sev == warning:
                log.warning("TensorRT: %s", text)
            elif sev == info or (verbose and sev == chatty):
                log.debug("TensorRT: %s", text)

    return _Logger()


def make_progress_monitor(trt, out: TextIO, clock=time.monotonic, width: int = 30):
    """An ``IProgressMonitor`` that draws one text bar per phase on ``out``."""

    class _Progress(trt.IProgressMonitor):
        def __init__(self):
            trt.IProgressMonitor.__init__(self)
            self._start = clock()
            self._phases: dict[str, list] = {}  # name -> [depth, steps, done]
            self._tty = bool(getattr(out, "isatty", lambda: False)())

        def _draw(self, name: str, end: str) -> None:
            depth, steps, done = self._phases[name]
            filled = width * done // steps if steps else width
            bar = "#" * filled + "." * (width - filled)
            out.write(f"{'  ' * depth}[{clock() - self._start:7.1f}s] {name:<40.40} [{bar}] "
                      f"{done}/{steps}{end}")
            out.flush()

        def phase_start(self, phase_name, parent_phase, num_steps):  # called by TensorRT
            depth = self._phases[parent_phase][0] + 1 if parent_phase in self._phases else 0
            self._phases[phase_name] = [depth, int(num_steps), 0]
            if depth <= 1 or self._tty:
                self._draw(phase_name, "\r" if self._tty else "\n")

        def step_complete(self, phase_name, step):  # called by TensorRT; False would cancel
            if phase_name in self._phases:
                self._phases[phase_name][2] = int(step) + 1
                if self._tty:
                    self._draw(phase_name, "\r")
            return True

        def phase_finish(self, phase_name):  # called by TensorRT
            if phase_name in self._phases:
                entry = self._phases[phase_name]
                entry[2] = entry[1]
                if entry[0] <= 1 or self._tty:
                    self._draw(phase_name, "\n")
                del self._phases[phase_name]

    return _Progress()


def network_flags(trt, trt_version: str) -> int:
    """Strongly typed: the flag on 10.x; nothing on 11.x (always strongly typed, flag ignored)."""
    if check_supported(trt_version) == 10:
        return 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    return 0


def parser_errors(parser) -> list[str]:
    return [" ".join(str(parser.get_error(i)).split()) for i in range(parser.num_errors)]


def build_with_python(trt, request: BuildRequest, plan_out: Path, out: TextIO | None = None,
                      clock=time.monotonic) -> BuildResult:
    """Build ``request`` into ``plan_out`` (a temporary path; the caller renames it)."""
    out = out or sys.stderr
    version = short_version(trt.__version__)
    start = clock()
    logger = make_logger(trt, request.verbose)
    trt.init_libnvinfer_plugins(logger, "")  # registers EfficientNMS_TRT before parsing
    builder = trt.Builder(logger)
    network = builder.create_network(network_flags(trt, version))
    parser = trt.OnnxParser(network, logger)
    log.info("parsing %s", request.onnx)
    if not parser.parse_from_file(str(request.onnx)):
        errors = parser_errors(parser)
        raise StepError(f"TensorRT's ONNX parser failed on {request.onnx} with {len(errors)} error(s): "
                        + " | ".join(errors or ["(no error recorded)"])
                        + "; fix the graph or re-export it (make onnx)")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, request.workspace_bytes)
    config.builder_optimization_level = request.opt_level
    profile = builder.create_optimization_profile()
    prof = request.profile
    try:
        profile.set_shape(prof.input_name, prof.min, prof.opt, prof.max)
    except (RuntimeError, TypeError, ValueError) as err:
        raise StepError(f"profile for {prof.input_name!r} rejected ({err}); check IMGSZ and MAX_BATCH") from err
    config.add_optimization_profile(profile)
    if request.hw_compat == "ampere+":  # one plan for every GPU of compute capability 8.0 and newer
        config.hardware_compatibility_level = trt.HardwareCompatibilityLevel.AMPERE_PLUS

    cache_path = request.timing_cache
    with cache_lock(cache_path):
        blob = read_bytes_or_empty(cache_path)
    cache = config.create_timing_cache(blob)
    if not config.set_timing_cache(cache, False):  # ignore_mismatch=False: never use a foreign cache
        log.warning("timing cache %s does not match this GPU/TensorRT; starting a new one", cache_path)
        cache = config.create_timing_cache(b"")
        config.set_timing_cache(cache, False)
    else:
        log.info("timing cache: %s (%s)", cache_path, f"{len(blob)} bytes, loaded" if blob else "new")

    monitor = make_progress_monitor(trt, out, clock)
    config.progress_monitor = monitor
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        errors = logger._errors
        last = " | ".join(errors[-4:]) or "(no error logged)"
        if looks_like_oom(" ".join(errors)):
            raise StepError(f"TensorRT ran out of GPU memory; {OOM_HINT}; errors: {last}")
        raise StepError(f"TensorRT engine build failed: {last}; rerun with -v for the full log")
    with open(plan_out, "wb") as handle:
        handle.write(serialized)
    with cache_lock(cache_path):
        save_timing_cache(config, cache_path, blob)
    return BuildResult("python", version, clock() - start)


def save_timing_cache(config, cache_path: Path, loaded: bytes) -> None:
    """Under the cache lock: write this build's cache, merged into what another build saved meanwhile."""
    built = config.get_timing_cache()
    current = read_bytes_or_empty(cache_path)
    if current != loaded:  # another build saved since we loaded: merge ours into theirs
        shared = config.create_timing_cache(current)
        if shared.combine(built, False):  # ignore_mismatch=False: same GPU model and TensorRT only
            built = shared
            log.info("timing cache: merged with another build's entries")
        else:
            log.warning("timing cache %s changed during this build and could not be merged; it keeps the "
                        "other builds' entries, this build's new ones are not saved", cache_path)
            return
    atomic_write_bytes(cache_path, bytes(built.serialize()), fsync=True)
    log.info("timing cache saved: %s (%d bytes)", cache_path, cache_path.stat().st_size)


def cache_merger(trt):
    """``merge(shared, built) -> bytes | None`` with ``ITimingCache.combine``: the trtexec path's merger
    (trtexec and this module must be the same TensorRT version, which the caller checks)."""

    def merge(shared: bytes, built: bytes) -> bytes | None:
        config = trt.Builder(make_logger(trt, False)).create_builder_config()
        into = config.create_timing_cache(shared)
        if not into.combine(config.create_timing_cache(built), False):
            return None
        return bytes(into.serialize())

    return merge


def engine_io(trt, plan_path: Path) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """Inputs and outputs of a plan (shape -1 where dynamic) through the engine inspection API."""
    logger = make_logger(trt, False)
    trt.init_libnvinfer_plugins(logger, "")  # the engine may contain EfficientNMS_TRT
    runtime = trt.Runtime(logger)
    engine = runtime.deserialize_cuda_engine(Path(plan_path).read_bytes())
    if engine is None:
        raise StepError(f"{plan_path} cannot be loaded by TensorRT {trt.__version__} "
                        f"({' | '.join(logger._errors[-2:])}); rebuild it: make check-plans REMOVE_STALE=1 then make trt")
    inputs: list[TensorSpec] = []
    outputs: list[TensorSpec] = []
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        dtype_name = str(engine.get_tensor_dtype(name)).rsplit(".", 1)[-1]
        spec = TensorSpec(name, _NP_DTYPES.get(dtype_name, dtype_name.lower()),
                          tuple(int(d) for d in engine.get_tensor_shape(name)))
        (inputs if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT else outputs).append(spec)
    return inputs, outputs


class PythonApiBuilder:
    """:class:`yolo_triton.engine.Builder` through the TensorRT Python API (``trt``: the imported module)."""

    name = "python"

    def __init__(self, trt):
        self.trt, self.trt_version = trt, short_version(trt.__version__)

    def build(self, request: BuildRequest, plan_out: Path) -> BuildResult:
        return build_with_python(self.trt, request, plan_out)

    def engine_io(self, plan_path: Path) -> tuple[list[TensorSpec], list[TensorSpec]]:
        return engine_io(self.trt, plan_path)
