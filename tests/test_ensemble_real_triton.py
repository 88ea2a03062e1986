"""Track D ensemble: generated configs, checked by code and by a REAL Triton server on the CPU.

* Unit tests of ``yolo_triton.ensemble``: names, dtypes and dims are read from the step configs,
  ``max_batch_size`` is the smallest step's, mismatches are refused with the fix in the message.
* The real ``tritonserver`` 2.51 bundled with ``nvidia-pytriton`` (run directly with our own
  ``--backend-directory`` holding the Python backend, reference/real-triton-on-cpu.md) loads the
  GENERATED ensemble config unchanged. The DALI and TensorRT steps are Python-backend stand-ins
  (``tests/doubles/triton_python_standins/``, named as doubles) whose configs are the generated ones
  with only ``backend: "python"`` and ``KIND_CPU`` swapped in. Encoded JPEG bytes flow through it over
  HTTP and gRPC; deliberately broken ensembles are refused by the server, and the test reads the refusal.
* ``ENSEMBLE_DETECTOR=end2end`` (the detector step is the end2end ONNX, for a server without TensorRT),
  built by ``make`` with the H200 run's settings (INPUT_DTYPE=uint8, NMS=ultralytics, ORT_BATCHING=pad;
  FP32, IMGSZ 320 and a pad of 4 for this CPU): the REAL server runs the REAL end2end ONNX through
  Triton's real ONNX Runtime backend (../shared/triton); only the DALI step is a stand-in, a
  Python-backend model running the project's own DALI pipeline with CPU operators
  (``tests/doubles/triton_python_standins/dali_pipeline_cpu_standin``): no DALI backend here.
"""
from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]

from tritonclient.grpc import model_config_pb2 as mc

from conftest import skip_unless_ci
from yolo_triton import ensemble as ens
from yolo_triton import postprocess as pp
from yolo_triton import settings
from yolo_triton import triton_config as tc
from yolo_triton.onnx_io import TensorSpec

DEFAULTS = settings.defaults()
IMGSZ, TOPK, QUEUE_DELAY_US = int(DEFAULTS["IMGSZ"]), int(DEFAULTS["TOPK"]), int(DEFAULTS["QUEUE_DELAY_US"])
SIZE = "small"
NAME = settings.model_name_for_size(SIZE)
DOUBLES = ROOT / "tests" / "doubles" / "triton_python_standins"


# ---- fixtures: step configs as the pipeline writes them --------------------------------------------
def end2end_specs(imgsz: int = IMGSZ, topk: int = TOPK) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """I/O of an end2end (EfficientNMS) engine as export/write_config.py reads it from the ONNX."""
    inputs = [TensorSpec("images", "float32", (-1, 3, imgsz, imgsz))]
    outputs = [TensorSpec("num_dets", "int32", (-1, 1)), TensorSpec("det_boxes", "float32", (-1, topk, 4)),
               TensorSpec("det_scores", "float32", (-1, topk)), TensorSpec("det_classes", "int32", (-1, topk))]
    return inputs, outputs


def write_trt_end2end_config(models_dir: Path, name: str = NAME, imgsz: int = IMGSZ, max_batch: int | None = None):
    """``<name>_trt_end2end/config.pbtxt`` through the same function export/write_config.py uses."""
    inputs, outputs = end2end_specs(imgsz)
    max_batch = max_batch or settings.max_batch_for_size(SIZE)
    config = tc.model_config(ens.trt_end2end_name(name), tc.TENSORRT_PLATFORM, inputs, outputs, max_batch,
                             QUEUE_DELAY_US, label_output="det_classes")
    return tc.write_model_config(models_dir / ens.trt_end2end_name(name), config, ["person", "bus"])


def write_preprocess_config(models_dir: Path, imgsz: int = IMGSZ, max_batch: int | None = None) -> Path:
    max_batch = max_batch or max(settings.max_batch_for_size(s) for s in settings.size_names())
    return ens.write_preprocess_model(models_dir, imgsz, max_batch, QUEUE_DELAY_US) / "config.pbtxt"


