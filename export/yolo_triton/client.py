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

Tensors travel in the request and the response by default. A client on the server's machine can pass
them through shared memory instead (:class:`SharedMemory`, ``--shared-memory system|cuda``): regions
sized from the model's config, registered with the server, unregistered and removed on close.

    python scripts/triton_client.py --model yolov11_small_trt_end2end --images img.jpg --draw out.png
    python scripts/triton_client.py --protocol grpc --model yolov11_small --images photos/
    python scripts/triton_client.py --model yolov11_small --shared-memory system   # same machine as Triton
"""
from __future__ import annotations

import contextvars
import json
import logging
import math
import os
import time
import uuid
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
from yolo_triton.settings import (
    END2END_OUTPUTS,
    END2END_TASK_OUTPUTS,
    LABELS_FILE,
    PROTOS_OUTPUT,
    TASK_PARAMETER,
    TRACK_A_OUTPUT,
    admin_headers,
    defaults,
)
from yolo_triton.task_base import NmsParams, Result, TaskShape
from yolo_triton.tasks import for_task

LOG = logging.getLogger("triton_client")

PROTOCOLS = ("http", "grpc")
DEFAULT_PORTS = {"http": 8000, "grpc": 8001}
LETTERBOX_OUTPUT = "letterbox"  # Track D ensembles: ratio, pad_x, pad_y, orig_h, orig_w
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
KIND_OUTPUT0, KIND_END2END, KIND_ENCODED = "output0", "end2end", "encoded"
IMAGE_DTYPES = ("FP32", "UINT8")  # letterboxed [3, S, S] inputs: 0..1 floats, or pixels (INPUT_DTYPE=uint8)
LABELS_FILENAME = LABELS_FILE
SHARED_MEMORY_MODES = ("none", "system", "cuda")
SHM_PREFIX = "yolo_triton"  # region names (and /dev/shm file names): yolo_triton_<pid>_<token>_<tensor>
UNREGISTER_PATIENCE_S = 10.0  # how long to ask again while the server still uses a region
ENCODED_REGION_BYTES = 1 << 20  # first size of the input region of an encoded-bytes model (grows on demand)


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
    input_dims: tuple[int, ...] = field(default=())  # without the batch dimension; -1 = variable
    output_specs: tuple[tuple[str, str, tuple[int, ...]], ...] = field(default=())  # (name, wire type, dims)
    shape: TaskShape = field(default=TaskShape("detect", 0))  # the task and its head shapes (served_task)
    one2one: bool | None = None  # output0 holds NMS-free rows (None: unknown, told by the output's shape)

    @property
    def task(self) -> str:
        return self.shape.task


# --------------------------------------------------------------------------------------------------
# Connection and model configuration
# --------------------------------------------------------------------------------------------------
def default_url(protocol: str) -> str:
    return f"127.0.0.1:{DEFAULT_PORTS[protocol]}"


def connect(url: str, protocol: str, timeout: float | None = None):
    """A ``tritonclient`` client for ``url`` (``host:port``, no scheme). Close it when done.

    ``timeout`` (seconds; None: tritonclient's defaults) bounds an HTTP client's connection and every
    read/write; a gRPC client takes its deadline per call (``client_timeout``: :class:`ResilientClient`
    passes it)."""
    if protocol == "http":
        import tritonclient.http as httpclient

        if timeout is None:
            return httpclient.InferenceServerClient(url=url)
        return httpclient.InferenceServerClient(url=url, connection_timeout=timeout, network_timeout=timeout)
    if protocol == "grpc":
        import tritonclient.grpc as grpcclient

        return grpcclient.InferenceServerClient(url=url)
    raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")


# --------------------------------------------------------------------------------------------------
# Surviving a server that goes away: timeouts, retries, readiness-gated reconnect
# --------------------------------------------------------------------------------------------------
# Triton 2.51 (r24.10) refuses a call to an API its --http-restricted-api / --grpc-restricted-protocol
# option restricts, without the agreed header: HTTP 403 "This API is restricted, expecting header '<key>'",
# gRPC UNAVAILABLE "This protocol is restricted, expecting header '<key>'" (strings of the tritonserver
# binary, seen on the real server in tests/test_client_retry.py). That UNAVAILABLE is an answer, not a
# server that is down: never retried.
RESTRICTED_MARKER = "is restricted, expecting header"
CAUSE_CONNECTION, CAUSE_UNAVAILABLE = "connection", "unavailable"  # the two retried causes


@dataclass(frozen=True)
class RetryPolicy:
    """How a :class:`ResilientClient` waits out a server that is down or restarting (defaults: the CLI's).

    A call that fails with a connection error (refused, reset, closed mid-answer) or UNAVAILABLE (gRPC
    status; HTTP 503) is sent again, at most ``retries`` times, each time only once the server answers
    ready again (``/v2/health/ready``'s check: the call's model ready, or the server ready): polled after
    waits of ``backoff_s`` doubling up to ``backoff_max_s``, each scaled by a random factor in
    ``[1 - jitter, 1]`` so that many clients do not knock in step. ``budget_s`` bounds the whole wait from
    the call's first failure; past it, or past ``retries``, :class:`ServerDown`. Anything else (a 4xx,
    INVALID_ARG, a restricted API, a timeout) is raised at once. ``timeout_s`` bounds each attempt."""

    timeout_s: float = 30.0
    retries: int = 5
    backoff_s: float = 0.5
    backoff_max_s: float = 8.0
    budget_s: float = 60.0
    jitter: float = 0.5

    def __post_init__(self):
        if self.timeout_s <= 0 or self.retries < 0 or self.backoff_s <= 0 or self.backoff_max_s < self.backoff_s \
                or self.budget_s < 0 or not 0.0 <= self.jitter <= 1.0:
            raise ValueError(f"invalid retry policy {self}: need timeout > 0, retries >= 0, 0 < backoff <= "
                             "backoff max, budget >= 0, 0 <= jitter <= 1")

    def wait(self, attempt: int, rng) -> float:
        """The wait before readiness poll ``attempt`` (0-based): exponential, capped, jittered."""
        base = min(self.backoff_s * (2 ** attempt), self.backoff_max_s)
        return base * (1.0 - self.jitter * float(rng.random()))


NO_RETRY = RetryPolicy(retries=0, budget_s=0.0)


class ServerDown(ClientError):
    """The server stayed unreachable or unavailable past the retry budget."""


def failure_cause(err: BaseException) -> str:
    """What kind of failure ``err`` is: ``connection`` / ``unavailable`` (retried), ``timeout``,
    ``restricted``, ``invalid`` (the server refused the request: 4xx, INVALID_ARG, NOT_FOUND...) or
    ``other``."""
    import http.client

    from tritonclient.utils import InferenceServerException

    if isinstance(err, InferenceServerException):
        text, status = str(err.message() or err), str(err.status() or "")
        if RESTRICTED_MARKER in text:
            return "restricted"
        if status in ("StatusCode.UNAVAILABLE", "503"):
            return CAUSE_UNAVAILABLE
        if status == "StatusCode.DEADLINE_EXCEEDED" or "Deadline Exceeded" in text:
            return "timeout"
        if status.startswith("4") or status in ("StatusCode.INVALID_ARGUMENT", "StatusCode.NOT_FOUND",
                                                "StatusCode.OUT_OF_RANGE", "StatusCode.FAILED_PRECONDITION",
                                                "StatusCode.ALREADY_EXISTS", "StatusCode.UNIMPLEMENTED"):
            return "invalid"
        return "other"
    if isinstance(err, TimeoutError):  # socket.timeout too (an HTTP read past timeout_s)
        return "timeout"
    if isinstance(err, (OSError, http.client.HTTPException)):  # refused, reset, closed mid-answer
        return CAUSE_CONNECTION
    try:
        import gevent

        if isinstance(err, gevent.Timeout):
            return "timeout"
    except ImportError:
        pass
    return "other"


def retryable(err: BaseException) -> bool:
    return failure_cause(err) in (CAUSE_CONNECTION, CAUSE_UNAVAILABLE)


_MODEL_CALLS = ("infer", "get_model_config", "get_model_metadata", "get_inference_statistics", "load_model")


class ResilientClient:
    """A ``tritonclient`` client (HTTP or gRPC) whose calls survive a server restart (see RetryPolicy).

    Every method of the wrapped client is reached through this one (``client.infer(...)``,
    ``describe_model(client, ...)``...). On a retried failure it drops the connection, waits with backoff
    and jitter until the server (or the call's model, in its version when one is named) answers ready on
    a new connection, then sends the call again. ``stats`` counts attempts, retries and outages.

    Shared memory registrations do not survive a server restart: a request naming a region the restarted
    server does not know is refused (400), not retried."""

    def __init__(self, url: str, protocol: str, policy: RetryPolicy = RetryPolicy(), rng=None, sleep=time.sleep):
        self.url, self.protocol, self.policy = url, protocol, policy
        self._rng = rng if rng is not None else np.random.default_rng()
        self._sleep = sleep
        self.stats = {"calls": 0, "attempts": 0, "retries": 0, "outages": 0, "waited_s": 0.0}
        self._client = connect(url, protocol, policy.timeout_s)

    @property
    def raw(self):
        """The ``tritonclient`` client in use now (replaced after each reconnect)."""
        return self._client

    def close(self) -> None:
        try:
            self._client.close()
        except Exception:  # a connection already gone
            pass

    def __enter__(self) -> "ResilientClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __getattr__(self, name: str):
        attribute = getattr(self._client, name)
        if not callable(attribute):
            return attribute
        return lambda *args, **kwargs: self.call(name, *args, **kwargs)

    def _with_deadline(self, method, kwargs: dict) -> dict:
        if self.protocol == "grpc" and "client_timeout" not in kwargs:
            import inspect

            try:
                if "client_timeout" in inspect.signature(method).parameters:
                    return {**kwargs, "client_timeout": self.policy.timeout_s}
            except (TypeError, ValueError):
                pass
        return kwargs

    def call(self, name: str, *args, **kwargs):
        """``self.raw.<name>(*args, **kwargs)``, retried as the policy says."""
        self.stats["calls"] += 1
        model = (kwargs.get("model_name") or (args[0] if args else None)) if name in _MODEL_CALLS else None
        version = str(kwargs.get("model_version") or "")
        first_failure = None
        retries = 0
        while True:
            method = getattr(self._client, name)
            self.stats["attempts"] += 1
            try:
                return method(*args, **self._with_deadline(method, kwargs))
            except Exception as err:
                cause = failure_cause(err)
                if cause not in (CAUSE_CONNECTION, CAUSE_UNAVAILABLE):
                    raise
                now = time.monotonic()
                if first_failure is None:
                    first_failure = now
                    self.stats["outages"] += 1
                    LOG.debug("Triton at %s: %s (%s); waiting until it is ready again (at most %d retries "
                              "within %.0f s)", self.url, cause, _first_line(str(err)) or type(err).__name__,
                                self.policy.retries, self.policy.budget_s)
                deadline = first_failure + self.policy.budget_s
                if retries >= self.policy.retries or now >= deadline:
                    raise self._down(cause, err, retries, now - first_failure) from err
                if not self._wait_ready(model, version, deadline):
                    raise self._down(cause, err, retries, time.monotonic() - first_failure) from err
                retries += 1
                self.stats["retries"] += 1
                LOG.info("Triton at %s ready again after %.1f s: sending %s again (retry %d of %d)", self.url,
                         time.monotonic() - first_failure, name, retries, self.policy.retries)

    def _down(self, cause: str, err: BaseException, retries: int, elapsed: float) -> ServerDown:
        return ServerDown(f"cannot reach Triton at {self.url} ({cause}: {_first_line(str(err)) or type(err).__name__}):"
                          f" still down after {elapsed:.1f} s and {retries} retr{'y' if retries == 1 else 'ies'} "
                          f"(retry budget {self.policy.budget_s:g} s, at most {self.policy.retries} retries); is the "
                          "server up? curl -s http://<host>:8000/v2/health/ready; docker compose logs triton-api")

    def _reconnect(self) -> None:
        self.close()
        self._client = connect(self.url, self.protocol, self.policy.timeout_s)

    def _ready_now(self, model: str | None, version: str) -> bool:
        short = {"client_timeout": min(self.policy.timeout_s, 5.0)} if self.protocol == "grpc" else {}
        try:
            if model is not None:
                return bool(self._client.is_model_ready(model, version, **short))
            return bool(self._client.is_server_ready(**short))
        except Exception as err:
            if failure_cause(err) == "restricted":
                raise
            return False

    def _wait_ready(self, model: str | None, version: str, deadline: float) -> bool:
        """Poll readiness on fresh connections with backoff until ready (True) or ``deadline`` (False)."""
        attempt = 0
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            pause = min(self.policy.wait(attempt, self._rng), remaining)
            self._sleep(pause)
            self.stats["waited_s"] += pause
            attempt += 1
            self._reconnect()
            if self._ready_now(model, version):
                return True


def add_retry_arguments(parser) -> None:
    """The CLI flags of :class:`RetryPolicy` (its defaults), shared by the client scripts."""
    d = RetryPolicy()
    group = parser.add_argument_group("surviving a server restart (retries only on connection errors and "
                                      "UNAVAILABLE, each once the server answers ready again)")
    group.add_argument("--timeout", type=float, default=d.timeout_s, metavar="S",
                       help="seconds one request may take (default %(default)s)")
    group.add_argument("--retries", type=int, default=d.retries, metavar="N",
                       help="resends of a request after a connection error / UNAVAILABLE; 0: none "
                            "(default %(default)s)")
    group.add_argument("--retry-budget", type=float, default=d.budget_s, metavar="S",
                       help="give up (one line, exit 1) when the server is still down this many seconds after "
                            "the first failure (default %(default)s)")
    group.add_argument("--backoff", type=float, default=d.backoff_s, metavar="S",
                       help="first wait before polling readiness; doubles each time (default %(default)s)")
    group.add_argument("--backoff-max", type=float, default=d.backoff_max_s, metavar="S",
                       help="longest wait between readiness polls (default %(default)s)")
    group.add_argument("--jitter", type=float, default=d.jitter, metavar="F",
                       help="each wait is scaled by a random factor in [1-F, 1] (default %(default)s)")


def retry_policy(args) -> RetryPolicy:
    """The RetryPolicy of parsed :func:`add_retry_arguments` flags (ValueError names a bad value)."""
    return RetryPolicy(timeout_s=args.timeout, retries=args.retries, backoff_s=args.backoff,
                       backoff_max_s=args.backoff_max, budget_s=args.retry_budget, jitter=args.jitter)


def _protocol_module(client):
    if isinstance(client, ResilientClient):
        client = client.raw
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
    specs = tuple((o.name, _wire_dtype(o.data_type), tuple(int(d) for d in o.dims)) for o in config.output)
    shape, one2one = served_task(config, specs)
    if shape.task == "classify" and kind != KIND_OUTPUT0:
        raise ClientError(f"model '{model}' is a classifier with outputs {list(outputs)}; expected '{TRACK_A_OUTPUT}'")
    return ServedModel(model, kind, tensor.name, dtype, imgsz, int(config.max_batch_size), outputs, steps,
                       model_version, tuple(int(d) for d in tensor.dims), specs, shape, one2one)


def _parameter(config: mc.ModelConfig, key: str) -> dict | None:
    """A JSON-valued string parameter of the config, or None (absent or not JSON)."""
    if key not in config.parameters:
        return None
    try:
        value = json.loads(config.parameters[key].string_value)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def served_task(config: mc.ModelConfig, specs: Sequence[tuple[str, str, tuple[int, ...]]]
                ) -> tuple[TaskShape, bool | None]:
    """The task of a served model and its head shapes, and whether ``output0`` holds NMS-free rows.

    From the ``yolo_task`` parameter our configs carry (write_config); for a config without it (written by
    hand, or by an older version of this pipeline), from ultralytics' own ``metadata`` parameter and the
    outputs: the end2end extras (``det_mask_coeffs``, ``det_keypoints``, ``det_xywhr``), prototypes
    ``output1``, or an ``output0 [nc]`` (classify); anything else is detect."""
    ours = _parameter(config, TASK_PARAMETER)
    if ours is not None and ours.get("task"):
        kpt = ours.get("kpt_shape")
        return (TaskShape(str(ours["task"]), int(ours.get("num_classes", 0)), int(ours.get("num_masks", 0)),
                          tuple(int(v) for v in kpt) if kpt else None), ours.get("one2one"))
    dims = {name: d for name, _, d in specs}
    for task in ("segment", "pose", "obb"):
        extras = [name for name in END2END_TASK_OUTPUTS[task] if name != PROTOS_OUTPUT]
        if extras and all(name in dims for name in extras):
            if task == "segment":
                return TaskShape(task, 0, int(dims[extras[0]][-1])), None
            if task == "pose":
                return TaskShape(task, 0, kpt_shape=(int(dims[extras[0]][-2]), 3)), None
            return TaskShape(task, 0), None
    if PROTOS_OUTPUT in dims:
        return TaskShape("segment", 0, int(dims[PROTOS_OUTPUT][0])), None
    ultralytics = _parameter(config, "metadata") or {}
    task = ultralytics.get("task")
    if task == "pose" and ultralytics.get("kpt_shape"):
        return TaskShape("pose", len(ultralytics.get("names") or {}), kpt_shape=tuple(ultralytics["kpt_shape"])), None
    if task == "obb":
        return TaskShape("obb", len(ultralytics.get("names") or {})), None
    if task == "classify" or (TRACK_A_OUTPUT in dims and len(dims[TRACK_A_OUTPUT]) == 1):
        return TaskShape("classify", int(dims[TRACK_A_OUTPUT][0]) if TRACK_A_OUTPUT in dims else 0), None
    return TaskShape("detect", 0), None


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


def admin_kwargs(client) -> dict:
    """``headers=`` carrying ``$TRITON_ADMIN_KEY`` for ``client``'s protocol (HTTP header / gRPC metadata),
    or nothing without a key: model load and shared-memory (un)registration are admin calls, which a
    Triton published beyond loopback answers only with its key (docker-compose.yml)."""
    protocol = "grpc" if type(client).__module__.startswith("tritonclient.grpc") else "http"
    headers = admin_headers(protocol)
    return {"headers": headers} if headers else {}


def load_model(client, model: str) -> None:
    """Ask the server to (re)load ``model`` from its repository (needs --model-control-mode=explicit)."""
    client.load_model(model, **admin_kwargs(client))
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


def _request(client, served: ServedModel, batch: np.ndarray, output_names: Sequence[str],
             shared_memory: "SharedMemory | None" = None, float32: bool = True) -> dict[str, np.ndarray]:
    """The named outputs of one request. FP16 outputs (OUTPUT_DTYPE=float16) come back as float32, or as
    they are with ``float32=False`` (detect's NMS converts only the candidates it needs)."""
    module = _protocol_module(client)
    data = np.ascontiguousarray(batch if served.max_batch > 0 else batch[0])
    infer_input = module.InferInput(served.input_name, list(data.shape), served.input_dtype)
    outputs = [module.InferRequestedOutput(name) for name in output_names]
    if shared_memory is None:
        infer_input.set_data_from_numpy(data)
    else:
        shared_memory.attach(infer_input, data, outputs)
    version = {"model_version": served.version} if served.version else {}
    stamps, start = _ROUND_TRIPS.get(), time.perf_counter()
    result = client.infer(served.name, [infer_input], outputs=outputs, **version)
    if stamps is not None:
        stamps.append((start, time.perf_counter()))
    if shared_memory is None:
        arrays = {name: result.as_numpy(name) for name in output_names}
    else:
        arrays = shared_memory.collect(result, output_names)
    if float32:
        arrays = {name: pp.as_float32(value) for name, value in arrays.items()}
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
    shared_memory: "SharedMemory | str | None" = None,
) -> list[Result]:
    """One result per image (original-image pixels) for BGR ``images`` from any track's ``model``, of the
    model's task (``served_task``): :class:`task_base.Instances` (detections, with masks / keypoints /
    rotated boxes by task) or :class:`task_base.Classification`.

    ``conf``/``iou``/``topk``/``mode``/``agnostic`` default to export/defaults.mk and only act on Track
    A/B models (end2end models apply the values they were built with). ``encoded`` gives the files'
    bytes for models that take encoded images (read from disk by the CLI; re-encoded as PNG if absent).
    ``model_version`` picks a version folder when ``model`` is a name (a ServedModel carries its own).
    ``shared_memory``: an open :class:`SharedMemory` of this client and model (reused call after call),
    or a mode of SHARED_MEMORY_MODES (then regions are made, registered and removed for this call only).
    A SharedMemory sized for fewer images per request than this call sends is a ClientError.
    """
    served = model if isinstance(model, ServedModel) else describe_model(client, model, model_version=model_version)
    if not images:
        return []
    if isinstance(shared_memory, str):
        if shared_memory == "none":
            shared_memory = None
        else:
            with SharedMemory(client, served, shared_memory, batch=len(images)) as regions:
                return infer(client, served, images, conf, iou, topk, mode, agnostic, encoded,
                             shared_memory=regions)
    if shared_memory is not None and shared_memory.served.name != served.name:
        raise ValueError(f"shared memory opened for model '{shared_memory.served.name}', not '{served.name}'")
    settings = defaults()
    conf = float(settings["CONF"]) if conf is None else conf
    iou = float(settings["IOU"]) if iou is None else iou
    topk = int(settings["TOPK"]) if topk is None else topk
    agnostic = settings["AGNOSTIC"] == "1" if agnostic is None else agnostic
    mode = default_mode() if mode is None else mode

    if served.kind == KIND_ENCODED:
        return _infer_encoded(client, served, images, encoded, shared_memory)
    task, params = for_task(served.task), NmsParams(conf, iou, topk, mode, agnostic)
    results: list[Result] = []
    for part in _chunks(len(images), served.max_batch):
        batch, infos = task.preprocess(list(images[part]), served.imgsz, served.input_dtype)
        if served.kind == KIND_OUTPUT0:
            names = task.output_names("track_a", served.shape)
            out = _request(client, served, batch, names, shared_memory, float32=served.task != "detect")
            layout = "one2one" if _one2one(served, out[TRACK_A_OUTPUT]) else "track_a"
            if layout != "track_a":  # only the Track A NMS reads FP16 itself (postprocess.fp16_candidates)
                out = {name: pp.as_float32(value) for name, value in out.items()}
        else:
            layout = "end2end"
            out = _request(client, served, batch, task.output_names(layout, served.shape), shared_memory)
        results += task.decode(out, infos, served.shape, params, layout)
    return results


def _one2one(served: ServedModel, output0: np.ndarray) -> bool:
    """Whether ``output0`` holds NMS-free rows ``[B, max_det, 6+extra]`` rather than the raw head
    ``[B, 4+nc+extra, anchors]``: as the config says, else from the shape (classify: never)."""
    if served.one2one is not None or served.task == "classify":
        return bool(served.one2one)
    return output0.ndim == 3 and output0.shape[2] == 6 + served.shape.extra_channels


def _infer_encoded(client, served: ServedModel, images, encoded, shared_memory=None) -> list[Result]:
    """One request per image (encoded files differ in length). The letterbox geometry comes from the
    ensemble's ``letterbox`` output when it has one (Track D), else from the image size and ``imgsz``."""
    task = for_task(served.task)
    names = task.output_names("end2end", served.shape)
    params = NmsParams(0.0, 1.0, 1)  # unused: the server ran the NMS
    from_server = LETTERBOX_OUTPUT in served.outputs
    if not from_server and served.imgsz is None:
        raise ClientError(f"cannot tell the network input size of '{served.name}' (no ensemble step with an "
                          "FP32 [3, S, S] input is visible); pass --imgsz S to map boxes back")
    results = []
    for index, image in enumerate(images):
        data = encoded[index] if encoded is not None else cv2.imencode(".png", image)[1].tobytes()
        payload = np.frombuffer(data, dtype=np.uint8)[None]
        if from_server:
            from yolo_triton.ensemble import letterbox_infos

            out = _request(client, served, payload, [*names, LETTERBOX_OUTPUT], shared_memory)
            infos = letterbox_infos(out[LETTERBOX_OUTPUT])
        else:
            out = _request(client, served, payload, names, shared_memory)
            infos = [pp.letterbox_params(image.shape[0], image.shape[1], served.imgsz)[0]]
        results += task.decode(out, infos, served.shape, params, "end2end")
    return results


def default_mode() -> str:
    """Client NMS semantics: the end2end graphs' (NMS in defaults.mk) so both tracks agree."""
    nms = defaults().get("NMS", "efficient")
    return nms if nms in pp.MODES else "efficient"


# --------------------------------------------------------------------------------------------------
# Shared memory (a client on the server's machine)
# --------------------------------------------------------------------------------------------------
def _np_dtype(wire: str) -> np.dtype:
    from tritonclient.utils import triton_to_np_dtype

    return np.dtype(triton_to_np_dtype(wire))


def _tensor_bytes(dims: Sequence[int], wire: str, max_batch: int) -> int | None:
    """Bytes of a tensor of ``dims`` (without the batch dimension) at the largest batch; None if variable."""
    if any(d < 0 for d in dims):
        return None
    return max(max_batch, 1) * math.prod(dims) * _np_dtype(wire).itemsize


def check_cuda_shared_memory(device_id: int = 0) -> None:
    """ClientError (one line) unless CUDA shared memory can work here: tritonclient's CUDA utilities
    (``cuda-python``) and a CUDA device ``device_id``. Sends nothing to any server."""
    try:
        import tritonclient.utils.cuda_shared_memory as cudashm  # noqa: F401 - needs cuda-python
        from cuda.bindings import runtime as cudart

        error, count = cudart.cudaGetDeviceCount()
        if int(error) != 0:
            raise RuntimeError(cudart.cudaGetErrorString(error)[1].decode())
        if not 0 <= device_id < count:
            raise RuntimeError(f"device {device_id} asked for, {count} CUDA device(s) visible")
    except Exception as err:  # noqa: BLE001 - whatever the reason, one line
        raise ClientError(f"--shared-memory cuda cannot work here ({_first_line(err) or type(err).__name__}): "
                          "it needs a CUDA GPU on this machine and the Triton server on the same GPU; "
                          "use --shared-memory system (same machine) or none") from None


class _Region:
    """One region: mapped here, registered with the server under ``name``, ``size`` bytes."""

    def __init__(self, client, mode: str, name: str, size: int, device_id: int):
        self.client, self.mode, self.name, self.size, self.device_id = client, mode, name, size, device_id
        self.handle = None
        self.registered = False

    def create(self) -> "_Region":
        if self.mode == "system":
            import tritonclient.utils.shared_memory as shm

            self.handle = shm.create_shared_memory_region(self.name, f"/{self.name}", self.size, create_only=True)
            self.client.register_system_shared_memory(self.name, f"/{self.name}", self.size,
                                                      **admin_kwargs(self.client))
        else:
            import tritonclient.utils.cuda_shared_memory as cudashm

            self.handle = cudashm.create_shared_memory_region(self.name, self.size, self.device_id)
            self.client.register_cuda_shared_memory(self.name, cudashm.get_raw_handle(self.handle), self.device_id,
                                                    self.size, **admin_kwargs(self.client))
        self.registered = True
        return self

    def write(self, array: np.ndarray) -> None:
        if self.mode == "system":
            import tritonclient.utils.shared_memory as shm

            shm.set_shared_memory_region(self.handle, [array])
        else:
            import tritonclient.utils.cuda_shared_memory as cudashm

            cudashm.set_shared_memory_region(self.handle, [array])

    def read(self, wire: str, shape: Sequence[int]) -> np.ndarray:
        """A copy of the tensor at the start of the region (the region is reused by the next request)."""
        dtype = _np_dtype(wire)
        if math.prod(shape) * dtype.itemsize > self.size:
            raise ClientError(f"output of shape {list(shape)} does not fit region {self.name} ({self.size} bytes)")
        if self.mode == "system":
            import tritonclient.utils.shared_memory as shm

            view = shm.get_contents_as_numpy(self.handle, dtype, list(shape))
            array = view.copy()
            del view  # no view may outlive the mapping: close() unmaps it
            return array
        import tritonclient.utils.cuda_shared_memory as cudashm

        return np.array(cudashm.get_contents_as_numpy(self.handle, dtype, list(shape)), copy=True)

    def release(self) -> None:
        """Unregister from the server, then unmap and remove here; both are tried whatever fails."""
        try:
            if self.registered:
                self.registered = False
                self._unregister()
        except Exception as err:  # noqa: BLE001 - the server may be gone; the local region still goes
            LOG.warning("could not unregister shared memory region %s from the server: %s", self.name,
                        _first_line(str(err)))
        finally:
            handle, self.handle = self.handle, None
            if handle is not None:
                self._destroy(handle)

    def _unregister(self, patience_s: float = UNREGISTER_PATIENCE_S) -> None:
        """The server refuses while it still holds a response in the region (it lets go just after the
        response went out, over gRPC a moment after the client has it): ask again until it agrees."""
        unregister = (self.client.unregister_system_shared_memory if self.mode == "system"
                      else self.client.unregister_cuda_shared_memory)
        deadline, pause = time.monotonic() + patience_s, 0.005
        while True:
            try:
                unregister(self.name, **admin_kwargs(self.client))
                return
            except Exception as err:  # noqa: BLE001 - tritonclient's InferenceServerException
                if "in use" not in str(err) or time.monotonic() > deadline:
                    raise
            time.sleep(pause)
            pause = min(pause * 2, 0.1)

    def _destroy(self, handle) -> None:
        if self.mode == "system":
            import tritonclient.utils.shared_memory as shm

            try:
                shm.destroy_shared_memory_region(handle)
            except BufferError:  # a view into the mapping still lives (an interrupted copy): unlink the name
                handle._mpsm_handle.unlink()  # the mapping itself goes when the last view does
        else:
            import tritonclient.utils.cuda_shared_memory as cudashm

            cudashm.destroy_shared_memory_region(handle)


class SharedMemory:
    """Input and outputs of one served model through shared memory, for ONE client (one request at a
    time: each thread or process opens its own). Use as a context manager, or call ``close()``:

        with SharedMemory(client, served, "system") as regions:
            detections = infer(client, served, images, shared_memory=regions)

    ``system``: POSIX shared memory (``/dev/shm/yolo_triton_<pid>_<token>_<tensor>``), which the server
    maps: it must see this machine's ``/dev/shm`` (same host, or containers sharing IPC). ``cuda``: GPU
    memory of ``device_id`` shared by CUDA IPC with a server on the same GPU.

    A region per tensor, sized from the model's config for ``batch`` images per request (default its
    ``max_batch_size``): the input (for an encoded-bytes input, whose length varies, made at the first
    request and grown when a larger file comes) and every output with fixed dims (an output with a
    variable dim comes back in the response as usual).
    Regions are unregistered from the server and removed here on close, also after an error or Ctrl-C.
    """

    def __init__(self, client, served: ServedModel, mode: str = "system", device_id: int = 0,
                 batch: int | None = None):
        if mode not in SHARED_MEMORY_MODES or mode == "none":
            raise ValueError(f"shared memory mode must be 'system' or 'cuda', got {mode!r}")
        self.client, self.served, self.mode, self.device_id = client, served, mode, device_id
        # images per request the regions hold: the config's max_batch_size, or fewer when the caller
        # never sends more (a region of 32 x 3 x 640 x 640 FP32 is 157 MB, per client)
        self.batch = served.max_batch if batch is None or served.max_batch <= 0 else min(batch, served.max_batch)
        self._token = f"{SHM_PREFIX}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
        self._input: _Region | None = None
        self._outputs: dict[str, _Region] = {}
        self._open = False

    # -- lifetime ----------------------------------------------------------------------------------
    def open(self) -> "SharedMemory":
        if self._open:
            return self
        if self.mode == "cuda":
            check_cuda_shared_memory(self.device_id)
        self._open = True
        try:
            size = _tensor_bytes(self.served.input_dims, self.served.input_dtype, self.batch)
            if size:
                self._input = self._region("input", size)
            for name, wire, dims in self.served.output_specs:
                size = _tensor_bytes(dims, wire, self.batch)
                if size:
                    self._outputs[name] = self._region(name, size)
        except BaseException:
            self.close()
            raise
        LOG.debug("shared memory (%s) for %s: %s", self.mode, self.served.name,
                  ", ".join(f"{r.name} {r.size} B" for r in self.regions()))
        return self

    def close(self) -> None:
        regions, self._input, self._outputs, self._open = self.regions(), None, {}, False
        for region in reversed(regions):
            region.release()

    def __enter__(self) -> "SharedMemory":
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()

    def regions(self) -> list[_Region]:
        return [r for r in (self._input, *self._outputs.values()) if r is not None]

    def _region(self, tensor: str, size: int) -> _Region:
        safe = "".join(c if c.isalnum() else "_" for c in tensor)
        region = _Region(self.client, self.mode, f"{self._token}_{safe}", size, self.device_id)
        try:
            return region.create()
        except BaseException as err:
            region.release()  # whatever was made of it
            if "restricted" in str(err):  # the server's shared-memory API is locked (published beyond loopback)
                raise ClientError(f"the server refused to register shared memory ({_first_line(str(err))}): set "
                                  "TRITON_ADMIN_KEY to its admin key, or use --shared-memory none") from None
            raise

    # -- one request -------------------------------------------------------------------------------
    def attach(self, infer_input, data: np.ndarray, outputs: Sequence) -> None:
        """Copy ``data`` into the input region and point the request's input and outputs at regions."""
        if not self._open:
            raise ClientError("shared memory used after close (open it, or use it as a context manager)")
        if self._input is None or self._input.size < data.nbytes:
            if self._input is not None and _tensor_bytes(self.served.input_dims, self.served.input_dtype, self.batch):
                raise ClientError(f"input of {data.nbytes} bytes does not fit region {self._input.name} "
                                  f"({self._input.size} bytes): more than the {self.batch} image(s) per request "
                                  "the regions were sized for")
            old, self._input = self._input, None
            if old is not None:
                old.release()
            self._input = self._region("input", max(ENCODED_REGION_BYTES, 1 << (data.nbytes - 1).bit_length()))
        self._input.write(data)
        infer_input.set_shared_memory(self._input.name, data.nbytes)
        for output in outputs:
            region = self._outputs.get(output.name())
            if region is not None:
                output.set_shared_memory(region.name, region.size)

    def collect(self, result, output_names: Sequence[str]) -> dict[str, np.ndarray]:
        """The outputs of ``result``: read from their regions (copies), or from the response."""
        arrays = {}
        for name in output_names:
            region = self._outputs.get(name)
            if region is None:
                arrays[name] = result.as_numpy(name)
                continue
            meta = result.get_output(name)
            if isinstance(meta, dict):  # HTTP
                wire, shape = meta["datatype"], meta["shape"]
            else:  # gRPC: InferOutputTensor
                wire, shape = meta.datatype, list(meta.shape)
            arrays[name] = region.read(wire, shape)
        return arrays


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


def check_pixel_budget(source: Path | bytes, max_pixels: int | None = None, what: str = "") -> None:
    """ClientError (one line) when the image file's header claims more than ``max_pixels`` pixels (default
    MAX_PIXELS of defaults.mk): a decompression bomb is refused before anything decodes it.

    The size comes from Pillow's ``Image.open``, which parses only the header (JPEG SOF, PNG IHDR, ...) and
    allocates no pixels; ``cv2.imread`` would allocate width x height x 3 first (OpenCV checks only its own
    2^30-pixel ceiling), and ``IMREAD_REDUCED_*`` still decodes a PNG in full. A header Pillow cannot read
    is left to OpenCV. Pillow's own guard raises above 2 x Image.MAX_IMAGE_PIXELS (179 MP): over budget too."""
    import io
    import re
    import warnings

    from PIL import Image, UnidentifiedImageError

    budget = int(defaults()["MAX_PIXELS"]) if max_pixels is None else int(max_pixels)
    what = what or (f"{len(source)} bytes" if isinstance(source, (bytes, bytearray, memoryview)) else str(source))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(source) if isinstance(source, (bytes, bytearray, memoryview)) else source) as im:
                width, height = im.size
        pixels, size = width * height, f"{width}x{height} = "
    except Image.DecompressionBombError as err:  # Pillow's own ceiling; it says the pixel count only
        found = re.search(r"\((\d+) pixels\)", str(err))
        pixels, size = (int(found.group(1)) if found else budget + 1), ""
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, ImportError):  # not Pillow's: OpenCV decides
        # (ImportError: in a process that imported ultralytics, Image.open is ultralytics' wrapper, which
        # answers an unreadable header by importing the HEIF plugin pi_heif, absent here)
        return
    if pixels > budget:
        raise ClientError(f"{what}: {size}{pixels / 1e6:.1f} MP is over the pixel budget of {budget / 1e6:g} MP "
                          "(a decompression-bomb guard); refused before decoding. Raise MAX_PIXELS (--max-pixels) "
                          "if the image is genuine")


