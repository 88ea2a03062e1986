"""The seed's scripts: clean-up for re-export, export_models.py (drives Make, summary table),
export_small_only.sh. The download script has its own module, tests/test_download.py."""
from __future__ import annotations

import shutil
import subprocess
import sys

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


def test_export_small_only_names_the_track_d_next_steps():
    text = (REPO / "export/export_small_only.sh").read_text()
    assert "--models small --formats trt trt_end2end" in text
    assert "python /app/dali/create_dali_letterbox_pipeline.py" in text
    assert "python /app/dali/create_ensembles.py --models small" in text


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
