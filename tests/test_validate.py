"""yolo_triton.validate (behind scripts/validate.py): its pure comparison functions, and whole runs on artefacts built by the real Make
targets for an untrained, output-varied checkpoint (passes; fails on a corrupted artefact)."""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import SCRATCH_NAME, TEST_IMGSZ, Tree, _tree_with_weights
from onnx import numpy_helper

import validate as validate_cli  # scripts/validate.py, the command line
from yolo_triton import postprocess as pp
from yolo_triton import validate
from yolo_triton.settings import END2END_OUTPUTS, defaults


def dets(boxes, scores, classes) -> pp.Detections:
    return pp.Detections(np.array(boxes, np.float32).reshape(-1, 4), np.array(scores, np.float32),
                         np.array(classes, np.int32))


# ---------------------------------------------------------------------------------------- pure parts
def test_weights_path_follows_the_makefile_naming(tmp_path):
    d = defaults()
    assert validate.weights_path("yolov11_small", tmp_path) == tmp_path / f"{d['WEIGHTS_small']}.pt"
    assert validate.weights_path("yolo11n_untrained", tmp_path) == tmp_path / "yolo11n_untrained.pt"


def test_match_detections_needs_same_class_and_iou_09():
    ref = dets([[0, 0, 100, 100], [200, 200, 300, 300], [400, 400, 500, 500]], [0.9, 0.8, 0.7], [1, 2, 3])
    test = dets([[0, 0, 100, 104], [200, 200, 300, 300], [400, 400, 500, 600]], [0.9, 0.8, 0.7], [1, 5, 3])
    pairs, lost, extra = validate.match_detections(ref, test)
    assert pairs == [(0, 0)]  # IoU 0.96; class 2 vs 5 differs; IoU 0.5 too low
    assert lost == [1, 2] and extra == [1, 2]


def test_compare_detections_excuses_only_threshold_and_topk_flips():
    conf, tol = 0.25, 0.02
    ref = [dets([[0, 0, 10, 10], [50, 50, 60, 60]], [0.9, 0.26], [0, 0])]
    test = [dets([[0, 0, 10, 10]], [0.905], [0])]
    summary = validate.compare_detections(ref, test, conf, 100, tol)
    assert summary["passed"] and summary["excused"] == 1 and summary["max_score_diff"] == pytest.approx(0.005)
    ref = [dets([[0, 0, 10, 10], [50, 50, 60, 60]], [0.9, 0.5], [0, 0])]
    summary = validate.compare_detections(ref, test, conf, 100, tol)
    assert not summary["passed"] and summary["unmatched_reference"] == 1
    # At the TOPK cut (test is full) a reference detection scoring like the last kept one may swap in.
    summary = validate.compare_detections(ref, [dets([[0, 0, 10, 10]], [0.51], [0])], conf, 1, tol)
    assert summary["failures"] == [f"matched score difference {0.39:.4g} > {tol:g}"]


def test_nms_swaps_between_near_equal_overlapping_boxes_are_excused():
    """Two overlapping same-class boxes scoring 0.800 and 0.805: rounding may decide which one NMS keeps."""
    ref = [dets([[0, 0, 100, 100]], [0.805], [3])]
    test = [dets([[20, 0, 120, 100]], [0.800], [3])]  # IoU 0.67: no match (< 0.9), but >= NMS IoU 0.45
    assert not validate.compare_detections(ref, test, 0.25, 100, 0.02)["passed"]
    summary = validate.compare_detections(ref, test, 0.25, 100, 0.02, nms_iou=0.45)
    assert summary["passed"] and summary["excused"] == 2
    far_apart = [dets([[0, 0, 100, 100]], [0.5], [3])]  # a different score is not a swap
    assert not validate.compare_detections(far_apart, test, 0.25, 100, 0.02, nms_iou=0.45)["passed"]


def test_compare_raw_reports_differences():
    ref = np.zeros((1, 6, 5), np.float32)
    ref[0, 4, 3] = 0.9  # anchor 3 is a candidate, the others score 0
    boxes, scores = ref[:, :4].transpose(0, 2, 1).copy(), ref[:, 4:].transpose(0, 2, 1).copy()
    assert validate.compare_raw(ref, boxes, scores, 0.05, 1e-3, 0.25)["passed"]
    boxes[0, 1, 1] = 7.0  # a box error on a non-candidate anchor is reported, not failed
    result = validate.compare_raw(ref, boxes, scores, 0.05, 1e-3, 0.25)
    assert result["passed"] and result["max_box_diff_px_all_anchors"] == 7.0
    boxes[0, 3, 1] = 0.5
    result = validate.compare_raw(ref, boxes, scores, 0.05, 1e-3, 0.25)
    assert not result["passed"] and result["max_box_diff_px"] == 0.5
    scores[0, 0, 1] = 0.01
    assert validate.compare_raw(ref, boxes, scores, 1, 1e-3, 0.25)["failures"] == ["raw score difference 0.01 > 0.001"]


