"""Bad input: one line with the cause, a non-zero exit, nothing already built lost, and no partial
file that make would take as built."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO, SCRATCH_NAME, TEST_IMGSZ, Tree

pytestmark = pytest.mark.slow
SETTINGS = (f"NAMES={SCRATCH_NAME}", "PRECISION=fp32", f"IMGSZ={TEST_IMGSZ}")


def run_step(script: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "export" / script), *args], capture_output=True, text=True)


def assert_one_line_failure(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1, result.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


@pytest.fixture()
def built_copy(fp32_tree, tmp_path) -> Tree:
    """A private copy of the built FP32 tree (tests here try to damage it)."""
    tree = Tree(tmp_path / "tree")
    shutil.copytree(fp32_tree.root, tree.root, symlinks=True)
    return tree


def snapshot(tree: Tree) -> dict[str, tuple[int, bytes]]:
    return {str(p.relative_to(tree.models)): (p.stat().st_mtime_ns, p.read_bytes())
            for p in sorted(tree.models.rglob("*")) if p.is_file()}


def test_missing_checkpoint(tmp_path):
    result = run_step("export_onnx.py", "--weights", str(tmp_path / "nope.pt"), "--out", str(tmp_path / "m.onnx"),
                      "--imgsz", "640", "--precision", "fp32")
    assert_one_line_failure(result, "checkpoint not found", "nope.pt")
    made = Tree(tmp_path).make(f"{tmp_path}/models/nope/1/model.onnx", check=False)
    assert made.returncode != 0 and "checkpoint" in made.stderr and "not found" in made.stderr
    assert not (tmp_path / "m.onnx").exists()


def test_random_bytes_as_checkpoint(tmp_path):
    bogus = tmp_path / "bogus.pt"
    bogus.write_bytes(os.urandom(4096))
    result = run_step("export_onnx.py", "--weights", str(bogus), "--out", str(tmp_path / "m.onnx"),
                      "--imgsz", "640", "--precision", "fp32")
    assert_one_line_failure(result, "cannot load", "bogus.pt")
    assert not list(tmp_path.glob("m.onnx*"))


def test_unsupported_head_is_refused(tmp_path):
    """Every YOLO task is served (tests/test_tasks_export.py); a head of another family (RT-DETR here) is
    refused in one line before anything is written."""
    import torch
    from ultralytics.nn.tasks import RTDETRDetectionModel

    rtdetr = tmp_path / "rtdetr.pt"
    torch.save({"model": RTDETRDetectionModel(cfg="rtdetr-l.yaml", verbose=False), "train_args": {}}, rtdetr)
    result = run_step("export_onnx.py", "--weights", str(rtdetr), "--out", str(tmp_path / "m.onnx"),
                      "--imgsz", "640", "--precision", "fp32")
    assert_one_line_failure(result, "head 'RTDETRDecoder'", "not supported")
    assert not list(tmp_path.glob("m.onnx*"))


@pytest.mark.parametrize("setting,fragment", [
    ("IOU=1.5", "IOU=1.5 is outside (0, 1]"), ("IOU=0", "IOU=0.0 is outside"),
    ("CONF=0", "CONF=0.0 is outside (0, 1]"), ("CONF=-0.1", "CONF=-0.1 is outside"),
    ("TOPK=0", "TOPK=0 must be a positive"), ("TOPK=-5", "TOPK=-5 must be a positive"),
    ("MAX_BATCH=0", "max batch must be > 0"), ("MAX_BATCH=-4", "max batch must be > 0"),
])
def test_bad_settings_fail_and_keep_what_was_built(built_copy, setting, fragment):
    before = snapshot(built_copy)
    result = built_copy.make("onnx", *SETTINGS, setting, check=False)
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and fragment in errors[0], result.stderr
    assert "Traceback" not in result.stderr
    assert snapshot(built_copy) == before
    assert not list(built_copy.models.rglob("*.tmp"))


def test_imgsz_not_a_multiple_of_the_stride(built_copy):
    before = snapshot(built_copy)
    result = built_copy.make("onnx", f"NAMES={SCRATCH_NAME}", "PRECISION=fp32", "IMGSZ=330", check=False)
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and "IMGSZ=330 is not a positive multiple of the model stride 32" in errors[0]
    assert snapshot(built_copy) == before


def test_a_step_killed_midway_leaves_nothing_make_takes_as_built(built_copy):
    """kill -9 during a rebuild: the old artefact stays intact, nothing half-written is in place, and
    make still considers the target out of date (so the next run rebuilds it)."""
    target = built_copy.artefact(SCRATCH_NAME)
    before = target.read_bytes()
    cmd = ["make", "--no-print-directory", "-C", str(REPO), *built_copy.make_vars(), "onnx",
           f"NAMES={SCRATCH_NAME}", "PRECISION=fp32", "IMGSZ=256"]
    proc, temp = _start(cmd, built_copy)
    _wait_until_exporting(proc, temp)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert target.read_bytes() == before
    again = built_copy.make("-q", "onnx", f"NAMES={SCRATCH_NAME}", "PRECISION=fp32", "IMGSZ=256", check=False)
    assert again.returncode == 1
    # Nothing with the artefact's final name was half-written (the export works outside the repository).
    assert {p.name for p in target.parent.iterdir()} == {"model.onnx"}


def _start(cmd: list[str], tree: Tree) -> tuple[subprocess.Popen, Path]:
    """``cmd`` in its own process group with a temp dir of its own (TMPDIR): the export's work folder is
    seen there, never another run's (other tests, other pytest workers) in the system temp dir."""
    temp = tree.root / "tmp"
    temp.mkdir(exist_ok=True)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                            env={**os.environ, "TMPDIR": str(temp)})
    return proc, temp


def _wait_until_exporting(proc, temp: Path, timeout: float = 60.0) -> None:
    """Until the export step's work folder (in ``temp``, the step's TMPDIR) exists, then a second more."""
    deadline = time.monotonic() + timeout
    while not any(temp.glob("yolo-triton-export-*")):
        assert proc.poll() is None and time.monotonic() < deadline, "the export never started"
        time.sleep(0.05)
    time.sleep(1.0)  # inside ultralytics' export


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_an_interrupted_first_export_leaves_no_model_folder(built_copy, sig):
    """Ctrl-C (SIGINT to the process group) or SIGTERM during the FIRST export of a model: make fails,
    and no folder of that model is left in the repository (Triton would take it for a broken model)."""
    (built_copy.weights / "fresh.pt").symlink_to((built_copy.weights / f"{SCRATCH_NAME}.pt").resolve())
    cmd = ["make", "--no-print-directory", "-C", str(REPO), *built_copy.make_vars(),
           str(built_copy.artefact("fresh")), "PRECISION=fp32", "IMGSZ=256"]
    proc, temp = _start(cmd, built_copy)
    _wait_until_exporting(proc, temp)
    os.killpg(proc.pid, sig)
    assert proc.wait(timeout=60) != 0
    assert not (built_copy.models / "fresh").exists()
