"""export/download_pytorch_models.sh end to end: the REAL script and the REAL curl, through Make, against
a local HTTP server on 127.0.0.1 (http.server in a thread, free port) that serves, truncates or lacks
the file. No trained weights exist here and none are faked: the served bytes are an arbitrary payload
(not a checkpoint), and the checksum table is swapped through the script's test hook
YOLO_WEIGHTS_SHA256_FILE (the script reads its allow-list from a table; the pinned one is
export/download_pytorch_models.sha256). The offline hints are then followed literally."""
from __future__ import annotations

import hashlib
import os
import shlex
import signal
import stat
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from conftest import REPO, TEST_IMGSZ

PAYLOAD = b"download test payload: arbitrary bytes, NOT a checkpoint\n" * 4096
HOOK_NOTE = "note: checksums from YOLO_WEIGHTS_SHA256_FILE="
HINT_MARK = "under its own name: "


class _Handler(BaseHTTPRequestHandler):
    """GET /<name>: ("full", bytes) -> 200 with the bytes; ("truncated", bytes) -> a Content-Length
    larger than what is written, then the connection is closed; ("stalled", bytes) -> the same, but the
    connection stays open until server.release is set; anything else -> 404."""

    def do_GET(self):  # noqa: N802 (http.server's name)
        self.server.requests.append(self.path)
        kind, body = self.server.routes.get(self.path, ("missing", b""))
        if kind == "missing":
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body) * (1 if kind == "full" else 2)))
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()
        if kind == "stalled":
            self.server.release.wait(timeout=60)
        self.close_connection = True

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.routes, httpd.requests, httpd.release = {}, [], threading.Event()
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.release.set()
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=10)


@pytest.fixture
def hook_env(tmp_path) -> dict:
    """The test hook: a checksum table naming yolo11n.pt with the payload's SHA-256."""
    table = tmp_path / "test_checksums.sha256"
    table.write_text(f"# test table\n{hashlib.sha256(PAYLOAD).hexdigest()}  yolo11n.pt\n")
    return {**os.environ, "YOLO_WEIGHTS_SHA256_FILE": str(table)}


def make(*args: str, env=None, cwd=None) -> subprocess.CompletedProcess:
    cmd = ["make", "--no-print-directory", *(["-C", str(REPO)] if cwd is None else []), *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd)


def script_lines(stderr: str) -> list[str]:
    """stderr without Make's own "make: ***" lines and the test hook's note."""
    return [line for line in stderr.splitlines() if not line.startswith(("make: ", "make[", HOOK_NOTE))]


def dirs(tmp_path: Path) -> tuple[Path, list[str]]:
    weights = tmp_path / "w"
    return weights, [f"WEIGHTS_DIR={weights}", f"BUILD_DIR={tmp_path / 'b'}"]


def test_download_through_make_succeeds_readable_then_says_present(tmp_path, server, hook_env):
    server.routes["/yolo11n.pt"] = ("full", PAYLOAD)
    weights, settings = dirs(tmp_path)
    first = make(*settings, f"WEIGHTS_BASE_URL={server.url}", str(weights / "yolo11n.pt"), env=hook_env)
    assert first.returncode == 0, first.stderr
    assert (weights / "yolo11n.pt").read_bytes() == PAYLOAD
    assert stat.S_IMODE((weights / "yolo11n.pt").stat().st_mode) == 0o644  # not mktemp's 0600
    assert sorted(p.name for p in weights.iterdir()) == ["yolo11n.pt"]  # no temp file left
    assert "downloaded, checksum ok" in first.stdout and server.requests == ["/yolo11n.pt"]
    assert HOOK_NOTE in first.stderr and script_lines(first.stderr) == []  # the hook says it is on
    assert make(*settings, "-q", str(weights / "yolo11n.pt"), env=hook_env).returncode == 0  # Make: built

    again = make(*settings, f"WEIGHTS_BASE_URL={server.url}", "download", "SIZES=nano", env=hook_env)
    assert again.returncode == 0, again.stderr
    assert f"{weights / 'yolo11n.pt'}: present, checksum ok" in again.stdout
    assert server.requests == ["/yolo11n.pt"]  # nothing fetched the second time


