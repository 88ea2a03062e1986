"""The serving benchmark (yolo_triton.bench_serving, scripts/bench_serving.py, make bench-serving) against
the REAL tritonserver with Triton's real ONNX Runtime backend, at a tiny size.

The repository is what ``make ... INSTANCE_KIND=cpu NMS=onnx PRECISION=fp32 IMGSZ=320`` writes for the
UNTRAINED scratch checkpoint (Track A and the end2end ONNX), plus Track D through the CPU stand-ins of
scripts/bench_serving_local.py (named doubles: the DALI step is a Python-backend model running our DALI
pipeline on the CPU; the TensorRT step's name is served by the end2end ONNX). What is checked is that the
harness runs, counts right (calls, images and round trips against the server's own statistics deltas;
images/s from those counts and the window) and refuses what is not there with one line. No timing
assertions: the figures belong in the benchmark's outputs.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import (REPO, SCRATCH_NAME, TEST_IMGSZ, Tree, leaked_shm_files, registered_regions, shm_files,
                      skip_without_real_triton)
from yolo_triton import bench_serving as bs
from yolo_triton import client as yc
from yolo_triton import triton_server as ts

import bench_serving_local as local  # noqa: E402 - scripts/bench_serving_local.py

pytestmark = pytest.mark.slow
SCRIPT = REPO / "scripts" / "bench_serving.py"


@pytest.fixture(scope="module")
def server(tmp_path_factory, scratch_weights):
    skip_without_real_triton()
    tree = Tree(tmp_path_factory.mktemp("bench"))
    tree.weights.mkdir()
    (tree.weights / scratch_weights.name).symlink_to(scratch_weights)
    m = tree.models
    tree.make(f"{m}/{SCRATCH_NAME}/config.pbtxt", f"{m}/{SCRATCH_NAME}_end2end/config.pbtxt", "NMS=onnx",
              "PRECISION=fp32", "INSTANCE_KIND=cpu", f"IMGSZ={TEST_IMGSZ}")
    repo = tmp_path_factory.mktemp("bench_repo") / "models"
    served = local.prepare_repository(m, SCRATCH_NAME, repo, trackd_standin=True)
    assert served == [SCRATCH_NAME, f"{SCRATCH_NAME}_end2end", f"{SCRATCH_NAME}_trt_end2end",
                      f"preprocess_letterbox_{TEST_IMGSZ}", f"{SCRATCH_NAME}_ensemble"]
    srv = ts.start_server(repo, tmp_path_factory.mktemp("bench_triton"))
    try:
        states = srv.model_states()
        assert all(s.get("state") == "READY" for s in states.values()), states
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def images():
    return yc.image_paths([yc.sample_images_dir()])


def tracks(server, protocol: str, wanted=None) -> list[bs.Track]:
    with bs.open_client(server.url(protocol), protocol) as client:
        return bs.discover_tracks(client, SCRATCH_NAME, wanted, server.url(protocol))


def check_counts(cell: dict) -> None:
    """Calls, images and round trips agree with each other and with the server's statistics deltas."""
    own = cell["server"][cell["model"]]
    assert cell["images"] == cell["calls"] * cell["batch"]
    expected_trips = cell["images"] if cell["kind"] == yc.KIND_ENCODED else cell["calls"]  # D: one per image
    assert cell["round_trips"] == expected_trips
    assert own["requests"] == cell["round_trips"], (cell["model"], own)
    assert own["inferences"] == cell["images"], (cell["model"], own)
    for name, stats in cell["server"].items():  # an ensemble's steps each saw every image once
        sizes = {int(s): n for s, n in stats["batch_sizes"].items()}
        assert stats["inferences"] == cell["images"], (name, stats)
        assert sum(s * n for s, n in sizes.items()) == stats["inferences"], (name, stats)
        assert sum(sizes.values()) == stats["executions"] <= stats["inferences"], (name, stats)
    assert cell["images_per_s"] == pytest.approx(cell["images"] / cell["wall_s"], rel=1e-3, abs=0.01)
    assert cell["calls_per_s"] == pytest.approx(cell["calls"] / cell["wall_s"], rel=1e-3, abs=0.01)
    lat, split = cell["latency_ms"], cell["split_ms"]
    assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
    assert min(split.values()) >= 0 and sum(split.values()) == pytest.approx(lat["mean"], abs=0.01)


