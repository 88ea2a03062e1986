"""``make -j`` plan builds on a host of several GPUs, driven through the real Makefile against TEST DOUBLES.

No multi-GPU machine and no TensorRT here: ``tests/doubles/fake_nvidia_smi.py`` lists four GPUs of two
compute capabilities (``FAKE_GPUS``), ``tests/doubles/fake_trtexec.py`` "builds" for a fixed time and
records its device and start/end time (``FAKE_TRTEXEC_EVENTS``), and appends one line per build to the
timing cache. Assertions are on recorded events, never on the wall clock of this (shared, 2-core)
machine: builds at once = each build waited, before finishing, until it saw all of them start
(``FAKE_TRTEXEC_RENDEZVOUS``); one build per GPU at a time = no two recorded intervals of a GPU overlap.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import onnx
import pytest

from conftest import REPO
from onnx_graphs import plain_detector
from yolo_triton import engine_fleet
from yolo_triton.engine import read_sidecar
from yolo_triton.engine_fleet import Gpu, choose_gpus, parse_smi, plan_targets
from yolo_triton.errors import StepError
from yolo_triton.onnx_io import set_metadata
from yolo_triton.triton_config import parse_config

DOUBLES = Path(__file__).parent / "doubles"
A100, H100 = "NVIDIA A100-SXM4-80GB", "NVIDIA H100 80GB HBM3"
MIXED = f"{A100}:8.0;{H100}:9.0;{A100}:8.0;{H100}:9.0"  # GPU 0..3: two capabilities, interleaved
SAME = ";".join([f"{H100}:9.0"] * 4)
IMGSZ = 64
BUILD_S = 1.5  # the fake trtexec's fixed build time (long enough for builds that were not serialised to overlap)


def _wrapper(path: Path, script: Path) -> None:
    path.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{script}" "$@"\n')
    path.chmod(0o755)


def _onnx_with_names(path: Path) -> Path:
    plain_detector(path, imgsz=IMGSZ)
    model = onnx.load(str(path))
    set_metadata(model, {"names": repr({i: f"class{i}" for i in range(80)})})
    onnx.save(model, str(path))
    return path


class Fleet:
    """A temporary tree, PATH with the doubles, and `make -j` on plan (or config) targets."""

    def __init__(self, root: Path, gpus: str, names: list[str], merger: bool):
        self.root, self.names = root, names
        self.models, self.cache = root / "models", root / "cache"
        self.events = root / "events.jsonl"
        bin_dir = root / "bin"
        bin_dir.mkdir()
        _wrapper(bin_dir / "trtexec", DOUBLES / "fake_trtexec.py")
        _wrapper(bin_dir / "nvidia-smi", DOUBLES / "fake_nvidia_smi.py")
        self.onnx = [_onnx_with_names(self._dir(n, "") / "1" / "model.onnx") for n in names]
        # merger: the fake tensorrt module is importable, so ITimingCache.combine (the double's) merges caches
        python_path = [str(REPO / "export")] + ([str(DOUBLES / "fake_tensorrt")] if merger else [])
        self.env = {**os.environ, "PATH": f"{bin_dir}:/usr/bin:/bin", "FAKE_GPUS": gpus,
                    "FAKE_TRTEXEC_SLEEP": str(BUILD_S), "FAKE_TRTEXEC_EVENTS": str(self.events),
                    "PYTHONPATH": os.pathsep.join(python_path)}
        self.env.pop("CUDA_VISIBLE_DEVICES", None)
        # configs: no tensorrt (the fake one cannot inspect the fake trtexec's plans): I/O from the source ONNX
        self.config_env = {**self.env, "PYTHONPATH": str(REPO / "export")}

    def _dir(self, name: str, suffix: str) -> Path:
        path = self.models / f"{name}{suffix}"
        (path / "1").mkdir(parents=True, exist_ok=True)
        return path

    def plan(self, name: str, filename: str = "model.plan") -> Path:
        return self.models / f"{name}_trt" / "1" / filename

    def configs(self, *settings: str) -> list[Path]:
        paths = [self.models / f"{n}_trt" / "config.pbtxt" for n in self.names]
        self.make([str(p) for p in paths], *settings, env=self.config_env)
        return paths

    def make(self, goals: list[str], *settings: str, jobs: int = 8, env=None) -> subprocess.CompletedProcess:
        old = [arg for path in self.onnx for arg in ("-o", str(path))]  # the ONNX files are given, not remade
        cmd = ["make", "--no-print-directory", "-C", str(REPO), f"-j{jobs}", *old,
               f"MODELS_DIR={self.models}", f"CACHE_DIR={self.cache}", f"BUILD_DIR={self.root / 'build'}",
               f"WEIGHTS_DIR={self.root / 'weights'}", f"PYTHON={sys.executable}", f"IMGSZ={IMGSZ}",
               "MAX_BATCH=4", f"NAMES={' '.join(self.names)}", *settings, *goals]
        done = subprocess.run(cmd, capture_output=True, text=True, env=env or self.env, timeout=300)
        assert done.returncode == 0, f"{' '.join(cmd)}\n{done.stdout}\n{done.stderr}"
        return done

    def recorded(self) -> list[dict]:
        return [json.loads(line) for line in self.events.read_text().splitlines()]


def rendezvous(fleet: Fleet, builds: int) -> dict:
    """The fleet's environment with the fake trtexec's rendezvous: each build waits for ``builds`` to start."""
    return {**fleet.env, "FAKE_TRTEXEC_RENDEZVOUS": f"{fleet.root / 'rendezvous'}:{builds}"}


def _overlap(a: dict, b: dict) -> bool:
    return a["start"] < b["end"] and b["start"] < a["end"]


def _never_two_on_one_gpu(events: list[dict]) -> None:
    for i, a in enumerate(events):
        for b in events[i + 1:]:
            if a["device"] == b["device"]:
                assert not _overlap(a, b), f"two builds on GPU {a['device']} at once: {a} {b}"


def test_mixed_fleet_builds_one_plan_per_capability_in_parallel(tmp_path):
    fleet = Fleet(tmp_path, MIXED, ["m1", "m2"], merger=True)
    done = fleet.make([str(fleet.plan(n)) for n in fleet.names], env=rendezvous(fleet, 4))
    fleet.configs()
    events = fleet.recorded()

    # 2 targets x 2 capabilities = 4 builds, one on each of the 4 GPUs, each pinned by --device
    assert sorted(e["device"] for e in events) == [0, 1, 2, 3]
    assert all(e["cuda_device_order"] == "PCI_BUS_ID" and e["cuda_visible_devices"] is None for e in events)
    _never_two_on_one_gpu(events)
    # all four were running at one moment: none finished before it had seen all four start (recorded
    # events, not the wall clock of this shared machine)
    assert [e["rendezvous_seen"] for e in events] == [4] * 4, events

    for name in fleet.names:
        first, other = fleet.plan(name), fleet.plan(name, "model_sm90.plan")
        side_a, side_h = read_sidecar(first), read_sidecar(other)
        assert (side_a["compute_capability"], side_a["gpu_name"]) == ("8.0", A100)
        assert (side_h["compute_capability"], side_h["gpu_name"]) == ("9.0", H100)
        assert side_a["gpu_index"] in (0, 2) and side_h["gpu_index"] in (1, 3)
        assert side_a["gpu_uuid"].startswith("GPU-fake")
        fleet_map = {"8.0": "model.plan", "9.0": "model_sm90.plan"}
        assert side_a["cc_model_filenames"] == side_h["cc_model_filenames"] == fleet_map
        config = parse_config(fleet.models / f"{name}_trt" / "config.pbtxt")
        assert dict(config.cc_model_filenames) == fleet_map
        assert config.platform == "tensorrt_plan"
        (group,) = config.instance_group
        assert group.count == 1 and list(group.gpus) == []  # GPUS empty: Triton puts one on every GPU
    # a progress line says which plan builds on which GPU
    assert done.stderr.count("builds on GPU") == 4
    assert f"m1_trt/1/model_sm90.plan builds on GPU" in done.stderr

    # timing caches: one per GPU model, shared by the two builds on it; every build's entry is kept
    caches = sorted(fleet.cache.glob("timing_*.cache"))
    assert [c.name for c in caches] == ["timing_NVIDIA-A100-SXM4-80GB_sm80_trt10.13.3.cache",
                                        "timing_NVIDIA-H100-80GB-HBM3_sm90_trt10.13.3.cache"]
    entries = [line for c in caches for line in c.read_text().splitlines() if line.startswith("fake-timing-entry")]
    assert sorted(line.split()[1] for line in entries) == sorted(e["plan"] for e in events)

    # the fleet shrinks to the A100s: the H100 plans go, the configs lose the map
    fleet.make([str(fleet.plan(n)) for n in fleet.names], "GPUS=0,2")
    for name, config in zip(fleet.names, fleet.configs("GPUS=0,2")):
        assert fleet.plan(name).is_file() and not list(fleet.plan(name).parent.glob("model_sm*"))
        config = parse_config(config)
        assert dict(config.cc_model_filenames) == {} and list(config.instance_group[0].gpus) == [0, 2]


def test_without_a_merger_builds_sharing_a_cache_take_turns_and_lose_nothing(tmp_path):
    """No TensorRT Python module (so nothing can merge two caches): 4 GPUs of one model, one cache file;
    the builds hold the cache lock from copy to save, one after another, and every entry survives."""
    fleet = Fleet(tmp_path, SAME, ["m1", "m2", "m3"], merger=False)
    fleet.make([str(fleet.plan(n)) for n in fleet.names])
    events = fleet.recorded()
    assert len(events) == 3
    for i, a in enumerate(events):
        for b in events[i + 1:]:
            assert not _overlap(a, b)
    (cache,) = fleet.cache.glob("timing_*.cache")
    assert sorted(line.split()[1] for line in cache.read_text().splitlines()) == sorted(e["plan"] for e in events)


def test_n_plans_on_n_gpus_take_one_build_time_and_one_gpu_serializes(tmp_path):
    fleet = Fleet(tmp_path, SAME, ["m1", "m2", "m3", "m4"], merger=True)
    fleet.make([str(fleet.plan(n)) for n in fleet.names], env=rendezvous(fleet, 4))
    events = fleet.recorded()
    assert sorted(e["device"] for e in events) == [0, 1, 2, 3]  # every GPU used
    assert [e["rendezvous_seen"] for e in events] == [4] * 4  # all at once (each saw all four start)
    (cache,) = fleet.cache.glob("timing_*.cache")  # 4 builds merged into one shared cache, none lost
    lines = [line.split()[1] for line in cache.read_text().splitlines() if line.startswith("fake-timing-entry")]
    assert sorted(lines) == sorted(e["plan"] for e in events)

    # GPUS=1: the same four plans (rebuilt: GPUS is in their stamp) run one at a time on GPU 1
    fleet.events.unlink()
    fleet.make([str(fleet.plan(n)) for n in fleet.names], "GPUS=1")
    events = fleet.recorded()
    assert [e["device"] for e in events] == [1] * 4
    _never_two_on_one_gpu(events)
    assert all(read_sidecar(fleet.plan(n))["gpu_index"] == 1 for n in fleet.names)


def test_hw_compat_builds_one_portable_plan(tmp_path):
    fleet = Fleet(tmp_path, MIXED, ["m1"], merger=True)
    settings = ("HW_COMPAT=ampere+", "GPUS=0,1", "INSTANCES_PER_GPU=2")
    fleet.make([str(fleet.plan("m1"))], *settings)
    fleet.configs(*settings)
    (event,) = fleet.recorded()
    assert event["hw_compat"] == "ampere+" and event["device"] in (0, 1)
    assert not list(fleet.plan("m1").parent.glob("model_sm*"))
    assert read_sidecar(fleet.plan("m1"))["hardware_compatibility_level"] == "ampere+"
    config = parse_config(fleet.models / "m1_trt" / "config.pbtxt")
    assert dict(config.cc_model_filenames) == {}
    (group,) = config.instance_group
    assert (group.count, list(group.gpus)) == (2, [0, 1])  # INSTANCES_PER_GPU on each of GPUS


def test_python_api_builds_of_a_mixed_fleet_are_pinned_by_cuda_visible_devices(tmp_path):
    """No trtexec: each capability's plan is built by a child process under CUDA_VISIBLE_DEVICES=<its GPU>."""
    fleet = Fleet(tmp_path, MIXED, ["m1"], merger=True)
    (tmp_path / "bin" / "trtexec").unlink()
    plan = fleet.plan("m1")
    cmd = [sys.executable, str(REPO / "export" / "build_engine.py"), "--onnx", str(fleet.onnx[0]), "--plan", str(plan),
           "--max-batch", "4", "--imgsz", str(IMGSZ), "--cache-dir", str(fleet.cache), "--builder", "python",
           "--gpus", "1,0"]
    done = subprocess.run(cmd, capture_output=True, text=True, env={**fleet.env, "FAKE_GPU_NAME": "unused"})
    assert done.returncode == 0, done.stderr
    uuid = "GPU-fake{:04d}-0000-0000-0000-000000000000".format
    first = json.loads(plan.read_bytes().split(b"\n", 1)[1])  # GPUS=1,0: GPU 1 (H100) is first -> model.plan
    other = json.loads(plan.with_name("model_sm80.plan").read_bytes().split(b"\n", 1)[1])
    assert (first["cuda_visible_devices"], other["cuda_visible_devices"]) == (uuid(1), uuid(0))
    assert read_sidecar(plan)["cc_model_filenames"] == {"9.0": "model.plan", "8.0": "model_sm80.plan"}
    assert read_sidecar(plan)["builder"] == "python"

    def check(*extra, gpus=MIXED):
        return subprocess.run([sys.executable, str(REPO / "export" / "build_engine.py"), "--builder", "python",
                               "--check-plans", str(plan), str(plan.with_name("model_sm80.plan")), *extra],
                              capture_output=True, text=True, env={**fleet.env, "FAKE_GPUS": gpus})
    assert check().returncode == 0
    grown = check(gpus=MIXED + ";NVIDIA L4:8.9")  # a GPU of a third capability joined: no plan for it yet
    assert grown.returncode == 1 and "no plan for sm 8.9 (GPU 4, NVIDIA L4)" in grown.stderr
    compat = check("--hw-compat", "ampere+")
    assert compat.returncode == 1 and "built with HW_COMPAT=none, the setting is HW_COMPAT=ampere+" in compat.stderr


