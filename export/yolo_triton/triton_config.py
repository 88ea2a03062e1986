"""Triton ``config.pbtxt`` files, built through Triton's own ModelConfig protobuf schema.

Configs are generated from the artefact (tensor names, dtypes and dims read from the file), never
from a string template; :func:`parse_config` reads one back through the same schema.
"""
from __future__ import annotations

import ast
import json
import re
from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from yolo_triton.files import atomic_write_text
from yolo_triton.onnx_io import TensorSpec
from yolo_triton.settings import LABEL_OUTPUT, LABELS_FILE, PROTOS_OUTPUT, TASK_PARAMETER, TRACK_A_OUTPUT, opt_batch

ONNX_PLATFORM = "onnxruntime_onnx"
TENSORRT_PLATFORM = "tensorrt_plan"
ENSEMBLE_PLATFORM = "ensemble"
LABELS_FILENAME = LABELS_FILE

_NUMPY_TO_TRITON = {
    "bool": mc.TYPE_BOOL,
    "uint8": mc.TYPE_UINT8,
    "int8": mc.TYPE_INT8,
    "int32": mc.TYPE_INT32,
    "int64": mc.TYPE_INT64,
    "float16": mc.TYPE_FP16,
    "float32": mc.TYPE_FP32,
    "float64": mc.TYPE_FP64,
}
_TRITON_TO_NUMPY = {value: key for key, value in _NUMPY_TO_TRITON.items()}


def triton_dtype(numpy_dtype: str) -> int:
    """Triton ``DataType`` enum value for a numpy dtype name."""
    try:
        return _NUMPY_TO_TRITON[numpy_dtype]
    except KeyError:
        raise ValueError(f"no Triton data type for numpy dtype {numpy_dtype!r}") from None


def numpy_dtype(triton_data_type: int) -> str:
    return _TRITON_TO_NUMPY[triton_data_type]


INSTANCE_KINDS = {"gpu": mc.ModelInstanceGroup.KIND_GPU, "cpu": mc.ModelInstanceGroup.KIND_CPU}
# Triton's ONNX Runtime backend maps these keys of the "tensorrt" GPU execution accelerator onto ONNX
# Runtime's TensorRT execution provider (onnxruntime_backend README, "ONNX Runtime with TensorRT
# optimization"; src/onnxruntime.cc of the r24.10 ... r26.xx branches reads the same keys).
ORT_TRT_PRECISION = {"fp32": "FP32", "fp16": "FP16", "int8": "INT8"}


def instance_kind(name: str) -> int:
    """``gpu``/``cpu`` (the INSTANCE_KIND setting) -> Triton's ``ModelInstanceGroup.Kind``."""
    try:
        return INSTANCE_KINDS[name]
    except KeyError:
        raise ValueError(f"INSTANCE_KIND={name!r} is not one of {', '.join(INSTANCE_KINDS)}") from None


def ort_tensorrt_accelerator(precision: str, workspace_bytes: int, engine_cache_dir: str) -> dict[str, str]:
    """Parameters of ONNX Runtime's TensorRT execution provider for a graph of ``precision``.

    The precision is the graph's own (FP16 from AutoCast, INT8 from Q/DQ nodes), so the provider is
    asked for no other. Engines are cached in ``engine_cache_dir``, a path as the SERVER sees it, which
    must be writable there (docker-compose.yml mounts ./trt_cache/onnxruntime for it); without a cache
    every model load rebuilds the engine (minutes for a large model).
    """
    if precision not in ORT_TRT_PRECISION:
        raise ValueError(f"no ONNX Runtime TensorRT precision for {precision!r}")
    if workspace_bytes <= 0:
        raise ValueError(f"workspace must be > 0 bytes, got {workspace_bytes}")
    return {
        "precision_mode": ORT_TRT_PRECISION[precision],
        "max_workspace_size_bytes": str(int(workspace_bytes)),
        "trt_engine_cache_enable": "1",
        "trt_engine_cache_path": str(engine_cache_dir),
    }


BATCHING = ("dynamic", "pad", "fixed")  # the effective ORT_BATCHING modes (settings.ort_batching)


def preferred_batch_sizes(max_batch: int) -> list[int]:
    """Half the maximum and the maximum: the profile's opt and max shapes of the engines."""
    return sorted({opt_batch(max_batch), max_batch})


