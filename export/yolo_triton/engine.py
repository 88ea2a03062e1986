"""TensorRT engine step, bottom layer: what both builders share (profile, precision, GPU, timing cache,
sidecar) and the :class:`Builder` interface they implement.

    engine.py  <-  engine_trtexec.py (TrtexecBuilder), engine_python.py (PythonApiBuilder)  <-  engine_build.py

The two builders take the same :class:`BuildRequest`, so the profile, the precision (read from the ONNX
graph, strongly typed) and the timing cache are the same whichever one runs; :mod:`yolo_triton.engine_build`
chooses one and writes the plan atomically. This module imports neither builder.

Everything here is a pure function of paths and parameters; nothing imports ``tensorrt`` at module
level, so this runs (and is tested) on machines without TensorRT.
"""
from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
import subprocess
import tempfile
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

import onnx

from yolo_triton.batch_pad import padded_size, unpad_batch
from yolo_triton.errors import StepError
from yolo_triton.files import atomic_write_bytes
from yolo_triton.onnx_io import TensorSpec, has_efficient_nms, model_io, onnx_precision  # noqa: F401 (re-exported)
from yolo_triton.settings import opt_batch

log = logging.getLogger(__name__)

SUPPORTED_TRT_MAJORS = (10, 11)
# Where Triton's own QA scripts find trtexec (triton-inference-server/server, qa/L0_perf_resnet/test.sh)
DEFAULT_TRTEXEC = "/usr/src/tensorrt/bin/trtexec"
RUN_INSIDE_HINT = "run it inside the yolo-api compose service: docker compose exec yolo-api make ..."
OOM_HINT = "lower MAX_BATCH (e.g. make MAX_BATCH_nano=64 ...) or WORKSPACE (e.g. make WORKSPACE=2G ...)"
_OOM_PATTERNS = re.compile(
    r"out of memory|OutOfMemory|cudaErrorMemoryAllocation|Requested amount of GPU memory|"
    r"insufficient memory|failed to allocate", re.IGNORECASE)
_SIZE = re.compile(r"^(\d+(?:\.\d+)?)([BKMG]?)$", re.IGNORECASE)
_UNITS = {"": 1 << 20, "B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}  # trtexec: no suffix = MiB


@dataclass(frozen=True)
class Profile:
    """One optimization profile on the single image input (full NCHW shapes)."""

    input_name: str
    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]


@dataclass(frozen=True)
class GpuInfo:
    name: str  # e.g. "NVIDIA H100 80GB HBM3"
    compute_capability: str  # e.g. "9.0"


@dataclass(frozen=True)
class BuildRequest:
    """Everything that shapes an engine; both builders consume exactly this."""

    onnx: Path
    plan: Path
    profile: Profile
    workspace: str  # as the user wrote it, e.g. "4G" (trtexec syntax)
    workspace_bytes: int
    opt_level: int
    timing_cache: Path
    verbose: bool = False
    gpu_index: int | None = None  # nvidia-smi index to build on (trtexec --device, CUDA_VISIBLE_DEVICES); None: default
    hw_compat: str = "none"  # "ampere+": a portable plan (TensorRT hardware compatibility level)


@dataclass(frozen=True)
class BuildResult:
    builder: str  # "trtexec" | "python"
    trt_version: str  # "10.13.3"
    seconds: float


class Builder(Protocol):
    """One way to build a plan: ``engine_trtexec.TrtexecBuilder`` or ``engine_python.PythonApiBuilder``."""

    name: str  # "trtexec" | "python"
    trt_version: str  # the TensorRT version this builder carries, e.g. "10.13.3"

    def build(self, request: BuildRequest, plan_out: Path) -> BuildResult:
        """Build ``request`` into ``plan_out`` (a temporary path; the caller renames it)."""
        ...


# ---------------------------------------------------------------- parameters


