"""Shared fixtures: an untrained, output-varied nano checkpoint and a Track A + end2end tree built
through the real Make targets in temporary directories (never in the repository's own models/)."""
from __future__ import annotations

import logging
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from shared_build import built_once, shared_root

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("YOLO_VERBOSE", "False")
# Subprocesses (make, the step scripts, the servers' doubles) import yolo_triton from THIS checkout, not from
# whatever the venv's editable install points at (git worktrees of the project share one .venv). In-process
# imports get the same from pytest's `pythonpath` setting in pyproject.toml. No file edits sys.path.
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "export"), os.environ.get("PYTHONPATH")]))
TEST_IMGSZ = 320
SCRATCH_ARCH = "yolo11n"
SCRATCH_NAME = f"{SCRATCH_ARCH}_untrained"


@dataclass
class Tree:
    """A set of temporary directories the Makefile is pointed at."""

    root: Path

    @property
    def weights(self) -> Path:
        return self.root / "weights"

    @property
    def models(self) -> Path:
        return self.root / "models"

    def make_vars(self, **settings) -> list[str]:
        # ORT_BATCHING=dynamic: the test trees' graphs are plain (run on this CPU, batch as sent); the
        # default for GPU instances, pad, is tested in tests/test_batch_pad.py and the served tests.
        base = {"MODELS_DIR": self.models, "WEIGHTS_DIR": self.weights, "CACHE_DIR": self.root / "cache",
                "BUILD_DIR": self.root / "build", "PYTHON": sys.executable, "ORT_BATCHING": "dynamic"}
        base.update(settings)
        return [f"{key}={value}" for key, value in base.items()]

    def make(self, *goals: str, check: bool = True, **settings) -> subprocess.CompletedProcess:
        cmd = ["make", "--no-print-directory", "-C", str(REPO), *self.make_vars(**settings), *goals]
        result = subprocess.run(cmd, capture_output=True, text=True)
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
        return result

    def artefact(self, model_dir: str, filename: str = "model.onnx") -> Path:
        return self.models / model_dir / "1" / filename


# ---- Tracks B/C orchestration: plans through the Make rules, the fake trtexec (TEST DOUBLE) ------------------
DOUBLES = Path(__file__).parent / "doubles"


def double_on_path(path: Path, script: Path) -> None:
    """An executable ``path`` that runs the TEST DOUBLE ``script`` (tests/doubles) with this Python."""
    path.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{script}" "$@"\n')
    path.chmod(0o755)


def make_plan_config(tree: Tree, model: str, tmp_path: Path, *settings: str) -> tuple[Path, list[list[str]]]:
    """``make models/<model>_trt/config.pbtxt`` with the fake trtexec and nvidia-smi on PATH and no tensorrt
    module (so the config step reads the plan's I/O from its sidecar); returns the plan and trtexec's argv."""
    import json

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    double_on_path(bin_dir / "trtexec", DOUBLES / "fake_trtexec.py")
    double_on_path(bin_dir / "nvidia-smi", DOUBLES / "fake_nvidia_smi.py")
    argv_log = tmp_path / "argv.jsonl"
    env = {**os.environ, "PATH": f"{bin_dir}:/usr/bin:/bin", "FAKE_TRTEXEC_ARGV_LOG": str(argv_log),
           "FAKE_GPU_NAME": "NVIDIA H100 80GB HBM3", "FAKE_GPU_CC": "9.0", "PYTHONPATH": str(REPO / "export")}
    env.pop("CUDA_VISIBLE_DEVICES", None)
    config = tree.models / f"{model}_trt" / "config.pbtxt"
    cmd = ["make", "--no-print-directory", "-C", str(REPO), *tree.make_vars(), *settings, "TRTEXEC=", str(config)]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, f"{' '.join(cmd)}\n{done.stdout}\n{done.stderr}"
    return config.parent / "1" / "model.plan", [json.loads(line) for line in argv_log.read_text().splitlines()]


# Every task through make (tests/test_tasks_served.py, test_tasks_validate.py): scratch architecture ->
# (task, NMS of its end2end model, or None where the task has none)
TASK_IMGSZ = 320
TASK_ARCHS = {
    "yolo11n-seg": ("segment", "ultralytics"),
    "yolov8n-seg": ("segment", "onnx"),
    "yolo26n-seg": ("segment", "free"),
    "yolo11n-pose": ("pose", "onnx"),
    "yolo26n-pose": ("pose", "free"),
    "yolo11n-obb": ("obb", None),
    "yolo26n-obb": ("obb", "free"),
    "yolo11n-cls": ("classify", None),
}


def task_model_name(arch: str) -> str:
    return f"{arch}_untrained"