def test_checksum_mismatch_writes_nothing_and_says_one_line(tmp_path, server, hook_env):
    server.routes["/yolo11n.pt"] = ("full", PAYLOAD[:-1] + b"!")
    weights, settings = dirs(tmp_path)
    result = make(*settings, f"WEIGHTS_BASE_URL={server.url}", str(weights / "yolo11n.pt"), env=hook_env)
    assert result.returncode != 0
    (line,) = script_lines(result.stderr)
    expected = hashlib.sha256(PAYLOAD).hexdigest()
    assert line.startswith(f"error: {server.url}/yolo11n.pt has SHA-256 ") and f"expected {expected}" in line
    assert list(weights.iterdir()) == []


def test_interrupted_transfer_leaves_nothing_make_takes_as_built(tmp_path, server, hook_env):
    server.routes["/yolo11n.pt"] = ("truncated", PAYLOAD)
    weights, settings = dirs(tmp_path)
    target = weights / "yolo11n.pt"
    result = make(*settings, f"WEIGHTS_BASE_URL={server.url}", str(target), env=hook_env)
    assert result.returncode != 0
    (line,) = script_lines(result.stderr)
    assert f"could not download {server.url}/yolo11n.pt (curl: (18)" in line  # curl: partial file
    assert server.requests  # the server was really reached and cut the transfer short
    assert list(weights.iterdir()) == []  # neither the target nor a temp file
    assert make(*settings, "-q", str(target), env=hook_env).returncode != 0  # still to be made


