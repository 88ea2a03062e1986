"""The admin API locked down when Triton is published beyond loopback (issue 21, item 3).

Two halves. The entrypoint of docker-compose.yml's triton-api service (scripts/triton_entrypoint.sh) run
as it is, with a stand-in command that prints its arguments: it refuses to start when published without a
key, and adds the restricted-API flags when given one. Then the REAL tritonserver 2.51 with Triton's real
ONNX Runtime backend, started through that same entrypoint with the compose file's own flags (published,
with a key): without the key every load/unload/index, shared-memory, trace and logging call is refused
(HTTP 403, gRPC UNAVAILABLE "restricted"), inference still works; with the key it goes through, and
``make reload``, ``make promote`` / ``make rollback`` and ``--shared-memory system`` work.

Models: an identity ONNX model in two versions (promote/rollback) and a tiny detector with the Track A
contract (``images [3, 32, 32]`` -> ``output0 [84, 16]``: a Conv whose bias yields one box), built here.
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from tritonclient.utils import InferenceServerException

from conftest import REPO, Tree, skip_without_real_triton
from test_versions_restore import CONFIG as IDENTITY_CONFIG
from test_versions_restore import NAME as IDENTITY
from test_versions_restore import identity_onnx
from yolo_triton import bench_serving
from yolo_triton import client as yc
from yolo_triton import triton_config as tc
from yolo_triton import triton_server as ts
from yolo_triton import versions as vs
from yolo_triton.settings import ADMIN_HEADER, ADMIN_KEY_ENV, GRPC_RESTRICTED_PREFIX, admin_headers

ENTRYPOINT = REPO / "scripts" / "triton_entrypoint.sh"
KEY = "test-admin-key-0123456789abcdef"
DETECTOR = "tiny"
RESTRICTED = "model-repository,shared-memory,trace,logging"


# ---- the entrypoint, with a stand-in command ------------------------------------------------------
def gate(env: dict[str, str]) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k not in ("TRITON_BIND", ADMIN_KEY_ENV)}
    environ.update(env)
    return subprocess.run(["bash", str(ENTRYPOINT), "printf", "%s\n", "tritonserver", "--flag"],
                          capture_output=True, text=True, env=environ, timeout=30)


@pytest.mark.parametrize("bind", ["0.0.0.0", "192.168.1.20", "::"])
def test_published_beyond_loopback_without_a_key_refuses_to_start(bind):
    result = gate({"TRITON_BIND": bind})
    assert result.returncode == 1 and result.stdout == ""
    assert "refusing to start" in result.stderr and "TRITON_ADMIN_KEY" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("key", ["short", "a key with spaces and enough chars", "line\nbreak-0123456789"])
def test_a_key_that_cannot_travel_as_a_header_refuses_to_start_and_is_not_echoed(key):
    result = gate({"TRITON_BIND": "0.0.0.0", ADMIN_KEY_ENV: key})
    assert result.returncode == 1 and result.stdout == ""
    assert "at least 16 characters" in result.stderr and key not in result.stderr


@pytest.mark.parametrize("bind", ["127.0.0.1", "localhost", "::1", None])
def test_on_loopback_without_a_key_nothing_is_added(bind):
    result = gate({} if bind is None else {"TRITON_BIND": bind})
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["tritonserver", "--flag"]


@pytest.mark.parametrize("bind", ["0.0.0.0", "127.0.0.1"])
def test_with_a_key_the_admin_endpoints_are_restricted_over_http_and_grpc(bind):
    result = gate({"TRITON_BIND": bind, ADMIN_KEY_ENV: KEY})
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "tritonserver", "--flag",
        f"--http-restricted-api={RESTRICTED}:{ADMIN_HEADER}={KEY}",
        f"--grpc-restricted-protocol={RESTRICTED}:{ADMIN_HEADER}={KEY}",
    ]
    assert KEY not in result.stderr


def test_admin_headers_per_protocol(monkeypatch):
    monkeypatch.delenv(ADMIN_KEY_ENV, raising=False)
    assert admin_headers("http") == {} and admin_headers("grpc") == {}
    monkeypatch.setenv(ADMIN_KEY_ENV, KEY)
    assert admin_headers("http") == {"admin-key": KEY}
    assert admin_headers("grpc") == {f"{GRPC_RESTRICTED_PREFIX}admin-key": KEY}
    assert GRPC_RESTRICTED_PREFIX == "triton-grpc-protocol-"
    assert admin_headers("http", "") == {}


# ---- the real server, published with a key ---------------------------------------------------------
def detector_onnx(path: Path) -> None:
    """Track A's contract at 32 px with 80 classes: Conv(3->84, 8x8, stride 8) -> [B, 84, 4, 4] -> [B, 84, 16];
    zero weights and a bias giving every anchor the box (16, 16, 8, 8) with class-0 score 0.9."""
    bias = np.zeros(84, np.float32)
    bias[:5] = (16, 16, 8, 8, 0.9)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["images", "w", "b"], ["grid"], kernel_shape=[8, 8], strides=[8, 8]),
         helper.make_node("Reshape", ["grid", "shape"], ["output0"])],
        "tiny_detector",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 3, 32, 32])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, ["N", 84, 16])],
        [numpy_helper.from_array(np.zeros((84, 3, 8, 8), np.float32), "w"), numpy_helper.from_array(bias, "b"),
         numpy_helper.from_array(np.array([0, 84, 16], np.int64), "shape")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, path)


DETECTOR_CONFIG = f'''name: "{DETECTOR}"
platform: "onnxruntime_onnx"
max_batch_size: 4
input [{{ name: "images" data_type: TYPE_FP32 dims: [3, 32, 32] }}]
output [{{ name: "output0" data_type: TYPE_FP32 dims: [84, 16] }}]
instance_group [{{ kind: KIND_CPU }}]
'''


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Tree:
    skip_without_real_triton()
    tree = Tree(tmp_path_factory.mktemp("admin"))
    for version in (1, 2):
        identity_onnx(tree.models / IDENTITY / str(version) / "model.onnx")
    (tree.models / IDENTITY / "config.pbtxt").write_text(IDENTITY_CONFIG + 'instance_group [{ kind: KIND_CPU }]\n')
    detector_onnx(tree.models / DETECTOR / "1" / "model.onnx")
    (tree.models / DETECTOR / "config.pbtxt").write_text(DETECTOR_CONFIG)
    return tree


@pytest.fixture(scope="module")
def server(tree, tmp_path_factory):
    """The compose service's flags (yolo_triton.triton_server reads them from docker-compose.yml), started
    through the service's entrypoint with TRITON_BIND=0.0.0.0 and the key (listening on 127.0.0.1 only)."""
    srv = ts.start_server(tree.models, tmp_path_factory.mktemp("triton"), admin_key=KEY)
    yield srv
    srv.stop()