def test_config_refuses_a_fleet_whose_plan_is_missing(tmp_path):
    from write_config import plan_fleet

    plan = tmp_path / "model.plan"
    plan.write_bytes(b"plan")
    (tmp_path / "model.plan.json").write_text(json.dumps({"compute_capability": "8.0", "cc_model_filenames": {
        "8.0": "model.plan", "9.0": "model_sm90.plan"}}))
    with pytest.raises(StepError, match="model_sm90.plan \\(the plan for compute capability 9.0\\) is missing"):
        plan_fleet(plan)
    (tmp_path / "model_sm90.plan").write_bytes(b"plan")
    (tmp_path / "model_sm90.plan.json").write_text(json.dumps({"compute_capability": "8.9"}))
    with pytest.raises(StepError, match="built on sm 8.9, not 9.0"):
        plan_fleet(plan)
    (tmp_path / "model_sm90.plan.json").write_text(json.dumps({"compute_capability": "9.0"}))
    assert plan_fleet(plan) == {"8.0": "model.plan", "9.0": "model_sm90.plan"}


def test_instance_group_settings():
    from yolo_triton.onnx_io import TensorSpec
    from yolo_triton.triton_config import model_config

    io = ([TensorSpec("images", "float32", (-1, 3, 64, 64))], [TensorSpec("output0", "float32", (-1, 84, -1))])
    config = model_config("m", "tensorrt_plan", *io, 8, 100, instances_per_gpu=3, gpus=[0, 2],
                          cc_model_filenames={"9.0": "model_sm90.plan", "8.0": "model.plan"})
    (group,) = config.instance_group
    assert (group.count, group.kind, list(group.gpus)) == (3, group.KIND_GPU, [0, 2])
    assert dict(config.cc_model_filenames) == {"8.0": "model.plan", "9.0": "model_sm90.plan"}
    cpu = model_config("m", "onnxruntime_onnx", *io, 8, 100, kind="cpu")  # INSTANCE_KIND=cpu still works
    assert (cpu.instance_group[0].count, cpu.instance_group[0].kind, list(cpu.instance_group[0].gpus)) == \
        (1, group.KIND_CPU, [])
    with pytest.raises(ValueError, match="INSTANCE_KIND=cpu instances run on the CPU"):
        model_config("m", "onnxruntime_onnx", *io, 8, 100, kind="cpu", gpus=[1])
    with pytest.raises(ValueError, match="INSTANCES_PER_GPU must be >= 1"):
        model_config("m", "tensorrt_plan", *io, 8, 100, instances_per_gpu=0)
    with pytest.raises(ValueError, match="cc_model_filenames is for TensorRT plans"):
        model_config("m", "onnxruntime_onnx", *io, 8, 100, cc_model_filenames={"8.0": "model.onnx"})


