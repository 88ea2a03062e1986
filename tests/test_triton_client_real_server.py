"""yolo_triton.client and scripts/triton_client.py against a REAL Triton server (PyTriton's tritonserver, CPU, 127.0.0.1).

The served models are TEST DOUBLES (tests/trt_end2end_plan_double.py): an end2end model whose NMS
is the NumPy model of EfficientNMS_TRT (standing in for the ``*_trt_end2end`` plan) and a Track A
model (``output0``) in ONNX Runtime, both built from an UNTRAINED scratch yolo11n at a small image
size. What is real: the server, its config handling and HTTP/gRPC endpoints, the client, the
letterbox and post-processing, and ultralytics' sample images.
"""
from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]

pytest.importorskip("pytriton")
if int(np.__version__.split(".")[0]) >= 2:
    pytest.skip("the Triton Python backend passes empty tensors with numpy 2 (needs numpy<2)", allow_module_level=True)

import cv2  # noqa: E402

import triton_client as cli  # noqa: E402  scripts/triton_client.py, the command line
from yolo_triton import client as tc  # noqa: E402
from yolo_triton import postprocess as pp  # noqa: E402
from yolo_triton.settings import defaults  # noqa: E402

import trt_end2end_plan_double as doubles  # noqa: E402

TEST_IMGSZ = 320  # small for a 2-core CPU; the deployment's size lives in export/defaults.mk
MAX_BATCH = 4
END2END_MODEL = "yolo11n_untrained_end2end_double"
TRACK_A_MODEL = "yolo11n_untrained_track_a_double"
ENCODED_MODEL = "yolo11n_untrained_encoded_end2end_double"
PROTOCOLS = ("http", "grpc")
# Lower than the deployment's CONF so that the untrained model detects something on BOTH images
# (at the default it finds nothing on zidane.jpg); passed to the end2end build and the client alike.
TEST_CONF = 0.05




def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def settings():
    values = defaults()
    return {"conf": TEST_CONF, "iou": float(values["IOU"]), "topk": int(values["TOPK"]),
            "agnostic": int(values["AGNOSTIC"])}


@pytest.fixture(scope="session")
def sample_paths():
    from ultralytics.utils import ASSETS

    paths = [Path(ASSETS) / "bus.jpg", Path(ASSETS) / "zidane.jpg"]
    for path in paths:
        assert path.is_file(), path
    return paths


@pytest.fixture(scope="session")
def sample_images(sample_paths):
    return [cv2.imread(str(path)) for path in sample_paths]


@pytest.fixture(scope="session")
def scratch(tmp_path_factory, settings):
    workdir = tmp_path_factory.mktemp("scratch_models")
    return doubles.build_scratch_models(workdir, TEST_IMGSZ, settings["conf"], settings["iou"], settings["topk"],
                                        settings["agnostic"])


@pytest.fixture(scope="session")
def runners(scratch):
    return {END2END_MODEL: doubles.EfficientNMSPlanDouble(scratch.end2end_onnx),
            TRACK_A_MODEL: doubles.TrackAOnnxRunner(scratch.track_a_onnx)}


@pytest.fixture(scope="session")
def repository(tmp_path_factory, scratch):
    """A model-repository-shaped folder holding only labels.txt, as the client looks labels up."""
    repo = tmp_path_factory.mktemp("models")
    for name in (END2END_MODEL, TRACK_A_MODEL):
        (repo / name).mkdir()
        (repo / name / "labels.txt").write_text("".join(f"{label}\n" for label in scratch.names))
    return repo