@pytest.fixture
def no_key(monkeypatch):
    monkeypatch.delenv(ADMIN_KEY_ENV, raising=False)


@pytest.fixture
def with_key(monkeypatch):
    monkeypatch.setenv(ADMIN_KEY_ENV, KEY)


@pytest.fixture(params=["http", "grpc"])
def client(request, server):
    opened = yc.connect(server.url(request.param), request.param)
    yield opened
    opened.close()


def is_grpc(client) -> bool:
    return type(client).__module__.startswith("tritonclient.grpc")


def refused(client, call) -> str:
    """Run ``call``; it must be refused as restricted (HTTP 403 / gRPC UNAVAILABLE); the message."""
    with pytest.raises(InferenceServerException) as raised:
        call()
    err = raised.value
    expected = "StatusCode.UNAVAILABLE" if is_grpc(client) else "403"
    assert str(err.status()) == expected, (err.status(), err.message())
    assert "restricted" in err.message()
    return err.message()


def test_the_server_was_started_restricted_with_the_compose_flags(server):
    log = server.log()
    assert "endpoints need the admin key" in log  # the entrypoint's line
    assert KEY not in log
    assert "--model-control-mode=explicit" in server.flags and "--strict-readiness=true" in server.flags
    assert server.ready()


def test_without_the_key_every_admin_call_is_refused(server, client, no_key):
    header = f"{GRPC_RESTRICTED_PREFIX}{ADMIN_HEADER}" if is_grpc(client) else ADMIN_HEADER
    assert f"expecting header '{header}'" in refused(client, lambda: client.load_model(IDENTITY))
    refused(client, lambda: client.unload_model(IDENTITY))
    refused(client, lambda: client.get_model_repository_index())
    refused(client, lambda: client.get_system_shared_memory_status())
    refused(client, lambda: client.register_system_shared_memory("x", "/x", 64))
    refused(client, lambda: client.get_trace_settings())
    refused(client, lambda: client.get_log_settings())
    wrong = {header: "not-the-key-0123456789"}
    refused(client, lambda: client.unload_model(IDENTITY, headers=wrong))
    assert client.is_model_ready(IDENTITY) and client.is_model_ready(DETECTOR)  # nothing was unloaded


