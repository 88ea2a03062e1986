"""The client that survives (issue 21, item 2): timeouts, retries only for connection errors and
UNAVAILABLE, readiness-gated resends after a restart, one line when the server stays down.

What is real: ``tritonserver`` 2.51 with docker-compose.yml's flags and Triton's ONNX Runtime backend
(yolo_triton.triton_server) serving a Track A ONNX of an UNTRAINED scratch checkpoint (``make ...
INSTANCE_KIND=cpu``); the server is SIGKILLed and started again on the same ports while the client
works. The server also runs with ``--log-verbose=1`` (its own log counts the HTTP requests that reached
it: Triton's statistics do not count a request refused at validation) and with the gRPC model-repository
protocol restricted (``--grpc-restricted-protocol=model-repository:adminkey=...``), whose refusal is a
gRPC UNAVAILABLE that must not be retried.
"""
from __future__ import annotations

import http.client
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from tritonclient.utils import InferenceServerException

from conftest import REPO, SCRATCH_NAME, Tree, skip_without_real_triton
from yolo_triton import client as yc
from yolo_triton import triton_server as ts

pytestmark = pytest.mark.slow
IMGSZ = 320
MODEL = SCRATCH_NAME
ADMIN = "adminkey"
RESTRICTED_FLAG = f"--grpc-restricted-protocol=model-repository:{ADMIN}=s3cret"


# --------------------------------------------------------------------------------------------------
# Pure: what is retried, and the waits
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("err, cause", [
    (ConnectionRefusedError(111, "Connection refused"), "connection"),
    (ConnectionResetError(104, "reset"), "connection"),
    (http.client.RemoteDisconnected("closed"), "connection"),
    (TimeoutError("timed out"), "timeout"),
    (InferenceServerException("failed to connect to all addresses", status="StatusCode.UNAVAILABLE"), "unavailable"),
    (InferenceServerException("Service Unavailable", status="503"), "unavailable"),
    (InferenceServerException("This protocol is restricted, expecting header 'triton-grpc-protocol-k'",
                              status="StatusCode.UNAVAILABLE"), "restricted"),
    (InferenceServerException("This API is restricted, expecting header 'k'", status="403"), "restricted"),
    (InferenceServerException("inference input 'images' data-type is 'FP64'", status="400"), "invalid"),
    (InferenceServerException("unexpected shape", status="StatusCode.INVALID_ARGUMENT"), "invalid"),
    (InferenceServerException("Deadline Exceeded", status="StatusCode.DEADLINE_EXCEEDED"), "timeout"),
    (ValueError("a bug"), "other"),
])
def test_failure_cause(err, cause):
    assert yc.failure_cause(err) == cause
    assert yc.retryable(err) == (cause in ("connection", "unavailable"))


def test_backoff_doubles_is_capped_and_jittered():
    policy = yc.RetryPolicy(backoff_s=0.5, backoff_max_s=4.0, jitter=0.5)
    rng = np.random.default_rng(0)
    waits = [[policy.wait(attempt, rng) for _ in range(200)] for attempt in range(6)]
    for attempt, values in enumerate(waits):
        base = min(0.5 * 2 ** attempt, 4.0)
        assert base * 0.5 <= min(values) and max(values) <= base  # within [1 - jitter, 1] of the base
        assert max(values) - min(values) > base * 0.3  # actually jittered
    assert yc.RetryPolicy(jitter=0.0).wait(3, rng) == 4.0


@pytest.mark.parametrize("bad", [{"timeout_s": 0}, {"retries": -1}, {"backoff_s": 2, "backoff_max_s": 1},
                                 {"jitter": 1.5}, {"budget_s": -1}])
def test_policy_refuses_bad_values(bad):
    with pytest.raises(ValueError, match="invalid retry policy"):
        yc.RetryPolicy(**bad)


def test_cli_flags_build_the_policy():
    import triton_client as script

    args = script.parse_args(["--model", "m", "--timeout", "7", "--retries", "2", "--retry-budget", "9",
                              "--backoff", "0.1", "--backoff-max", "0.4", "--jitter", "0.2"])
    assert args.policy == yc.RetryPolicy(7.0, 2, 0.1, 0.4, 9.0, 0.2)
    assert script.parse_args(["--model", "m"]).policy == yc.RetryPolicy()
    with pytest.raises(SystemExit):
        script.parse_args(["--model", "m", "--retries", "-3"])


# --------------------------------------------------------------------------------------------------
# The real server, killed and started again
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def repository(tmp_path_factory, scratch_weights) -> Path:
    skip_without_real_triton()
    tree = Tree(tmp_path_factory.mktemp("retry"))
    tree.weights.mkdir()
    (tree.weights / scratch_weights.name).symlink_to(scratch_weights)
    tree.make(f"{tree.models}/{MODEL}/config.pbtxt", "INSTANCE_KIND=cpu", f"IMGSZ={IMGSZ}", "PRECISION=fp32")
    return tree.models


class Served:
    """The server of this module; ``restart()`` replaces it by one on the same ports."""

    def __init__(self, server: ts.RunningServer):
        self.server = server

    def kill(self) -> None:
        self.server.kill()

    def restart(self) -> None:
        if self.server.process.poll() is None:
            return
        self.server = ts.restart_server(self.server)


@pytest.fixture(scope="module")
def served(repository, tmp_path_factory):
    flags = [*ts.compose_server_flags(), "--log-verbose=1", RESTRICTED_FLAG]
    holder = Served(ts.start_server(repository, tmp_path_factory.mktemp("triton"), flags))
    yield holder
    holder.server.stop()