def test_interrupt_mid_download_leaves_no_temp_file(tmp_path, server, hook_env):
    """Ctrl-C (SIGINT to the process group, as a terminal sends it) while curl is writing the temp file."""
    server.routes["/yolo11n.pt"] = ("stalled", PAYLOAD)
    weights = tmp_path / "w"
    proc = subprocess.Popen(["bash", str(REPO / "export/download_pytorch_models.sh"), "--dir", str(weights), "yolo11n"],
                            env={**hook_env, "YOLO_WEIGHTS_BASE_URL": server.url}, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not (weights.is_dir() and any(p.stat().st_size > 0 for p in weights.glob("yolo11n.pt.*.tmp"))):
            assert proc.poll() is None and time.monotonic() < deadline, "the download never started writing"
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130
    assert list(weights.iterdir()) == []


def test_404_names_the_url_in_one_line(tmp_path, server, hook_env):
    weights, settings = dirs(tmp_path)
    result = make(*settings, f"WEIGHTS_BASE_URL={server.url}/", "download", "SIZES=nano", env=hook_env)
    assert result.returncode != 0
    (line,) = script_lines(result.stderr)
    assert line.startswith(f"error: could not download {server.url}/yolo11n.pt (curl: (22)") and "404" in line
    assert server.requests == ["/yolo11n.pt"] and list(weights.iterdir()) == []


def test_unknown_name_is_refused_in_one_line(tmp_path):
    result = subprocess.run(["bash", str(REPO / "export/download_pytorch_models.sh"), "yolo99x"],
                            capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 2 and result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: 'yolo99x' is not an allowed name (yolo11m yolo11n yolo11s)")
    assert list(tmp_path.iterdir()) == []  # not even pytorch_models/


def test_pinned_table_is_the_seed_allow_list():
    """The pinned table the script reads without the hook: the three seed checkpoints of v8.3.0."""
    rows = [line.split() for line in (REPO / "export/download_pytorch_models.sha256").read_text().splitlines()
            if line and not line.startswith("#")]
    assert {name: digest for digest, name in rows} == {
        "yolo11n.pt": "0ebbc80d4a7680d14987a577cd21342b65ecfd94632bd9a8da63ae6417644ee1",
        "yolo11s.pt": "85a76fe86dd8afe384648546b56a7a78580c7cb7b404fc595f97969322d502d5",
        "yolo11m.pt": "d5ffc1a674953a08e11a8d21e022781b1b23a19b730afc309290bd9fb5305b95"}


def test_a_file_with_another_checksum_is_left_as_is(tmp_path, server, hook_env):
    """A yolo11n.pt that is not the pinned one (perhaps the user's own) is neither fetched over nor removed."""
    server.routes["/yolo11n.pt"] = ("full", PAYLOAD)
    weights, settings = dirs(tmp_path)
    weights.mkdir()
    (weights / "yolo11n.pt").write_bytes(b"someone's own bytes")
    result = make(*settings, f"WEIGHTS_BASE_URL={server.url}", "download", "SIZES=nano", env=hook_env)
    assert result.returncode != 0
    (line,) = script_lines(result.stderr)
    assert "exists with SHA-256" in line and "left as is" in line
    assert (weights / "yolo11n.pt").read_bytes() == b"someone's own bytes" and server.requests == []


def test_bad_checksum_table_is_one_line(tmp_path):
    table = tmp_path / "bad.sha256"
    table.write_text("not-a-hash  yolo11n.pt\n")
    env = {**os.environ, "YOLO_WEIGHTS_SHA256_FILE": str(table)}
    result = subprocess.run(["bash", str(REPO / "export/download_pytorch_models.sh"), "--dir", str(tmp_path / "w"),
                             "yolo11n"], capture_output=True, text=True, env=env)
    assert result.returncode == 2
    (line,) = script_lines(result.stderr)
    assert line == f"error: {table} line 1: expected '<sha256>  <name>.pt', got 'not-a-hash  yolo11n.pt'"


def test_offline_run_of_the_script_names_url_and_both_ways_forward(tmp_path):
    """Run directly (no Make), with nothing listening on the port: the default hint, WEIGHTS_DIR kept."""
    env = {**os.environ, "YOLO_WEIGHTS_BASE_URL": "http://127.0.0.1:9/assets"}
    weights = tmp_path / "w"
    result = subprocess.run(["bash", str(REPO / "export/download_pytorch_models.sh"), "--dir", str(weights), "yolo11n"],
                            capture_output=True, text=True, env=env)
    assert result.returncode == 1
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: could not download http://127.0.0.1:9/assets/yolo11n.pt (curl: (7)")
    assert f"copy your own checkpoint to {weights}/yolo11n.pt" in line
    assert line.endswith(f"{HINT_MARK}make scratch MODEL=yolo11n WEIGHTS_DIR={weights} && "
                         f"make models/yolo11n_untrained_trt_end2end/1/model.plan WEIGHTS_DIR={weights}")
    assert list(weights.iterdir()) == []  # no temp file left behind


# ---- the hints name a command that then works --------------------------------------------------------
def _hint(stderr: str) -> str:
    (line,) = script_lines(stderr)
    assert HINT_MARK in line, line
    return line.split(HINT_MARK, 1)[1]


def _tree(tmp_path: Path) -> tuple[Path, Path, list[str]]:
    weights, models = tmp_path / "w", tmp_path / "m"
    return weights, models, [f"WEIGHTS_DIR={weights}", f"MODELS_DIR={models}", f"BUILD_DIR={tmp_path / 'b'}",
                             f"CACHE_DIR={tmp_path / 'c'}", f"PYTHON={sys.executable}", "PRECISION=fp32",
                             f"IMGSZ={TEST_IMGSZ}"]


def _follow(hint: str) -> subprocess.CompletedProcess:
    """Run the hint as printed, in a shell, from the repository (where the user ran make)."""
    return subprocess.run(["bash", "-c", hint], capture_output=True, text=True, cwd=REPO)


def test_offline_hint_for_the_seed_builds_the_untrained_model_under_its_own_name(tmp_path, server):
    weights, models, settings = _tree(tmp_path)
    goal = str(models / "yolov11_nano/1/model.onnx")
    failed = make(*settings, f"WEIGHTS_BASE_URL={server.url}", goal)  # the server has no file: 404
    assert failed.returncode != 0 and server.requests == ["/yolo11n.pt"]
    hint = _hint(failed.stderr)
    assert hint.startswith("make scratch MODEL=yolo11n ") and f" && make {models}/yolo11n_untrained/1/model.onnx " in hint
    followed = _follow(hint)
    assert followed.returncode == 0, followed.stdout + followed.stderr
    assert (models / "yolo11n_untrained/1/model.onnx").is_file()
    # the untrained checkpoint never poses as the seed's: no yolo11n.pt, no yolov11_nano model
    assert sorted(p.name for p in weights.iterdir()) == ["yolo11n_untrained.pt"]
    assert not (models / "yolov11_nano").exists()


def test_missing_checkpoint_hint_builds_the_untrained_model_under_its_own_name(tmp_path):
    weights, models, settings = _tree(tmp_path)
    failed = make(*settings, str(models / "mydet/1/model.onnx"))
    assert failed.returncode != 0
    hint = _hint(failed.stderr)
    assert failed.stderr.startswith(f"error: checkpoint {weights}/mydet.pt not found: copy your .pt there, or ")
    assert f" && make {models}/yolo11n_untrained/1/model.onnx " in hint
    followed = _follow(hint)
    assert followed.returncode == 0, followed.stdout + followed.stderr
    assert (models / "yolo11n_untrained/1/model.onnx").is_file()
    assert sorted(p.name for p in weights.iterdir()) == ["yolo11n_untrained.pt"]


def test_hint_for_aggregate_goals_and_plain_download(tmp_path, server, scratch_weights):
    """`make onnx` is renamed through NAMES, `make validate` through MODEL; `make download` (no model goal) names the README's main
    job for the untrained checkpoint, which Make then knows how to build (-n: no TensorRT here). The
    scratch step, run literally above, is stood in for by the session's `make scratch MODEL=yolo11n`."""
    weights, models, settings = _tree(tmp_path)
    onnx = make(*settings, f"WEIGHTS_BASE_URL={server.url}", "onnx", "SIZES=nano")
    assert " && make onnx NAMES=yolo11n_untrained " in _hint(onnx.stderr)
    validate = make(*settings, f"WEIGHTS_BASE_URL={server.url}", "validate", "MODEL=yolov11_nano")
    assert " && make validate MODEL=yolo11n_untrained " in _hint(validate.stderr)
    assert " MODEL=yolov11_nano" not in _hint(validate.stderr)

    download = make(*settings, f"WEIGHTS_BASE_URL={server.url}", "download", "SIZES=nano")
    hint = _hint(download.stderr)
    scratch, build = hint.split(" && ")
    assert scratch == f"make scratch MODEL=yolo11n WEIGHTS_DIR={shlex.quote(str(weights))}"
    assert build == f"make models/yolo11n_untrained_trt_end2end/1/model.plan WEIGHTS_DIR={shlex.quote(str(weights))}"
    assert scratch_weights.name == "yolo11n_untrained.pt"
    weights.mkdir(exist_ok=True)  # the failed download made it, empty
    (weights / scratch_weights.name).symlink_to(scratch_weights)
    dry = _follow(build.replace("make ", "make -n ", 1))  # in the repository's models/, but -n writes nothing
    assert dry.returncode == 0, dry.stderr
    assert "export/export_onnx.py --weights" in dry.stdout and "export/build_engine.py --onnx" in dry.stdout


def test_hint_when_the_goal_is_the_checkpoint_itself(tmp_path, server):
    """`make <weights>/yolo11n.pt` (make demo's first step) and `make <weights>/mydet.pt`: the goal is the
    checkpoint, so the hint is the scratch step alone (which writes it under its own name), never
    `... && make ` with an empty target; followed literally, it works."""
    weights, models, settings = _tree(tmp_path)
    seed = make(*settings, f"WEIGHTS_BASE_URL={server.url}", str(weights / "yolo11n.pt"))
    assert seed.returncode != 0 and server.requests == ["/yolo11n.pt"]
    hint = _hint(seed.stderr)
    assert "&&" not in hint and hint.startswith("make scratch MODEL=yolo11n ") and "WEIGHTS_DIR=" in hint, hint
    other = make(*settings, str(weights / "mydet.pt"))
    assert other.returncode != 0
    other_hint = _hint(other.stderr)
    assert "&&" not in other_hint and other_hint.startswith("make scratch MODEL=yolo11n "), other_hint
    followed = _follow(hint)
    assert followed.returncode == 0, followed.stdout + followed.stderr
    assert sorted(p.name for p in weights.iterdir()) == ["yolo11n_untrained.pt"]