def parse_workspace(text: str) -> int:
    """``"4G"`` -> bytes, with trtexec's rules (suffix B/K/M/G base 2; no suffix means MiB)."""
    match = _SIZE.match(str(text).strip())
    if not match:
        raise ValueError(f"WORKSPACE={text!r} is not a size; use e.g. 4G, 512M or 4096 (MiB)")
    number, unit = float(match.group(1)), match.group(2).upper()
    size = int(number * _UNITS[unit])
    if size <= 0:
        raise ValueError(f"WORKSPACE={text!r} must be positive")
    return size


def image_input(inputs: list[TensorSpec]) -> TensorSpec:
    """The one NCHW image input of a detector graph (raises when the graph is not that)."""
    if len(inputs) != 1:
        names = ", ".join(i.name for i in inputs)
        raise StepError(f"expected one image input, the ONNX has {len(inputs)} ({names}); "
                        "export it with this pipeline (make onnx)")
    spec = inputs[0]
    if len(spec.shape) != 4:
        raise StepError(f"input {spec.name!r} has shape {spec.shape}, expected NCHW; "
                        "export it with this pipeline (make onnx)")
    return spec


def make_profile(spec: TensorSpec, max_batch: int, imgsz: int) -> Profile:
    """min 1 / opt max(1, MAX_BATCH//2) / max MAX_BATCH at IMGSZ, checked against the ONNX."""
    if max_batch < 1:
        raise StepError(f"MAX_BATCH={max_batch} must be >= 1")
    batch, channels, height, width = spec.shape
    if batch != -1 and max_batch != batch:
        raise StepError(f"input {spec.name!r} has a fixed batch of {batch} but MAX_BATCH={max_batch}; "
                        "re-export the ONNX with a dynamic batch (make onnx)")
    for dim_name, dim in (("height", height), ("width", width)):
        if dim != -1 and dim != imgsz:
            raise StepError(f"input {spec.name!r} has {dim_name} {dim} but IMGSZ={imgsz}; "
                            f"re-export the ONNX at IMGSZ={imgsz} or build with make IMGSZ={dim}")
    if channels == -1:
        raise StepError(f"input {spec.name!r} has a dynamic channel dimension; export it with this pipeline")
    low = 1 if batch == -1 else batch
    return Profile(spec.name, (low, channels, imgsz, imgsz),
                   (opt_batch(max_batch) if batch == -1 else batch, channels, imgsz, imgsz),
                   (max_batch, channels, imgsz, imgsz))


@contextmanager
def plain_onnx(path: Path):
    """``path`` itself, or for a graph padded by ORT_BATCHING=pad a temporary copy without the padding
    (yolo_triton.batch_pad): TensorRT optimises each profile shape itself and must see the plain graph."""
    model = onnx.load(str(path), load_external_data=False)
    size = padded_size(model)
    if size is None:
        yield Path(path)
        return
    with tempfile.TemporaryDirectory(prefix="yolo-triton-plain-") as tmp:
        plain = Path(tmp) / Path(path).name
        onnx.save(unpad_batch(model), str(plain))
        log.info("%s pads to batch %d for ONNX Runtime; TensorRT builds from the plain graph", path, size)
        yield plain


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


# ---------------------------------------------------------------- versions and GPU


def short_version(version: str) -> str:
    """``"10.13.3.9"`` -> ``"10.13.3"`` (trtexec's banner only has three parts)."""
    parts = re.findall(r"\d+", str(version))
    if len(parts) < 2:
        raise ValueError(f"not a TensorRT version: {version!r}")
    return ".".join((parts + ["0"])[:3])


def trt_major(version: str) -> int:
    return int(short_version(version).split(".")[0])


def check_supported(version: str) -> int:
    major = trt_major(version)
    if major not in SUPPORTED_TRT_MAJORS:
        raise StepError(f"TensorRT {version} is not supported (10.x and 11.x are); "
                        f"{RUN_INSIDE_HINT}")
    return major


