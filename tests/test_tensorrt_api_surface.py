"""Every TensorRT name the Python build path uses exists in the REAL bindings of 10.13 and 11.4.

The bindings wheels (``tensorrt-cu12-bindings==10.13.3.9``, ``tensorrt-cu13-bindings==11.4.0.106``,
about 1.3 MB each) hold the compiled module ``tensorrt_bindings/tensorrt.so``; it cannot be
imported without libnvinfer, but its string table lists every Python name pybind11 registers.
They are downloaded once (``pip download --no-deps``) into ``~/.cache/yolo-triton/trt-bindings``.
The test is skipped only when neither the cache nor the package registry has them.

The names come from ``engine_python.TRT_API``; tests/test_engine_python.py checks that this list is
exactly what the code asks of a (recording) fake tensorrt.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from yolo_triton.engine_python import TRT_API

CACHE = Path(os.environ.get("TRT_BINDINGS_CACHE", Path.home() / ".cache" / "yolo-triton" / "trt-bindings"))
WHEELS = {"10.13.3.9": "tensorrt-cu12-bindings", "11.4.0.106": "tensorrt-cu13-bindings"}
# Names that exist only in 10.x: the weak-typing / implicit-batch / calibrator API removed in 11.x.
REMOVED_IN_11 = ("EXPLICIT_BATCH", "int8_calibrator", "platform_has_fast_fp16", "IInt8EntropyCalibrator2",
                 "FP16")


def _wheel(version: str) -> Path:
    project = WHEELS[version]
    pattern = f"{project.replace('-', '_')}-{version}-cp311-*.whl"
    found = sorted(CACHE.glob(pattern))
    if found:
        return found[0]
    CACHE.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--python-version", "3.11", "--platform", "manylinux_2_28_x86_64", "-d", str(CACHE),
           f"{project}=={version}"]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.SubprocessError) as err:
        pytest.skip(f"package registry unreachable ({err}); cannot fetch {project}=={version}")
    found = sorted(CACHE.glob(pattern))
    if done.returncode != 0 or not found:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["?"]
        pytest.skip(f"package registry unreachable for {project}=={version}: {tail[0]}")
    return found[0]


def _surface(version: str) -> tuple[set[str], set[str]]:
    """(NUL-terminated strings of tensorrt.so, identifiers of its __init__.py) of one wheel."""
    with zipfile.ZipFile(_wheel(version)) as wheel:
        so_name = next(n for n in wheel.namelist() if re.fullmatch(r"tensorrt_bindings/tensorrt[^/]*\.so", n))
        blob = wheel.read(so_name)
        python = wheel.read("tensorrt_bindings/__init__.py").decode("utf-8", "replace")  # __version__
    strings = {s.decode("latin-1") for s in blob.split(b"\x00") if s}
    return strings, set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", python))


def _has(name: str, strings: set[str], python: set[str]) -> bool:
    """The name is a C string of the module, or the tail of one: the linker merges a string into the
    end of a longer one ("ERROR" is stored inside "INTERNAL_ERROR", "num_errors" inside
    "get_num_errors"), so pybind11's pointer to the name lands in the middle of that string."""
    return name in python or any(s.endswith(name) for s in strings)


@pytest.fixture(scope="module", params=list(WHEELS))
def bindings(request):
    return request.param, *_surface(request.param)


def test_every_name_the_python_path_uses_exists(bindings):
    version, strings, python = bindings
    missing = [name for name in TRT_API if not _has(name, strings, python)]
    assert not missing, f"TensorRT {version} bindings lack {missing}"
    assert not _has("build_engine_fast_please", strings, python)  # negative control


def test_removed_names_are_absent_in_11_and_present_in_10(bindings):
    version, strings, python = bindings
    present = [name for name in REMOVED_IN_11 if _has(name, strings, python)]
    if version.startswith("11."):
        assert present == [], f"TensorRT {version} still has {present}"
    else:
        assert present == list(REMOVED_IN_11)  # the check can see them where they exist


def test_strongly_typed_flag_is_a_documented_no_op_in_11(bindings):
    version, strings, _ = bindings
    assert "STRONGLY_TYPED" in strings
    if version.startswith("11."):
        assert any("Strongly typed mode is always enabled" in s for s in strings)


def test_the_python_path_avoids_removed_names():
    assert not set(TRT_API) & set(REMOVED_IN_11)
    assert not {"BuilderFlag", "set_flag", "Int8", "calibrator"} & set(TRT_API)


# ---- multi-GPU / mixed-fleet names: in both majors' bindings and in the spec sheet's trtexec facts ----
FLEET_API = ("HardwareCompatibilityLevel", "AMPERE_PLUS", "hardware_compatibility_level", "combine", "ITimingCache")
SPEC = Path(__file__).resolve().parents[1].parent / "shared" / "reference" / "trt-triton-spec.md"
# trtexec flags the spec sheet does not list, each with where it was read (both majors)
TRTEXEC_FLAGS_OUTSIDE_SPEC = {
    "--device": "NVIDIA/TensorRT samples/common/sampleOptions.cpp SystemOptions::parse "
                "(getAndDelOption \"--device\"), release/10.13 and release/11.1",
}


def test_fleet_names_exist_in_both_majors(bindings):
    version, strings, python = bindings
    missing = [name for name in FLEET_API if not _has(name, strings, python)]
    assert not missing, f"TensorRT {version} bindings lack {missing}"
    assert set(FLEET_API) - {"ITimingCache"} <= set(TRT_API)  # declared where the code uses them
    # ITimingCache::combine(ITimingCache const&, bool) is compiled into both modules
    assert any("ITimingCache7combine" in s for s in strings)


def test_every_trtexec_flag_we_emit_is_a_known_trtexec_flag(tmp_path):
    from yolo_triton.engine import BuildRequest, Profile
    from yolo_triton.engine_trtexec import trtexec_command

    if not SPEC.is_file():
        pytest.skip(f"{SPEC} (the shared spec sheet) is not on this machine")
    text = SPEC.read_text()
    section = text[text.index("## 2. trtexec flags"):text.index("## 3.")]
    assert "`--hardwareCompatibilityLevel=none|ampere+|sameComputeCapability`" in section
    assert "trt.HardwareCompatibilityLevel.AMPERE_PLUS" in text  # the Python API fact (§3)
    profile = Profile("images", (1, 3, 64, 64), (2, 3, 64, 64), (4, 3, 64, 64))
    request = BuildRequest(tmp_path / "m.onnx", tmp_path / "m.plan", profile, "4G", 4 << 30, 3,
                           tmp_path / "t.cache", verbose=True, gpu_index=2, hw_compat="ampere+")
    for version in WHEELS:
        cmd = trtexec_command("trtexec", request, version, tmp_path / "p.tmp", tmp_path / "c.tmp")
        assert "--device=2" in cmd and "--hardwareCompatibilityLevel=ampere+" in cmd
        for flag in {arg.split("=", 1)[0] for arg in cmd[1:]}:
            known = re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", section)
            assert known or flag in TRTEXEC_FLAGS_OUTSIDE_SPEC, f"{flag} is no known trtexec flag"
        assert not re.search(r"(?<![\w-])--device(?![\w-])", section)  # else drop it from the list above
