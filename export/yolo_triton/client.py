"""Triton client library: send real images to any track's model, get detections (``scripts/triton_client.py``).

The client asks the server for the model's configuration and works out the track from it:

* output ``output0`` (Tracks A and B): letterbox here, NMS here (``yolo_triton.postprocess``,
  EfficientNMS semantics by default so the result matches the end2end engines);
* outputs ``num_dets``/``det_boxes``/``det_scores``/``det_classes`` with an ``images [3, S, S]`` input
  (end2end, Track C): letterbox here, NMS on the server;
* a UINT8 ``[-1]`` input (Track D ensembles, ``IMAGE_BYTES``): the encoded file is sent as is, the
  server decodes and letterboxes; the end2end outputs come back.

An ``images [3, S, S]`` input is FP32 (the client sends ``/255`` values) or, for models exported with
``INPUT_DTYPE=uint8``, UINT8 (the letterboxed pixels as they are; the graph divides): the rank tells it
from Track D's encoded bytes, the config's data type picks what is sent (``postprocess.to_model_input``).

Boxes are mapped back to the original image in every case. Class names come from ``labels.txt`` in
the model's directory of the repository the server serves (``--model-repository``, default
``models``: the client usually runs beside ``docker compose``); without it, class ids are printed.

    python scripts/triton_client.py --model yolov11_small_trt_end2end --images img.jpg --draw out.png
    python scripts/triton_client.py --protocol grpc --model yolov11_small --images photos/
"""
from __future__ import annotations

import contextvars
import logging
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
from google.protobuf import json_format
from tritonclient.grpc import model_config_pb2 as mc

from yolo_triton import postprocess as pp
from yolo_triton.files import atomic_path
from yolo_triton.settings import END2END_OUTPUTS, LABELS_FILE, TRACK_A_OUTPUT, defaults

LOG = logging.getLogger("triton_client")

PROTOCOLS = ("http", "grpc")
DEFAULT_PORTS = {"http": 8000, "grpc": 8001}
LETTERBOX_OUTPUT = "letterbox"  # Track D ensembles: ratio, pad_x, pad_y, orig_h, orig_w
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
KIND_OUTPUT0, KIND_END2END, KIND_ENCODED = "output0", "end2end", "encoded"
IMAGE_DTYPES = ("FP32", "UINT8")  # letterboxed [3, S, S] inputs: 0..1 floats, or pixels (INPUT_DTYPE=uint8)
LABELS_FILENAME = LABELS_FILE


class ClientError(Exception):
    """A failure with a one-line cause and the way forward."""


@dataclass(frozen=True)
class ServedModel:
    """What the client needs to know about a served model, read from the server's config."""

    name: str
    kind: str  # KIND_OUTPUT0, KIND_END2END or KIND_ENCODED
    input_name: str
    input_dtype: str  # Triton wire type: "FP32", "UINT8"
    imgsz: int | None  # network input size (None for an ensemble whose steps are not visible)
    max_batch: int  # 0 = the model takes no batch dimension
    outputs: tuple[str, ...]
    steps: tuple[str, ...] = field(default=())  # composing models of an ensemble
    version: str = ""  # the model version requests go to ("" = the server's choice: the newest it serves)


# --------------------------------------------------------------------------------------------------
# Connection and model configuration
# --------------------------------------------------------------------------------------------------
def default_url(protocol: str) -> str:
    return f"127.0.0.1:{DEFAULT_PORTS[protocol]}"


def connect(url: str, protocol: str):
    """A ``tritonclient`` client for ``url`` (``host:port``, no scheme). Close it when done."""
    if protocol == "http":
        import tritonclient.http as httpclient

        return httpclient.InferenceServerClient(url=url)
    if protocol == "grpc":
        import tritonclient.grpc as grpcclient

        return grpcclient.InferenceServerClient(url=url)
    raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")


def _protocol_module(client):
    if type(client).__module__.startswith("tritonclient.grpc"):
        import tritonclient.grpc as module
    else:
        import tritonclient.http as module
    return module


def get_config(client, model: str, model_version: str = "") -> mc.ModelConfig:
    """The model's configuration as Triton's ModelConfig message, over HTTP or gRPC."""
    # (the version only when one is asked for: clients and test doubles without the argument keep working)
    response = client.get_model_config(model, str(model_version)) if model_version else client.get_model_config(model)
    if isinstance(response, dict):  # HTTP: the config as JSON
        return json_format.ParseDict(response, mc.ModelConfig(), ignore_unknown_fields=True)
    return response.config  # gRPC: ModelConfigResponse