def test_without_the_key_inference_health_metadata_config_and_statistics_work(server, client, no_key):
    assert client.is_server_live() and client.is_server_ready()
    assert client.get_model_metadata(DETECTOR) and yc.get_config(client, DETECTOR).max_batch_size == 4
    assert client.get_inference_statistics(DETECTOR)
    image = np.full((48, 64, 3), 100, np.uint8)
    (detections,) = yc.infer(client, DETECTOR, [image], conf=0.25)
    assert len(detections) == 1 and detections.classes.tolist() == [0]
    np.testing.assert_allclose(detections.scores, [0.9], atol=1e-6)


def test_with_the_key_load_unload_and_index_go_through(server, client, with_key):
    headers = admin_headers("grpc" if is_grpc(client) else "http")
    client.unload_model(IDENTITY, headers=headers)
    assert not client.is_model_ready(IDENTITY)
    yc.load_model(client, IDENTITY)  # the library's load sends $TRITON_ADMIN_KEY itself
    assert client.is_model_ready(IDENTITY)
    index = bench_serving.repository_index(client)  # the benchmark's track discovery, with the key too
    assert index[IDENTITY]["state"] == "READY" and index[DETECTOR]["state"] == "READY"
    assert server.ready()


def test_system_shared_memory_needs_the_key_and_works_with_it(server, client, monkeypatch):
    image = np.full((48, 64, 3), 100, np.uint8)
    monkeypatch.delenv(ADMIN_KEY_ENV, raising=False)
    with pytest.raises(yc.ClientError, match="refused to register shared memory.*TRITON_ADMIN_KEY"):
        yc.infer(client, DETECTOR, [image], conf=0.25, shared_memory="system")
    monkeypatch.setenv(ADMIN_KEY_ENV, KEY)
    plain = yc.infer(client, DETECTOR, [image], conf=0.25)
    served = yc.describe_model(client, DETECTOR)
    with yc.SharedMemory(client, served, "system", batch=1) as regions:
        assert len(regions.regions()) == 2  # images in, output0 out
        through = yc.infer(client, served, [image], conf=0.25, shared_memory=regions)
    np.testing.assert_array_equal(through[0].boxes, plain[0].boxes)
    status = client.get_system_shared_memory_status(headers=admin_headers("grpc" if is_grpc(client) else "http"))
    assert not (status.regions if is_grpc(client) else status), status  # unregistered on close, with the key


def test_make_reload_without_and_with_the_key(server, tree, monkeypatch):
    monkeypatch.delenv(ADMIN_KEY_ENV, raising=False)
    refused_run = tree.make("reload", f"MODEL={IDENTITY}", f"TRITON_HTTP={server.http_url}", check=False)
    assert refused_run.returncode != 0
    assert "This API is restricted" in refused_run.stdout + refused_run.stderr
    assert "set TRITON_ADMIN_KEY" in refused_run.stderr
    monkeypatch.setenv(ADMIN_KEY_ENV, KEY)
    loaded = tree.make("reload", f"MODEL={IDENTITY}", f"TRITON_HTTP={server.http_url}")
    assert f"loaded {IDENTITY}" in loaded.stdout
    assert KEY not in loaded.stdout + loaded.stderr  # neither make's echo nor curl's command line shows it


def served_versions(server) -> list[int]:
    return vs.Triton(server.http_url, admin_key=KEY).ready_versions(IDENTITY)


def test_make_promote_and_rollback_with_the_key(server, tree, monkeypatch):
    config = tree.models / IDENTITY / "config.pbtxt"
    monkeypatch.delenv(ADMIN_KEY_ENV, raising=False)
    before = config.read_text()
    no = tree.make("promote", f"MODEL={IDENTITY}", "VERSION=2", f"TRITON_HTTP={server.http_url}", check=False)
    assert no.returncode != 0 and "set TRITON_ADMIN_KEY" in no.stderr, no.stderr
    assert config.read_text() == before  # refused before anything was written

    monkeypatch.setenv(ADMIN_KEY_ENV, KEY)
    tree.make("promote", f"MODEL={IDENTITY}", "VERSION=2", f"TRITON_HTTP={server.http_url}")
    assert tc.version_policy(tc.parse_config(config)) == {"specific": [2]}
    assert served_versions(server) == [2]
    tree.make("rollback", f"MODEL={IDENTITY}", f"TRITON_HTTP={server.http_url}")
    assert tc.version_policy(tc.parse_config(config)) == {"specific": [1]}
    assert served_versions(server) == [1]
    assert server.ready()


def test_a_wrong_key_is_named_as_such(server, monkeypatch):
    monkeypatch.setenv(ADMIN_KEY_ENV, "not-the-key-0123456789")
    with pytest.raises(vs.StepError, match="admin API is locked.*the one sent is not it"):
        vs.Triton(server.http_url).ready_versions(IDENTITY)