def test_discovers_every_served_track(server):
    found = {t.track: t for t in tracks(server, "grpc")}
    assert list(found) == ["A", "end2end", "C", "D"]  # no <name>_trt here
    assert {k: (t.model, t.served.kind) for k, t in found.items()} == {
        "A": (SCRATCH_NAME, yc.KIND_OUTPUT0), "end2end": (f"{SCRATCH_NAME}_end2end", yc.KIND_END2END),
        "C": (f"{SCRATCH_NAME}_trt_end2end", yc.KIND_END2END), "D": (f"{SCRATCH_NAME}_ensemble", yc.KIND_ENCODED)}
    assert found["D"].stats_models == (f"{SCRATCH_NAME}_ensemble", f"preprocess_letterbox_{TEST_IMGSZ}",
                                       f"{SCRATCH_NAME}_trt_end2end")


def test_grid_counts_match_the_server_statistics(server, images):
    """A, end2end and D at concurrency 1 and 2 over gRPC; A also with 2 images per request."""
    found = tracks(server, "grpc", ["A", "end2end", "D"])
    settings = bs.Settings(url=server.grpc_url, protocol="grpc", tracks=found, images=images, concurrency=(1, 2),
                           batch=(1,), seconds=None, requests=4, warmup=1, progress=False)
    result = bs.run_benchmark(settings)
    cells = result["cells"]
    assert [(c["track"], c["concurrency"]) for c in cells] == [(t, c) for t in ("A", "end2end", "D") for c in (1, 2)]
    for cell in cells:
        assert cell["calls"] == 4
        check_counts(cell)
        assert cell["detections_per_image"] > 0  # real detections came back through the client's path
    batched = bs.run_benchmark(bs.Settings(url=server.grpc_url, protocol="grpc", tracks=found[:1], images=images,
                                           concurrency=(2,), batch=(2,), seconds=None, requests=3, warmup=1,
                                           progress=False))["cells"]
    assert [(c["calls"], c["images"]) for c in batched] == [(3, 6)]
    check_counts(batched[0])
    table = bs.markdown_table(result)
    assert len(table.strip().splitlines()) == 2 + len(cells)
    assert result["settings"]["shared_memory"] == "none"
    assert bs.markdown(result).startswith("Transfer: grpc, tensors in the requests and responses (no shared memory)")
    assert f"preprocess_letterbox_{TEST_IMGSZ}:" in table  # an ensemble's steps' batches are shown


def test_duration_mode_counts_every_call_in_the_window(server, images):
    found = tracks(server, "http", ["end2end"])
    result = bs.run_benchmark(bs.Settings(url=server.http_url, protocol="http", tracks=found, images=images,
                                          concurrency=(2,), seconds=1.0, requests=None, warmup=1, progress=False))
    (cell,) = result["cells"]
    assert cell["calls"] >= 2  # each client completes at least the call in flight at the deadline
    check_counts(cell)