def task_make_settings(nms: str | None) -> list[str]:
    return [f"NMS={nms or 'onnx'}", "PRECISION=fp32", "INSTANCE_KIND=cpu", f"IMGSZ={TASK_IMGSZ}"]


@pytest.fixture(scope="session")
def session_dir(tmp_path_factory) -> Path:
    """The session's folder shared by every pytest-xdist worker (tests/shared_build.py)."""
    return shared_root(tmp_path_factory)


@pytest.fixture(scope="session")
def task_weights(session_dir) -> Path:
    """``make scratch IMGSZ=TASK_IMGSZ`` per TASK_ARCHS architecture: the folder of ``<arch>_untrained.pt``
    (outputs varied at the size the task tests run at), shared by the task tree and tests/test_tasks_export.py."""
    def build(folder: Path) -> None:
        for arch in TASK_ARCHS:
            Tree(folder).make("scratch", f"MODEL={arch}", f"IMGSZ={TASK_IMGSZ}")

    return Tree(built_once(session_dir / "task_weights", build)).weights


def link_weights(tree: Tree, weights: Path) -> None:
    """``tree``'s weights folder holds links to every checkpoint in ``weights`` (make reads them as its own)."""
    tree.weights.mkdir(parents=True, exist_ok=True)
    for pt in sorted(weights.glob("*.pt")):
        (tree.weights / pt.name).symlink_to(pt)


@pytest.fixture(scope="session")
def task_tree(session_dir, task_weights) -> Tree:
    """The task_weights checkpoints, then Track A and (where the task has one) end2end, FP32,
    INSTANCE_KIND=cpu, TASK_IMGSZ: built once, served and validated by several modules (read-only to them)."""
    def build(folder: Path) -> None:
        tree = Tree(folder)
        link_weights(tree, task_weights)
        for arch, (_, nms) in TASK_ARCHS.items():
            goals = [f"{tree.models}/{task_model_name(arch)}/config.pbtxt"]
            if nms:
                goals.append(f"{tree.models}/{task_model_name(arch)}_end2end/config.pbtxt")
            tree.make(*goals, *task_make_settings(nms))

    return Tree(built_once(session_dir / "tasks", build))


@pytest.fixture(scope="session")
def task_artefacts(session_dir):
    """scratch_tasks' checkpoints and ultralytics ONNX exports (seed scratch_tasks.SEED, IMGSZ 320), built on
    first use and shared by tests/test_task_pose.py, test_task_obb.py and test_nms_tasks.py."""
    from scratch_tasks import TaskArtefacts

    return TaskArtefacts(session_dir / "task_artefacts")


@pytest.fixture(scope="session")
def scratch_checkpoint(session_dir):
    """``scratch_checkpoint(arch)``: the path of ``<arch>_untrained.pt`` from ``make scratch MODEL=<arch>``
    (default size), made once per session for every module that needs that architecture; link it in."""
    def get(arch: str) -> Path:
        folder = built_once(session_dir / f"scratch-{arch}", lambda f: Tree(f).make("scratch", f"MODEL={arch}"))
        return Tree(folder).weights / f"{arch}_untrained.pt"

    return get


@pytest.fixture(scope="session")
def scratch_weights(session_dir) -> Path:
    """``yolo11n_untrained.pt`` written by ``make scratch`` (BN recalibrated, head rescaled)."""
    folder = built_once(session_dir / "scratch", lambda f: Tree(f).make("scratch", f"MODEL={SCRATCH_ARCH}"))
    path = Tree(folder).weights / f"{SCRATCH_NAME}.pt"
    assert path.is_file()
    return path


def _link_scratch(tree: Tree, scratch_weights: Path) -> Tree:
    """``tree`` with a weights folder that links to ``scratch_weights`` (nothing built yet)."""
    tree.weights.mkdir()
    (tree.weights / scratch_weights.name).symlink_to(scratch_weights)
    return tree


def _tree_with_weights(tmp_path_factory, scratch_weights: Path, label: str) -> Tree:
    """A tree of this worker whose weights folder links to ``scratch_weights`` (nothing built yet)."""
    return _link_scratch(Tree(tmp_path_factory.mktemp(label)), scratch_weights)


def _session_onnx_tree(session_dir: Path, scratch_weights: Path, label: str, *settings: str) -> Tree:
    """``make onnx NAMES=<scratch> *settings`` in a session tree whose weights link to ``scratch_weights``."""
    def build(folder: Path) -> None:
        _link_scratch(Tree(folder), scratch_weights).make("onnx", f"NAMES={SCRATCH_NAME}", *settings)

    return Tree(built_once(session_dir / label, build))


@pytest.fixture(scope="session")
def fp32_tree(session_dir, scratch_weights) -> Tree:
    """``make onnx`` for the scratch checkpoint at FP32 and TEST_IMGSZ: Track A, end2end, configs."""
    return _session_onnx_tree(session_dir, scratch_weights, "fp32", "PRECISION=fp32", f"IMGSZ={TEST_IMGSZ}")