# ---- unit tests ---------------------------------------------------------------------------------------
def test_ensemble_config_is_read_from_the_step_configs(tmp_path):
    write_preprocess_config(tmp_path)
    write_trt_end2end_config(tmp_path)
    path = ens.write_ensemble(tmp_path, NAME, IMGSZ)
    assert path == tmp_path / f"{NAME}_ensemble" / "config.pbtxt"
    assert (tmp_path / f"{NAME}_ensemble" / "1").is_dir()
    config = tc.parse_config(path)
    assert config.platform == "ensemble" and config.max_batch_size == min(
        settings.max_batch_for_size(SIZE), max(settings.max_batch_for_size(s) for s in settings.size_names()))
    assert not config.HasField("dynamic_batching") and not config.instance_group
    assert [(t.name, tc.numpy_dtype(t.data_type), list(t.dims)) for t in config.input] == [("IMAGE_BYTES", "uint8", [-1])]
    assert [(t.name, tc.numpy_dtype(t.data_type), list(t.dims)) for t in config.output] == [
        ("num_dets", "int32", [1]), ("det_boxes", "float32", [TOPK, 4]), ("det_scores", "float32", [TOPK]),
        ("det_classes", "int32", [TOPK]), ("letterbox", "float64", [5])]
    pre, det = config.ensemble_scheduling.step
    assert (pre.model_name, det.model_name) == (f"preprocess_letterbox_{IMGSZ}", f"{NAME}_trt_end2end")
    assert dict(pre.input_map) == {"encoded": "IMAGE_BYTES"}
    assert dict(pre.output_map) == {"images": "preprocessed", "letterbox": "letterbox"}
    assert dict(det.input_map) == {"images": "preprocessed"}
    assert dict(det.output_map) == {n: n for n in ("num_dets", "det_boxes", "det_scores", "det_classes")}


def test_names_follow_the_detector_config(tmp_path):
    """A detector whose input is called differently (and with another TOPK) is chained by its own names."""
    write_preprocess_config(tmp_path)
    inputs = [TensorSpec("x", "float32", (-1, 3, IMGSZ, IMGSZ))]
    outputs = [TensorSpec("num_dets", "int32", (-1, 1)), TensorSpec("det_boxes", "float32", (-1, 7, 4))]
    config = tc.model_config("custom_trt_end2end", tc.TENSORRT_PLATFORM, inputs, outputs, 8, QUEUE_DELAY_US)
    tc.write_model_config(tmp_path / "custom_trt_end2end", config)
    out = tc.parse_config(ens.write_ensemble(tmp_path, "custom", IMGSZ))
    assert out.max_batch_size == 8
    assert dict(out.ensemble_scheduling.step[1].input_map) == {"x": "preprocessed"}
    assert [list(t.dims) for t in out.output] == [[1], [7, 4], [5]]


def test_mismatched_steps_are_refused(tmp_path):
    write_preprocess_config(tmp_path, imgsz=320)
    write_trt_end2end_config(tmp_path, imgsz=IMGSZ)
    shutil.copytree(tmp_path / "preprocess_letterbox_320", tmp_path / f"preprocess_letterbox_{IMGSZ}")
    with pytest.raises(ens.EnsembleError, match=r"produces images TYPE_FP32 \[3, 320, 320\].*same IMGSZ"):
        ens.write_ensemble(tmp_path, NAME, IMGSZ)
    with pytest.raises(ens.EnsembleError, match="not found: build it first"):
        ens.write_ensemble(tmp_path, "yolov11_medium", IMGSZ)


def write_onnx_end2end_config(models_dir: Path, name: str = NAME, imgsz: int = IMGSZ, batching: str = "pad",
                              max_batch: int | None = None) -> Path:
    """``<name>_end2end/config.pbtxt`` as write_config.py writes it for an end2end ONNX on a GPU server: with
    ORT_BATCHING=pad the graph runs every execution at ORT_PAD_BATCH, which is its max_batch_size."""
    inputs, outputs = end2end_specs(imgsz)
    if max_batch is None:
        max_batch = settings.ort_pad_batch(batching, "gpu", settings.max_batch_for_size(SIZE),
                                           int(DEFAULTS["ORT_PAD_BATCH"])) or settings.max_batch_for_size(SIZE)
    config = tc.model_config(f"{name}_end2end", tc.ONNX_PLATFORM, inputs, outputs, max_batch, QUEUE_DELAY_US,
                             label_output="det_classes", batching=batching)
    return tc.write_model_config(models_dir / f"{name}_end2end", config, ["person", "bus"])


def test_the_default_detector_step_is_the_plan():
    assert settings.ensemble_detector() == "trt_end2end" == DEFAULTS["ENSEMBLE_DETECTOR"]
    assert list(ens.DETECTORS) == ["trt_end2end", "end2end"]


