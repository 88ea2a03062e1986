"""`make demo`, the first run a new user makes, end to end on this machine: no network (the download
points at a closed local port), no GPU. It must fall back to an untrained checkpoint and say so loudly,
build, validate, serve through the real Triton (when one can start here) and draw the detections."""
from __future__ import annotations

import subprocess
import sys

import cv2
import pytest

from conftest import REPO, SCRATCH_NAME, real_triton_missing, skip_unless_ci
from yolo_triton import triton_server as ts

pytestmark = pytest.mark.slow


def test_make_demo_offline(tmp_path, scratch_weights):
    weights = tmp_path / "weights"
    weights.mkdir()
    # the checkpoint `make demo` would write with make scratch; linked to save the minute it takes
    (weights / scratch_weights.name).symlink_to(scratch_weights)
    dead = f"http://127.0.0.1:{ts.free_port()}"  # nothing listens: the download fails at once
    result = subprocess.run(
        ["make", "--no-print-directory", "-C", str(REPO), "demo", f"DEMO_DIR={tmp_path / 'demo'}",
         f"WEIGHTS_DIR={weights}", f"WEIGHTS_BASE_URL={dead}", "IMGSZ=320", f"PYTHON={sys.executable}"],
        capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "UNTRAINED" in result.stderr and SCRATCH_NAME in result.stderr
    models = tmp_path / "demo" / "models"
    assert sorted(p.name for p in models.iterdir()) == [SCRATCH_NAME, f"{SCRATCH_NAME}_end2end"]
    assert "RESULT: PASS" in result.stdout
    if real_triton_missing() is not None:
        assert "not served" in result.stdout
        skip_unless_ci(f"built and validated, not served: {real_triton_missing()}")
    assert "demo: served" in result.stdout
    drawn = sorted((tmp_path / "demo" / "results").glob("*.png"))
    assert len(drawn) == 4  # two models x two sample images
    assert all(cv2.imread(str(p)) is not None for p in drawn)