def label_output(outputs: list[TensorSpec], task: str | None) -> str | None:
    """The output whose values ``labels.txt`` names: ``det_classes`` (end2end graphs, class ids), else for
    classify ``output0`` (``[B, nc]`` probabilities: Triton's classification extension, ``class_count``,
    then returns names); None for a raw detection head."""
    names = [o.name for o in outputs]
    if LABEL_OUTPUT in names:
        return LABEL_OUTPUT
    if task == "classify" and TRACK_A_OUTPUT in names:
        return TRACK_A_OUTPUT
    return None


def _tensor(spec: TensorSpec, batched: bool, message):
    """Fill a ModelInput/ModelOutput from ``spec``; the batch dim is implicit when ``batched``."""
    dims = spec.shape[1:] if batched else spec.shape
    if batched and spec.shape and spec.shape[0] not in (-1,):
        # A fixed leading dim cannot carry Triton's implicit batch dimension.
        raise ValueError(f"tensor {spec.name!r} has a fixed first dim {spec.shape[0]}, expected a dynamic batch")
    message.name = spec.name
    message.data_type = triton_dtype(spec.dtype)
    message.dims.extend(dims)
    return message


def model_config(
    name: str,
    platform: str,
    inputs: list[TensorSpec],
    outputs: list[TensorSpec],
    max_batch: int,
    queue_delay_us: int,
    label_output: str | None = None,
    kind: str = "gpu",
    tensorrt_accelerator: dict[str, str] | None = None,
    instances_per_gpu: int = 1,
    gpus: list[int] | None = None,
    cc_model_filenames: dict[str, str] | None = None,
    keep_versions: int = 1,
    batching: str = "dynamic",
) -> mc.ModelConfig:
    """A ModelConfig for an ONNX or TensorRT model with dynamic batching on ``instances_per_gpu`` instances
    of ``kind`` (``gpu``/``cpu``) -- on each of ``gpus`` (the server's GPU ids; None or empty: each GPU
    the server has); ``tensorrt_accelerator`` (ONNX models only) runs it through ONNX Runtime's TensorRT
    execution provider, which a graph holding a TensorRT plugin node needs; ``cc_model_filenames``
    (TensorRT plans of a mixed fleet) maps a compute capability ("8.0") to the plan Triton loads there.
    Triton serves the ``keep_versions`` newest version folders (KEEP_VERSIONS; ``version_policy latest``).
    ``batching`` (the effective ORT_BATCHING): ``dynamic`` prefers half the maximum and the maximum; ``pad``
    (a graph padded to ``max_batch``) prefers only the maximum, the one shape every execution runs at anyway;
    ``fixed`` needs ``max_batch`` 1 and has no dynamic batcher (every execution is one request)."""
    if max_batch <= 0:
        raise ValueError(f"max batch must be > 0, got {max_batch}")
    if instances_per_gpu < 1:
        raise ValueError(f"INSTANCES_PER_GPU must be >= 1, got {instances_per_gpu}")
    if gpus and kind != "gpu":
        raise ValueError(f"GPUS={','.join(map(str, gpus))} names GPUs, but INSTANCE_KIND={kind} instances run on the CPU")
    if cc_model_filenames and platform != TENSORRT_PLATFORM:
        raise ValueError("cc_model_filenames is for TensorRT plans (one per compute capability)")
    config = mc.ModelConfig(name=name, platform=platform, max_batch_size=max_batch)
    for spec in inputs:
        _tensor(spec, True, config.input.add())
    for spec in outputs:
        output = _tensor(spec, True, config.output.add())
        if spec.name == label_output:
            output.label_filename = LABELS_FILENAME
    group = config.instance_group.add(count=instances_per_gpu, kind=instance_kind(kind))
    group.gpus.extend(gpus or [])
    for cc, filename in sorted((cc_model_filenames or {}).items()):
        config.cc_model_filenames[cc] = filename
    if tensorrt_accelerator is not None:
        if platform != ONNX_PLATFORM or kind != "gpu":
            raise ValueError("the TensorRT execution accelerator is for onnxruntime_onnx models on GPU instances")
        accelerator = config.optimization.execution_accelerators.gpu_execution_accelerator.add(name="tensorrt")
        for key, value in tensorrt_accelerator.items():
            accelerator.parameters[key] = value
    if batching not in BATCHING:
        raise ValueError(f"batching {batching!r} is not one of {', '.join(BATCHING)}")
    if batching == "fixed":
        if max_batch != 1:
            raise ValueError(f"fixed-shape serving needs max_batch_size 1, got {max_batch}")
    else:
        preferred = [max_batch] if batching == "pad" else preferred_batch_sizes(max_batch)
        config.dynamic_batching.preferred_batch_size.extend(preferred)
        config.dynamic_batching.max_queue_delay_microseconds = queue_delay_us
    set_version_policy(config, latest=keep_versions)
    return config


