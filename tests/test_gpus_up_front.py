"""GPUS checked before anything is written (issue 21, item 6), on the fake 4-GPU host of
tests/test_multi_gpu_build.py (TEST DOUBLES for nvidia-smi and trtexec): a GPU the host does not have is
refused by Make before any export or stamp; write_config.py refuses it too; and one failing
per-architecture build on a fresh tree leaves its sibling's build (and folder) alone."""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO
from test_multi_gpu_build import MIXED, Fleet
from yolo_triton.errors import StepError

import write_config  # export/write_config.py


def run_make(fleet: Fleet, goals: list[str], *settings: str, env=None) -> subprocess.CompletedProcess:
    old = [arg for path in fleet.onnx for arg in ("-o", str(path))]
    cmd = ["make", "--no-print-directory", "-C", str(REPO), "-j8", *old, f"MODELS_DIR={fleet.models}",
           f"CACHE_DIR={fleet.cache}", f"BUILD_DIR={fleet.root / 'build'}", f"WEIGHTS_DIR={fleet.root / 'weights'}",
           f"PYTHON={sys.executable}", "IMGSZ=64", "MAX_BATCH=4", f"NAMES={' '.join(fleet.names)}", *settings, *goals]
    return subprocess.run(cmd, capture_output=True, text=True, env=env or fleet.env, timeout=300)


def test_a_gpu_the_host_lacks_is_refused_before_any_stamp_or_build(tmp_path):
    fleet = Fleet(tmp_path, MIXED, ["m1"], merger=True)
    plan = str(fleet.plan("m1"))
    fleet.make([plan])
    stamp = fleet.root / "build" / "params" / "m1.plan"
    before, built = stamp.read_text(), fleet.recorded()
    refused = run_make(fleet, [plan], "GPUS=7")
    assert refused.returncode != 0
    assert "GPUS=7: GPU 7 is not on this machine (nvidia-smi lists 0,1,2,3)" in refused.stderr, refused.stderr
    assert "build_engine.py" not in refused.stdout  # refused by Make itself, no step ran
    assert stamp.read_text() == before and fleet.recorded() == built
    # so the next correct make is a no-op: nothing rebuilds
    assert run_make(fleet, ["-q", plan]).returncode == 0
    for bad in ("0;1", "x", "1,a"):
        result = run_make(fleet, [plan], f"GPUS={bad}")
        assert result.returncode != 0 and "is not a GPU index" in result.stderr, (bad, result.stderr)
    assert stamp.read_text() == before


def test_a_fresh_tree_is_not_exported_before_the_gpus_refusal(tmp_path):
    """make GPUS=7 <name>_trt/1/model.plan with only a checkpoint name: refused before the ONNX export."""
    fleet = Fleet(tmp_path, MIXED, [], merger=True)
    (fleet.root / "weights").mkdir()
    (fleet.root / "weights" / "fresh.pt").write_bytes(b"not read: refused first")
    goal = str(fleet.models / "fresh_trt" / "1" / "model.plan")
    refused = run_make(fleet, [goal], "GPUS=7")
    assert refused.returncode != 0 and "GPU 7 is not on this machine" in refused.stderr, refused.stderr
    assert not (fleet.models / "fresh").exists() and not (fleet.root / "build").exists()


def test_gpus_without_any_gpu_listed_refuses_plans_only(tmp_path):
    fleet = Fleet(tmp_path, MIXED, ["m1"], merger=True)
    (fleet.root / "bin" / "nvidia-smi").unlink()  # a host without nvidia-smi: configs for another host are fine
    refused = run_make(fleet, ["-n", str(fleet.plan("m1"))], "GPUS=1")
    assert refused.returncode != 0 and "nvidia-smi lists no GPU here" in refused.stderr
    config = run_make(fleet, ["-n", str(fleet.models / "m1" / "config.pbtxt")], "GPUS=1")
    assert config.returncode == 0, config.stderr


def test_write_config_checks_gpus_against_the_host():
    with pytest.raises(StepError, match=r"GPUS=1,7: GPU 7 is not on this machine \(nvidia-smi lists 0,1,2,3\)"):
        write_config.parse_gpus("1,7", "gpu", listed=[0, 1, 2, 3])
    assert write_config.parse_gpus("1,3", "gpu", listed=[0, 1, 2, 3]) == [1, 3]
    assert write_config.parse_gpus("7", "gpu", listed=[]) == [7]  # no GPU listed here: written for another host
    assert write_config.parse_gpus("", "gpu", listed=[0]) == [] and write_config.parse_gpus("all") == []
    with pytest.raises(StepError, match="not a list of GPU indices"):
        write_config.parse_gpus("0;1", "gpu", listed=[0, 1])


