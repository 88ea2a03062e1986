"""The TensorRT Python API path of export/build_engine.py, driven end to end against a TEST DOUBLE.

tests/doubles/fake_tensorrt is a fake ``tensorrt`` module (no TensorRT): with a 10.x version it
keeps the deprecated weak-typing API, with 11.x it lacks ``BuilderFlag.FP16``, ``EXPLICIT_BATCH``
and ``int8_calibrator`` like the real 11.x. It records every call and every attribute asked of it.
"""
from __future__ import annotations

import importlib
import json
import logging
import sys
from pathlib import Path

import pytest

import build_engine
from onnx_graphs import end2end_detector, plain_detector
from yolo_triton import engine, engine_build, engine_python
from yolo_triton.engine import read_sidecar
from yolo_triton.onnx_io import TensorSpec

DOUBLES = Path(__file__).parent / "doubles"
GPU = "NVIDIA H100 80GB HBM3"
VERSIONS = ["10.13.3.9", "11.4.0.106"]
REMOVED_IN_11 = {"FP16", "INT8", "EXPLICIT_BATCH", "int8_calibrator", "platform_has_fast_fp16",
                 "set_flag", "BuilderFlag"}


@pytest.fixture
def no_trtexec_gpu(tmp_path, monkeypatch):
    """PATH holds only the fake nvidia-smi: no trtexec anywhere."""
    bin_dir = tmp_path / "fake-bin"
    bin_dir.mkdir()
    smi = bin_dir / "nvidia-smi"
    smi.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{DOUBLES / "fake_nvidia_smi.py"}" "$@"\n')
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setenv("FAKE_GPU_NAME", GPU)
    monkeypatch.setattr(engine, "DEFAULT_TRTEXEC", str(tmp_path / "no-such" / "trtexec"))


@pytest.fixture
def fake_trt(monkeypatch, no_trtexec_gpu):
    """Factory: import the fake tensorrt with a version and failure mode; unloaded afterwards."""
    monkeypatch.syspath_prepend(str(DOUBLES / "fake_tensorrt"))
    missing = object()
    before = sys.modules.pop("tensorrt", missing)

    def load(version: str, fail: str = ""):
        monkeypatch.setenv("FAKE_TENSORRT_VERSION", version)
        monkeypatch.setenv("FAKE_TENSORRT_FAIL", fail)
        sys.modules.pop("tensorrt", None)
        module = importlib.import_module("tensorrt")
        assert module.__file__.startswith(str(DOUBLES))  # never the real one
        module._reset()
        return module

    yield load
    sys.modules.pop("tensorrt", None)  # the double never outlives its test
    if before is not missing:
        sys.modules["tensorrt"] = before


def _cli(onnx_path, plan, max_batch, cache_dir, builder="python", imgsz=640):
    return ["--onnx", str(onnx_path), "--plan", str(plan), "--max-batch", str(max_batch),
            "--imgsz", str(imgsz), "--workspace", "4G", "--opt-level", "3",
            "--cache-dir", str(cache_dir), "--builder", builder, "--trtexec", ""]