@pytest.fixture(scope="session")
def server(runners, scratch, tmp_path_factory):
    """A real tritonserver serving the doubles on free 127.0.0.1 ports; yields the two URLs."""
    from pytriton.decorators import batch
    from pytriton.model_config import ModelConfig, Tensor
    from pytriton.triton import Triton, TritonConfig, TritonSecurityConfig

    doubles.prepend_ld_library_path(doubles.libpython_dir())
    http_port, grpc_port = _free_port(), _free_port()
    config = TritonConfig(http_address="127.0.0.1", http_port=http_port, grpc_address="127.0.0.1",
                          grpc_port=grpc_port, allow_metrics=False, exit_timeout_secs=5)
    images = [Tensor(name="images", dtype=np.float32, shape=(3, TEST_IMGSZ, TEST_IMGSZ))]
    end2end_outputs = [
        Tensor(name="num_dets", dtype=np.int32, shape=(1,)),
        Tensor(name="det_boxes", dtype=np.float32, shape=(scratch.topk, 4)),
        Tensor(name="det_scores", dtype=np.float32, shape=(scratch.topk,)),
        Tensor(name="det_classes", dtype=np.int32, shape=(scratch.topk,)),
    ]
    track_a_outputs = [Tensor(name="output0", dtype=np.float32, shape=(4 + len(scratch.names), -1))]

    def serve(runner):
        @batch
        def infer_func(**inputs):  # one input per model: images or IMAGE_BYTES
            (value,) = inputs.values()
            return runner(value)
        return infer_func

    workspace = tmp_path_factory.mktemp("pytriton") / "workspace"
    # No access token on the model-repository API (PyTriton's default restricts it; tritonserver's does
    # not, and the client's --load uses it); the server listens on 127.0.0.1 only.
    security = TritonSecurityConfig(restricted_endpoints=[])
    with Triton(config=config, workspace=workspace, security_config=security) as triton:
        triton.bind(model_name=END2END_MODEL, infer_func=serve(runners[END2END_MODEL]), inputs=images,
                    outputs=end2end_outputs, config=ModelConfig(max_batch_size=MAX_BATCH), strict=True)
        triton.bind(model_name=TRACK_A_MODEL, infer_func=serve(runners[TRACK_A_MODEL]), inputs=images,
                    outputs=track_a_outputs, config=ModelConfig(max_batch_size=MAX_BATCH), strict=True)
        encoded = doubles.EncodedEnd2EndDouble(doubles.DecodeLetterboxDouble(TEST_IMGSZ), runners[END2END_MODEL])
        triton.bind(model_name=ENCODED_MODEL, infer_func=serve(encoded),
                    inputs=[Tensor(name="IMAGE_BYTES", dtype=np.uint8, shape=(-1,))], outputs=end2end_outputs,
                    config=ModelConfig(max_batch_size=MAX_BATCH), strict=True)
        triton.run()
        yield {"http": f"127.0.0.1:{http_port}", "grpc": f"127.0.0.1:{grpc_port}"}


@pytest.fixture(scope="session")
def clients(server):
    """One client per protocol, closed before the server fixture leaves its ``with Triton()``."""
    opened = {protocol: tc.connect(server[protocol], protocol) for protocol in PROTOCOLS}
    yield opened
    for client in opened.values():
        client.close()


@pytest.fixture(scope="session")
def expected(runners, sample_images, settings):
    """What the local pipeline computes on the same images, with no server in between."""
    batch, infos = pp.letterbox_batch(sample_images, TEST_IMGSZ)
    end2end = runners[END2END_MODEL](batch)
    output0 = runners[TRACK_A_MODEL](batch)["output0"]
    return {
        END2END_MODEL: pp.postprocess_end2end(*(end2end[k] for k in doubles.END2END_OUTPUTS), infos),
        TRACK_A_MODEL: pp.postprocess_track_a(output0, infos, settings["conf"], settings["iou"], settings["topk"],
                                              tc.default_mode(), bool(settings["agnostic"])),
    }


def assert_same_detections(got, want, atol=1e-3):
    assert len(got) == len(want)
    for image_got, image_want in zip(got, want):
        assert len(image_got) == len(image_want)
        np.testing.assert_array_equal(image_got.classes, image_want.classes)
        np.testing.assert_allclose(image_got.scores, image_want.scores, atol=1e-5)
        np.testing.assert_allclose(image_got.boxes, image_want.boxes, atol=atol)


# ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_client_reads_the_track_from_the_server_config(clients, protocol, scratch):
    client = clients[protocol]
    end2end = tc.describe_model(client, END2END_MODEL)
    track_a = tc.describe_model(client, TRACK_A_MODEL)
    assert (end2end.kind, track_a.kind) == (tc.KIND_END2END, tc.KIND_OUTPUT0)
    for served in (end2end, track_a):
        assert (served.input_name, served.input_dtype, served.imgsz, served.max_batch) == (
            "images", "FP32", scratch.imgsz, MAX_BATCH)
    assert set(end2end.outputs) == set(doubles.END2END_OUTPUTS)
    assert track_a.outputs == ("output0",)


@pytest.mark.parametrize("model", [END2END_MODEL, TRACK_A_MODEL])
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_detections_through_the_server_equal_the_local_pipeline(clients, protocol, model, sample_images,
                                                                 expected):
    got = tc.infer(clients[protocol], model, sample_images, conf=TEST_CONF)
    assert all(len(d) > 0 for d in expected[model]), "the scratch model should detect something"
    assert_same_detections(got, expected[model])
    for detections, image in zip(got, sample_images):  # mapped back into the original image
        h, w = image.shape[:2]
        assert detections.boxes[:, [0, 2]].max() <= w and detections.boxes[:, [1, 3]].max() <= h
        assert detections.boxes.min() >= 0


def test_track_a_client_nms_agrees_with_the_end2end_model(clients, sample_images):
    """Client-side EfficientNMS semantics on output0 == the end2end model's NMS, over the wire."""
    client = clients["grpc"]
    assert_same_detections(tc.infer(client, TRACK_A_MODEL, sample_images, conf=TEST_CONF),
                           tc.infer(client, END2END_MODEL, sample_images), atol=1e-3)


def test_batches_larger_than_max_batch_are_split(clients, sample_images, expected):
    images = sample_images * 3  # 6 images, max batch 4 -> two requests
    got = tc.infer(clients["http"], END2END_MODEL, images)
    assert_same_detections(got[:2], expected[END2END_MODEL])
    assert_same_detections(got[4:], expected[END2END_MODEL])


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_cli_prints_named_detections_and_draws_pngs(server, repository, scratch, sample_paths, sample_images,
                                                    expected, tmp_path, capsys, protocol):
    out = tmp_path / "drawn.png"
    rc = cli.main(["--url", server[protocol], "--protocol", protocol, "--model", END2END_MODEL,
                  "--images", str(sample_paths[0]), str(sample_paths[1]), "--draw", str(out),
                  "--model-repository", str(repository)])
    assert rc == 0
    stdout = capsys.readouterr().out
    for path, detections in zip(sample_paths, expected[END2END_MODEL]):
        assert f"{path}: {len(detections)} detections" in stdout
        first = detections.to_list(scratch.names)[0]
        assert f"{first['label']} {first['score']:.3f}" in stdout
    for path, image in zip(sample_paths, sample_images):
        drawn = cv2.imread(str(tmp_path / f"drawn_{path.stem}.png"))
        assert drawn is not None and drawn.shape == image.shape
        assert not np.array_equal(drawn, image)  # boxes were drawn


def test_cli_without_labels_prints_class_ids(server, sample_paths, tmp_path, capsys, expected):
    rc = cli.main(["--url", server["http"], "--model", TRACK_A_MODEL, "--images", str(sample_paths[0]),
                  "--conf", str(TEST_CONF),
                  "--model-repository", str(tmp_path)])
    assert rc == 0
    lines = capsys.readouterr().out.splitlines()
    first = expected[TRACK_A_MODEL][0]
    assert lines[1].split()[0] == str(int(first.classes[0]))