def _wire_dtype(data_type: int) -> str:
    return mc.DataType.Name(data_type).removeprefix("TYPE_").replace("STRING", "BYTES")


def _image_size(dims: Sequence[int], max_batch: int) -> int | None:
    """``S`` from the dims of an ``images`` input: ``[3, S, S]`` (or ``[B, 3, S, S]`` when unbatched)."""
    dims = list(dims)[0 if max_batch > 0 else 1:]
    if len(dims) == 3 and dims[0] == 3 and dims[1] == dims[2] and dims[1] > 0:
        return int(dims[1])
    return None


def describe_model(client, model: str, imgsz: int | None = None, model_version: str | int = "") -> ServedModel:
    """Read ``model``'s config from the server and decide which track it is.

    ``imgsz`` is only used for a model that takes encoded images and whose steps do not reveal the
    detector's input size (an ensemble's steps do). ``model_version`` (e.g. ``2``) sends every request
    to that version folder (A/B); empty: the newest version the server serves.
    """
    model_version = str(model_version or "")
    config = get_config(client, model, model_version)
    if len(config.input) != 1:
        raise ClientError(f"model '{model}' has {len(config.input)} inputs; a YOLO detector has one")
    (tensor,) = config.input
    outputs = tuple(o.name for o in config.output)
    dtype = _wire_dtype(tensor.data_type)
    steps = tuple(step.model_name for step in config.ensemble_scheduling.step)
    image_size = _image_size(tensor.dims, config.max_batch_size)
    if dtype in IMAGE_DTYPES and image_size is not None:  # letterboxed pixels: FP32 0..1, or UINT8 (INPUT_DTYPE)
        imgsz = image_size
        if set(END2END_OUTPUTS) <= set(outputs):
            kind = KIND_END2END
        elif TRACK_A_OUTPUT in outputs:
            kind = KIND_OUTPUT0
        else:
            raise ClientError(f"model '{model}' has outputs {list(outputs)}: neither '{TRACK_A_OUTPUT}' "
                              f"(Tracks A/B) nor {list(END2END_OUTPUTS)} (end2end)")
    elif dtype == "UINT8" and len(tensor.dims) == (1 if config.max_batch_size > 0 else 2):  # encoded bytes [-1]
        if not set(END2END_OUTPUTS) <= set(outputs):
            raise ClientError(f"model '{model}' takes encoded images but has outputs {list(outputs)}, "
                              f"expected {list(END2END_OUTPUTS)}")
        kind, imgsz = KIND_ENCODED, _ensemble_image_size(client, steps) or imgsz
    elif dtype in IMAGE_DTYPES:
        raise ClientError(f"input '{tensor.name}' of '{model}' has dims {list(tensor.dims)}; "
                          "expected [3, S, S] (batch implicit), or [-1] encoded bytes (UINT8)")
    else:
        raise ClientError(f"input '{tensor.name}' of '{model}' is {dtype}; expected FP32 or UINT8 images, "
                          "or UINT8 bytes")
    return ServedModel(model, kind, tensor.name, dtype, imgsz, int(config.max_batch_size), outputs, steps,
                       model_version)


def _ensemble_image_size(client, steps: Sequence[str]) -> int | None:
    """The ``images`` size of the detector inside an ensemble (the step with an FP32/UINT8 [3, S, S] input)."""
    for step in steps:
        try:
            config = get_config(client, step)
        except Exception:  # a step the server does not expose: try the next one
            continue
        for tensor in config.input:
            size = _image_size(tensor.dims, config.max_batch_size)
            if size is not None and _wire_dtype(tensor.data_type) in IMAGE_DTYPES:
                return size
    return None


def load_model(client, model: str) -> None:
    """Ask the server to (re)load ``model`` from its repository (needs --model-control-mode=explicit)."""
    client.load_model(model)
    if not client.is_model_ready(model):
        raise ClientError(f"model '{model}' did not become ready after loading; see the server's log")


def load_labels(repository: str | Path | None, served: ServedModel) -> list[str] | None:
    """Class names from ``<repository>/<model>/labels.txt`` (for an ensemble also its steps' dirs)."""
    if repository is None:
        return None
    for name in (served.name, *served.steps):
        path = Path(repository) / name / LABELS_FILENAME
        if path.is_file():
            return [line.strip() for line in path.read_text().splitlines() if line.strip()]
    return None


# --------------------------------------------------------------------------------------------------
# Inference
# --------------------------------------------------------------------------------------------------
# Round trips of the current context (thread), for measuring: see round_trips().
_ROUND_TRIPS: contextvars.ContextVar[list | None] = contextvars.ContextVar("yolo_triton_round_trips", default=None)