def _calls(trt, name):
    return [args for call, args in trt._CALLS if call == name]


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("track", ["B", "C"])
@pytest.mark.parametrize("max_batch", [128, 64, 32])
def test_python_build_end_to_end(tmp_path, fake_trt, capsys, version, track, max_batch):
    trt = fake_trt(version)
    onnx_path = (plain_detector if track == "B" else end2end_detector)(tmp_path / "m.onnx", precision="fp16")
    plan = tmp_path / "model.plan"
    assert build_engine.main(_cli(onnx_path, plan, max_batch, tmp_path / "c")) == 0

    names = [call for call, _ in trt._CALLS]
    assert names.index("init_libnvinfer_plugins") < names.index("parse_from_file")
    assert _calls(trt, "init_libnvinfer_plugins") == [("",)]
    strongly_typed = 1 << 1 if version.startswith("10.") else 0  # STRONGLY_TYPED on 10, nothing on 11
    assert _calls(trt, "create_network") == [(strongly_typed,)]
    assert _calls(trt, "set_memory_pool_limit") == [("MemoryPoolType.WORKSPACE", 4 << 30)]
    assert _calls(trt, "IBuilderConfig.builder_optimization_level=") == [(3,)]
    assert _calls(trt, "set_shape") == [("images", (1, 3, 640, 640), (max_batch // 2, 3, 640, 640),
                                         (max_batch, 3, 640, 640))]
    assert _calls(trt, "set_timing_cache") == [(False, True)]  # ignore_mismatch=False
    assert _calls(trt, "set_flag") == []  # no precision flags: the graph decides
    assert len(_calls(trt, "IBuilderConfig.progress_monitor=")) == 1

    body = json.loads(plan.read_bytes().split(b"\n", 1)[1])
    assert body["profile"] == {"images": [[1, 3, 640, 640], [max_batch // 2, 3, 640, 640],
                                          [max_batch, 3, 640, 640]]}
    assert body["plugins"] == (["EfficientNMS_TRT"] if track == "C" else [])
    assert not list(plan.parent.glob("*.tmp"))
    short = ".".join(version.split(".")[:3])
    cache = tmp_path / "c" / f"timing_NVIDIA-H100-80GB-HBM3_sm90_trt{short}.cache"
    assert cache.read_bytes() == b"FAKE-TC\nbuilt\nentry\n"
    side = read_sidecar(plan)
    assert (side["builder"], side["tensorrt_version"], side["precision"]) == ("python", short, "fp16")

    # The engine inspection API read back into TensorSpecs: names, numpy dtypes, -1 for dynamic dims, and
    # which side each tensor is on, stated here (not derived from the ONNX the double was built from).
    images = [TensorSpec("images", "float32", (-1, 3, 640, 640))]
    expected = (images, [TensorSpec("output0", "float32", (-1, 84, -1))]) if track == "B" else (images, [
        TensorSpec("num_dets", "int32", (-1, 1)), TensorSpec("det_boxes", "float32", (-1, 100, 4)),
        TensorSpec("det_scores", "float32", (-1, 100)), TensorSpec("det_classes", "int32", (-1, 100))])
    assert engine_build.engine_io(plan) == expected
    err = capsys.readouterr().err
    assert "Building engine" in err and "[" + "#" * 30 + "] 2/2" in err  # the progress bar

    accessed = set(trt._ACCESSED)
    assert accessed <= set(engine_python.TRT_API), accessed - set(engine_python.TRT_API)
    assert not accessed & REMOVED_IN_11


def test_declared_api_is_what_the_code_uses(tmp_path, fake_trt):
    """Every name in TRT_API is really touched by a build, a parse failure and engine_io (no padding)."""
    trt = fake_trt("10.13.3.9")
    onnx_path = end2end_detector(tmp_path / "m.onnx")
    assert build_engine.main(_cli(onnx_path, tmp_path / "m.plan", 4, tmp_path / "c")) == 0
    engine_build.engine_io(tmp_path / "m.plan")
    accessed = set(trt._ACCESSED)
    trt = fake_trt("10.13.3.9", fail="parse")
    assert build_engine.main(_cli(onnx_path, tmp_path / "m.plan", 4, tmp_path / "c")) == 1
    accessed |= trt._ACCESSED
    trt = fake_trt("11.4.0.106")  # a portable plan, and the timing-cache merge of the trtexec path
    assert build_engine.main(_cli(onnx_path, tmp_path / "p.plan", 4, tmp_path / "c") + ["--hw-compat", "ampere+"]) == 0
    assert engine_python.cache_merger(trt)(b"FAKE-TC\na\n", b"FAKE-TC\nb\n").startswith(b"FAKE-TC\na\nb\n")
    accessed |= trt._ACCESSED
    assert accessed == set(engine_python.TRT_API)


def test_timing_cache_round_trip_and_foreign_cache(tmp_path, fake_trt, caplog):
    trt = fake_trt("11.4.0.106")
    onnx_path = plain_detector(tmp_path / "m.onnx", imgsz=320)
    assert build_engine.main(_cli(onnx_path, tmp_path / "a.plan", 8, tmp_path / "c", imgsz=320)) == 0
    (cache,) = (tmp_path / "c").glob("timing_*.cache")
    first = cache.read_bytes()
    trt._reset()
    assert build_engine.main(_cli(onnx_path, tmp_path / "b.plan", 8, tmp_path / "c", imgsz=320)) == 0
    assert _calls(trt, "create_timing_cache") == [(first,)]  # loaded what the first build saved
    assert cache.read_bytes() == first + b"built\nentry\n"

    cache.write_bytes(b"garbage from another GPU")
    trt._reset()
    assert build_engine.main(_cli(onnx_path, tmp_path / "c.plan", 8, tmp_path / "c", imgsz=320)) == 0
    assert _calls(trt, "create_timing_cache") == [(b"garbage from another GPU",), (b"",)]
    assert "starting a new one" in caplog.text
    assert cache.read_bytes().startswith(b"FAKE-TC\n")


def test_parse_failure_reports_every_error_on_one_line(tmp_path, fake_trt, caplog):
    fake_trt("11.4.0.106", fail="parse")
    onnx_path = plain_detector(tmp_path / "m.onnx")
    plan = tmp_path / "m.plan"
    assert build_engine.main(_cli(onnx_path, plan, 8, tmp_path / "c")) == 1
    (error,) = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert "\n" not in error and "with 2 error(s)" in error
    assert "/model.23/Split" in error and "second error with newline" in error
    assert not plan.exists() and not list(plan.parent.glob("*.tmp")) and read_sidecar(plan) is None


def test_out_of_memory_suggests_smaller_batch_or_workspace(tmp_path, fake_trt, caplog):
    fake_trt("10.13.3.9", fail="oom")
    onnx_path = plain_detector(tmp_path / "m.onnx")
    plan = tmp_path / "m.plan"
    assert build_engine.main(_cli(onnx_path, plan, 128, tmp_path / "c")) == 1
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR
              and r.name == "build_engine"]
    assert len(errors) == 1 and "out of GPU memory" in errors[0]
    assert "MAX_BATCH" in errors[0] and "WORKSPACE" in errors[0]
    assert not plan.exists() and not list(plan.parent.glob("*.tmp"))
    # the cache is only saved after a good build (lock files stay, as trtexec's own do)
    assert not [p for p in (tmp_path / "c").rglob("*") if p.is_file() and not p.name.endswith(".lock")]


def test_auto_uses_python_api_when_no_trtexec(tmp_path, fake_trt):
    trt = fake_trt("10.13.3.9")
    onnx_path = plain_detector(tmp_path / "m.onnx")
    assert build_engine.main(_cli(onnx_path, tmp_path / "m.plan", 8, tmp_path / "c", builder="auto")) == 0
    assert read_sidecar(tmp_path / "m.plan")["builder"] == "python"
    assert _calls(trt, "build_serialized_network")


def test_the_11x_double_lacks_the_removed_api(fake_trt):
    """Sanity of the double itself: code using the removed API would fail against it."""
    trt10 = fake_trt("10.13.3.9")
    assert hasattr(trt10.BuilderFlag, "FP16") and hasattr(trt10.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH")
    trt11 = fake_trt("11.4.0.106")
    assert not hasattr(trt11.BuilderFlag, "FP16")
    assert not hasattr(trt11.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH")
    config = trt11.Builder(trt11.Logger()).create_builder_config()
    assert not hasattr(config, "int8_calibrator")
    with pytest.raises(AttributeError):
        config.int8_calibrator = object()


def test_engine_io_is_none_without_tensorrt(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    assert engine_build.engine_io(tmp_path / "model.plan") is None


def test_foreign_plan_cannot_be_inspected(tmp_path, fake_trt):
    fake_trt("11.4.0.106")
    plan = tmp_path / "model.plan"
    plan.write_bytes(b"a plan from another TensorRT")
    with pytest.raises(engine.StepError, match="cannot be loaded by TensorRT 11.4.0.106"):
        engine_build.engine_io(plan)


@pytest.fixture
def broken_tensorrt(tmp_path, monkeypatch, no_trtexec_gpu):
    """A ``tensorrt`` package whose import fails the way a missing libnvinfer does (a TEST DOUBLE)."""
    package = tmp_path / "broken" / "tensorrt"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(
        'raise OSError("libnvinfer.so.10: cannot open shared object file: No such file or directory")\n')
    monkeypatch.syspath_prepend(str(package.parent))
    monkeypatch.delitem(sys.modules, "tensorrt", raising=False)


def test_a_broken_tensorrt_is_reported_with_its_import_error(broken_tensorrt):
    with pytest.raises(engine.StepError, match=r"installed but does not import: OSError: libnvinfer\.so\.10"):
        engine_build.select_builder("auto", None)


def test_a_missing_tensorrt_is_reported_as_missing(no_trtexec_gpu, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    with pytest.raises(engine.StepError, match="TensorRT is missing here"):
        engine_build.select_builder("auto", None)


def test_build_engine_says_broken_in_one_line(broken_tensorrt, tmp_path, caplog, restore_logging):
    onnx_path = plain_detector(tmp_path / "m.onnx")
    assert build_engine.main(_cli(onnx_path, tmp_path / "m.plan", 8, tmp_path / "c")) == 1
    (error,) = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert "libnvinfer.so.10" in error and "missing" not in error


@pytest.mark.parametrize("version", VERSIONS)
def test_hardware_compatible_plan(tmp_path, fake_trt, version):
    """HW_COMPAT=ampere+: HardwareCompatibilityLevel.AMPERE_PLUS on both majors, its own timing cache."""
    fake_trt(version)
    onnx_path = plain_detector(tmp_path / "m.onnx")
    plan = tmp_path / "model.plan"
    assert build_engine.main(_cli(onnx_path, plan, 8, tmp_path / "c") + ["--hw-compat", "ampere+"]) == 0
    body = json.loads(plan.read_bytes().split(b"\n", 1)[1])
    assert body["hardware_compatibility_level"] == "HardwareCompatibilityLevel.AMPERE_PLUS"
    side = read_sidecar(plan)
    assert side["hardware_compatibility_level"] == "ampere+"
    assert side["timing_cache"].endswith(f"_trt{'.'.join(version.split('.')[:3])}_ampere-plus.cache")
    assert engine.plan_is_stale(plan, "NVIDIA L4", version) is None  # portable: any GPU model
    plain = tmp_path / "plain.plan"
    assert build_engine.main(_cli(onnx_path, plain, 8, tmp_path / "c")) == 0
    assert json.loads(plain.read_bytes().split(b"\n", 1)[1])["hardware_compatibility_level"] == \
        "HardwareCompatibilityLevel.NONE"


def test_cache_saved_by_another_build_meanwhile_is_merged(tmp_path, fake_trt, monkeypatch):
    """Two builds share a cache: the one that saves second merges (ITimingCache.combine), nothing is lost."""
    trt = fake_trt("10.13.3.9")
    onnx_path = plain_detector(tmp_path / "m.onnx")
    cache = tmp_path / "c" / "timing_NVIDIA-H100-80GB-HBM3_sm90_trt10.13.3.cache"
    real_build = trt.Builder.build_serialized_network

    def build_while_another_saves(self, network, config):  # another build saves while this one runs
        cache.write_bytes(b"FAKE-TC\nfrom-the-other-build\n")
        return real_build(self, network, config)

    monkeypatch.setattr(trt.Builder, "build_serialized_network", build_while_another_saves)
    assert build_engine.main(_cli(onnx_path, tmp_path / "m.plan", 8, tmp_path / "c")) == 0
    lines = cache.read_bytes().splitlines()
    assert b"from-the-other-build" in lines and b"built" in lines  # theirs and ours
    assert _calls(trt, "combine") == [(False,)]  # ignore_mismatch=False
