"""The seed's scripts: clean-up for re-export, export_models.py (drives Make, summary table),
export_small_only.sh. The download script has its own module, tests/test_download.py."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, SCRATCH_NAME, Tree


def bash(script: str, *args: str, env=None) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(REPO / "export" / script), *args], capture_output=True, text=True, env=env)


def test_cleanup_backs_up_configs_and_removes_only_artefacts(fp32_tree, tmp_path):
    tree = Tree(tmp_path / "t")
    shutil.copytree(fp32_tree.root, tree.root, symlinks=True)
    cache = tree.root / "cache"
    cache.mkdir(exist_ok=True)
    (cache / "timing_gpu_sm90_trt10.13.3.cache").write_bytes(b"x")
    (cache / "notes.txt").write_text("keep")
    stale = tree.models / SCRATCH_NAME / "1" / "model.onnx.old"
    stale.write_bytes(b"old")
    before = sorted(p.relative_to(tree.root) for p in tree.root.rglob("*"))

    dry = bash("cleanup_for_reexport.sh", "--models-dir", str(tree.models), "--cache-dir", str(cache), "--dry-run")
    assert dry.returncode == 0 and "dry run: nothing was changed" in dry.stdout
    assert sorted(p.relative_to(tree.root) for p in tree.root.rglob("*")) == before

    result = bash("cleanup_for_reexport.sh", "--models-dir", str(tree.models), "--cache-dir", str(cache))
    assert result.returncode == 0, result.stderr
    # the backup lands beside the model repository, never in it (a non-model folder there keeps a
    # strict-readiness Triton from ever reporting ready)
    assert sorted(p.name for p in tree.models.iterdir()) == sorted([SCRATCH_NAME, f"{SCRATCH_NAME}_end2end"])
    (backup,) = (tree.root / "config_backups").iterdir()
    for model_dir in (SCRATCH_NAME, f"{SCRATCH_NAME}_end2end"):
        assert (backup / model_dir / "config.pbtxt").read_text() == (tree.models / model_dir / "config.pbtxt").read_text()
        assert (tree.models / model_dir / "1").is_dir() and not any((tree.models / model_dir / "1").iterdir())
        assert (tree.models / model_dir / "labels.txt").is_file()
    assert not (cache / "timing_gpu_sm90_trt10.13.3.cache").exists() and (cache / "notes.txt").is_file()
    # After a clean-up, make rebuilds (the artefacts are gone, not stale-but-present).
    assert tree.make("-q", "onnx", f"NAMES={SCRATCH_NAME}", "PRECISION=fp32", "IMGSZ=320", check=False).returncode == 1


def test_export_models_drives_make_and_summarises(fp32_tree, tmp_path):
    """--models/--formats map to the Make targets; an up-to-date artefact is reported as skipped,
    a failing one as FAILED with a non-zero exit."""
    from export_models import targets_for

    rows = targets_for(["small"], ["onnx", "trt_end2end"], "models")
    assert [(s, f, str(a), str(c)) for s, f, a, c in rows] == [
        ("small", "onnx", "models/yolov11_small/1/model.onnx", "models/yolov11_small/config.pbtxt"),
        ("small", "trt_end2end", "models/yolov11_small_trt_end2end/1/model.plan",
         "models/yolov11_small_trt_end2end/config.pbtxt")]
    cmd = [sys.executable, str(REPO / "export/export_models.py"), "--models", "small", "--formats", "onnx",
           "--models-dir", str(tmp_path / "models"), f"WEIGHTS_DIR={tmp_path / 'empty'}", f"BUILD_DIR={tmp_path / 'b'}",
           f"PYTHON={sys.executable}"]
    env = {"PATH": "/usr/bin:/bin"}  # no curl-able network needed: the download fails fast either way
    result = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert result.returncode == 1
    assert "small    onnx         FAILED" in result.stdout


def test_export_small_only_builds_the_plans_and_its_next_steps_work(scratch_weights, tmp_path):
    """The script builds yolov11_small's two plans through Make (TensorRT is a TEST DOUBLE here: the fake
    trtexec and nvidia-smi of tests/doubles), then the Track D commands it prints run as printed (with /app
    the repository, and this test's image size and model folder)."""
    doubles = REPO / "tests" / "doubles"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool, script in (("trtexec", "fake_trtexec.py"), ("nvidia-smi", "fake_nvidia_smi.py")):
        (bin_dir / tool).write_text(f'#!/bin/sh\nexec "{sys.executable}" "{doubles / script}" "$@"\n')
        (bin_dir / tool).chmod(0o755)
    weights, models = tmp_path / "w", tmp_path / "models"
    weights.mkdir()
    (weights / scratch_weights.name).symlink_to(scratch_weights)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_GPU_NAME": "NVIDIA H100 80GB HBM3"}
    settings = ["--models-dir", str(models), f"WEIGHTS_DIR={weights}", f"WEIGHTS_small={scratch_weights.stem}",
                f"BUILD_DIR={tmp_path / 'b'}", f"CACHE_DIR={tmp_path / 'c'}", "PRECISION=fp32", "IMGSZ=320",
                f"PYTHON={sys.executable}"]
    result = bash("export_small_only.sh", *settings, env=env)
    assert result.returncode == 0, result.stderr
    for model_dir in ("yolov11_small_trt", "yolov11_small_trt_end2end"):
        assert (models / model_dir / "1" / "model.plan").is_file() and (models / model_dir / "config.pbtxt").is_file()
    next_steps = [line.split() for line in result.stdout.splitlines() if line.strip().startswith("python /app/")]
    assert [Path(step[1]).name for step in next_steps] == ["create_dali_letterbox_pipeline.py", "create_ensembles.py"]
    for step in next_steps:
        script = REPO / Path(step[1]).relative_to("/app")
        run = subprocess.run([sys.executable, str(script), *step[2:], "--imgsz", "320", "--model-dir", str(models)],
                             capture_output=True, text=True, env=env)
        assert run.returncode == 0, run.stderr
    assert (models / "yolov11_small_ensemble" / "config.pbtxt").is_file()


def test_export_models_builds_then_skips(scratch_weights, tmp_path):
    """Size 'small' pointed at the scratch checkpoint (WEIGHTS_small, never a fake yolo11s.pt)."""
    weights = tmp_path / "w"
    weights.mkdir()
    (weights / scratch_weights.name).symlink_to(scratch_weights)
    cmd = [sys.executable, str(REPO / "export/export_models.py"), "--models", "small", "--formats", "onnx",
           "onnx_end2end", "--models-dir", str(tmp_path / "models"), f"WEIGHTS_DIR={weights}",
           f"WEIGHTS_small={scratch_weights.stem}", f"BUILD_DIR={tmp_path / 'b'}", "PRECISION=fp32", "IMGSZ=320",
           f"PYTHON={sys.executable}"]
    first = subprocess.run(cmd, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    assert "small    onnx         built" in first.stdout and "small    onnx_end2end built" in first.stdout
    second = subprocess.run(cmd, capture_output=True, text=True)
    assert second.returncode == 0
    assert second.stdout.count("skipped (up to date)") == 2
    assert (tmp_path / "models/yolov11_small_end2end/config.pbtxt").is_file()