def test_missing_artefacts_and_empty_image_folder_exit_1(tmp_path, capsys):
    assert validate_cli.main(["--model", "nothing", "--models-dir", str(tmp_path), "--weights-dir", str(tmp_path)]) == 1
    assert "no ONNX artefact for 'nothing'" in capsys.readouterr().err
    with pytest.raises(validate.StepError, match="no images"):
        validate.image_paths(tmp_path)


# ---------------------------------------------------------------------------------------- whole runs
def run_validate(tree: Tree, tmp_path: Path, *extra: str) -> tuple[int, dict]:
    out = tmp_path / "report.json"
    code = validate_cli.main(["--model", SCRATCH_NAME, "--models-dir", str(tree.models), "--weights-dir",
                          str(tree.weights), "--json", str(out), *extra])
    return code, json.loads(out.read_text())


def formats(report: dict) -> dict[str, dict]:
    return {f["name"]: f for f in report["formats"]}


@pytest.mark.slow
def test_validate_passes_on_fresh_fp32_artefacts(fp32_tree, tmp_path, capsys):
    code, report = run_validate(fp32_tree, tmp_path)
    table = capsys.readouterr().out
    assert code == 0 and report["passed"], table
    by_name = formats(report)
    assert by_name["onnx"]["status"] == by_name["end2end"]["status"] == "passed"
    assert by_name["trt"]["status"] == "skipped"  # no plan here (and no GPU)
    assert report["imgsz"] == TEST_IMGSZ and len(report["images"]) >= 2
    onnx_fmt = by_name["onnx"]
    assert onnx_fmt["raw"]["max_box_diff_px"] <= 0.05 and onnx_fmt["raw"]["max_score_diff"] <= 1e-3
    assert onnx_fmt["detections"]["matched"] == onnx_fmt["detections"]["reference"] > 10
    assert by_name["end2end"]["detections"]["matched"] > 10
    assert "RESULT: PASS" in table and "EfficientNMS_TRT does not run in onnxruntime" in table


@pytest.mark.slow
def test_validate_runs_the_onnx_nms_graph_directly(tmp_path_factory, scratch_weights, tmp_path):
    tree = _tree_with_weights(tmp_path_factory, scratch_weights, "onnxnms")
    tree.make(str(tree.artefact(f"{SCRATCH_NAME}_end2end")), "NMS=onnx", "PRECISION=fp32", f"IMGSZ={TEST_IMGSZ}")
    code, report = run_validate(tree, tmp_path, "--images", str(Path(validate.image_paths(None)[0]).parent))
    end2end = formats(report)["end2end"]
    assert code == 0 and end2end["status"] == "passed", end2end
    assert not any("EfficientNMS_TRT" in note for note in end2end["notes"])
    assert end2end["detections"]["matched"] > 10


def corrupt_first_conv(path: Path, factor: float) -> None:
    model = onnx.load(str(path))
    conv = next(n for n in model.graph.node if n.op_type == "Conv")
    init = next(i for i in model.graph.initializer if i.name == conv.input[1])
    init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * factor, init.name))
    onnx.save(model, str(path))


@pytest.mark.slow
def test_validate_fails_on_a_corrupted_artefact(fp32_tree, tmp_path, capsys):
    broken = Tree(tmp_path / "broken")
    shutil.copytree(fp32_tree.models, broken.models, symlinks=True)
    broken.weights.symlink_to(fp32_tree.weights)
    corrupt_first_conv(broken.artefact(SCRATCH_NAME), 1.05)  # 5 % off in the first layer only
    code, report = run_validate(broken, tmp_path)
    assert code == 1 and not report["passed"]
    by_name = formats(report)
    assert by_name["onnx"]["status"] == "failed"
    assert any("raw box difference" in n or "raw score difference" in n for n in by_name["onnx"]["notes"])
    assert by_name["end2end"]["status"] == "passed"  # the untouched artefact still passes
    assert "RESULT: FAIL" in capsys.readouterr().out
    # A file that is not ONNX at all is one format's failure, not a crash.
    broken.artefact(f"{SCRATCH_NAME}_end2end").write_bytes(b"not onnx")
    code, report = run_validate(broken, tmp_path)
    assert code == 1 and formats(report)["end2end"]["status"] == "failed"