# ---- the metadata parameter ultralytics' own Triton client reads ----------------------------------------
# ``YOLO("http://host:8000/<model>")`` reads ``parameters { key: "metadata" value { string_value: "<dict>" } }``
# (ultralytics/utils/triton.py: ``ast.literal_eval`` of the string; the Triton guide writes the exporter's
# metadata dict with ``%s``) and applies it as the export metadata of a file (nn/backends/base.py
# ``apply_metadata``): class names, task, stride, image size, keypoint shape.
METADATA_PARAMETER = "metadata"
# The keys ultralytics' exporter writes (engine/exporter.py), copied by the export step into the ONNX;
# the pipeline's own keys (precision, nms, topk, ...) stay out: ultralytics sets every key as an attribute.
ULTRALYTICS_KEYS = ("description", "author", "date", "version", "license", "docs", "stride", "task", "head", "batch",
                    "imgsz", "names", "args", "channels", "end2end", "kpt_shape", "kpt_names")
_LITERAL_KEYS = {"stride", "batch", "channels", "imgsz", "names", "args", "end2end", "kpt_shape", "kpt_names"}
# ultralytics' client sends its float 0..1 image cast to the config's input type (type_map of utils/triton.py)
_ULTRALYTICS_INPUTS = ("float32", "float16")


def ultralytics_unreadable(inputs: list[TensorSpec], outputs: list[TensorSpec]) -> str | None:
    """Why ultralytics' Triton client cannot use a model with these tensors (None: it can). It sends one
    float image tensor cast to the input's type and parses the outputs, sorted by name, as its own export's
    (``output0``; segment adds ``output1``): Tracks A/B are ultralytics' export, end2end graphs are not."""
    names = [o.name for o in outputs]
    if TRACK_A_OUTPUT not in names or not all(re.fullmatch(r"output\d+", name) for name in names):
        return (f"its outputs {', '.join(names)} are not ultralytics' {TRACK_A_OUTPUT} (it would parse "
                f"{sorted(names)[0]} as a raw head output)")
    if len(inputs) != 1 or len(inputs[0].shape) != 4:
        return f"its inputs {[(i.name, list(i.shape)) for i in inputs]} are not one [B, 3, H, W] image"
    if inputs[0].dtype not in _ULTRALYTICS_INPUTS:
        return (f"its input {inputs[0].name} is {inputs[0].dtype.upper()} and ultralytics casts its float 0..1 image "
                "to that type (every pixel 0 or 1: a black image)")
    return None


def ultralytics_refusal(model_name: str, reason: str) -> dict:
    """Metadata that makes ultralytics' client refuse the model, with ``reason``, before any request (instead
    of parsing its outputs wrongly, or, without metadata, of parsing them wrongly once the user passes the
    right ``imgsz``): its ``apply_metadata`` converts ``stride`` with ``int()``, so it raises
    ``ValueError: invalid literal for int() with base 10: "<model> is not for ultralytics' Triton client: ..."``."""
    return {"stride": f"{model_name} is not for ultralytics' Triton client: {reason}; "
                      "use the project's client (scripts/triton_client.py) or the Track A model"}


def ultralytics_metadata(onnx_meta: dict[str, str], image: TensorSpec) -> dict:
    """ultralytics' export metadata (the ONNX's, as the exporter wrote it) for the served ``image`` input.

    Changed, because the served graph is not the exporter's dynamic one: ``imgsz`` is the input's fixed
    H, W; ``args.dynamic`` is False (ultralytics then letterboxes every image to exactly ``imgsz``, as
    the graph needs, instead of the minimal rectangle); ``batch`` 1 (it sends one image per request, as
    its predictor streams them, and pads nothing)."""
    missing = [key for key in ("names", "stride", "task") if key not in onnx_meta]
    if missing:
        raise ValueError(f"the ONNX metadata has no {', '.join(missing)} (was it exported by this pipeline?)")
    meta = {key: (ast.literal_eval(onnx_meta[key]) if key in _LITERAL_KEYS else onnx_meta[key])
            for key in ULTRALYTICS_KEYS if key in onnx_meta}
    height, width = image.shape[2:]
    if height > 0 and width > 0:
        meta["imgsz"] = [height, width]
    if "imgsz" not in meta:
        raise ValueError(f"input '{image.name}' has no fixed image size and the ONNX metadata no imgsz")
    meta["batch"] = 1
    meta["args"] = {**meta.get("args", {}), "batch": 1, "dynamic": False}
    return meta