@contextmanager
def round_trips():
    """Collect ``(start, end)`` ``time.perf_counter()`` stamps of every server round trip that
    ``infer`` makes in this thread while the block runs (the ``client.infer`` call: request out, response
    in). Everything else of an ``infer`` call is client work: before the first round trip the
    letterbox (pre), after it the decoding, NMS and mapping back (post). Used by yolo_triton.bench_serving.

        with round_trips() as stamps:
            detections = infer(client, served, images)
    """
    stamps: list[tuple[float, float]] = []
    token = _ROUND_TRIPS.set(stamps)
    try:
        yield stamps
    finally:
        _ROUND_TRIPS.reset(token)


def _request(client, served: ServedModel, batch: np.ndarray, output_names: Sequence[str]) -> dict[str, np.ndarray]:
    module = _protocol_module(client)
    data = batch if served.max_batch > 0 else batch[0]
    infer_input = module.InferInput(served.input_name, list(data.shape), served.input_dtype)
    infer_input.set_data_from_numpy(data)
    outputs = [module.InferRequestedOutput(name) for name in output_names]
    version = {"model_version": served.version} if served.version else {}
    stamps, start = _ROUND_TRIPS.get(), time.perf_counter()
    result = client.infer(served.name, [infer_input], outputs=outputs, **version)
    if stamps is not None:
        stamps.append((start, time.perf_counter()))
    arrays = {name: result.as_numpy(name) for name in output_names}
    if served.max_batch <= 0:
        arrays = {name: value[None] for name, value in arrays.items()}
    return arrays


def _chunks(count: int, max_batch: int) -> list[slice]:
    step = max(max_batch, 1)
    return [slice(i, min(i + step, count)) for i in range(0, count, step)]


def infer(
    client,
    model: str | ServedModel,
    images: Sequence[np.ndarray],
    conf: float | None = None,
    iou: float | None = None,
    topk: int | None = None,
    mode: str | None = None,
    agnostic: bool | None = None,
    encoded: Sequence[bytes] | None = None,
    model_version: str | int = "",
) -> list[pp.Detections]:
    """Detections per image (original-image pixels) for BGR ``images`` from any track's ``model``.

    ``conf``/``iou``/``topk``/``mode``/``agnostic`` default to export/defaults.mk and only act on Track
    A/B models (end2end models apply the values they were built with). ``encoded`` gives the files'
    bytes for models that take encoded images (read from disk by the CLI; re-encoded as PNG if absent).
    ``model_version`` picks a version folder when ``model`` is a name (a ServedModel carries its own).
    """
    served = model if isinstance(model, ServedModel) else describe_model(client, model, model_version=model_version)
    if not images:
        return []
    settings = defaults()
    conf = float(settings["CONF"]) if conf is None else conf
    iou = float(settings["IOU"]) if iou is None else iou
    topk = int(settings["TOPK"]) if topk is None else topk
    agnostic = settings["AGNOSTIC"] == "1" if agnostic is None else agnostic
    mode = default_mode() if mode is None else mode

    if served.kind == KIND_ENCODED:
        return _infer_encoded(client, served, images, encoded)
    results: list[pp.Detections] = []
    for part in _chunks(len(images), served.max_batch):
        batch, infos = pp.letterbox_batch(list(images[part]), served.imgsz, served.input_dtype)
        if served.kind == KIND_OUTPUT0:
            out = _request(client, served, batch, [TRACK_A_OUTPUT])[TRACK_A_OUTPUT]
            if out.ndim == 3 and out.shape[2] == 6:  # an NMS-free export: [B, max_det, 6], no NMS
                results += pp.postprocess_one2one(out, infos, conf)
            else:
                results += pp.postprocess_track_a(out, infos, conf, iou, topk, mode, agnostic)
        else:
            out = _request(client, served, batch, END2END_OUTPUTS)
            results += pp.postprocess_end2end(*(out[name] for name in END2END_OUTPUTS), infos)
    return results