def test_system_shared_memory_counts_match_and_nothing_is_left(server, images):
    """The same grid through system shared memory (each client registers its regions once, before the
    warm-up): counts agree with the server's statistics as without; the outputs say how tensors
    travelled; afterwards the server has no region registered and no /dev/shm file of ours is left."""
    since = time.time()
    found = tracks(server, "http", ["A", "end2end", "D"])
    result = bs.run_benchmark(bs.Settings(url=server.http_url, protocol="http", tracks=found, images=images,
                                          concurrency=(2,), batch=(2,), seconds=None, requests=4, warmup=1,
                                          shared_memory="system", progress=False))
    assert [c["track"] for c in result["cells"]] == ["A", "end2end", "D"]
    for cell in result["cells"]:
        assert cell["calls"] == 4 and cell["images"] == 8
        check_counts(cell)
        assert cell["detections_per_image"] > 0
    assert result["settings"]["shared_memory"] == "system"
    assert bs.markdown(result).startswith("Transfer: http, tensors through system shared memory")
    with bs.open_client(server.http_url, "http") as client:
        assert registered_regions(client) == []
    assert shm_files(os.getpid()) == [] and leaked_shm_files(since) == []


def run_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout)


def test_cli_writes_table_json_and_plot_with_worker_processes(server, tmp_path):
    out = tmp_path / "bench"
    done = run_cli("--url", server.http_url, "--protocol", "http", "--model", SCRATCH_NAME, "--tracks", "A", "D",
                   "--concurrency", "1", "2", "--requests", "4", "--warmup", "1", "--processes", "2", "--out", str(out))
    assert done.returncode == 0, done.stderr
    result = json.loads(out.with_suffix(".json").read_text())
    assert [(c["track"], c["concurrency"], c["processes"]) for c in result["cells"]] == [
        ("A", 1, 1), ("A", 2, 2), ("D", 1, 1), ("D", 2, 2)]
    for cell in result["cells"]:
        assert cell["calls"] == 4
        check_counts(cell)
    text = out.with_suffix(".md").read_text()
    assert text in done.stdout
    comparison, cells = text.split("Every cell")
    rows = [line for line in comparison.splitlines() if line.startswith("| Track ")]
    assert [r.split(" | ")[1] for r in rows[1:]] == [SCRATCH_NAME, f"{SCRATCH_NAME}_ensemble"]  # one row per track
    assert len([line for line in cells.splitlines() if line.startswith("| Track ")]) == 1 + 4  # header + 4 cells
    assert out.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert result["server"]["version"] and result["machine"]["cpus"] == os.cpu_count()


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_missing_model_or_track_is_one_line(server, tmp_path, protocol):
    url = server.url(protocol)
    for argv, needle in ((["--model", "no_such_model"], "no_such_model"),
                         (["--model", SCRATCH_NAME, "--tracks", "B"], f"{SCRATCH_NAME}_trt"),
                         (["--track", "x=not_served"], "not_served")):
        done = run_cli("--url", url, "--protocol", protocol, *argv, "--requests", "2", "--out", str(tmp_path / "b"))
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 1 and len(lines) == 1 and needle in lines[0] and "error" in lines[0], done.stderr
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_unreachable_server_is_one_line(tmp_path, protocol):
    url = f"127.0.0.1:{ts.free_port()}"  # nothing listens there
    done = run_cli("--url", url, "--protocol", protocol, "--model", "m", "--requests", "2",
                   "--out", str(tmp_path / "b"))
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 1 and len(lines) == 1 and url in lines[0] and "no Triton server" in lines[0], done.stderr


def test_make_bench_serving_wiring(tmp_path):
    usage = subprocess.run(["make", "--no-print-directory", "-C", str(REPO), "bench-serving"], capture_output=True,
                           text=True)
    assert usage.returncode == 2 and "usage: make bench-serving MODEL=" in usage.stderr
    url = f"127.0.0.1:{ts.free_port()}"
    done = subprocess.run(["make", "--no-print-directory", "-C", str(REPO), f"PYTHON={sys.executable}", "bench-serving",
                           "MODEL=m", f"TRITON_URL={url}", f"BENCH_OUT={tmp_path / 'b'}", "BENCH_REQUESTS=2"],
                          capture_output=True, text=True)
    errors = [line for line in done.stderr.splitlines() if line.startswith("[bench_serving]")]
    assert done.returncode != 0 and len(errors) == 1 and url in errors[0], done.stderr
    assert "--requests 2" in done.stdout  # the recipe as make echoed it
    assert "--shared-memory none" in done.stdout  # BENCH_SHARED_MEMORY's default