@pytest.fixture(scope="session")
def fp16_tree(session_dir, scratch_weights) -> Tree:
    """The default precision (ModelOpt AutoCast FP16 inside, FP32 I/O) at TEST_IMGSZ."""
    return _session_onnx_tree(session_dir, scratch_weights, "fp16", f"IMGSZ={TEST_IMGSZ}")


@pytest.fixture(scope="session")
def sample_images() -> list[Path]:
    from ultralytics.utils import ASSETS

    images = sorted(Path(ASSETS).glob("*.jpg"))
    assert {p.name for p in images} >= {"bus.jpg", "zidane.jpg"}
    return images


def skip_unless_ci(reason: str) -> None:
    """Skip a test whose tool is missing on a developer machine; in CI (CI=true) a missing tool that
    ``make setup`` should have installed is a failure, so nothing passes by skipping."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"required in CI: {reason}")
    pytest.skip(reason)


@pytest.fixture
def restore_logging():
    """The step CLIs reconfigure the root logger onto the (captured) stderr; put it back afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def numpy_dtype(triton_data_type: int) -> str:
    """numpy dtype name of a Triton ``DataType`` (tritonclient's own mapping; tests only)."""
    import numpy as np
    from tritonclient.grpc import model_config_pb2 as mc
    from tritonclient.utils import triton_to_np_dtype

    return np.dtype(triton_to_np_dtype(mc.DataType.Name(triton_data_type).removeprefix("TYPE_"))).name


def real_triton_missing() -> str | None:
    """Why no real tritonserver + ONNX Runtime backend can run here, or None when both are found."""
    from yolo_triton import triton_server as ts

    try:
        ts.tritonserver_dir()
    except ts.ServerError as err:
        return str(err)
    if ts.find_onnxruntime_backend() is None:
        return (f"no Triton ONNX Runtime backend here (set {ts.ORT_BACKEND_ENV} or provide "
                "../shared/triton/backends/onnxruntime): the real-server tests need one")
    return None


def skip_without_real_triton() -> None:
    """Skip (one line saying why) where no real tritonserver + ONNX Runtime backend can run: a user's
    machine without nvidia-pytriton or without the backend (../shared/triton, $YOLO_TRITON_ORT_BACKEND).
    In CI (CI=true) that is a failure: CI's clone has ../shared beside it and make setup installs the rest."""
    reason = real_triton_missing()
    if reason is not None:
        skip_unless_ci(reason)


def registered_regions(client) -> list[str]:
    """Names of the system shared memory regions the server has registered (HTTP or gRPC client)."""
    if type(client).__module__.startswith("tritonclient.grpc"):
        return sorted(client.get_system_shared_memory_status(as_json=True).get("regions", {}))
    return sorted(region["name"] for region in client.get_system_shared_memory_status())


def shm_files(pid: int | None = None) -> list[str]:
    """Our client's /dev/shm files (``yolo_triton_<pid>_...``), of process ``pid`` or of any process."""
    from yolo_triton.client import SHM_PREFIX

    return sorted(p.name for p in Path("/dev/shm").glob(f"{SHM_PREFIX}_{'' if pid is None else f'{pid}_'}*"))


def leaked_shm_files(since: float) -> list[str]:
    """Our client's /dev/shm files made since ``since`` (time.time()) whose process has ended: leaked.
    (Other runs on the same machine may hold live ones: those are not this test's.)"""
    leaked = []
    for name in shm_files():
        try:
            pid, made = int(name.split("_")[2]), (Path("/dev/shm") / name).stat().st_ctime
        except (ValueError, IndexError, FileNotFoundError):
            continue
        if made >= since - 1 and not Path(f"/proc/{pid}").exists():
            leaked.append(name)
    return leaked


# `make test` runs two pytest-xdist workers, a file at a time each (--dist loadfile --no-loadscope-reorder):
# the modules that build or serve the most go first, so the two workers finish together; the first two
# need different session artefacts (neither waits on the other's build). Only the order of whole files
# changes; the rest follow in their usual order. (A module missing here is only scheduled later.)
HEAVY_MODULES_FIRST = (
    "test_tasks_served.py", "test_served_repository.py", "test_nms_free.py", "test_versions.py",
    "test_tasks_export.py", "test_bench_serving.py", "test_soak.py", "test_multi_gpu_build.py",
    "test_batch_pad.py", "test_input_uint8.py", "test_output_dtype.py", "test_tasks_validate.py", "test_nms_tasks.py",
    "test_download.py", "test_demo.py", "test_bad_input.py", "test_task_segment.py", "test_pipeline.py",
)


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(HEAVY_MODULES_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: a file's own order is kept
