"""TensorRT engine step, front: choose a builder, build a plan atomically, read a built plan's I/O.

Imports the two builders (:mod:`yolo_triton.engine_trtexec`, :mod:`yolo_triton.engine_python`), which
import only the shared base :mod:`yolo_triton.engine`; nothing imports this module back.
"""
from __future__ import annotations

from pathlib import Path

from yolo_triton import engine
from yolo_triton.engine import RUN_INSIDE_HINT, Builder, BuildRequest, BuildResult, check_supported, short_version
from yolo_triton.engine_python import PythonApiBuilder, cache_merger, import_tensorrt
from yolo_triton.engine_trtexec import TrtexecBuilder, trtexec_version
from yolo_triton.errors import StepError
from yolo_triton.files import atomic_path
from yolo_triton.onnx_io import TensorSpec

BUILDER_CHOICES = ("auto", "trtexec", "python")


def select_builder(choice: str, trtexec_arg: str | None, before_import=None) -> Builder:
    """``auto``: trtexec when found, else the Python API; ``trtexec``/``python`` force one.

    ``before_import`` runs before ``tensorrt`` is first imported for building (it pins the GPU through
    CUDA_VISIBLE_DEVICES). The trtexec builder gets a timing-cache merger when the Python module of the
    same TensorRT version is importable (it is in the TensorRT NGC image), else builds sharing a cache
    take turns. Raises a one-line StepError naming the way forward when TensorRT is not there at all.
    """
    if choice not in BUILDER_CHOICES:
        raise StepError(f"ENGINE_BUILDER={choice!r} must be auto, trtexec or python")
    if choice in ("auto", "trtexec"):
        trtexec = engine.find_trtexec(trtexec_arg)
        if trtexec:
            version = trtexec_version(trtexec)
            check_supported(version)
            return TrtexecBuilder(trtexec, version, trtexec_cache_merger(version))
        if choice == "trtexec":
            raise StepError(f"ENGINE_BUILDER=trtexec but no trtexec on PATH or at {engine.DEFAULT_TRTEXEC}; "
                            f"set TRTEXEC=/path/to/trtexec or {RUN_INSIDE_HINT}")
    if before_import is not None:
        before_import()
    trt = import_tensorrt()
    if trt is None:
        where = "no trtexec and no Python module 'tensorrt'" if choice == "auto" else \
            "ENGINE_BUILDER=python but 'import tensorrt' fails"
        raise StepError(f"TensorRT is missing here ({where}); {RUN_INSIDE_HINT}")
    check_supported(short_version(trt.__version__))
    return PythonApiBuilder(trt)


def trtexec_cache_merger(trtexec_version_: str):
    """``ITimingCache.combine`` from the Python module when it is trtexec's TensorRT version, else None."""
    trt = import_tensorrt()
    if trt is None:
        return None
    if short_version(trt.__version__) != short_version(trtexec_version_):
        engine.log.info("tensorrt %s (Python) is not trtexec's %s: it cannot merge trtexec's timing caches",
                        trt.__version__, trtexec_version_)
        return None
    return cache_merger(trt)


def build_plan(request: BuildRequest, builder: Builder) -> BuildResult:
    """Build into a temporary name beside ``<plan>`` and rename it over ``<plan>``; on any failure no plan file is left."""
    with atomic_path(request.plan) as tmp:
        result = builder.build(request, tmp)
        if not tmp.is_file() or tmp.stat().st_size == 0:
            raise StepError(f"the {builder.name} builder wrote no engine; rerun with -v")
    return result


def engine_io(plan_path: Path) -> tuple[list[TensorSpec], list[TensorSpec]] | None:
    """Inputs and outputs of a built plan via TensorRT's engine inspection API; None without tensorrt."""
    trt = import_tensorrt()
    if trt is None:
        return None
    return PythonApiBuilder(trt).engine_io(Path(plan_path))