@pytest.mark.parametrize("processes,sig,shared", [(1, signal.SIGINT, "none"), (2, signal.SIGINT, "none"),
                                                 (2, signal.SIGTERM, "none"), (2, signal.SIGTERM, "system")])
def test_interrupt_stops_every_client_and_exits_130(server, tmp_path, processes, sig, shared):
    """Ctrl-C (SIGINT to the process group, as a terminal sends it) or SIGTERM mid-window: exit 130 with one
    line, promptly, and no process of the run is left running (worker processes included); with shared
    memory, no region stays registered on the server and no /dev/shm file of the run is left."""
    before, since = _inferences(server), time.time()
    proc = subprocess.Popen([sys.executable, str(SCRIPT), "--url", server.grpc_url, "--model", SCRATCH_NAME,
                             "--tracks", "A", "--concurrency", "2", "--warmup", "1", "--seconds", "120",
                             "--processes", str(processes), "--shared-memory", shared, "--out", str(tmp_path / "b")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        # the window has started once the server has answered more than the 2 x 1 warm-up calls
        while time.monotonic() < deadline and proc.poll() is None and _inferences(server) - before < 4:
            time.sleep(0.2)
        time.sleep(1)
        assert proc.poll() is None, proc.communicate()
        if shared != "none":  # 2 clients x (input, output0), registered while the run goes on
            with bs.open_client(server.http_url, "http") as client:
                assert len(registered_regions(client)) == 4
        if sig == signal.SIGINT:
            os.killpg(proc.pid, sig)
        else:
            proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130, err
    assert any(line.startswith("[bench_serving] interrupted") for line in err.splitlines()), err
    time.sleep(1)
    assert _group(proc.pid) == [], _group(proc.pid)
    with bs.open_client(server.http_url, "http") as client:
        assert registered_regions(client) == []
    assert leaked_shm_files(since) == []


def _group(pgid: int) -> list[str]:
    """Live (not zombie) processes of the process group ``pgid``."""
    rows = subprocess.run(["ps", "-eo", "pid=,pgid=,stat=,args="], capture_output=True, text=True).stdout.splitlines()
    return [r for r in rows if r.split()[1] == str(pgid) and not r.split()[2].startswith("Z")]


def _inferences(server, model: str = SCRATCH_NAME) -> int:
    status, body = ts._get(f"http://{server.http_url}/v2/models/{model}/stats")
    assert status == 200, body
    return int(json.loads(body)["model_stats"][0]["inference_count"])


def test_a_model_unloaded_mid_run_fails_its_cell_and_says_so(server, tmp_path):
    """The server stops serving the model during the window: the cell is recorded as failed in the JSON
    and the table, and the run ends with exit 1 and one error line (last, after the per-cell line)."""
    model = f"{SCRATCH_NAME}_end2end"
    before = _inferences(server, model)
    proc = subprocess.Popen([sys.executable, str(SCRIPT), "--url", server.grpc_url, "--model", SCRATCH_NAME,
                             "--tracks", "end2end", "--concurrency", "2", "4", "--warmup", "1", "--seconds", "120",
                             "--out", str(tmp_path / "b")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None and _inferences(server, model) - before < 4:
            time.sleep(0.2)
        assert proc.poll() is None, proc.communicate()
        status, body = ts._post(f"http://{server.http_url}/v2/repository/models/{model}/unload")
        assert status == 200, body
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        assert server.load(model)[0] == 200  # serve it again for whatever runs next
    assert proc.returncode == 1, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("[bench_serving] error:") and model in last, err
    cells = json.loads((tmp_path / "b.json").read_text())["cells"]
    assert cells[0]["concurrency"] == 2 and cells[0]["error"] and cells[0]["calls"] >= 1
