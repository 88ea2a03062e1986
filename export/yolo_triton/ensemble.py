"""Track D: the DALI letterbox model and the ``<name>_ensemble`` configs (encoded bytes -> detections).

* :func:`write_preprocess_model` writes ``<models>/preprocess_letterbox_<S>/``: ``config.pbtxt``
  (``backend: "dali"``) and ``1/dali.py``, the pipeline definition that Triton's DALI backend
  autoserializes at load time (dali_backend precedence: ``model.dali``, then ``dali.py``). No
  ``model.dali`` is written: a GPU pipeline cannot be serialized without CUDA, and a file serialized
  elsewhere ties the export image's DALI version to the server's.
* :func:`ensemble_config` chains that model into the detector step that ENSEMBLE_DETECTOR names
  (:data:`DETECTORS`): ``<name>_trt_end2end``, the TensorRT plan (the default), or ``<name>_end2end``,
  the end2end ONNX served by ONNX Runtime (a server without TensorRT). Every tensor name, dtype and
  dim is READ from the two step models' own ``config.pbtxt`` files and checked against each other;
  ``max_batch_size`` is the smallest of the steps' (a padded ONNX detector, ORT_BATCHING=pad: its pad).
* :func:`letterbox_infos` turns the ensemble's ``letterbox`` output into ``LetterboxInfo`` objects for
  ``postprocess.postprocess_end2end``.
"""
from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
from tritonclient.grpc import model_config_pb2 as mc

from yolo_triton import triton_config as tc
from yolo_triton.errors import StepError
from yolo_triton.postprocess import LetterboxInfo
from yolo_triton.settings import (
    CONFIG_FILE,
    DALI_FILE,
    TASK_PARAMETER,
    VERSION_DIR,
    dali_threads,
    ensemble_detector,
    ensemble_name,
    model_dir_name,
    preprocess_model_name,
)

LOG = logging.getLogger(__name__)

DALI_BACKEND = "dali"
DALI_FILENAME = DALI_FILE
# Mirrors of yolo_triton.dali_pipeline's names, kept here so that writing configs needs no DALI import;
# tests/test_dali_letterbox.py checks that the two agree.
INPUT_NAME = "encoded"
OUTPUT_IMAGES, OUTPUT_LETTERBOX = "images", "letterbox"
LETTERBOX_LEN = 5  # ratio, pad_x, pad_y, orig_h, orig_w
ENSEMBLE_INPUT = "IMAGE_BYTES"  # what clients send (README, perf_analyzer --shape IMAGE_BYTES:<n>)


class EnsembleError(StepError, ValueError):
    """A step model's config does not fit the chain; the message names the tensor and the fix."""


# ENSEMBLE_DETECTOR: the detector step's artefact kind (settings.ARTEFACTS) -> what serves it
DETECTORS = {"trt_end2end": "TensorRT plan (Track C)", "end2end": "end2end ONNX, ONNX Runtime"}


def trt_end2end_name(model_name: str) -> str:
    return model_dir_name(model_name, "trt_end2end")


def detector_name(model_name: str, detector: str) -> str:
    """The detector step of ``model_name``'s ensemble: ``<name>_trt_end2end`` or ``<name>_end2end``."""
    if detector not in DETECTORS:
        choices = "; ".join(f"{kind} = <name>_{kind}, the {what}" for kind, what in DETECTORS.items())
        raise EnsembleError(f"ENSEMBLE_DETECTOR={detector!r} is not one of {', '.join(DETECTORS)} ({choices})")
    return model_dir_name(model_name, detector)


# --------------------------------------------------------------------------------------------------
# The DALI model
# --------------------------------------------------------------------------------------------------
IMAGES_TYPES = {"float32": mc.TYPE_FP32, "uint8": mc.TYPE_UINT8}  # INPUT_DTYPE -> the DALI model's images


def preprocess_config(name: str, imgsz: int, max_batch: int, queue_delay_us: int,
                      num_threads: int | None = None, input_dtype: str = "float32") -> mc.ModelConfig:
    """``backend: "dali"``: ``encoded`` uint8 [-1] -> ``images`` fp32 (INPUT_DTYPE=uint8: uint8) [3, S, S],
    ``letterbox`` fp64 [5]."""
    if max_batch <= 0:
        raise EnsembleError(f"max batch must be > 0, got {max_batch}")
    config = mc.ModelConfig(name=name, backend=DALI_BACKEND, max_batch_size=max_batch)
    # Every JPEG has its own byte length: without ragged batching the dynamic batcher merges only
    # requests of equal shape, i.e. never, and the pipeline runs at batch 1 (dali_backend README,
    # "Ragged batching": DALI takes ragged batches; the backend server core supports them per input).
    config.input.add(name=INPUT_NAME, data_type=mc.TYPE_UINT8, dims=[-1], allow_ragged_batch=True)
    if input_dtype not in IMAGES_TYPES:
        raise EnsembleError(f"INPUT_DTYPE={input_dtype} is not one of {', '.join(IMAGES_TYPES)}")
    config.output.add(name=OUTPUT_IMAGES, data_type=IMAGES_TYPES[input_dtype], dims=[3, int(imgsz), int(imgsz)])
    config.output.add(name=OUTPUT_LETTERBOX, data_type=mc.TYPE_FP64, dims=[LETTERBOX_LEN])
    # One instance: dali_backend warns that count > 1 multiplies memory; its own thread pool does the work.
    config.instance_group.add(count=1, kind=mc.ModelInstanceGroup.KIND_GPU)
    config.dynamic_batching.preferred_batch_size.extend(tc.preferred_batch_sizes(max_batch))
    config.dynamic_batching.max_queue_delay_microseconds = queue_delay_us
    config.parameters["num_threads"].string_value = str(num_threads or dali_threads())
    config.version_policy.latest.num_versions = 1
    return config