def test_cli_unknown_model_fails_with_one_line(server, sample_paths, capsys):
    rc = cli.main(["--url", server["grpc"], "--protocol", "grpc", "--model", "no_such_model",
                  "--images", str(sample_paths[0])])
    assert rc == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no_such_model" in err[0]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_encoded_image_model_gets_the_files_bytes_and_matches(clients, protocol, sample_paths, sample_images,
                                                              expected):
    client = clients[protocol]
    plain = tc.describe_model(client, ENCODED_MODEL)
    assert (plain.kind, plain.input_name, plain.input_dtype, plain.imgsz) == (tc.KIND_ENCODED, "IMAGE_BYTES",
                                                                              "UINT8", None)
    with pytest.raises(tc.ClientError, match="--imgsz"):
        tc.infer(client, plain, sample_images)
    served = tc.describe_model(client, ENCODED_MODEL, imgsz=TEST_IMGSZ)
    got = tc.infer(client, served, sample_images, encoded=[path.read_bytes() for path in sample_paths])
    assert_same_detections(got, expected[END2END_MODEL])


def test_cli_as_a_process_on_the_encoded_track(server, repository, sample_paths, expected):
    """The script as users run it: its own interpreter, the package as installed, gRPC."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "triton_client.py"), "--url", server["grpc"], "--protocol", "grpc",
         "--model", ENCODED_MODEL, "--imgsz", str(TEST_IMGSZ), "--images", str(sample_paths[1]),
         "--model-repository", str(repository)],
        capture_output=True, text=True, timeout=120, cwd="/",
    )
    assert result.returncode == 0, result.stderr
    assert f"{sample_paths[1]}: {len(expected[END2END_MODEL][1])} detections" in result.stdout
    assert "encoded track" in result.stderr


def test_cli_load_asks_the_server_and_reports_its_refusal(server, sample_paths, capsys):
    """--load calls the model-repository API; this server has no such model in its repository."""
    rc = cli.main(["--url", server["http"], "--model", "not_in_the_repository", "--load",
                  "--images", str(sample_paths[0])])
    assert rc == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "failed to load 'not_in_the_repository'" in err[0]


class _ConfigOnlyClientFake:
    """FAKE client answering get_model_config from dicts (what HTTP returns), for ensemble discovery."""

    def __init__(self, configs):
        self.configs = configs

    def get_model_config(self, name):
        return self.configs[name]


def test_ensemble_input_size_comes_from_its_detector_step():
    fp32 = {"name": "images", "data_type": "TYPE_FP32", "dims": [3, 416, 416]}
    fake = _ConfigOnlyClientFake({
        "ens": {"name": "ens", "platform": "ensemble", "max_batch_size": 8,
                "input": [{"name": "IMAGE_BYTES", "data_type": "TYPE_UINT8", "dims": [-1]}],
                "output": [{"name": n, "data_type": "TYPE_FP32", "dims": [1]} for n in doubles.END2END_OUTPUTS],
                "ensemble_scheduling": {"step": [{"model_name": "pre", "model_version": -1},
                                                 {"model_name": "det", "model_version": -1}]}},
        "pre": {"name": "pre", "max_batch_size": 8,
                "input": [{"name": "IMAGE_BYTES", "data_type": "TYPE_UINT8", "dims": [-1]}]},
        "det": {"name": "det", "max_batch_size": 8, "input": [fp32]},
    })
    served = tc.describe_model(fake, "ens")
    assert (served.kind, served.imgsz, served.steps) == (tc.KIND_ENCODED, 416, ("pre", "det"))


# ---- pure helpers (no server) ---------------------------------------------------------------------
def test_image_paths_expand_directories_and_refuse_missing(tmp_path, sample_paths):
    for path in sample_paths:
        (tmp_path / path.name).write_bytes(path.read_bytes())
    (tmp_path / "notes.txt").write_text("not an image")
    assert tc.image_paths([tmp_path]) == sorted(tmp_path / p.name for p in sample_paths)
    with pytest.raises(tc.ClientError, match="not found"):
        tc.image_paths([tmp_path / "missing.jpg"])


def test_draw_paths():
    out = Path("out/pic.png")
    assert tc.draw_paths(out, [Path("a/bus.jpg")]) == [out]
    assert tc.draw_paths(out, [Path("a/bus.jpg"), Path("b/z.jpg")]) == [Path("out/pic_bus.png"),
                                                                         Path("out/pic_z.png")]
