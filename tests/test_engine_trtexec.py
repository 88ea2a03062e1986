"""The trtexec path of export/build_engine.py, driven against TEST DOUBLES (no TensorRT here).

A fake ``trtexec`` (tests/doubles/fake_trtexec.py) on PATH records its argv and speaks like
TensorRT 10.13.3 or 11.4.0; a fake ``nvidia-smi`` names the GPU. We assert the exact command for
both majors, both tracks and every size, plus the timing cache, sidecar, atomic plan and errors.
"""
from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

import pytest

import build_engine
from onnx_graphs import end2end_detector, plain_detector
from yolo_triton import engine, engine_trtexec
from yolo_triton.engine import (
    make_profile,
    parse_trtexec_version,
    parse_workspace,
    plan_is_stale,
    read_sidecar,
    sha256_file,
)
from yolo_triton.errors import StepError
from yolo_triton.onnx_io import TensorSpec

DOUBLES = Path(__file__).parent / "doubles"
SIZES = {"nano": 128, "small": 64, "medium": 32}  # export/defaults.mk MAX_BATCH_<size>
GPU = "NVIDIA H100 80GB HBM3"
FORBIDDEN = ("--workspace", "--explicitBatch", "--buildOnly", "--fp16", "--int8", "--best")


def _wrapper(path: Path, script: Path) -> None:
    path.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{script}" "$@"\n')
    path.chmod(0o755)


@pytest.fixture
def fake_bin(tmp_path, monkeypatch):
    """A PATH with the fake trtexec and fake nvidia-smi (and nothing else)."""
    bin_dir = tmp_path / "fake-bin"
    bin_dir.mkdir()
    _wrapper(bin_dir / "trtexec", DOUBLES / "fake_trtexec.py")
    _wrapper(bin_dir / "nvidia-smi", DOUBLES / "fake_nvidia_smi.py")
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setenv("FAKE_TRTEXEC_ARGV_LOG", str(tmp_path / "argv.jsonl"))
    monkeypatch.setenv("FAKE_GPU_NAME", GPU)
    monkeypatch.setenv("FAKE_GPU_CC", "9.0")
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # the Python API must not be what runs
    monkeypatch.setattr(engine, "DEFAULT_TRTEXEC", str(tmp_path / "no-such" / "trtexec"))
    return bin_dir


def _argv_log(tmp_path: Path) -> list[list[str]]:
    return [json.loads(line) for line in (tmp_path / "argv.jsonl").read_text().splitlines()]


def _cli(onnx_path, plan, max_batch, cache_dir, *extra, imgsz=640):
    return ["--onnx", str(onnx_path), "--plan", str(plan), "--max-batch", str(max_batch),
            "--imgsz", str(imgsz), "--workspace", "4G", "--opt-level", "3",
            "--cache-dir", str(cache_dir), "--builder", "auto", "--trtexec", "", *extra]


def _expected(onnx_path, plan, max_batch, cache, major, imgsz=640):
    cmd = [f"--onnx={onnx_path}", f"--saveEngine={plan}.{os.getpid()}.tmp",
           f"--minShapes=images:1x3x{imgsz}x{imgsz}",
           f"--optShapes=images:{max(1, max_batch // 2)}x3x{imgsz}x{imgsz}",
           f"--maxShapes=images:{max_batch}x3x{imgsz}x{imgsz}"]
    if major == 10:
        cmd.append("--stronglyTyped")
    return cmd + ["--memPoolSize=workspace:4G", "--builderOptimizationLevel=3",
                  f"--timingCacheFile={cache}.{os.getpid()}.tmp", "--skipInference",
                  "--device=0"]  # pinned to the one GPU the fake nvidia-smi lists


