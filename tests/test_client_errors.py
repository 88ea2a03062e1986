"""The client says what failed: the connection, or the server's answer; a bug keeps its traceback."""
from __future__ import annotations

import socket
import subprocess
import sys

import pytest
from tritonclient.utils import InferenceServerException

from conftest import REPO
from yolo_triton.client import explain_failure


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed again when the block ends: nothing listens there


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_no_server_is_reported_as_unreachable(protocol, sample_images):
    url = f"127.0.0.1:{_closed_port()}"
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "triton_client.py"), "--url", url,
                             "--protocol", protocol, "--model", "m", "--images", str(sample_images[0]),
                             "--retry-budget", "1", "--backoff", "0.2"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"[triton_client] error: cannot reach Triton at {url}") and "is the server up?" in line
    assert "still down after" in line and "retry budget 1 s" in line  # retried within its budget, then one line


def test_the_servers_answer_is_not_blamed_on_the_connection():
    err = InferenceServerException(msg="Request for unknown model: 'yolov11_smal' is not found", status="400")
    message = explain_failure(err, "127.0.0.1:8000", "yolov11_smal")
    assert message == ("Triton at 127.0.0.1:8000 refused the request for model 'yolov11_smal': "
                       "Request for unknown model: 'yolov11_smal' is not found")
    assert "is the server up" not in message


def test_a_bug_is_not_explained_away():
    assert explain_failure(KeyError("det_boxes"), "127.0.0.1:8000", "m") is None