def parse_trtexec_version(text: str) -> str | None:
    """TensorRT version from trtexec output: ``TensorRT version: 10.13.3`` or the ``[TensorRT v101303]`` banner."""
    match = re.search(r"TensorRT version:\s*(\d+)\.(\d+)\.(\d+)", text)
    if match:
        return ".".join(match.groups())
    match = re.search(r"\[TensorRT v(\d+)\]", text)
    if match:
        number = int(match.group(1))
        if number >= 100000:  # TRT 10+: major*10000 + minor*100 + patch (v101303 = 10.13.3)
            return f"{number // 10000}.{number // 100 % 100}.{number % 100}"
        return f"{number // 1000}.{number // 100 % 10}.{number % 100}"  # 8.x: v8601 = 8.6.1
    return None


def query_gpu(run=subprocess.run) -> GpuInfo | None:
    """Name and compute capability of GPU 0 from nvidia-smi, else torch; None when neither knows."""
    try:
        out = run(["nvidia-smi", "--query-gpu=name,compute_cap", "--format=csv,noheader"],
                  capture_output=True, text=True, timeout=30, check=True).stdout
        first = out.strip().splitlines()[0]
        name, cap = (part.strip() for part in first.rsplit(",", 1))
        return GpuInfo(name, cap)
    except (OSError, subprocess.SubprocessError, IndexError, ValueError):
        pass
    try:
        import torch  # noqa: PLC0415 - optional, heavy
        if torch.cuda.is_available():
            major, minor = torch.cuda.get_device_capability(0)
            return GpuInfo(torch.cuda.get_device_name(0), f"{major}.{minor}")
    except Exception:  # noqa: BLE001 - any torch/CUDA failure just means "unknown"
        pass
    return None


def timing_cache_path(cache_dir: Path, gpu: GpuInfo, trt_version: str, hw_compat: str = "none") -> Path:
    """One cache per GPU model + compute capability + TensorRT version (+ hardware compatibility level,
    whose builds choose among fewer tactics), shared by every build on a GPU of that model.

    ``trt_cache/timing_NVIDIA-H100-80GB-HBM3_sm90_trt10.13.3.cache``, ``..._trt10.13.3_ampere-plus.cache``
    """
    name = re.sub(r"[^A-Za-z0-9.]+", "-", gpu.name).strip("-") or "unknown-gpu"
    cap = "sm" + (re.sub(r"[^0-9]", "", gpu.compute_capability) or "-unknown")
    compat = "" if hw_compat in ("", "none") else "_" + hw_compat.replace("+", "-plus")
    return Path(cache_dir) / f"timing_{name}_{cap}_trt{short_version(trt_version)}{compat}.cache"


def find_trtexec(explicit: str | None, which=shutil.which) -> str | None:
    """``--trtexec`` value, else ``trtexec`` on PATH, else /usr/src/tensorrt/bin/trtexec, else None."""
    if explicit:
        found = which(explicit)
        if not found:
            raise StepError(f"--trtexec {explicit} is not an executable; fix TRTEXEC= or leave it empty "
                            "to search PATH")
        return found
    return which("trtexec") or which(DEFAULT_TRTEXEC)


def looks_like_oom(text: str) -> bool:
    return bool(_OOM_PATTERNS.search(text))


# ---------------------------------------------------------------- atomic files and sidecar


def sidecar_path(plan_path: Path) -> Path:
    """``model.plan`` -> ``model.plan.json``."""
    return Path(str(plan_path) + ".json")


def tensor_records(specs: list[TensorSpec]) -> list[dict]:
    """TensorSpecs as JSON (the sidecar's ``inputs`` / ``outputs``)."""
    return [{"name": s.name, "dtype": s.dtype, "shape": list(s.shape)} for s in specs]


def tensor_specs(records: list[dict]) -> list[TensorSpec]:
    """Inverse of :func:`tensor_records`."""
    return [TensorSpec(str(r["name"]), str(r["dtype"]), tuple(int(d) for d in r["shape"])) for r in records]


