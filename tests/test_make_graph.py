"""The Make graph itself: no-op, parameter stamps, step scripts as prerequisites, the seed's targets."""
from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from conftest import REPO, SCRATCH_NAME, TEST_IMGSZ

pytestmark = pytest.mark.slow
SETTINGS = (f"NAMES={SCRATCH_NAME}", "PRECISION=fp32", f"IMGSZ={TEST_IMGSZ}")


def planned_steps(tree, *extra) -> list[str]:
    """Step scripts and artefacts ``make -n onnx`` would run/write with ``extra`` settings."""
    out = tree.make("-n", "onnx", *SETTINGS, *extra).stdout
    return re.findall(r"export/(\w+)\.py .*?(?:--out|--artefact) (\S+)", out)


def test_up_to_date_tree_is_a_noop_without_python(fp32_tree):
    assert fp32_tree.make("-q", "onnx", *SETTINGS, check=False).returncode == 0
    # PYTHON=false: if make started any step the command would fail. How long a no-op takes is a benchmark
    # figure (scripts/bench_build_steps.py, benchmarks/cpu_build_steps.json), not a timed assert.
    result = fp32_tree.make("onnx", *SETTINGS, PYTHON="false")
    assert "Nothing to be done" in result.stdout


def test_topk_change_rebuilds_exactly_the_end2end_artefacts(fp32_tree):
    steps = planned_steps(fp32_tree, "TOPK=50")
    assert [s for s, _ in steps] == ["add_nms", "write_config"]
    assert all(f"{SCRATCH_NAME}_end2end/" in path for _, path in steps)
    # The dry run changed nothing: the tree is still up to date with the old settings.
    assert fp32_tree.make("-q", "onnx", *SETTINGS, check=False).returncode == 0


def test_max_batch_change_rewrites_only_configs(fp32_tree):
    assert {s for s, _ in planned_steps(fp32_tree, "MAX_BATCH=8")} == {"write_config"}


def test_imgsz_change_rebuilds_the_whole_chain(fp32_tree):
    steps = [s for s, _ in planned_steps(fp32_tree, "IMGSZ=256")]
    assert steps == ["export_onnx", "write_config", "add_nms", "write_config"]


def test_input_dtype_change_rebuilds_the_onnx_chain(fp32_tree):
    """INPUT_DTYPE is in the ONNX stamp: Track A, end2end and both configs; the export gets the setting."""
    steps = planned_steps(fp32_tree, "INPUT_DTYPE=uint8")
    assert [s for s, _ in steps] == ["export_onnx", "write_config", "add_nms", "write_config"]
    assert "--input-dtype uint8" in fp32_tree.make("-n", "onnx", *SETTINGS, "INPUT_DTYPE=uint8").stdout
    assert planned_steps(fp32_tree, "INPUT_DTYPE=float32") == []  # the default: nothing to do
    refused = fp32_tree.make("-n", "onnx", *SETTINGS, "INPUT_DTYPE=fp16", check=False)
    assert refused.returncode != 0 and "INPUT_DTYPE=fp16 is not float32 or uint8" in refused.stderr


@pytest.mark.parametrize("script,expected", [
    ("export/add_nms.py", {"add_nms", "write_config"}),
    ("export/yolo_triton/onnx_export.py", {"export_onnx", "add_nms", "write_config"}),
    ("export/write_config.py", {"write_config"}),
])
def test_an_edited_step_script_rebuilds_what_it_makes(fp32_tree, script, expected):
    # -W pretends the script was just edited, without touching the file.
    out = fp32_tree.make("-n", "-W", str(REPO / script), "onnx", *SETTINGS).stdout
    out += fp32_tree.make("-n", "-W", script, "onnx", *SETTINGS).stdout
    assert set(re.findall(r"export/(\w+)\.py --", out)) == expected


def test_seed_targets_resolve_to_the_seed_checkpoints(tmp_path):
    from conftest import Tree

    tree = Tree(tmp_path)
    out = tree.make("-n", f"{tree.models}/yolov11_small_trt_end2end/1/model.plan").stdout
    assert "download_pytorch_models.sh" in out and "yolo11s" in out
    assert re.search(r"build_engine\.py --onnx \S+yolov11_small_end2end/1/model\.onnx .*--max-batch 64 --imgsz 640", out)
    out = tree.make("-n", "trt").stdout
    for name, batch in (("nano", 128), ("small", 64), ("medium", 32)):
        assert re.search(rf"build_engine\.py --onnx \S+yolov11_{name}/1/model\.onnx .*--max-batch {batch} ", out)
        assert re.search(rf"write_config\.py --artefact \S+yolov11_{name}_trt_end2end/1/model\.plan .*--max-batch {batch} ", out)


def test_help_is_the_default_goal():
    out = subprocess.run(["make", "-C", str(REPO)], capture_output=True, text=True, check=True).stdout
    for target in ("setup", "test", "onnx", "trt", "all", "download", "clean-reexport", "scratch"):
        assert re.search(rf"\b{target}\b", out), target


@pytest.mark.parametrize("version", ["3.81", "4.1"])
def test_an_old_gnu_make_is_refused_in_one_line(version):
    """$(file <...) needs GNU Make 4.2; an older make stops at once and says so (MAKE_VERSION stands in)."""
    result = subprocess.run(["make", "--no-print-directory", "-C", str(REPO), f"MAKE_VERSION={version}", "help"],
                            capture_output=True, text=True)
    assert result.returncode == 2 and result.stdout == ""
    (line,) = result.stderr.strip().splitlines()
    assert f"GNU Make >= 4.2 is needed, this is {version}" in line


@pytest.mark.parametrize("system_tools,runs_apt", [("1", True), ("0", False)])
def test_setup_says_before_it_runs_apt_get_as_root(tmp_path, system_tools, runs_apt):
    """Without docker-compose, as root: `make system-tools` announces apt-get, or with SYSTEM_TOOLS=0 skips it.
    apt-get and id are TEST DOUBLES on a PATH without docker-compose."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "apt-get.calls"
    (bin_dir / "apt-get").write_text(f'#!/bin/sh\necho "$@" >> "{calls}"\n')
    (bin_dir / "id").write_text("#!/bin/sh\necho 0\n")  # root
    for tool in (bin_dir / "apt-get", bin_dir / "id"):
        tool.chmod(0o755)
    (bin_dir / "bash").symlink_to(shutil.which("bash"))
    result = subprocess.run([shutil.which("make"), "--no-print-directory", "-C", str(REPO), "system-tools",
                             f"SYSTEM_TOOLS={system_tools}"], capture_output=True, text=True,
                            env={"PATH": str(bin_dir)})
    assert result.returncode == 0, result.stderr
    if runs_apt:
        assert result.stderr.startswith("make setup: running as root, installing the Debian package docker-compose")
        assert calls.read_text().splitlines() == ["update -qq", "install -y -qq docker-compose"]
    else:
        assert not calls.exists() and "note: install docker-compose" in result.stderr