def test_write_config_cli_refuses_gpus_the_host_lacks(tmp_path):
    fleet = Fleet(tmp_path, MIXED, ["m1"], merger=True)
    done = subprocess.run([sys.executable, str(REPO / "export" / "write_config.py"), "--artefact", str(fleet.onnx[0]),
                           "--max-batch", "4", "--queue-delay-us", "100", "--gpus", "7"],
                          capture_output=True, text=True, env=fleet.config_env)
    assert done.returncode == 1 and "GPU 7 is not on this machine" in done.stderr, done.stderr
    assert not (fleet.models / "m1" / "config.pbtxt").exists()


def test_a_failed_per_architecture_build_leaves_its_siblings_folder(tmp_path):
    """Fresh tree, mixed fleet: the sm 8.0 build (GPUs 0, 2) creates 1/ and fails after 3 s; the sm 9.0
    build (GPUs 1, 3, held by this test until 1/ exists) starts in that folder and writes its plan after
    6 s. The failed build must not remove the folder under it: the sm 9.0 plan is built."""
    from yolo_triton.engine_fleet import Gpu, gpu_lock

    fleet = Fleet(tmp_path, MIXED, ["m1"], merger=True)
    folder = fleet.plan("m1").parent
    assert not folder.exists()
    env = {**fleet.env, "FAKE_TRTEXEC_FAIL_DEVICES": "0,2", "FAKE_TRTEXEC_FAIL_AFTER": "3", "FAKE_TRTEXEC_SLEEP": "6"}
    old = [arg for path in fleet.onnx for arg in ("-o", str(path))]
    cmd = ["make", "--no-print-directory", "-C", str(REPO), *old, f"MODELS_DIR={fleet.models}",
           f"CACHE_DIR={fleet.cache}", f"BUILD_DIR={fleet.root / 'build'}", f"PYTHON={sys.executable}", "IMGSZ=64",
           "MAX_BATCH=4", "NAMES=m1", str(fleet.plan("m1"))]
    h100 = [Gpu(i, f"GPU-fake{i:04d}-0000-0000-0000-000000000000", "NVIDIA H100 80GB HBM3", "9.0") for i in (1, 3)]
    with contextlib.ExitStack() as held:
        for gpu in h100:
            held.enter_context(gpu_lock((gpu,), fleet.cache / "locks"))
        make = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        deadline = time.monotonic() + 120
        while not folder.exists() and make.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)  # the sm 8.0 build is in its folder; now let the sm 9.0 one start
    out, err = make.communicate(timeout=300)
    assert make.returncode != 0
    assert "plan build failed for sm 8.0 (model.plan) (its error" in err, err
    (event,) = fleet.recorded()  # the one build that ran to the end: sm 9.0, on GPU 1 or 3
    assert event["device"] in (1, 3)
    assert fleet.plan("m1", "model_sm90.plan").is_file() and not fleet.plan("m1").exists()


def _processes_naming(text: str) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and proc.name != str(os.getpid()):
            try:
                if text.encode() in (proc / "cmdline").read_bytes():
                    found.append(int(proc.name))
            except OSError:
                continue
    return found


def test_sigterm_to_a_multi_gpu_build_ends_its_child_builds(tmp_path):
    """SIGTERM (what make sends when a build is cancelled) to build_engine.py building one plan per compute
    capability: its child builds (and their trtexec) end too, and no plan appears in models/ afterwards."""
    fleet = Fleet(tmp_path, MIXED, ["m1"], merger=True)
    plan = fleet.plan("m1")
    cmd = [sys.executable, str(REPO / "export" / "build_engine.py"), "--onnx", str(fleet.onnx[0]), "--plan", str(plan),
           "--max-batch", "4", "--imgsz", "64", "--cache-dir", str(fleet.cache), "--builder", "trtexec",
           "--trtexec", str(fleet.root / "bin" / "trtexec")]
    log = tmp_path / "build.log"  # a file, not a pipe: children that outlive the parent would hold a pipe open
    parent = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log.open("w"),
                              env={**fleet.env, "FAKE_TRTEXEC_SLEEP": "60"})
    marker = str(fleet.models / "m1_trt")
    try:
        deadline = time.monotonic() + 60
        while len([p for p in _processes_naming(marker) if "fake_trtexec" in
                   Path(f"/proc/{p}/cmdline").read_bytes().decode(errors="replace")]) < 2:
            assert parent.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)  # both per-capability builds are in trtexec
        parent.send_signal(signal.SIGTERM)
        parent.wait(timeout=60)
        err = log.read_text()
        assert parent.returncode == 130, err
        deadline = time.monotonic() + 10
        while _processes_naming(marker) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _processes_naming(marker) == [], err  # no child build, no trtexec left running
        assert not plan.parent.exists() or sorted(p.name for p in plan.parent.iterdir()) == []
    finally:
        for pid in _processes_naming(marker):
            os.kill(pid, signal.SIGKILL)