@pytest.mark.parametrize("version", ["10.13.3", "11.4.0"])
@pytest.mark.parametrize("track", ["B", "C"])
@pytest.mark.parametrize("size", list(SIZES))
def test_exact_trtexec_command(tmp_path, fake_bin, monkeypatch, version, track, size):
    monkeypatch.setenv("FAKE_TRTEXEC_VERSION", version)
    make_graph = plain_detector if track == "B" else end2end_detector
    onnx_path = make_graph(tmp_path / "model.onnx", precision="fp16")
    plan = tmp_path / "models" / f"yolov11_{size}_trt" / "1" / "model.plan"
    max_batch = SIZES[size]

    assert build_engine.main(_cli(onnx_path, plan, max_batch, tmp_path / "trt_cache")) == 0

    cache = tmp_path / "trt_cache" / f"timing_NVIDIA-H100-80GB-HBM3_sm90_trt{version}.cache"
    probe, build = _argv_log(tmp_path)
    assert probe == ["--help"]  # version banner read before any flag is chosen
    assert build == _expected(onnx_path, plan, max_batch, cache, int(version.split(".")[0]))
    assert not set(a.split("=")[0] for a in build) & set(FORBIDDEN)
    assert plan.read_bytes().startswith(b"FAKE-TRTEXEC-PLAN")
    assert not list(plan.parent.glob("*.tmp"))
    assert cache.read_bytes() == f"fake-timing-entry {plan}.{os.getpid()}.tmp\n".encode()
    assert not list(cache.parent.glob("*.tmp"))

    side = read_sidecar(plan)
    assert side["tensorrt_version"] == version
    assert side["gpu_name"] == GPU and side["compute_capability"] == "9.0"
    assert side["onnx_sha256"] == sha256_file(onnx_path)
    assert side["precision"] == "fp16" and side["builder"] == "trtexec"
    assert side["profile"] == {"input_name": "images", "min": [1, 3, 640, 640],
                               "opt": [max_batch // 2, 3, 640, 640], "max": [max_batch, 3, 640, 640]}
    assert side["plan_bytes"] == plan.stat().st_size
    assert plan_is_stale(plan, GPU, version + ".1") is None


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_precision_comes_from_graph_not_flags(tmp_path, fake_bin, precision):
    onnx_path = plain_detector(tmp_path / "m.onnx", precision=precision)
    plan = tmp_path / "m.plan"
    assert build_engine.main(_cli(onnx_path, plan, 8, tmp_path / "c")) == 0
    build = _argv_log(tmp_path)[-1]
    assert "--stronglyTyped" in build and not set(build) & set(FORBIDDEN)
    assert read_sidecar(plan)["precision"] == precision


def test_timing_cache_is_loaded_and_saved_again(tmp_path, fake_bin):
    onnx_path = plain_detector(tmp_path / "m.onnx", imgsz=320)
    for name in ("a.plan", "b.plan"):
        assert build_engine.main(_cli(onnx_path, tmp_path / name, 4, tmp_path / "c", imgsz=320)) == 0
    (cache,) = (tmp_path / "c").glob("timing_*.cache")
    # second build started from the first: both entries are there
    assert cache.read_bytes().decode().splitlines() == [f"fake-timing-entry {tmp_path / name}.{os.getpid()}.tmp"
                                                        for name in ("a.plan", "b.plan")]


def test_progress_phases_and_last_line(tmp_path, fake_bin, caplog, capsys):
    caplog.set_level(logging.INFO)
    onnx_path = end2end_detector(tmp_path / "m.onnx")
    assert build_engine.main(_cli(onnx_path, tmp_path / "m.plan", 2, tmp_path / "c")) == 0
    text = caplog.text
    for phase in ("parsing ONNX", "ONNX parsed", "building engine (tactic selection)", "engine built", "done"):
        assert f"trtexec: {phase} (+" in text
    assert "track C" in text
    assert caplog.records[-1].getMessage().startswith(f"built {tmp_path / 'm.plan'} in ")
    assert "MiB" in caplog.records[-1].getMessage()
    assert "  | &&&& PASSED TensorRT.trtexec" in capsys.readouterr().err  # output is streamed


@pytest.mark.parametrize("fail,needle", [("oom", "lower MAX_BATCH"), ("error", "Failed to parse onnx file")])
def test_trtexec_failure_is_one_line_and_leaves_no_plan(tmp_path, fake_bin, monkeypatch, caplog, fail, needle):
    monkeypatch.setenv("FAKE_TRTEXEC_FAIL", fail)
    onnx_path = plain_detector(tmp_path / "m.onnx")
    plan = tmp_path / "m.plan"
    plan.write_bytes(b"old plan")  # an older plan stays as it was (Make still sees it out of date)
    cache_dir = tmp_path / "c"
    assert build_engine.main(_cli(onnx_path, plan, 8, cache_dir)) == 1
    (error,) = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert "\n" not in error and needle in error
    if fail == "oom":
        assert "WORKSPACE" in error
    else:
        assert error.startswith("trtexec exited with 1; last lines:")
    assert plan.read_bytes() == b"old plan" and not list(plan.parent.glob("*.tmp"))
    assert read_sidecar(plan) is None
    # neither a cache nor a half-written temp file (the lock file stays, as trtexec's own do)
    assert [p.name for p in cache_dir.glob("*")] in ([], ["locks"]) or \
        not [p for p in cache_dir.rglob("*") if p.is_file() and not p.name.endswith(".lock")]


def test_explicit_trtexec_path_wins(tmp_path, fake_bin):
    other = tmp_path / "elsewhere" / "my-trtexec"
    other.parent.mkdir()
    _wrapper(other, DOUBLES / "fake_trtexec.py")
    (fake_bin / "trtexec").unlink()
    onnx_path = plain_detector(tmp_path / "m.onnx")
    args = _cli(onnx_path, tmp_path / "m.plan", 8, tmp_path / "c")
    args[args.index("--trtexec") + 1] = str(other)
    assert build_engine.main(args) == 0
    assert _argv_log(tmp_path)[-1][0].startswith("--onnx=")


def test_missing_tensorrt_says_where_to_run(tmp_path, fake_bin, caplog):
    (fake_bin / "trtexec").unlink()  # no trtexec anywhere, and `import tensorrt` fails (fixture)
    onnx_path = plain_detector(tmp_path / "m.onnx")
    assert build_engine.main(_cli(onnx_path, tmp_path / "m.plan", 8, tmp_path / "c")) == 1
    (error,) = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert "TensorRT is missing" in error and "docker compose exec yolo-api make" in error
    assert not (tmp_path / "m.plan").exists()


def test_bad_explicit_trtexec_and_unsupported_version(tmp_path, fake_bin, monkeypatch, caplog):
    onnx_path = plain_detector(tmp_path / "m.onnx")
    args = _cli(onnx_path, tmp_path / "m.plan", 8, tmp_path / "c")
    args[args.index("--trtexec") + 1] = str(tmp_path / "nope")
    assert build_engine.main(args) == 1
    monkeypatch.setenv("FAKE_TRTEXEC_VERSION", "8.6.1")
    assert build_engine.main(_cli(onnx_path, tmp_path / "m.plan", 8, tmp_path / "c")) == 1
    assert "TensorRT 8.6.1 is not supported" in caplog.text


def test_usage_errors_exit_2(tmp_path):
    with pytest.raises(SystemExit) as exc:
        build_engine.main(["--onnx", "x.onnx"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        build_engine.main(_cli("x.onnx", "x.plan", 8, "c") + ["--opt-level", "9"])
    assert exc.value.code == 2


def test_version_banners():
    assert parse_trtexec_version("&&&& RUNNING TensorRT.trtexec [TensorRT v101303] [b9] # trtexec") == "10.13.3"
    assert parse_trtexec_version("&&&& RUNNING TensorRT.trtexec [TensorRT v110400] [b106]") == "11.4.0"
    assert parse_trtexec_version("[11/25/2026-06:30:00] [I] TensorRT version: 10.13.3") == "10.13.3"
    assert parse_trtexec_version("[TensorRT v8601]") == "8.6.1"
    assert parse_trtexec_version("no banner") is None


def test_profile_workspace_and_shape_checks():
    spec = TensorSpec("images", "float32", (-1, 3, 640, 640))
    assert make_profile(spec, 128, 640).opt == (64, 3, 640, 640)
    assert make_profile(spec, 1, 640).opt == (1, 3, 640, 640)
    assert make_profile(TensorSpec("images", "float32", (-1, 3, -1, -1)), 32, 320).max == (32, 3, 320, 320)
    with pytest.raises(StepError, match="fixed batch of 1"):
        make_profile(TensorSpec("images", "float32", (1, 3, 640, 640)), 8, 640)
    with pytest.raises(StepError, match="IMGSZ=320"):
        make_profile(spec, 8, 320)
    assert parse_workspace("4G") == 4 << 30
    assert parse_workspace("512M") == 512 << 20
    assert parse_workspace("4096") == 4 << 30  # trtexec: no suffix = MiB
    with pytest.raises(ValueError):
        parse_workspace("4GB!")


def test_plan_is_stale_and_check_plans(tmp_path, fake_bin, monkeypatch, caplog):
    onnx_path = plain_detector(tmp_path / "m.onnx")
    plan = tmp_path / "m.plan"
    assert plan_is_stale(plan, GPU, "10.13.3") == f"{plan} does not exist"
    assert build_engine.main(_cli(onnx_path, plan, 8, tmp_path / "c")) == 0
    assert plan_is_stale(plan, GPU, "10.13.3.9") is None
    assert "NVIDIA L4" in plan_is_stale(plan, "NVIDIA L4", "10.13.3")
    assert "TensorRT 10.13.3, this is TensorRT 11.4.0" in plan_is_stale(plan, GPU, "11.4.0")

    assert build_engine.main(["--check-plans", str(plan), "--trtexec", ""]) == 0
    monkeypatch.setenv("FAKE_TRTEXEC_VERSION", "11.4.0")  # the toolchain was upgraded
    assert build_engine.main(["--check-plans", str(plan), "--trtexec", ""]) == 1
    assert plan.exists()
    assert build_engine.main(["--check-plans", str(plan), "--remove-stale", "--trtexec", ""]) == 0
    assert not plan.exists() and read_sidecar(plan) is None

    assert build_engine.main(["--check-plans"]) == 0  # nothing built yet: nothing to check, no TensorRT needed

    plan.write_bytes(b"plan without sidecar")
    assert "missing or unreadable" in plan_is_stale(plan, GPU, "10.13.3")


def test_timing_cache_name_per_gpu_cc_and_version(tmp_path):
    from yolo_triton.engine import GpuInfo, timing_cache_path

    assert timing_cache_path(tmp_path, GpuInfo("NVIDIA H100 80GB HBM3", "9.0"), "10.13.3.9").name == \
        "timing_NVIDIA-H100-80GB-HBM3_sm90_trt10.13.3.cache"
    assert timing_cache_path(tmp_path, GpuInfo("NVIDIA L4", "8.9"), "11.4.0.106").name == \
        "timing_NVIDIA-L4_sm89_trt11.4.0.cache"
    assert timing_cache_path(tmp_path, GpuInfo("unknown-gpu", "unknown"), "10.13.3").name == \
        "timing_unknown-gpu_sm-unknown_trt10.13.3.cache"


def test_a_failed_rebuild_keeps_the_surviving_plan_and_its_sidecar(tmp_path, fake_bin, monkeypatch):
    """The old plan survives a failed build; so must its sidecar, or check-plans REMOVE_STALE=1 deletes it."""
    onnx_path = plain_detector(tmp_path / "m.onnx")
    plan = tmp_path / "m.plan"
    assert build_engine.main(_cli(onnx_path, plan, 8, tmp_path / "c")) == 0
    built, sidecar = plan.read_bytes(), read_sidecar(plan)
    monkeypatch.setenv("FAKE_TRTEXEC_FAIL", "error")
    assert build_engine.main(_cli(onnx_path, plan, 8, tmp_path / "c")) == 1
    assert plan.read_bytes() == built and read_sidecar(plan) == sidecar
    assert plan_is_stale(plan, GPU, "10.13.3") is None
    assert build_engine.main(["--check-plans", str(plan), "--remove-stale", "--trtexec", ""]) == 0
    assert plan.exists()


def test_a_forbidden_flag_never_reaches_trtexec(tmp_path, monkeypatch):
    """FORBIDDEN_FLAGS is enforced where the command is built (here: a flag the builder does pass)."""
    spec = TensorSpec("images", "float32", (-1, 3, 640, 640))
    request = engine.BuildRequest(onnx=tmp_path / "m.onnx", plan=tmp_path / "m.plan", profile=make_profile(spec, 8, 640),
                                  workspace="4G", workspace_bytes=4 << 30, opt_level=3,
                                  timing_cache=tmp_path / "t.cache")
    cmd = engine_trtexec.trtexec_command("trtexec", request, "10.13.3", tmp_path / "m.plan.tmp", tmp_path / "t.tmp")
    assert "--stronglyTyped" in cmd
    monkeypatch.setattr(engine_trtexec, "FORBIDDEN_FLAGS", (*engine_trtexec.FORBIDDEN_FLAGS, "--stronglyTyped"))
    with pytest.raises(RuntimeError, match="--stronglyTyped"):
        engine_trtexec.trtexec_command("trtexec", request, "10.13.3", tmp_path / "m.plan.tmp", tmp_path / "t.tmp")


@pytest.mark.parametrize("version", ["10.13.3", "11.4.0"])
def test_uint8_input_builds_with_the_same_command(tmp_path, fake_bin, monkeypatch, version):
    """INPUT_DTYPE=uint8: the ONNX declares ``images`` UINT8 (Cast + Div inside). trtexec keeps a UINT8
    network input as parsed when no ``--inputIOFormats`` is given (samples/common/sampleEngines.cpp lists
    kUINT8 among the types it leaves as is), so the command is exactly the float32 one, without that flag."""
    import onnx

    from yolo_triton.input_uint8 import uint8_input

    monkeypatch.setenv("FAKE_TRTEXEC_VERSION", version)
    source = plain_detector(tmp_path / "f.onnx", precision="fp32")
    onnx_path = tmp_path / "u8.onnx"
    onnx.save(uint8_input(onnx.load(str(source))), str(onnx_path))
    plan = tmp_path / "models" / "m_trt" / "1" / "model.plan"
    assert build_engine.main(_cli(onnx_path, plan, 8, tmp_path / "trt_cache")) == 0
    cache = tmp_path / "trt_cache" / f"timing_NVIDIA-H100-80GB-HBM3_sm90_trt{version}.cache"
    build = _argv_log(tmp_path)[-1]
    assert build == _expected(onnx_path, plan, 8, cache, int(version.split(".")[0]))
    assert not any(a.startswith(("--inputIOFormats", "--outputIOFormats")) for a in build)
