"""scripts/bench_ort_shape_switch.py on this CPU (provider cpu): real runs of tiny ONNX graphs through the
whole sequence, the JSON it writes (label, no torch, the loaded-library record), the matrix summary. No
timing is asserted: the H200 figures are in benchmarks/h200_2026-12-03_ort_matrix/."""
from __future__ import annotations

import importlib.metadata
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from conftest import REPO

SCRIPT = REPO / "scripts" / "bench_ort_shape_switch.py"
import bench_ort_shape_switch as bench  # scripts/ is on pytest's pythonpath (pyproject.toml)


def tiny_conv(path: Path, batch_pad: int | None = None) -> Path:
    """[N, 3, 8, 8] float32 -> Conv 3x3 -> Sigmoid, dynamic N; ``batch_pad`` as make's padded graphs record it."""
    w = helper.make_tensor("w", TensorProto.FLOAT, [4, 3, 3, 3], np.linspace(-1, 1, 108).astype(np.float32).tolist())
    graph = helper.make_graph(
        [helper.make_node("Conv", ["images", "w"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Sigmoid", ["c"], ["out"])],
        "tiny", [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["N", 4, 8, 8])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if batch_pad:
        helper.set_model_props(model, {"batch_pad": str(batch_pad)})
    onnx.save(model, path)
    return path


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    root = tmp_path_factory.mktemp("ort_switch")
    np.save(root / "images.npy", np.arange(2 * 3 * 8 * 8, dtype=np.uint8).reshape(2, 3, 8, 8))
    return root, tiny_conv(root / "plain.onnx"), tiny_conv(root / "pad4.onnx", batch_pad=4)


def run_cli(bundle, label: str, *extra: str) -> tuple[subprocess.CompletedProcess, dict]:
    """The script in a fresh interpreter (so that sys.modules shows what it imported), then its JSON."""
    root, plain, pad = bundle
    out = root / f"{label}.json"
    args = ["--model", f"plain={plain}", "--model", f"pad4={pad}", "--images", str(root / "images.npy"),
            "--provider", "cpu", "--sizes", "1", "2", "4", "8", "--repeat", "3", "--switches", "5",
            "--label", label, "--json", str(out), *extra]
    code = (f"import runpy, sys\nsys.argv = [{str(SCRIPT)!r}] + sys.argv[1:]\nrc = 0\n"
            "try:\n    runpy.run_path(sys.argv[0], run_name='__main__')\nexcept SystemExit as e:\n    rc = e.code\n"
            "print('TORCH_IMPORTED', 'torch' in sys.modules)\nsys.exit(rc)\n")
    result = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300)
    return result, (json.loads(out.read_text()) if out.exists() else {})


def test_no_torch_run_records_label_runs_and_what_was_loaded(bundle):
    result, data = run_cli(bundle, "cpu_a", "--no-torch")
    assert result.returncode == 0, result.stderr
    assert "TORCH_IMPORTED False" in result.stdout  # --no-torch: LD_LIBRARY_PATH alone picks cuDNN
    assert data["label"] == "cpu_a" and data["no_torch"] is True and data["provider"] == "cpu"
    assert [(r["model"], r["algo"]) for r in data["runs"]] == [
        ("plain", "EXHAUSTIVE"), ("plain", "HEURISTIC"), ("pad4", "EXHAUSTIVE"), ("pad4", "HEURISTIC")]
    plain, pad = data["runs"][0], data["runs"][2]
    assert plain["batch_pad"] is None and plain["sizes"] == [1, 2, 4, 8]
    assert pad["batch_pad"] == 4 and pad["sizes"] == [1, 2, 4]  # a padded graph serves up to its pad
    for row in data["runs"]:
        assert not row["cut_short"] and row["switch"]["n"] == 5 and row["repeat_b1"]["n"] == 2
        batches = [r["batch"] for r in row["raw"]["switch"]]
        assert all(a != b for a, b in zip(batches, batches[1:]))  # every switch run changes the batch size
        assert len(row["raw"]["warm"]) == 2 * len(row["sizes"])
    # the CPU provider loads no cuDNN, and the record says so rather than guessing
    assert data["loaded"]["cudnn"] is None and data["loaded"]["cudnn_path"] is None
    assert "cuDNN loaded: None" in result.stdout


def test_without_no_torch_the_script_imports_torch_first(bundle):
    pytest.importorskip("torch")
    result, data = run_cli(bundle, "cpu_torch", "--algos", "HEURISTIC")
    assert result.returncode == 0, result.stderr
    assert "TORCH_IMPORTED True" in result.stdout and data["no_torch"] is False


def test_no_torch_refuses_a_torchscript_anchor(bundle):
    result, data = run_cli(bundle, "cpu_bad", "--no-torch", "--torchscript", "anchor.pt")
    assert result.returncode == 2 and "--torchscript needs torch" in result.stderr and not data


def test_a_spent_budget_cuts_every_phase_short_but_owes_min_switches():
    images = np.zeros((2, 3, 4, 4), np.uint8)
    seen = []
    record = bench.timed_sequence(lambda x: seen.append(len(x)), images, [1, 2, 4], repeat=5, switches=6,
                                  budget_s=0.0, min_switches=3)
    assert record["cut_short"] and not record["warm"] and not record["repeat_b1"] and not record["repeat_b8"]
    assert [r["batch"] for r in record["switch"]] == seen == bench.interleaved([1, 2, 4], 6)[:3]
    assert bench.timed_sequence(lambda x: None, images, [1, 2], 5, 6, budget_s=0.0)["switch"] == []
    full = bench.timed_sequence(lambda x: None, images, [1, 2], 5, 6, budget_s=60.0, min_switches=3)
    assert not full["cut_short"] and len(full["switch"]) == 6 and len(full["warm"]) == 4


def test_a_cell_counts_only_changes_to_sizes_already_run_and_names_first_time_ones():
    """A cut-short warm phase leaves first-time sizes to the interleaved one: their search is not a re-plan;
    a run of the size just run is no change."""
    raw = {"warm": [{"batch": 1, "ms": 42684.0}], "repeat_b1": [], "repeat_b8": [],
           "switch": [{"batch": 1, "ms": 5.0}, {"batch": 8, "ms": 866.0}, {"batch": 1, "ms": 6.0}, {"batch": 4, "ms": 838.0},
                      {"batch": 8, "ms": 9.0}, {"batch": 16, "ms": 936.0}]}
    assert bench.switch_runs(raw) == ([6.0, 9.0], [866.0, 838.0, 936.0])
    row = {"raw": raw, "cut_short": True}
    assert bench.cell(row) == "7.5 / 9.0 (2, cut short); 3 first-time sizes 838-936"
    raw["switch"] = raw["switch"][:2]  # batch 1 after batch 1 is no change: left out
    assert bench.cell(row) == "- (0, cut short); 1 first-time sizes 866-866"
    assert bench.cell(None) == "-" and bench.cell({"error": "RuntimeError: x"}) == "error: RuntimeError: x"


def test_loaded_libraries_reads_the_maps_and_keeps_cuda_libraries_only():
    maps = "\n".join([
        "7f00-7f10 r-xp 00000000 08:01 11 /opt/x/nvidia/cu13/lib/libcublasLt.so.13",
        "7f10-7f20 r--p 00001000 08:01 11 /opt/x/nvidia/cu13/lib/libcublasLt.so.13",
        "7f20-7f30 r-xp 00000000 08:01 12 /usr/lib/x86_64-linux-gnu/libc.so.6",
        "7f30-7f40 rw-p 00000000 00:00 0 ",
        "7f40-7f50 r-xp 00000000 08:01 13 /p/ort/onnxruntime/capi/libonnxruntime_providers_cuda.so",
        "7ffd-7ffe rw-p 00000000 00:00 0 [stack]"])
    got = bench.loaded_libraries(maps)
    assert got["libraries"] == ["/opt/x/nvidia/cu13/lib/libcublasLt.so.13",
                                "/p/ort/onnxruntime/capi/libonnxruntime_providers_cuda.so"]
    assert got["cudnn"] is None and got["cudnn_version"] is None


def test_loaded_libraries_asks_the_mapped_cudnn_its_version(tmp_path):
    """A real cuDNN (the venv's nvidia-cudnn wheel; cudnnGetVersion needs no GPU) loaded into a fresh
    process: the record names its path and the version the library itself reports."""
    for dist in ("nvidia-cudnn-cu13", "nvidia-cudnn-cu12"):
        try:
            version = importlib.metadata.version(dist)
            files = importlib.metadata.files(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
        shim = next((f.locate() for f in files or [] if f.name == "libcudnn.so.9"), None)
        if shim:
            break
    else:
        pytest.skip("no nvidia-cudnn wheel with libcudnn.so.9 in this environment")
    code = (f"import ctypes, json, sys; sys.path.insert(0, {str(SCRIPT.parent)!r}); ctypes.CDLL({str(shim)!r})\n"
            "import bench_ort_shape_switch as b; print(json.dumps(b.loaded_libraries()))")
    got = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    major, minor, patch = (int(x) for x in version.split(".")[:3])
    assert Path(got["cudnn_path"]).resolve() == Path(shim).resolve()
    assert got["cudnn_version"] == major * 10000 + minor * 100 + patch and got["cudnn"] == f"{major}.{minor}.{patch}"
    assert got["cudnn_path"] in got["libraries"]


def test_summarise_prints_one_matrix_line_per_json(bundle, tmp_path):
    _, a = run_cli(bundle, "cpu_sum_a", "--no-torch")
    _, b = run_cli(bundle, "cpu_sum_b", "--no-torch", "--algos", "HEURISTIC")
    root = bundle[0]
    broken = dict(b, label="broken", runs=[{"model": "plain", "algo": "HEURISTIC", "error": "RuntimeError: no CUDA EP"}])
    (tmp_path / "broken.json").write_text(json.dumps(broken))
    result = subprocess.run([sys.executable, str(SCRIPT), "--summarise", str(root / "cpu_sum_a.json"),
                             str(root / "cpu_sum_b.json"), str(tmp_path / "broken.json")],
                            capture_output=True, text=True, check=True)
    lines = result.stdout.strip().splitlines()
    assert lines[0] == ("| label | onnxruntime | cuDNN loaded | plain EXHAUSTIVE | plain HEURISTIC | pad4 EXHAUSTIVE "
                        "| pad4 HEURISTIC |")
    assert len(lines) == 5 and lines[1].count("|") == lines[0].count("|")
    assert lines[2].startswith(f"| cpu_sum_a | {a['onnxruntime']} | - | ")
    # every size ran in the warm phase: each interleaved run that changes the size is to a size already run
    changes = [sum(x["batch"] != y["batch"] for x, y in zip(r["raw"]["repeat_b8"][-1:] + r["raw"]["switch"],
                                                             r["raw"]["switch"])) for r in a["runs"]]
    cells = [c.strip() for c in lines[2].strip("|").split("|")][3:]
    assert [int(re.fullmatch(r"[\d,]+\.\d / [\d,]+\.\d \((\d)\)", c).group(1)) for c in cells] == changes, cells
    b_cells = [c.strip() for c in lines[3].strip("|").split("|")][3:]
    assert b_cells[0] == "-" and b_cells[2] == "-" and re.fullmatch(r"[\d,.]+ / [\d,.]+ \(\d\)", b_cells[1])
    assert "error: RuntimeError: no CUDA EP" in lines[4]
    assert len(b["runs"]) == 2  # HEURISTIC only: plain and pad4