# ---------------------------------------------------------------- the pure parts


def test_parse_smi_choose_gpus_and_plan_names():
    gpus = parse_smi("0, GPU-a, NVIDIA A100-SXM4-80GB, 8.0\n1, GPU-b, NVIDIA H100 80GB HBM3, 9.0\n"
                     "2, GPU-c, NVIDIA L4, 8.9\n")
    assert [(g.index, g.compute_capability) for g in gpus] == [(0, "8.0"), (1, "9.0"), (2, "8.9")]
    assert choose_gpus(gpus, "") == gpus and choose_gpus(gpus, "all") == gpus
    assert [g.index for g in choose_gpus(gpus, "2,0")] == [2, 0]
    with pytest.raises(StepError, match="GPU 7 is not on this machine"):
        choose_gpus(gpus, "0,7")
    with pytest.raises(StepError, match="not a GPU index"):
        choose_gpus(gpus, "0;1")

    plan = Path("models/m_trt/1/model.plan")
    targets = plan_targets(plan, choose_gpus(gpus, "2,0,1"))  # the first chosen GPU's capability: model.plan
    assert [(t.plan.name, t.compute_capability, [g.index for g in t.gpus]) for t in targets] == [
        ("model.plan", "8.9", [2]), ("model_sm80.plan", "8.0", [0]), ("model_sm90.plan", "9.0", [1])]
    assert engine_fleet.cc_model_filenames(targets) == {"8.9": "model.plan", "8.0": "model_sm80.plan",
                                                        "9.0": "model_sm90.plan"}
    assert engine_fleet.cc_model_filenames(plan_targets(plan, gpus[:1])) == {}  # one capability: no map
    (portable,) = plan_targets(plan, gpus, "ampere+")
    assert portable.plan == plan and portable.compute_capability is None and len(portable.gpus) == 3
    turing = Gpu(3, "GPU-d", "Tesla T4", "7.5")
    with pytest.raises(StepError, match="HW_COMPAT=ampere\\+ plans run on compute capability 8.0"):
        plan_targets(plan, gpus + [turing], "ampere+")
    with pytest.raises(StepError, match="HW_COMPAT='turing'"):
        plan_targets(plan, gpus, "turing")