def write_preprocess_model(models_dir: str | Path, imgsz: int, max_batch: int, queue_delay_us: int,
                           device: str = "gpu", num_threads: int | None = None, input_dtype: str = "float32") -> Path:
    """Write ``1/dali.py`` then ``config.pbtxt`` (each atomically); return the model directory."""
    try:
        from yolo_triton.dali_pipeline import autoserialize_source  # the pipeline module imports DALI
    except ImportError as err:
        raise EnsembleError(f"cannot import DALI ({err}): install requirements.txt (nvidia-dali-cuda130)") from None

    num_threads = num_threads or dali_threads()
    name = preprocess_model_name(imgsz)
    try:  # everything is checked before anything is written
        source = autoserialize_source(imgsz, max_batch, num_threads, device, input_dtype)
    except ValueError as err:  # the pipeline module may import nothing but DALI, so it raises ValueError
        raise EnsembleError(str(err)) from None
    config = preprocess_config(name, imgsz, max_batch, queue_delay_us, num_threads, input_dtype)
    model_dir = Path(models_dir) / name
    (model_dir / VERSION_DIR).mkdir(parents=True, exist_ok=True)
    stale = model_dir / VERSION_DIR / "model.dali"
    if stale.exists():  # it would win over dali.py (dali_backend tries model.dali first)
        stale.unlink()
        LOG.info("removed %s: the model is autoserialized from %s", stale, DALI_FILENAME)
    tc.write_atomic(model_dir / VERSION_DIR / DALI_FILENAME, source)
    tc.write_model_config(model_dir, config)
    LOG.info("wrote %s: backend dali, imgsz %d, max_batch_size %d, device %s, images %s", model_dir, imgsz, max_batch,
             device, input_dtype)
    remove_stale_preprocess_models(Path(models_dir), imgsz)
    return model_dir


def remove_stale_preprocess_models(models_dir: Path, imgsz: int) -> list[Path]:
    """DALI models of this pipeline for another IMGSZ: removed when no ensemble uses them, else
    reported (a warning naming the ensembles that still do). Returns the removed folders."""
    prefix = preprocess_model_name(0)[:-1]
    current = preprocess_model_name(imgsz)
    users: dict[str, list[str]] = {}
    for config_path in models_dir.glob("*/config.pbtxt"):
        try:
            config = tc.parse_config(config_path)
        except Exception:  # noqa: BLE001 - not ours to judge here; Triton will report it
            continue
        for step in config.ensemble_scheduling.step:
            users.setdefault(step.model_name, []).append(config.name)
    removed = []
    for folder in sorted(models_dir.glob(f"{prefix}*")):
        if folder.name == current or not folder.name[len(prefix):].isdigit() or not folder.is_dir():
            continue
        if users.get(folder.name):
            LOG.warning("%s (another IMGSZ) is still used by %s: rebuild those (make dali NAMES=...) and it is "
                        "removed next time", folder, ", ".join(sorted(users[folder.name])))
            continue
        shutil.rmtree(folder)
        LOG.info("removed %s: a DALI model for another IMGSZ that no ensemble uses", folder)
        removed.append(folder)
    return removed


# --------------------------------------------------------------------------------------------------
# The ensemble
# --------------------------------------------------------------------------------------------------
def _one(tensors, what: str, model: str, pick) -> mc.ModelInput | mc.ModelOutput:
    found = [t for t in tensors if pick(t)]
    if len(found) != 1:
        names = [t.name for t in tensors]
        raise EnsembleError(f"{model}: expected exactly one {what}, found {len(found)} among {names}")
    return found[0]


def _describe(t) -> str:
    return f"{t.name} {mc.DataType.Name(t.data_type)} {list(t.dims)}"