@pytest.mark.parametrize("detector,platform", [("trt_end2end", tc.TENSORRT_PLATFORM), ("end2end", tc.ONNX_PLATFORM)])
def test_ensemble_detector_chooses_the_step(tmp_path, detector, platform, restore_logging):
    """Both detector configs exist: ENSEMBLE_DETECTOR (create_ensembles.py --detector, as make passes it)
    picks which one the ensemble chains; nothing else changes."""
    import create_ensembles as cli

    write_preprocess_config(tmp_path)
    write_trt_end2end_config(tmp_path)
    write_onnx_end2end_config(tmp_path, batching="dynamic")  # same max batch as the plan: only the name differs
    assert cli.main(["--names", NAME, "--model-dir", str(tmp_path), "--detector", detector]) == 0
    config = tc.parse_config(tmp_path / f"{NAME}_ensemble" / "config.pbtxt")
    pre, det = config.ensemble_scheduling.step
    assert (pre.model_name, det.model_name) == (f"preprocess_letterbox_{IMGSZ}", f"{NAME}_{detector}")
    assert tc.parse_config(tmp_path / det.model_name / "config.pbtxt").platform == platform
    assert config.max_batch_size == settings.max_batch_for_size(SIZE)
    assert dict(det.input_map) == {"images": "preprocessed"}
    assert [t.name for t in config.output] == ["num_dets", "det_boxes", "det_scores", "det_classes", "letterbox"]


@pytest.mark.parametrize("batching,expected", [("pad", int(DEFAULTS["ORT_PAD_BATCH"])), ("fixed", 1),
                                               ("dynamic", settings.max_batch_for_size(SIZE))])
def test_an_onnx_detector_caps_the_ensemble_batch(tmp_path, batching, expected):
    """The ensemble's max_batch_size is never larger than a step's: a padded ONNX detector's is its pad
    (ORT_PAD_BATCH), a fixed-shape one's 1, below the DALI model's (the largest MAX_BATCH_<size>)."""
    write_preprocess_config(tmp_path)
    write_onnx_end2end_config(tmp_path, batching=batching, max_batch=None if batching != "fixed" else 1)
    config = tc.parse_config(ens.write_ensemble(tmp_path, NAME, IMGSZ, "end2end"))
    dali = tc.parse_config(tmp_path / f"preprocess_letterbox_{IMGSZ}" / "config.pbtxt")
    assert config.max_batch_size == expected < dali.max_batch_size


def test_a_bad_detector_is_refused_in_one_line(tmp_path, caplog, restore_logging):
    import create_ensembles as cli

    write_preprocess_config(tmp_path)
    write_trt_end2end_config(tmp_path)
    with pytest.raises(ens.EnsembleError) as bad:
        ens.write_ensemble(tmp_path, NAME, IMGSZ, "plan")
    message = str(bad.value)
    assert "\n" not in message and message.startswith("ENSEMBLE_DETECTOR='plan' is not one of trt_end2end, end2end")
    assert not (tmp_path / f"{NAME}_ensemble").exists()
    with pytest.raises(ens.EnsembleError, match=rf"{NAME}_end2end/config.pbtxt not found: build it first"):
        ens.write_ensemble(tmp_path, NAME, IMGSZ, "end2end")  # only the plan's config is there
    with pytest.raises(SystemExit) as usage:
        cli.main(["--names", NAME, "--model-dir", str(tmp_path), "--detector", "plan"])
    assert usage.value.code == 2


def test_cli(tmp_path, caplog, restore_logging):
    import create_ensembles as cli

    write_preprocess_config(tmp_path)
    write_trt_end2end_config(tmp_path)
    assert cli.main(["--models", SIZE, "--model-dir", str(tmp_path)]) == 0
    assert (tmp_path / f"{NAME}_ensemble" / "config.pbtxt").is_file()
    assert cli.main(["--models", "all", "--model-dir", str(tmp_path)]) == 1  # nano/medium engines missing
    (line,) = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]  # the one-line cause
    assert "build it first" in line
    assert cli.parse_args([]).all_names == [NAME]


