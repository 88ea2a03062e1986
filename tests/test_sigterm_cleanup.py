"""SIGTERM (make's Ctrl-C path, docker stop, kill) to the scripts that start a real tritonserver must stop
that server (it runs in its own session, so nothing else would) and remove their temporary folder
(issue 21, item 8). The server here is real; the model is a Python-backend TEST DOUBLE whose
initialize() sleeps, so the script is caught while it waits for the load."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO, skip_without_real_triton

SLOW_MODEL = '''import time


class TritonPythonModel:  # TEST DOUBLE: loads for two minutes, never answers
    def initialize(self, args):
        time.sleep(120)

    def execute(self, requests):
        return []
'''
CONFIG = '''name: "m"
backend: "python"
max_batch_size: 0
input [{ name: "x" data_type: TYPE_FP32 dims: [1] }]
output [{ name: "y" data_type: TYPE_FP32 dims: [1] }]
instance_group [{ kind: KIND_CPU }]
'''


def slow_repository(root: Path) -> Path:
    (root / "m" / "1").mkdir(parents=True)
    (root / "m" / "1" / "model.py").write_text(SLOW_MODEL)
    (root / "m" / "config.pbtxt").write_text(CONFIG)
    return root


def servers_under(path: Path) -> list[int]:
    """Process ids of tritonservers whose command line names ``path`` (their temp folder)."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if cmdline and cmdline[0].endswith(b"tritonserver") and str(path).encode() in b" ".join(cmdline):
                found.append(int(proc.name))
    return found


@pytest.mark.parametrize("script", ["serve_local", "bench_serving_local"])
def test_sigterm_stops_the_server_and_removes_the_temp_folder(tmp_path, script):
    skip_without_real_triton()
    models = slow_repository(tmp_path / "models")
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    argv = [sys.executable, str(REPO / "scripts" / f"{script}.py"), "--models-dir", str(models), "--model", "m"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "TMPDIR": str(tmpdir)})
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # the server is up and loading the slow model
            logs = list(tmpdir.glob("*/tritonserver.log")) + list(tmpdir.glob("*/server/tritonserver.log"))
            if logs and b"loading: m:1" in logs[0].read_bytes():
                break
            assert proc.poll() is None, proc.stdout.read()
            time.sleep(0.2)
        else:
            pytest.fail("the server never started loading the model")
        assert servers_under(tmpdir)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=90)
        assert proc.returncode == 130, out
        assert servers_under(tmpdir) == [], out
        assert list(tmpdir.iterdir()) == [], out
    finally:
        if proc.poll() is None:
            proc.kill()
        for pid in servers_under(tmpdir):  # left behind (the failure this test is about): end it
            os.kill(pid, signal.SIGKILL)