def ensemble_config(name: str, preprocess: mc.ModelConfig, detector: mc.ModelConfig) -> mc.ModelConfig:
    """``platform: "ensemble"`` of ``preprocess`` (DALI) then ``detector`` (an end2end model: the TensorRT
    plan or the ONNX), from their configs; ``max_batch_size`` is the smaller of the two steps'."""
    for step in (preprocess, detector):
        if step.max_batch_size <= 0:
            raise EnsembleError(f"{step.name}: max_batch_size {step.max_batch_size}; the ensemble needs batching steps")
    encoded = _one(preprocess.input, "encoded-bytes input", preprocess.name, lambda t: True)
    images = _one(preprocess.output, f"output {OUTPUT_IMAGES!r}", preprocess.name, lambda t: t.name == OUTPUT_IMAGES)
    letterbox = _one(preprocess.output, f"output {OUTPUT_LETTERBOX!r}", preprocess.name,
                     lambda t: t.name == OUTPUT_LETTERBOX)
    det_in = _one(detector.input, "image input", detector.name, lambda t: True)
    if (det_in.data_type, list(det_in.dims)) != (images.data_type, list(images.dims)):
        raise EnsembleError(
            f"{preprocess.name} produces {_describe(images)} but {detector.name} expects {_describe(det_in)}: "
            f"build both for the same IMGSZ and INPUT_DTYPE (and FP32 outputs)")
    taken = {o.name for o in detector.output}
    if OUTPUT_LETTERBOX in taken:
        raise EnsembleError(f"{detector.name} already has an output named {OUTPUT_LETTERBOX!r}")

    max_batch = min(preprocess.max_batch_size, detector.max_batch_size)
    config = mc.ModelConfig(name=name, platform=tc.ENSEMBLE_PLATFORM, max_batch_size=max_batch)
    config.input.add(name=ENSEMBLE_INPUT, data_type=encoded.data_type, dims=encoded.dims)
    for out in detector.output:
        config.output.add(name=out.name, data_type=out.data_type, dims=out.dims)
    config.output.add(name=letterbox.name, data_type=letterbox.data_type, dims=letterbox.dims)

    pre = config.ensemble_scheduling.step.add(model_name=preprocess.name, model_version=-1)
    pre.input_map[encoded.name] = ENSEMBLE_INPUT
    pre.output_map[images.name] = "preprocessed"  # internal tensor between the steps
    pre.output_map[letterbox.name] = letterbox.name
    det = config.ensemble_scheduling.step.add(model_name=detector.name, model_version=-1)
    det.input_map[det_in.name] = "preprocessed"
    for out in detector.output:
        det.output_map[out.name] = out.name
    if TASK_PARAMETER in detector.parameters:  # the client reads the task (segment, pose, obb) from it
        config.parameters[TASK_PARAMETER].string_value = detector.parameters[TASK_PARAMETER].string_value
    return config


def write_ensemble(models_dir: str | Path, model_name: str, imgsz: int, detector: str | None = None) -> Path:
    """Read the two step configs under ``models_dir``, write ``<model_name>_ensemble/config.pbtxt`` and ``1/``.

    ``detector``: the detector step's kind, one of :data:`DETECTORS` (None: ENSEMBLE_DETECTOR's default)."""
    models_dir = Path(models_dir)
    detector = detector or ensemble_detector()
    paths = [models_dir / preprocess_model_name(imgsz) / CONFIG_FILE,
             models_dir / detector_name(model_name, detector) / CONFIG_FILE]
    for path in paths:
        if not path.is_file():
            raise EnsembleError(f"{path} not found: build it first (make {path})")
    preprocess, step = (tc.parse_config(p) for p in paths)
    name = ensemble_name(model_name)
    config = ensemble_config(name, preprocess, step)
    model_dir = models_dir / name
    (model_dir / VERSION_DIR).mkdir(parents=True, exist_ok=True)  # Triton wants a version dir, even empty
    path = tc.write_model_config(model_dir, config)
    LOG.info("wrote %s: %s -> %s (ENSEMBLE_DETECTOR=%s: %s), max_batch_size %d (steps %d, %d)", path,
             preprocess.name, step.name, detector, DETECTORS[detector], config.max_batch_size,
             preprocess.max_batch_size, step.max_batch_size)
    if step.optimization.execution_accelerators.gpu_execution_accelerator:
        LOG.warning("%s runs through ONNX Runtime's TensorRT execution provider (NMS=efficient): the server needs "
                    "TensorRT after all; without it build the detector with NMS=ultralytics, onnx or free", step.name)
    remove_stale_preprocess_models(models_dir, imgsz)
    for t in config.input:
        LOG.info("  input  %s", _describe(t))
    for t in config.output:
        LOG.info("  output %s", _describe(t))
    return path


# --------------------------------------------------------------------------------------------------
# Client side
# --------------------------------------------------------------------------------------------------
def letterbox_infos(letterbox: np.ndarray) -> list[LetterboxInfo]:
    """The ensemble's ``letterbox [B, 5]`` (ratio, pad_x, pad_y, orig_h, orig_w) -> one LetterboxInfo per image."""
    rows = np.asarray(letterbox, dtype=np.float64)
    if rows.ndim == 1:
        rows = rows[None]
    if rows.ndim != 2 or rows.shape[1] != LETTERBOX_LEN:
        raise ValueError(f"expected letterbox [B, {LETTERBOX_LEN}], got shape {rows.shape}")
    return [LetterboxInfo(float(r[0]), int(r[1]), int(r[2]), int(r[3]), int(r[4])) for r in rows]
