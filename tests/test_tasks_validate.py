"""``make validate`` for every task: the checkpoint's own ``predict`` against Track A and end2end
(yolo_triton.validate_tasks), on the models ``make`` built (conftest.task_tree), and a model that is not its
checkpoint's fails."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from conftest import REPO, TASK_ARCHS, task_make_settings, task_model_name

pytestmark = pytest.mark.slow


def report_of(name: str) -> dict:
    return json.loads((REPO / "results" / f"validate_{name}.json").read_text())


@pytest.mark.parametrize("arch", ["yolo11n-seg", "yolo11n-pose", "yolo26n-obb", "yolo11n-obb", "yolo11n-cls"])
def test_make_validate_passes_for_every_task(task_tree, arch):
    task, nms = TASK_ARCHS[arch]
    name = task_model_name(arch)
    result = task_tree.make("validate", f"MODEL={name}", *task_make_settings(nms))
    rep = report_of(name)
    formats = {f["name"]: f for f in rep["formats"]}
    assert rep["task"] == task and rep["passed"], json.dumps(rep["formats"], indent=1)[:3000]
    assert formats["onnx"]["status"] == "passed"
    assert formats["onnx"]["counts"]["reference"] >= (2 if task == "classify" else 3)  # images / instances
    if nms:
        assert formats["end2end"]["status"] == "passed"
    else:  # the end2end model cannot exist: said once, not built, reported as not built
        assert "no end2end model" in result.stderr and formats["end2end"]["status"] == "skipped"
        assert not (task_tree.models / f"{name}_end2end").exists()
    assert "RESULT: PASS" in result.stdout


def test_a_model_that_is_not_its_checkpoint_fails_validation(task_tree):
    """yolov8n-seg's Track A graph validated against yolo11n-seg's checkpoint: same task and outputs, other
    weights -> FAIL, exit 1 (the check can fail)."""
    name = "impostor_seg"
    shutil.copytree(task_tree.models / task_model_name("yolov8n-seg"), task_tree.models / name)
    shutil.copy(task_tree.weights / f"{task_model_name('yolo11n-seg')}.pt", task_tree.weights / f"{name}.pt")
    try:
        # scripts/validate.py as make validate runs it (make itself would rebuild the graph from the .pt)
        result = subprocess.run([sys.executable, REPO / "scripts" / "validate.py", "--model", name, "--models-dir",
                                 task_tree.models, "--weights-dir", task_tree.weights, "--json",
                                 REPO / "results" / f"validate_{name}.json"], capture_output=True, text=True)
        assert result.returncode == 1 and "RESULT: FAIL" in result.stdout, result.stdout + result.stderr
        rep = report_of(name)
        onnx = next(f for f in rep["formats"] if f["name"] == "onnx")
        assert onnx["status"] == "failed" and any("no partner" in n or "IoU" in n for n in onnx["notes"]), onnx
    finally:
        shutil.rmtree(task_tree.models / name, ignore_errors=True)
        (task_tree.weights / f"{name}.pt").unlink(missing_ok=True)