def test_gpu_lock_waits_for_a_free_gpu(tmp_path):
    """While one process holds GPU 0, a second takes GPU 1; with both held, a third waits."""
    gpus = (Gpu(0, "GPU-a", "x", "9.0"), Gpu(1, "GPU-b", "x", "9.0"))
    holder = ("import sys,time; from pathlib import Path; from yolo_triton.engine_fleet import Gpu, gpu_lock\n"
              "gpus=(Gpu(0,'GPU-a','x','9.0'),Gpu(1,'GPU-b','x','9.0'))\n"
              "with gpu_lock(gpus, Path(sys.argv[1])) as g:\n print(g.index, flush=True); time.sleep(3)\n")
    env = {**os.environ, "PYTHONPATH": str(REPO / "export")}
    first = subprocess.Popen([sys.executable, "-c", holder, str(tmp_path)], stdout=subprocess.PIPE, text=True, env=env)
    assert first.stdout.readline().strip() == "0"
    sleeps: list[float] = []
    with engine_fleet.gpu_lock(gpus, tmp_path, sleep=sleeps.append) as gpu:
        assert gpu.index == 1 and sleeps == []
        with pytest.raises(RuntimeError, match="waited"):  # both busy: it polls (until we stop it)
            def stop(seconds):
                sleeps.append(seconds)
                raise RuntimeError("waited")
            with engine_fleet.gpu_lock(gpus, tmp_path, sleep=stop):
                pass
    assert sleeps == [0.2]
    first.wait(timeout=30)