# ---- the real server -----------------------------------------------------------------------------------
def _pytriton_dir() -> Path | None:
    try:
        import pytriton
    except ImportError:
        return None
    server = Path(pytriton.__file__).parent / "tritonserver"
    return server if (server / "bin" / "tritonserver").is_file() else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def as_python_double(model_dir: Path, double: str) -> mc.ModelConfig:
    """Swap in ``backend: "python"`` + KIND_CPU and the double's model.py; everything else stays as generated."""
    config = tc.parse_config(model_dir / "config.pbtxt")
    config.ClearField("platform")
    config.backend = "python"
    for group in config.instance_group:
        group.kind = mc.ModelInstanceGroup.KIND_CPU
    config.parameters.pop("num_threads", None)
    (model_dir / "1").mkdir(exist_ok=True)
    for child in (model_dir / "1").iterdir():
        child.unlink()
    shutil.copy(DOUBLES / double / "model.py", model_dir / "1" / "model.py")
    tc.write_model_config(model_dir, config)
    return config


class Server:
    """``tritonserver`` from nvidia-pytriton, started directly; stopped by its own pid."""

    def __init__(self, repo: Path, workdir: Path):
        base = _pytriton_dir()
        backends = workdir / "backends" / "python"
        backends.mkdir(parents=True)
        for item in (base / "backends" / "python").iterdir():
            if item.is_file():
                shutil.copy(item, backends)
        stub = base / "python_backend_stubs" / f"{sys.version_info.major}.{sys.version_info.minor}"
        shutil.copy(stub / "triton_python_backend_stub", backends)
        libs = Path(sysconfig.get_paths()["purelib"]) / "nvidia_pytriton.libs"
        env = dict(os.environ)
        env["LD_LIBRARY_PATH"] = ":".join(filter(None, [sysconfig.get_config_var("LIBDIR"), str(libs),
                                                         env.get("LD_LIBRARY_PATH")]))
        # the stub's interpreter: the venv's packages (numpy<2, cv2) and yolo_triton for the doubles
        # the stub's interpreter: this venv's python first on PATH (as PyTriton does: numpy<2, cv2); it ignores
        # PYTHONPATH per PyTriton's notes; the DALI double imports yolo_triton without touching sys.path
        env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
        self.http_port, self.grpc_port = _free_port(), _free_port()
        self.log = workdir / "tritonserver.log"
        self.proc = subprocess.Popen(
            [str(base / "bin" / "tritonserver"), f"--model-repository={repo}", f"--backend-directory={workdir / 'backends'}",
             "--http-address=127.0.0.1", f"--http-port={self.http_port}", "--grpc-address=127.0.0.1",
             f"--grpc-port={self.grpc_port}", "--allow-metrics=false", "--model-control-mode=explicit",
             "--load-model=*", "--exit-on-error=false", "--strict-readiness=false", "--log-verbose=0"],
            stdout=self.log.open("w"), stderr=subprocess.STDOUT, env=env)

    def wait_ready(self, client, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"tritonserver exited {self.proc.returncode}:\n{self.log.read_text()[-4000:]}")
            try:
                if client.is_server_live() and client.is_server_ready():
                    return
            except Exception:  # noqa: BLE001 - not listening yet
                pass
            time.sleep(0.3)
        raise TimeoutError(f"tritonserver not ready after {timeout}s:\n{self.log.read_text()[-4000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


BROKEN = {
    # the ensemble input declared FP32 where the DALI step takes UINT8 bytes
    "broken_dtype_ensemble": lambda c: setattr(c.input[0], "data_type", mc.TYPE_FP32),
    # an ensemble output declared with dims that the TensorRT step does not produce
    "broken_dims_ensemble": lambda c: c.output[1].dims.__setitem__(0, TOPK + 1),
    # larger than its steps allow
    "broken_max_batch_ensemble": lambda c: setattr(c, "max_batch_size", 4096),
}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if _pytriton_dir() is None:
        skip_unless_ci("nvidia-pytriton (bundled tritonserver) is not installed")
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    work = tmp_path_factory.mktemp("triton")
    repo = work / "models"
    write_preprocess_config(repo)
    write_trt_end2end_config(repo)
    good = ens.write_ensemble(repo, NAME, IMGSZ)
    generated_text = good.read_text()
    as_python_double(repo / f"preprocess_letterbox_{IMGSZ}", "dali_letterbox_double")
    as_python_double(repo / ens.trt_end2end_name(NAME), "trt_end2end_double")
    for broken, edit in BROKEN.items():
        config = tc.parse_config(good)
        config.name = broken
        edit(config)
        (repo / broken / "1").mkdir(parents=True)
        tc.write_model_config(repo / broken, config)
    srv = Server(repo, work)
    http = httpclient.InferenceServerClient(f"127.0.0.1:{srv.http_port}")
    grpc = grpcclient.InferenceServerClient(f"127.0.0.1:{srv.grpc_port}")
    try:
        srv.wait_ready(http)
        yield {"server": srv, "http": http, "grpc": grpc, "httpclient": httpclient, "grpcclient": grpcclient,
               "repo": repo, "generated_text": generated_text}
    finally:
        http.close()
        grpc.close()
        srv.stop()


def _infer(ctx, protocol: str, payloads: list[bytes]):
    """One request of ``len(payloads)`` images (bytes zero-padded to one length, the batch must be dense)."""
    module, client = ctx[f"{protocol}client"], ctx[protocol]
    width = max(len(p) for p in payloads)
    data = np.zeros((len(payloads), width), np.uint8)
    for i, p in enumerate(payloads):
        data[i, :len(p)] = np.frombuffer(p, np.uint8)
    inp = module.InferInput(ens.ENSEMBLE_INPUT, list(data.shape), "UINT8")
    inp.set_data_from_numpy(data)
    names = ["num_dets", "det_boxes", "det_scores", "det_classes", "letterbox"]
    result = client.infer(f"{NAME}_ensemble", [inp], outputs=[module.InferRequestedOutput(n) for n in names])
    return {n: result.as_numpy(n) for n in names}


def _jpeg(name: str) -> bytes:
    from letterbox_check import ultralytics_assets  # scripts/letterbox_check.py

    return (ultralytics_assets() / name).read_bytes()


def served_summary(config) -> dict:
    """What a served ensemble config says, in plain values (names, dtypes, dims, steps and their maps)."""
    tensors = lambda ts: [(t.name, mc.DataType.Name(t.data_type), list(t.dims)) for t in ts]  # noqa: E731
    return {"name": config.name, "platform": config.platform, "max_batch_size": config.max_batch_size,
            "input": tensors(config.input), "output": tensors(config.output),
            "steps": [(s.model_name, s.model_version, dict(s.input_map), dict(s.output_map))
                      for s in config.ensemble_scheduling.step]}


def test_generated_ensemble_is_ready_unchanged(server):
    assert server["http"].is_model_ready(f"{NAME}_ensemble")
    assert server["grpc"].is_model_ready(f"{NAME}_ensemble")
    # What Triton serves, against the ensemble stated here by hand (not the generated file against itself):
    # bytes in; the TensorRT step's four outputs plus the letterbox out; DALI step, then TensorRT step;
    # max batch the smaller of the steps' (DALI: the largest size's, TensorRT: this size's).
    steps_max = min(max(settings.max_batch_for_size(s) for s in settings.size_names()),
                    settings.max_batch_for_size(SIZE))
    expected = {
        "name": f"{NAME}_ensemble", "platform": "ensemble", "max_batch_size": steps_max,
        "input": [("IMAGE_BYTES", "TYPE_UINT8", [-1])],
        "output": [("num_dets", "TYPE_INT32", [1]), ("det_boxes", "TYPE_FP32", [TOPK, 4]),
                   ("det_scores", "TYPE_FP32", [TOPK]), ("det_classes", "TYPE_INT32", [TOPK]),
                   ("letterbox", "TYPE_FP64", [5])],
        "steps": [(f"preprocess_letterbox_{IMGSZ}", -1, {"encoded": "IMAGE_BYTES"},
                   {"images": "preprocessed", "letterbox": "letterbox"}),
                  (f"{NAME}_trt_end2end", -1, {"images": "preprocessed"},
                   {n: n for n in ("num_dets", "det_boxes", "det_scores", "det_classes")})],
    }
    assert served_summary(server["grpc"].get_model_config(f"{NAME}_ensemble").config) == expected
    assert served_summary(tc.parse_config(server["repo"] / f"{NAME}_ensemble" / "config.pbtxt")) == expected


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_jpeg_bytes_flow_through_and_boxes_map_back(server, protocol):
    import cv2

    payloads = [_jpeg("bus.jpg"), _jpeg("zidane.jpg")]
    out = _infer(server, protocol, payloads)
    assert out["num_dets"].shape == (2, 1) and out["det_boxes"].shape == (2, TOPK, 4)
    assert out["letterbox"].dtype == np.float64 and out["letterbox"].shape == (2, 5)
    infos = ens.letterbox_infos(out["letterbox"])
    for payload, info in zip(payloads, infos):
        h, w = cv2.imdecode(np.frombuffer(payload, np.uint8), cv2.IMREAD_COLOR).shape[:2]
        assert info == pp.letterbox_params(h, w, IMGSZ)[0]
    dets = pp.postprocess_end2end(out["num_dets"], out["det_boxes"], out["det_scores"], out["det_classes"], infos)
    # the TRT double's "detection" is the un-padded image area: back in original pixels, the whole image
    for det, info in zip(dets, infos):
        assert len(det) == 1
        np.testing.assert_allclose(det.boxes[0], [0, 0, info.orig_w, info.orig_h], atol=1.0)


def test_single_image_request(server):
    out = _infer(server, "grpc", [_jpeg("zidane.jpg")])
    assert ens.letterbox_infos(out["letterbox"])[0] == pp.letterbox_params(720, 1280, IMGSZ)[0]


def test_bad_bytes_get_an_error_and_the_server_keeps_serving(server):
    from tritonclient.utils import InferenceServerException

    with pytest.raises(InferenceServerException, match="cannot decode") as not_image:
        _infer(server, "http", [b"this is not an image"])
    with pytest.raises(InferenceServerException, match="empty input") as empty:
        _infer(server, "grpc", [b""])  # Triton accepts a [1, 0] tensor; the preprocessing step refuses it
    print(f"\nnot an image: {not_image.value}\nempty: {empty.value}")
    assert server["http"].is_server_live()
    assert _infer(server, "grpc", [_jpeg("bus.jpg")])["num_dets"][0, 0] == 1


@pytest.mark.parametrize("broken,expected", [
    ("broken_dtype_ensemble", r"(?i)data type"),
    ("broken_dims_ensemble", r"(?i)(dims|shape)"),
    ("broken_max_batch_ensemble", r"maximum batch size"),
])
def test_broken_ensembles_are_refused_by_the_server(server, broken, expected):
    """Loaded at start-up (--load-model=*) and again on request: refused both times, with the cause."""
    import re

    from tritonclient.utils import InferenceServerException

    assert not server["http"].is_model_ready(broken)
    at_start = [line for line in server["server"].log.read_text().splitlines() if broken in line and "E1" in line[:2]]
    assert at_start and re.search(expected, at_start[0]), at_start
    with pytest.raises(InferenceServerException) as refused:
        server["grpc"].load_model(broken)
    assert re.search(expected, str(refused.value)), str(refused.value)
    assert not server["grpc"].is_model_ready(broken)
    assert server["grpc"].is_model_ready(f"{NAME}_ensemble")  # the good one is untouched
    print(f"\n{broken}: {refused.value}")


# ---- ENSEMBLE_DETECTOR=end2end: make's repository, the real ONNX Runtime backend runs the detector step ----
E2E_IMGSZ, E2E_PAD = 320, 4  # small for this CPU; the pad (ORT_PAD_BATCH) caps the ensemble's batch
E2E_SETTINGS = {"ENSEMBLE_DETECTOR": "end2end", "INPUT_DTYPE": "uint8", "NMS": "ultralytics", "ORT_BATCHING": "pad",
                "ORT_PAD_BATCH": str(E2E_PAD), "PRECISION": "fp32", "IMGSZ": str(E2E_IMGSZ)}


@pytest.fixture(scope="module")
def onnx_detector(tmp_path_factory, scratch_weights):
    """``make <name>_ensemble/config.pbtxt ENSEMBLE_DETECTOR=end2end`` (INSTANCE_KIND=gpu, as for the H200),
    then the detector's config again with INSTANCE_KIND=cpu for this server (the ONNX is kept), the DALI
    step swapped for its CPU stand-in, and the real server started on the repository."""
    from conftest import SCRATCH_NAME, Tree, skip_without_real_triton
    from yolo_triton import triton_server as ts

    skip_without_real_triton()
    tree = Tree(tmp_path_factory.mktemp("onnx_detector"))
    tree.weights.mkdir()
    (tree.weights / scratch_weights.name).symlink_to(scratch_weights)
    m, name = tree.models, SCRATCH_NAME
    ensemble = m / f"{name}_ensemble" / "config.pbtxt"
    made = tree.make(str(ensemble), f"NAMES={name}", **E2E_SETTINGS)
    onnx = m / f"{name}_end2end" / "1" / "model.onnx"
    built = {"made": made.stdout, "ensemble_text": ensemble.read_text(), "onnx_mtime": onnx.stat().st_mtime_ns,
             "gpu_config": tc.parse_config(m / f"{name}_end2end" / "config.pbtxt"),
             "up_to_date": tree.make("-q", str(ensemble), f"NAMES={name}", check=False, **E2E_SETTINGS).returncode,
             "switched": tree.make("-n", str(ensemble), f"NAMES={name}", **{**E2E_SETTINGS,
                                                                             "ENSEMBLE_DETECTOR": "trt_end2end"}).stdout}
    tree.make(str(m / f"{name}_end2end" / "config.pbtxt"), f"NAMES={name}", INSTANCE_KIND="cpu", **E2E_SETTINGS)
    built["onnx_kept"] = onnx.stat().st_mtime_ns == built["onnx_mtime"]
    as_python_double(m / ens.preprocess_model_name(E2E_IMGSZ), "dali_pipeline_cpu_standin")
    shutil.rmtree(m / name)  # Track A's graph: built on the way to the end2end one, not served here
    server = ts.start_server(m, tmp_path_factory.mktemp("onnx_detector_triton"))
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        yield {**built, "name": name, "tree": tree, "server": server, "grpc": client, "grpcclient": grpcclient}
    finally:
        client.close()
        server.stop()


def _dali_cpu_images(payloads: list[bytes]) -> np.ndarray:
    """The letterboxed uint8 images of the project's DALI pipeline (CPU operators), as the stand-in makes them."""
    from yolo_triton.dali_pipeline import INPUT_NAME, letterbox_pipeline

    pipe = letterbox_pipeline(E2E_IMGSZ, "cpu", batch_size=len(payloads), num_threads=1, prefetch_queue_depth=1,
                              input_dtype="uint8")
    pipe.build()
    pipe.feed_input(INPUT_NAME, [np.frombuffer(p, np.uint8) for p in payloads])
    images, _ = pipe.run()
    return np.stack([np.array(images[i]) for i in range(len(payloads))])


def _infer_e2e(ctx, model: str, name: str, data: np.ndarray, dtype: str):
    module = ctx["grpcclient"]
    inp = module.InferInput(name, list(data.shape), dtype)
    inp.set_data_from_numpy(data)
    outs = ["num_dets", "det_boxes", "det_scores", "det_classes"] + (["letterbox"] if model.endswith("_ensemble") else [])
    result = ctx["grpc"].infer(model, [inp], outputs=[module.InferRequestedOutput(n) for n in outs])
    return {n: result.as_numpy(n) for n in outs}


@pytest.mark.slow
def test_make_chains_the_onnx_detector_and_a_switch_rebuilds_only_the_ensemble(onnx_detector):
    name, made = onnx_detector["name"], onnx_detector["made"]
    assert f"create_ensembles.py --names {name} --imgsz {E2E_IMGSZ}" in made and "--detector end2end" in made
    assert "build_engine.py" not in made  # no plan on the way: this server has no TensorRT
    gpu = onnx_detector["gpu_config"]  # the detector as make writes it for the GPU server
    assert (gpu.platform, gpu.max_batch_size, list(gpu.dynamic_batching.preferred_batch_size)) == (
        "onnxruntime_onnx", E2E_PAD, [E2E_PAD])
    assert [g.kind for g in gpu.instance_group] == [mc.ModelInstanceGroup.KIND_GPU]
    assert onnx_detector["up_to_date"] == 0  # make -q: nothing left to do
    switched = onnx_detector["switched"]  # make -n ENSEMBLE_DETECTOR=trt_end2end: the plan, then the ensemble again
    assert re.search(rf"build_engine\.py --onnx \S+/{name}_end2end/1/model\.onnx --plan \S+/{name}_trt_end2end/", switched)
    assert "--detector trt_end2end" in switched and "export_onnx.py" not in switched and "add_nms.py" not in switched
    assert onnx_detector["onnx_kept"]  # INSTANCE_KIND=cpu rewrote the config only


@pytest.mark.slow
def test_served_ensemble_with_the_onnx_detector(onnx_detector):
    name, grpc = onnx_detector["name"], onnx_detector["grpc"]
    states = onnx_detector["server"].model_states()
    assert {m: s.get("state") for m, s in states.items()} == {
        f"{name}_ensemble": "READY", f"{name}_end2end": "READY", ens.preprocess_model_name(E2E_IMGSZ): "READY"}
    served = served_summary(grpc.get_model_config(f"{name}_ensemble").config)
    assert served == {
        "name": f"{name}_ensemble", "platform": "ensemble", "max_batch_size": E2E_PAD,  # the padded detector's
        "input": [("IMAGE_BYTES", "TYPE_UINT8", [-1])],
        "output": [("num_dets", "TYPE_INT32", [1]), ("det_boxes", "TYPE_FP32", [TOPK, 4]),
                   ("det_scores", "TYPE_FP32", [TOPK]), ("det_classes", "TYPE_INT32", [TOPK]),
                   ("letterbox", "TYPE_FP64", [5])],
        "steps": [(f"preprocess_letterbox_{E2E_IMGSZ}", -1, {"encoded": "IMAGE_BYTES"},
                   {"images": "preprocessed", "letterbox": "letterbox"}),
                  (f"{name}_end2end", -1, {"images": "preprocessed"},
                   {n: n for n in ("num_dets", "det_boxes", "det_scores", "det_classes")})]}
    assert onnx_detector["ensemble_text"] == (onnx_detector["tree"].models / f"{name}_ensemble" / "config.pbtxt").read_text()
    detector = grpc.get_model_config(f"{name}_end2end").config
    assert (detector.backend, detector.max_batch_size) == ("onnxruntime", E2E_PAD)
    assert [(t.name, mc.DataType.Name(t.data_type), list(t.dims)) for t in detector.input] == [
        ("images", "TYPE_UINT8", [3, E2E_IMGSZ, E2E_IMGSZ])]


@pytest.mark.slow
def test_jpeg_bytes_through_the_onnx_detector_equal_the_two_steps_one_by_one(onnx_detector):
    """The ensemble's answer == the project's DALI pipeline (CPU) then the end2end model, each called alone;
    the scratch model detects something, so the comparison is not one of empty answers."""
    name = onnx_detector["name"]
    payloads = [_jpeg("bus.jpg"), _jpeg("zidane.jpg")]
    width = max(len(p) for p in payloads)
    data = np.zeros((len(payloads), width), np.uint8)
    for i, p in enumerate(payloads):
        data[i, :len(p)] = np.frombuffer(p, np.uint8)
    got = _infer_e2e(onnx_detector, f"{name}_ensemble", ens.ENSEMBLE_INPUT, data, "UINT8")
    alone = _infer_e2e(onnx_detector, f"{name}_end2end", "images", _dali_cpu_images(payloads), "UINT8")
    assert got["num_dets"][:, 0].tolist() == alone["num_dets"][:, 0].tolist() and got["num_dets"].sum() > 5
    for key in ("det_boxes", "det_scores", "det_classes"):
        np.testing.assert_array_equal(got[key], alone[key])
    infos = ens.letterbox_infos(got["letterbox"])
    assert [(i.orig_h, i.orig_w) for i in infos] == [(1080, 810), (720, 1280)]
    for det, info in zip(pp.postprocess_end2end(got["num_dets"], got["det_boxes"], got["det_scores"],
                                                got["det_classes"], infos), infos):
        assert len(det) and det.boxes.min() >= 0 and det.boxes[:, 2].max() <= info.orig_w


@pytest.mark.slow
def test_the_server_holds_the_ensemble_to_the_padded_detectors_batch(onnx_detector):
    from tritonclient.utils import InferenceServerException

    name, jpeg = onnx_detector["name"], np.frombuffer(_jpeg("zidane.jpg"), np.uint8)
    out = _infer_e2e(onnx_detector, f"{name}_ensemble", ens.ENSEMBLE_INPUT, np.stack([jpeg] * E2E_PAD), "UINT8")
    assert out["num_dets"].shape == (E2E_PAD, 1) and len(set(out["num_dets"][:, 0].tolist())) == 1
    with pytest.raises(InferenceServerException, match=rf"batch-size must be <= {E2E_PAD}") as refused:
        _infer_e2e(onnx_detector, f"{name}_ensemble", ens.ENSEMBLE_INPUT, np.stack([jpeg] * (E2E_PAD + 1)), "UINT8")
    print(f"\n{E2E_PAD + 1} images: {refused.value}")