def _infer_encoded(client, served: ServedModel, images, encoded) -> list[pp.Detections]:
    """One request per image (encoded files differ in length). The letterbox geometry comes from the
    ensemble's ``letterbox`` output when it has one (Track D), else from the image size and ``imgsz``."""
    if LETTERBOX_OUTPUT in served.outputs:
        from yolo_triton.ensemble import letterbox_infos

        results = []
        for index, image in enumerate(images):
            data = encoded[index] if encoded is not None else cv2.imencode(".png", image)[1].tobytes()
            out = _request(client, served, np.frombuffer(data, dtype=np.uint8)[None],
                           [*END2END_OUTPUTS, LETTERBOX_OUTPUT])
            results += pp.postprocess_end2end(*(out[name] for name in END2END_OUTPUTS),
                                              letterbox_infos(out[LETTERBOX_OUTPUT]))
        return results
    if served.imgsz is None:
        raise ClientError(f"cannot tell the network input size of '{served.name}' (no ensemble step with an "
                          "FP32 [3, S, S] input is visible); pass --imgsz S to map boxes back")
    results = []
    for index, image in enumerate(images):
        data = encoded[index] if encoded is not None else cv2.imencode(".png", image)[1].tobytes()
        payload = np.frombuffer(data, dtype=np.uint8)[None]
        out = _request(client, served, payload, END2END_OUTPUTS)
        info, _ = pp.letterbox_params(image.shape[0], image.shape[1], served.imgsz)
        results += pp.postprocess_end2end(*(out[name] for name in END2END_OUTPUTS), [info])
    return results


def default_mode() -> str:
    """Client NMS semantics: the end2end graphs' (NMS in defaults.mk) so both tracks agree."""
    nms = defaults().get("NMS", "efficient")
    return nms if nms in pp.MODES else "efficient"


# --------------------------------------------------------------------------------------------------
# Images in, text and pictures out
# --------------------------------------------------------------------------------------------------
def image_paths(items: Sequence[str | Path]) -> list[Path]:
    """Files as given, directories expanded to their images (sorted)."""
    paths: list[Path] = []
    for item in map(Path, items):
        if item.is_dir():
            found = sorted(p for p in item.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise ClientError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in directory {item}")
            paths += found
        elif item.is_file():
            paths.append(item)
        else:
            raise ClientError(f"image not found: {item}")
    return paths


def read_image(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ClientError(f"cannot decode {path} as an image")
    return image


def _colour(class_id: int) -> tuple[int, int, int]:
    rng = np.random.default_rng(class_id)
    return tuple(int(v) for v in rng.integers(64, 256, size=3))


def draw(image_bgr: np.ndarray, detections: pp.Detections, names: Sequence[str] | None = None) -> np.ndarray:
    """A copy of the image with a box and 'label score' per detection."""
    canvas = image_bgr.copy()
    thickness = max(1, round(sum(canvas.shape[:2]) / 600))
    for row in detections.to_list(names):
        x1, y1, x2, y2 = (int(round(v)) for v in row["box"])
        colour = _colour(row["class_id"])
        cv2.rectangle(canvas, (x1, y1), (x2, y2), colour, thickness)
        text = f"{row.get('label', row['class_id'])} {row['score']:.2f}"
        cv2.putText(canvas, text, (x1, max(y1 - 4, 10)), cv2.FONT_HERSHEY_SIMPLEX, 0.4 * thickness, colour,
                    max(1, thickness // 2), cv2.LINE_AA)
    return canvas


def draw_paths(out: Path, images: Sequence[Path]) -> list[Path]:
    """``out`` for one image; ``<out stem>_<image stem><suffix>`` beside it for several."""
    if len(images) == 1:
        return [out]
    return [out.with_name(f"{out.stem}_{image.stem}{out.suffix}") for image in images]


def write_png(path: Path, image: np.ndarray) -> None:
    with atomic_path(path, suffix=".png") as tmp:
        if not cv2.imwrite(str(tmp), image):
            raise ClientError(f"cannot write {path}")


def _first_line(text: str) -> str:
    text = str(text).strip()
    return text.splitlines()[0] if text else ""


def explain_failure(err: BaseException, url: str, model: str) -> str | None:
    """One line saying what failed: the connection (is the server up?) or the server's own answer (an
    unknown model, a refused load, a bad request). None when ``err`` is neither: a bug, to be raised."""
    from tritonclient.utils import InferenceServerException

    unreachable = (f"cannot reach Triton at {url} ({{}}); is the server up? "
                   f"curl -s http://{url}/v2/health/ready (HTTP port); docker compose logs triton-api")
    if isinstance(err, InferenceServerException):
        text = _first_line(err.message() or str(err))
        if "UNAVAILABLE" in str(err.status()) or "failed to connect" in text.lower():
            return unreachable.format(text)
        return f"Triton at {url} refused the request for model '{model}': {text}"
    if isinstance(err, OSError):  # ConnectionRefusedError, a timeout, a reset, DNS (socket.gaierror)
        return unreachable.format(f"{type(err).__name__}: {_first_line(err) or err.errno}")
    return None


def sample_images_dir() -> str:
    """ultralytics' sample images (bus.jpg, zidane.jpg): the default input."""
    from ultralytics.utils import ASSETS

    return str(ASSETS)
