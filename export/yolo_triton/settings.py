"""Settings and layout, the bottom layer: every default and every name the pipeline's files carry.

Defaults are read from ``export/defaults.mk``, the single source of truth that the Makefile includes, so
Python tools that run outside Make (validation, the Triton client, benchmarks) agree with Make without
repeating a number. Layout facts (folder names, file names, tensor names) are constants and small pure
functions here; the Makefile spells the same layout in its pattern rules, and tests/test_layout.py
checks that the two agree. Nothing in this module imports another yolo_triton module.
"""
from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path

DEFAULTS_MK = Path(__file__).resolve().parent.parent / "defaults.mk"
_ASSIGNMENT = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*\?=\s*(.*?)\s*$")

# ---- the model repository: <models>/<model dir>/<VERSION_DIR>/<file>, with config.pbtxt beside 1/ -----
VERSION_DIR = "1"
ONNX_FILE = "model.onnx"
PLAN_FILE = "model.plan"
CONFIG_FILE = "config.pbtxt"
LABELS_FILE = "labels.txt"
DALI_FILE = "dali.py"  # dali_backend's autoserialization file in the version directory
# artefact kind -> (model directory suffix after <name>, file in the version directory)
ARTEFACTS = {
    "onnx": ("", ONNX_FILE),  # Track A
    "end2end": ("_end2end", ONNX_FILE),  # ONNX + NMS stage
    "trt": ("_trt", PLAN_FILE),  # Track B
    "trt_end2end": ("_trt_end2end", PLAN_FILE),  # Track C
}
ENSEMBLE_SUFFIX = "_ensemble"  # Track D: <name>_ensemble chains the DALI model into <name>_<ENSEMBLE_DETECTOR>

# ---- tensor names ---------------------------------------------------------------------------------
TRACK_A_OUTPUT = "output0"  # ultralytics' raw head output [B, 4+nc, anchors]
END2END_OUTPUTS = ("num_dets", "det_boxes", "det_scores", "det_classes")  # EfficientNMS_TRT's four
LABEL_OUTPUT = "det_classes"  # the output whose values index labels.txt
TASK_PARAMETER = "yolo_task"  # config parameter: JSON {task, num_classes, num_masks, kpt_shape, one2one}
PROTOS_OUTPUT = "output1"  # segment: ultralytics' mask prototypes [B, 32, S/4, S/4] (Track A and end2end)
# end2end outputs after END2END_OUTPUTS, by task (task_base.py): the selected anchors' extras
END2END_TASK_OUTPUTS = {
    "detect": (),
    "segment": ("det_mask_coeffs", PROTOS_OUTPUT),  # [B, topk, 32] and the prototypes
    "pose": ("det_keypoints",),  # [B, topk, K, 3] x, y, confidence in network-input pixels
    "obb": ("det_xywhr",),  # [B, topk, 5] centre, size, radians; det_boxes = the rotated box's axis-aligned hull
    "classify": (),
}


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


def weights_path(name: str, weights_dir: Path) -> Path:
    """``yolov11_<size>`` -> ``<WEIGHTS_size>.pt`` (the Makefile's ``weights_for``); any other name -> ``<name>.pt``."""
    for size in size_names():
        if name == model_name_for_size(size):
            return Path(weights_dir) / f"{weights_stem_for_size(size)}.pt"
    return Path(weights_dir) / f"{name}.pt"


def model_dir_name(name: str, kind: str) -> str:
    """``("yolov11_small", "trt_end2end")`` -> ``yolov11_small_trt_end2end``."""
    return name + ARTEFACTS[kind][0]


def artefact_path(models_dir: str | Path, name: str, kind: str) -> Path:
    """``<models>/<name><suffix>/1/model.{onnx,plan}`` for an artefact kind of :data:`ARTEFACTS`."""
    suffix, filename = ARTEFACTS[kind]
    return Path(models_dir) / f"{name}{suffix}" / VERSION_DIR / filename


def preprocess_model_name(imgsz: int) -> str:
    """The DALI letterbox model, one per image size and shared by every detector: ``preprocess_letterbox_640``."""
    return f"preprocess_letterbox_{int(imgsz)}"


def ensemble_name(name: str) -> str:
    return name + ENSEMBLE_SUFFIX


def opt_batch(max_batch: int) -> int:
    """The batch TensorRT tunes kernels for (profile opt) and Triton prefers with max: half the maximum, >= 1."""
    return max(1, int(max_batch) // 2)


def dali_threads() -> int:
    """CPU worker threads of the DALI letterbox pipeline (DALI_THREADS)."""
    return int(defaults()["DALI_THREADS"])


def ensemble_detector() -> str:
    """The artefact kind of Track D's detector step (ENSEMBLE_DETECTOR; yolo_triton.ensemble checks it)."""
    return defaults()["ENSEMBLE_DETECTOR"]


def directory(setting: str) -> Path:
    """A directory default of defaults.mk (MODELS_DIR, WEIGHTS_DIR, CACHE_DIR, BUILD_DIR), relative to the cwd."""
    return Path(defaults()[setting])


# ---- how ONNX models execute batches on a GPU Triton (ORT_BATCHING, ORT_PAD_BATCH) ------------------
ORT_BATCHING_MODES = ("auto", "pad", "fixed", "dynamic")


def ort_batching(mode: str, kind: str) -> str:
    """The effective ORT_BATCHING for INSTANCE_KIND ``kind``: ``auto`` is ``pad`` on GPU instances (ONNX
    Runtime's CUDA EP stalls on every batch-size change) and ``dynamic`` on CPU instances (no such stall)."""
    if mode not in ORT_BATCHING_MODES:
        raise ValueError(f"ORT_BATCHING={mode!r} is not one of {', '.join(ORT_BATCHING_MODES)}")
    if mode == "auto":
        return "pad" if kind == "gpu" else "dynamic"
    return mode


def ort_pad_batch(mode: str, kind: str, max_batch: int, pad_batch: int) -> int | None:
    """The batch an ONNX graph is padded to (``pad``: ORT_PAD_BATCH, at most the model's MAX_BATCH), else None."""
    if ort_batching(mode, kind) != "pad":
        return None
    if int(pad_batch) < 1:
        raise ValueError(f"ORT_PAD_BATCH must be >= 1, got {pad_batch}")
    return min(int(pad_batch), int(max_batch))


# The admin key of a Triton published beyond loopback (docker-compose.yml, scripts/triton_entrypoint.sh):
# the model-repository, shared-memory, trace and logging endpoints then answer only requests carrying
# it, as the HTTP header ADMIN_HEADER or the gRPC metadata GRPC_RESTRICTED_PREFIX + ADMIN_HEADER
# (tritonserver prefixes gRPC keys itself: server src/grpc/grpc_server.h kRestrictedProtocolHeaderTemplate).
# Read from the environment only, never from a command line (where `ps` would show it).
ADMIN_KEY_ENV = "TRITON_ADMIN_KEY"
ADMIN_HEADER = "admin-key"
GRPC_RESTRICTED_PREFIX = "triton-grpc-protocol-"


def admin_headers(protocol: str = "http", key: str | None = None) -> dict[str, str]:
    """The header (HTTP) or metadata (gRPC) carrying the admin key; ``key`` None: ``$TRITON_ADMIN_KEY``.
    Empty when there is no key (a server on loopback restricts nothing)."""
    key = os.environ.get(ADMIN_KEY_ENV, "") if key is None else key
    if not key:
        return {}
    return {(ADMIN_HEADER if protocol == "http" else GRPC_RESTRICTED_PREFIX + ADMIN_HEADER): key}