def task_parameter(meta: dict[str, str], outputs: list[TensorSpec], num_classes: int) -> dict:
    """The ``yolo_task`` parameter (settings.TASK_PARAMETER) our client reads: the task of the model's ONNX
    metadata, its class count, mask channels (segment: the prototypes' channels), keypoint shape (pose) and
    whether ``output0`` holds NMS-free rows (one2one)."""
    task = meta.get("task", "detect")
    protos = [o for o in outputs if o.name == PROTOS_OUTPUT]
    kpt = ast.literal_eval(meta["kpt_shape"]) if task == "pose" and meta.get("kpt_shape") else None
    return {"task": task, "num_classes": num_classes,
            "num_masks": int(protos[0].shape[1]) if task == "segment" and protos else 0,
            "kpt_shape": list(kpt) if kpt else None, "one2one": meta.get("one2one") == "True"}


def set_task_parameter(config: mc.ModelConfig, value: dict) -> mc.ModelConfig:
    config.parameters[TASK_PARAMETER].string_value = json.dumps(value, sort_keys=True)
    return config


def set_ultralytics_metadata(config: mc.ModelConfig, meta: dict) -> mc.ModelConfig:
    """Write ``meta`` as the guide does: the dict's Python literal in the ``metadata`` string parameter."""
    text = repr(meta)
    if ast.literal_eval(text) != meta:  # what ultralytics will read back
        raise ValueError(f"metadata does not survive ast.literal_eval: {text[:200]}")
    config.parameters[METADATA_PARAMETER].string_value = text
    return config


def ultralytics_metadata_of(config: mc.ModelConfig) -> dict | None:
    """The ``metadata`` parameter read back as ultralytics reads it (None: there is none)."""
    if METADATA_PARAMETER not in config.parameters:
        return None
    return ast.literal_eval(config.parameters[METADATA_PARAMETER].string_value)


# ---- version_policy: which numbered version folders Triton serves (yolo_triton.versions uses these) ----
def set_version_policy(config: mc.ModelConfig, latest: int | None = None, specific: list[int] | None = None
                       ) -> mc.ModelConfig:
    """``latest { num_versions: N }`` (the N newest folders) or ``specific { versions: [...] }``."""
    if (latest is None) == (specific is None):
        raise ValueError("give exactly one of latest (a count) or specific (version numbers)")
    config.ClearField("version_policy")
    if latest is not None:
        if int(latest) < 1:
            raise ValueError(f"KEEP_VERSIONS must be >= 1, got {latest}")
        config.version_policy.latest.num_versions = int(latest)
    else:
        versions = sorted({int(v) for v in specific})
        if not versions or versions[0] < 1:
            raise ValueError(f"specific versions must be numbers >= 1, got {list(specific)}")
        config.version_policy.specific.versions.extend(versions)
    return config


def version_policy(config: mc.ModelConfig) -> dict:
    """The config's policy as ``{"latest": N}``, ``{"specific": [...]}`` or ``{"all": True}`` (Triton's
    default when none is set is ``latest { num_versions: 1 }``)."""
    kind = config.version_policy.WhichOneof("policy_choice")
    if kind == "specific":
        return {"specific": sorted(config.version_policy.specific.versions)}
    if kind == "all":
        return {"all": True}
    if kind == "latest":
        return {"latest": int(config.version_policy.latest.num_versions)}
    return {"latest": 1}


def apply_version_policy(config: mc.ModelConfig, policy: dict) -> mc.ModelConfig:
    """Inverse of :func:`version_policy`."""
    if "specific" in policy:
        return set_version_policy(config, specific=policy["specific"])
    if "latest" in policy:
        return set_version_policy(config, latest=policy["latest"])
    config.ClearField("version_policy")
    config.version_policy.all.SetInParent()
    return config


def to_text(config: mc.ModelConfig) -> str:
    return text_format.MessageToString(config)


def parse_config(path: str | Path) -> mc.ModelConfig:
    """Parse a config.pbtxt through Triton's schema (unknown fields raise)."""
    return text_format.Parse(Path(path).read_text(), mc.ModelConfig())


write_atomic = atomic_write_text  # the one atomic writer (yolo_triton.files)


def write_model_config(model_dir: str | Path, config: mc.ModelConfig, labels: list[str] | None = None) -> Path:
    """Write ``labels.txt`` (if given) then ``config.pbtxt`` into ``model_dir``, each atomically."""
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    if labels is not None:
        write_atomic(model_dir / LABELS_FILENAME, "".join(f"{label}\n" for label in labels))
    config_path = model_dir / "config.pbtxt"
    write_atomic(config_path, to_text(config))
    return config_path