@pytest.mark.slow
@pytest.mark.parametrize("defect", [None, "class_ids", "boxes"])
def test_plan_checks_with_a_tensorrt_double(fp32_tree, tmp_path, monkeypatch, defect):
    """The plan branch (no GPU here) with a TensorRT DOUBLE standing in for ``run_trt``: the plan's ONNX in
    onnxruntime, with a little noise (must pass), or with a defect a broken plan could have: class ids
    shifted by one, or boxes moved by 20 px (must fail, in both tracks)."""
    tree = Tree(tmp_path / "plans")
    shutil.copytree(fp32_tree.models, tree.models, symlinks=True)
    tree.weights.symlink_to(fp32_tree.weights)
    for suffix in ("_trt", "_trt_end2end"):
        plan = tree.models / f"{SCRATCH_NAME}{suffix}" / "1" / "model.plan"
        plan.parent.mkdir(parents=True)
        plan.write_bytes(b"double")
    noise = np.random.default_rng(0)

    def run_trt_double(plan: Path, batch: np.ndarray, max_batch: int) -> dict:
        end2end = plan.parent.parent.name.endswith("_end2end")
        source = tree.artefact(f"{SCRATCH_NAME}_end2end" if end2end else SCRATCH_NAME)
        model = onnx.load(str(source))
        if not end2end:
            output0 = validate.run_ort(validate.ort_session(model), batch)[0]
            output0 = output0 + noise.uniform(-2e-5, 2e-5, output0.shape).astype(np.float32)
            if defect == "class_ids":
                output0[:, 4:] = np.roll(output0[:, 4:], 1, axis=1)
            elif defect == "boxes":
                output0[:, :2] += 20.0
            return {"output0": output0}
        params = validate.end2end_nms_params(model, {})
        boxes, scores = validate.run_ort(validate.ort_session(validate.pre_nms(model)), batch)
        num, det_boxes, det_scores, det_classes = pp.efficient_nms(boxes, scores, params["conf"], params["iou"],
                                                                   params["topk"], params["agnostic"])
        if defect == "class_ids":
            det_classes = np.where(det_classes >= 0, (det_classes + 1) % scores.shape[2], det_classes)
        elif defect == "boxes":
            det_boxes = det_boxes + 20.0
        return dict(zip(END2END_OUTPUTS, (num, det_boxes, det_scores, det_classes)))

    monkeypatch.setattr(validate, "trt_available", lambda: None)
    monkeypatch.setattr(validate, "run_trt", run_trt_double)
    code, report = run_validate(tree, tmp_path)
    by_name = formats(report)
    if defect is None:
        assert code == 0, by_name
        assert by_name["trt"]["status"] == by_name["trt_end2end"]["status"] == "passed"
        assert by_name["trt_end2end"]["detections"]["matched"] > 10
    else:
        assert code == 1
        assert by_name["trt"]["status"] == by_name["trt_end2end"]["status"] == "failed", by_name
        assert by_name["onnx"]["status"] == by_name["end2end"]["status"] == "passed"  # only the plans are bad


def test_plans_are_skipped_with_a_note_without_tensorrt_or_gpu(monkeypatch):
    """Every branch, whatever this machine has installed: modules stood in for through sys.modules."""
    import importlib.abc
    import types

    def cuda_module(error: Exception | None):
        class DeviceArray:  # TEST DOUBLE of polygraphy.cuda.DeviceArray
            def __init__(self, shape, dtype):
                if error is not None:
                    raise error

            def free(self):
                pass
        return types.SimpleNamespace(cuda=types.SimpleNamespace(DeviceArray=DeviceArray))

    monkeypatch.setitem(sys.modules, "tensorrt", None)  # not installed: import raises ModuleNotFoundError
    assert validate.trt_available() == "tensorrt is not installed"

    class Broken(importlib.abc.MetaPathFinder):  # installed, but its library does not load
        def find_spec(self, name, path=None, target=None):
            if name == "tensorrt":
                raise OSError("libnvinfer.so.10: cannot open shared object file")
            return None
    monkeypatch.delitem(sys.modules, "tensorrt")
    monkeypatch.setattr(sys, "meta_path", [Broken(), *sys.meta_path])
    assert validate.trt_available() == ("tensorrt is installed but does not import: OSError: libnvinfer.so.10: "
                                        "cannot open shared object file")

    monkeypatch.setitem(sys.modules, "tensorrt", types.ModuleType("tensorrt"))  # imports ...
    monkeypatch.setitem(sys.modules, "polygraphy", cuda_module(RuntimeError("CUDA driver version is insufficient")))
    assert validate.trt_available() == "no usable CUDA GPU (CUDA driver version is insufficient)"  # ... no GPU
    monkeypatch.setitem(sys.modules, "polygraphy", cuda_module(None))
    assert validate.trt_available() is None  # TensorRT and a GPU: plans are checked


def test_output0_must_be_exactly_4_plus_nc():
    validate.check_output0_shape((2, 84, 8400), 80, "m")
    validate.check_output0_shape((2, 6, 2100), 2, "m")
    for shape, nc in (((1, 300, 6), 80), ((1, 300, 6), 2), ((1, 85, 8400), 80), ((84, 8400), 80)):
        with pytest.raises(validate.StepError, match=r"is not \[B, 4\+nc"):
            validate.check_output0_shape(shape, nc, "m")