@pytest.fixture(autouse=True)
def running(request):
    """Every server test starts with the server up (a test that killed it may have failed early)."""
    if "served" in request.fixturenames:
        request.getfixturevalue("served").restart()
    yield


@pytest.fixture(scope="module")
def images():
    import cv2
    from ultralytics.utils import ASSETS

    paths = sorted(Path(ASSETS).glob("*.jpg"))
    return paths, [cv2.imread(str(p)) for p in paths]


def fast_policy(**changes) -> yc.RetryPolicy:
    return yc.RetryPolicy(**{"timeout_s": 30.0, "retries": 8, "backoff_s": 0.2, "backoff_max_s": 1.0,
                             "budget_s": 90.0, **changes})


def as_tuples(detections) -> list:
    return [(d.boxes.tolist(), d.scores.tolist(), d.classes.tolist()) for d in detections]


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_killed_mid_run_every_answer_correct(served, images, protocol):
    _, frames = images
    url = served.server.url(protocol)
    with yc.ResilientClient(url, protocol, yc.NO_RETRY) as plain:
        described = yc.describe_model(plain, MODEL)
        reference = [as_tuples(yc.infer(plain, described, [frame])) for frame in frames]
    total = 40
    answers, errors, done = [], [], threading.Event()
    client = yc.ResilientClient(url, protocol, fast_policy())

    def loop():
        try:
            for i in range(total):
                index = i % len(frames)
                answers.append((index, as_tuples(yc.infer(client, described, [frames[index]]))))
        except BaseException as err:  # noqa: BLE001 - reported by the test
            errors.append(err)
        finally:
            done.set()

    worker = threading.Thread(target=loop, daemon=True)
    worker.start()
    deadline = time.monotonic() + 60
    while len(answers) < 5 and not done.is_set() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not errors and len(answers) >= 5
    served.kill()
    time.sleep(1.0)  # down for a while: the client meets refused connections, not only a reset
    served.restart()
    assert done.wait(120), "client did not finish"
    client.close()
    assert errors == []
    assert len(answers) == total
    assert all(answer == reference[index] for index, answer in answers)
    assert client.stats["outages"] >= 1 and client.stats["retries"] >= 1


def test_cli_waits_for_a_restart(served, images, tmp_path):
    served.kill()
    argv = [sys.executable, str(REPO / "scripts" / "triton_client.py"), "--model", MODEL, "--url",
            served.server.http_url, "--images", *map(str, images[0]), "--retries", "20", "--retry-budget", "120",
            "--backoff", "0.2", "--backoff-max", "1", "-v"]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(2.0)
    served.restart()
    out, err = process.communicate(timeout=150)
    assert process.returncode == 0, err
    assert out.count(" detections") == len(images[0])
    assert "waiting until it is ready again" in err and "ready again after" in err


def test_cli_server_never_back_one_line_and_exit_1(served, images):
    served.kill()
    budget = 3.0
    argv = [sys.executable, str(REPO / "scripts" / "triton_client.py"), "--model", MODEL, "--url",
            served.server.http_url, "--images", str(images[0][0]), "--retries", "50", "--retry-budget", str(budget),
            "--backoff", "0.2", "--backoff-max", "0.5"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    (line,) = done.stderr.strip().splitlines()  # one line, nothing else
    assert line.startswith(f"[triton_client] error: cannot reach Triton at {served.server.http_url}")
    assert "still down after" in line and f"retry budget {budget:g} s" in line


def _http_infer_requests(server: ts.RunningServer) -> int:
    """HTTP inference requests the server received (its verbose log: 'HTTP request: 2 /v2/models/.../infer')."""
    return sum(1 for line in server.log().splitlines() if "HTTP request:" in line and f"/v2/models/{MODEL}/infer" in line)


def test_400_is_not_retried(served):
    import tritonclient.http as httpclient

    client = yc.ResilientClient(served.server.http_url, "http", fast_policy())
    before = _http_infer_requests(served.server)
    wrong = httpclient.InferInput("images", [1, 3, IMGSZ, IMGSZ], "FP64")
    wrong.set_data_from_numpy(np.zeros((1, 3, IMGSZ, IMGSZ), np.float64))
    with pytest.raises(InferenceServerException) as raised:
        client.infer(MODEL, [wrong])
    client.close()
    assert raised.value.status() == "400" and "data-type is 'FP64'" in raised.value.message()
    assert client.stats["attempts"] == 1 and client.stats["retries"] == 0
    time.sleep(0.5)  # the log is written by the server's own thread
    assert _http_infer_requests(served.server) - before == 1
    # Triton's statistics do not count a request refused before it reached the model
    stats = httpclient.InferenceServerClient(served.server.http_url).get_inference_statistics(MODEL)
    assert stats["model_stats"][0]["inference_stats"]["fail"]["count"] == 0


def test_restricted_grpc_unavailable_is_not_retried(served):
    client = yc.ResilientClient(served.server.grpc_url, "grpc", fast_policy())
    with pytest.raises(InferenceServerException) as raised:
        client.load_model(MODEL)
    assert raised.value.status() == "StatusCode.UNAVAILABLE"
    assert "This protocol is restricted, expecting header 'triton-grpc-protocol-adminkey'" in raised.value.message()
    assert yc.failure_cause(raised.value) == "restricted"
    assert client.stats["attempts"] == 1 and client.stats["outages"] == 0
    client.load_model(MODEL, headers={f"triton-grpc-protocol-{ADMIN}": "s3cret"})  # with the key: goes through
    client.close()