def read_image(path: Path, max_pixels: int | None = None) -> np.ndarray:
    """The image as BGR, after :func:`check_pixel_budget` (``max_pixels``, default MAX_PIXELS)."""
    check_pixel_budget(Path(path), max_pixels)
    try:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    except cv2.error as err:  # e.g. OpenCV's own ceiling (2^30 pixels) under a larger MAX_PIXELS
        raise ClientError(f"cannot decode {path}: OpenCV refused it ({_first_line(str(err))})") from None
    if image is None:
        raise ClientError(f"cannot decode {path} as an image")
    return image


def draw(image_bgr: np.ndarray, result: Result, names: Sequence[str] | None = None, task: str = "detect"
         ) -> np.ndarray:
    """A copy of the image with the result drawn by its task (boxes and 'label score'; masks, keypoints,
    rotated boxes, top-5 text)."""
    return for_task(task).draw(image_bgr, result, names)


def to_json(paths: Sequence[Path], results: Sequence[Result], names: Sequence[str] | None, task: str) -> dict:
    """``{image path: the task's JSON of its result}`` (``--json``): detections as ``{class_id, label, score,
    box}`` plus ``mask`` / ``keypoints`` / ``obb`` by task, or ``{top5: [...]}`` for classify."""
    handler = for_task(task)
    return {str(path): handler.to_json(result, names) for path, result in zip(paths, results)}


def write_json(path: Path, data: dict) -> None:
    with atomic_path(path, suffix=".json") as tmp:
        tmp.write_text(json.dumps(data, indent=1) + "\n")


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
