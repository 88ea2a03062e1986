"""``make soak`` in its short form (issue 21, item 1): load on three tracks with every fault injected.

What is real: ``make soak`` as a user runs it (the Make graph builds Track A + end2end ``NMS=onnx`` of
an UNTRAINED scratch checkpoint at IMGSZ 320), ``tritonserver`` 2.51 with Triton's ONNX Runtime backend,
docker-compose.yml's flags, SIGKILL of its process and a restart on the same ports, ``make reload``,
``versions.promote`` / ``versions.rollback``. Stand-ins, named so: Track D's DALI step is a
Python-backend model running our DALI pipeline on the CPU, its TensorRT step's name is served by the
end2end ONNX (scripts/bench_serving_local.py). No timing is asserted: only outcomes.
"""
from __future__ import annotations

import json
import threading

import numpy as np
import pytest

from conftest import SCRATCH_NAME, Tree, skip_without_real_triton
from yolo_triton import soak

pytestmark = pytest.mark.slow
SECONDS = 30


@pytest.fixture(scope="module")
def report(tmp_path_factory, scratch_weights):
    skip_without_real_triton()
    tree = Tree(tmp_path_factory.mktemp("soak"))
    tree.weights.mkdir()
    (tree.weights / scratch_weights.name).symlink_to(scratch_weights)
    out = tree.root / "out" / "soak"
    done = tree.make("soak", check=False, SOAK_SECONDS=SECONDS, SOAK_CLIENTS=2, SOAK_MODEL=SCRATCH_NAME,
                     SOAK_DIR=tree.root / "soak_build", SOAK_OUT=out, IMGSZ=320)
    assert out.with_suffix(".json").is_file(), done.stderr[-3000:]
    return {"done": done, "out": out, "json": json.loads(out.with_suffix(".json").read_text()),
            "models": tree.root / "soak_build" / "models"}


def test_report_files_exist(report):
    out = report["out"]
    assert out.with_suffix(".json").stat().st_size > 0 and out.with_suffix(".png").stat().st_size > 0
    assert "WRONG ANSWERS: 0" in report["done"].stdout


def test_no_wrong_answer(report):
    data = report["json"]
    assert data["wrong_answers"] == 0
    assert data["requests"]["by_outcome"].get("image correct", 0) > 0
    assert set(data["tracks"]) == {"A", "end2end", "D"}
    assert all(row["wrong"] == 0 for row in data["phases"])


def test_every_fault_happened_and_recovered(report):
    faults = {f["name"]: f for f in report["json"]["faults"]}
    assert set(faults) == {name for name, _ in soak.SCHEDULE}  # and no "server died"
    for name, fault in faults.items():
        assert fault["ok"] and fault["ready_after"], (name, fault["detail"])
    assert faults["broken model"]["extra"]["load_refused"] and faults["broken model"]["extra"]["other_models_ready"]
    assert faults["restart"]["extra"]["pid_killed"] and report["json"]["restart_to_ready_s"] is not None
    # answers came after the restart too (the clients waited and resent)
    after = [row for row in report["json"]["phases"] if row["phase"] == "from restart"]
    assert after and after[0]["answers"] > 0


def test_every_malformed_request_was_refused(report):
    table = report["json"]["malformed_by_kind"]
    kinds = {key.split(" ", 1)[1] for key in table}
    assert {"wrong dtype", "wrong shape", "oversized batch", "empty"} <= kinds
    assert {"D truncated jpeg", "D not an image"} <= set(table)
    assert report["json"]["requests"]["by_outcome"].get("malformed accepted", 0) == 0
    for key, row in table.items():
        assert row["rejected"] >= 1, (key, row)  # each kind got its error from the server


def test_failed_batches_of_the_trackd_standin_do_not_crash_the_server(report, tmp_path):
    """Found by the soak: the stand-in answered a failed batch with ONE TritonError shared by all its
    responses, and the Python backend (r24.10) crashed (SIGSEGV in libtriton_python.so) once the dynamic
    batcher merged several failing requests. Eight clients send bytes that are no image at once, 15 each:
    every request gets its error and the server lives (with the shared error it died every time)."""
    import tritonclient.grpc as grpcclient

    import bench_serving_local as local  # scripts/: the repository with the Track D stand-ins
    from yolo_triton import triton_server as ts

    repo = tmp_path / "models"
    local.prepare_repository(report["models"], SCRATCH_NAME, repo, True)
    server = ts.start_server(repo, tmp_path / "server")
    errors, answers = [], []

    def send():
        client = grpcclient.InferenceServerClient(server.grpc_url)
        data = np.frombuffer(b"not an image at all " * 50, np.uint8)[None]
        for _ in range(15):
            tensor = grpcclient.InferInput("IMAGE_BYTES", list(data.shape), "UINT8")
            tensor.set_data_from_numpy(data)
            try:
                answers.append(client.infer(f"{SCRATCH_NAME}_ensemble", [tensor]))
            except Exception as err:  # noqa: BLE001 - the expected path
                errors.append(str(err))
            if server.process.poll() is not None:
                break
        client.close()

    try:
        threads = [threading.Thread(target=send) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(180)
        alive = server.process.poll() is None
    finally:
        server.stop()
    assert alive, [line for line in server.log().splitlines() if "Signal" in line or "exception" in line][:3]
    assert answers == [] and len(errors) == 8 * 15
    assert all("DALI stand-in:" in e for e in errors), errors[:2]