def sidecar_record(request: BuildRequest, result: BuildResult, gpu: GpuInfo, precision: str,
                   onnx_sha256: str, plan_bytes: int, gpu_uuid: str | None = None,
                   cc_model_filenames: dict[str, str] | None = None,
                   io: tuple[list[TensorSpec], list[TensorSpec]] | None = None,
                   onnx_metadata: dict[str, str] | None = None) -> dict:
    """What a plan was built from and on: the GPU (its nvidia-smi index and UUID when known), for a
    mixed fleet the capability -> plan file map of the whole set, and what the plan serves: its inputs and
    outputs (``io``: names, numpy dtypes, shapes with -1 for the dynamic batch; the plain ONNX's, which a
    strongly typed build keeps) and the ONNX's metadata (task, class names, kpt_shape, ...). The config step
    reads these, so a plan's config comes from the plan's own record."""
    inputs, outputs = io if io is not None else ([], [])
    return {
        "inputs": tensor_records(inputs),
        "outputs": tensor_records(outputs),
        "onnx_metadata": dict(onnx_metadata or {}),
        "gpu_index": request.gpu_index,
        "gpu_uuid": gpu_uuid,
        "hardware_compatibility_level": request.hw_compat,
        "cc_model_filenames": dict(cc_model_filenames or {}),
        "tensorrt_version": short_version(result.trt_version),
        "gpu_name": gpu.name,
        "compute_capability": gpu.compute_capability,
        "onnx": str(request.onnx),
        "onnx_sha256": onnx_sha256,
        "profile": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(request.profile).items()},
        "precision": precision,
        "strongly_typed": True,
        "builder": result.builder,
        "build_seconds": round(result.seconds, 2),
        "plan_bytes": plan_bytes,
        "workspace": request.workspace,
        "builder_optimization_level": request.opt_level,
        "timing_cache": str(request.timing_cache),
    }


def write_sidecar(plan_path: Path, record: dict) -> Path:
    path = sidecar_path(plan_path)
    atomic_write_bytes(path, (json.dumps(record, indent=2, sort_keys=True) + "\n").encode(), fsync=True)
    return path


def read_sidecar(plan_path: Path) -> dict | None:
    """The sidecar of ``plan_path`` as a dict, or None when it is missing or not JSON."""
    try:
        return json.loads(sidecar_path(plan_path).read_text())
    except (OSError, ValueError):
        return None


def plan_is_stale(plan_path: Path, gpu_name: str | list[str], trt_version: str) -> str | None:
    """Why ``plan_path`` cannot be used with this GPU model (any of ``gpu_name`` when a list: the GPUs of
    this machine) and TensorRT version, or None if it can. A portable (``ampere+``) plan is not tied to a
    GPU model."""
    names = [gpu_name] if isinstance(gpu_name, str) else list(gpu_name)
    plan_path = Path(plan_path)
    if not plan_path.is_file():
        return f"{plan_path} does not exist"
    record = read_sidecar(plan_path)
    if record is None:
        return f"{sidecar_path(plan_path)} is missing or unreadable (unknown GPU and TensorRT version)"
    if record.get("plan_bytes") not in (None, plan_path.stat().st_size):
        return f"{plan_path} is {plan_path.stat().st_size} bytes, its sidecar says {record['plan_bytes']}"
    portable = record.get("hardware_compatibility_level", "none") not in (None, "", "none")
    if not portable and record.get("gpu_name") not in names:
        if len(names) == 1:
            return f"built on {record.get('gpu_name')!r}, this GPU is {names[0]!r}"
        return f"built on {record.get('gpu_name')!r}, the GPUs here are {', '.join(sorted(set(names)))}"
    built = record.get("tensorrt_version", "")
    try:
        same = short_version(built) == short_version(trt_version)
    except ValueError:
        same = False
    if not same:
        return f"built with TensorRT {built or '?'}, this is TensorRT {short_version(trt_version)}"
    return None


def onnx_summary(path: Path) -> tuple[onnx.ModelProto, list[TensorSpec], list[TensorSpec]]:
    model = onnx.load(str(path), load_external_data=False)
    inputs, outputs = model_io(model)
    return model, inputs, outputs
