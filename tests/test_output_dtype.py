"""OUTPUT_DTYPE=float16 (auto's choice at PRECISION=fp16, the default): Track A's raw-head outputs (and the
Track B plan's) become FP16; nothing else changes.

The promise is exact: the FP16 ``output0`` is the float32 graph's ``output0`` rounded to FP16
(``np.array_equal(out16, out32.astype(np.float16))``), because the casts are the graph's last nodes; the
end2end graphs made from such a Track A file are the same graphs as from the float32 one (the surgery
removes the casts); the network's precision is judged without them. Artefacts come from ``make`` on the
UNTRAINED scratch checkpoint with varied outputs (make scratch); ONNX Runtime runs them on the CPU. The
served path (the real tritonserver) is in tests/test_served_repository.py.
"""
from __future__ import annotations

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import SCRATCH_NAME, TEST_IMGSZ, Tree, _session_onnx_tree, _tree_with_weights, make_plan_config
from yolo_triton import postprocess as pp
from yolo_triton import triton_config as tc
from yolo_triton import validate as val
from yolo_triton.batch_pad import pad_batch, padded_size, unpad_batch
from yolo_triton.engine import read_sidecar, tensor_specs
from yolo_triton.errors import StepError
from yolo_triton.nms_graph import add_nms
from yolo_triton.onnx_io import class_names, metadata, onnx_io, onnx_precision
from yolo_triton.output_dtype import float16_outputs, float32_outputs, output_dtype_of

IMGSZ = TEST_IMGSZ


def run(model: onnx.ModelProto, batch: np.ndarray) -> list[np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: batch})


def copy(model: onnx.ModelProto) -> onnx.ModelProto:
    twin = onnx.ModelProto()
    twin.CopyFrom(model)
    return twin


def same_graph(a: onnx.ModelProto, b: onnx.ModelProto) -> bool:
    """Equal graphs; value_info compared as a set (two AutoCast exports of one checkpoint list it in
    different orders)."""
    def canonical(model: onnx.ModelProto) -> bytes:
        graph = onnx.GraphProto()
        graph.CopyFrom(model.graph)
        infos = sorted(graph.value_info, key=lambda v: v.name)
        del graph.value_info[:]
        graph.value_info.extend(infos)
        return graph.SerializeToString()

    return canonical(a) == canonical(b)


# ---- the graph functions on a tiny graph (fast) ---------------------------------------------------
def tiny_graph() -> onnx.ModelProto:
    """images -> Conv -> ``conv`` (an output that Relu also reads) -> ``relu``; plus an int64 ``shape``."""
    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32) * 100, "w")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["images", "w"], ["conv"], pads=[1, 1, 1, 1]),
         helper.make_node("Relu", ["conv"], ["relu"]),
         helper.make_node("Shape", ["images"], ["shape"])],
        "tiny", [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, 8, 8])],
        [helper.make_tensor_value_info("conv", TensorProto.FLOAT, ["batch", 4, 8, 8]),
         helper.make_tensor_value_info("relu", TensorProto.FLOAT, ["batch", 4, 8, 8]),
         helper.make_tensor_value_info("shape", TensorProto.INT64, [4])], [weight])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def test_float_outputs_are_the_float32_values_rounded_and_the_casts_come_off_exactly():
    plain = tiny_graph()
    half = float16_outputs(copy(plain))
    onnx.checker.check_model(half, full_check=True)
    assert [o.type.tensor_type.elem_type for o in half.graph.output] == [TensorProto.FLOAT16, TensorProto.FLOAT16,
                                                                        TensorProto.INT64]
    assert [n.op_type for n in half.graph.node][-2:] == ["Cast", "Cast"] and output_dtype_of(half) == "float16"
    batch = np.random.default_rng(1).random((2, 3, 8, 8), dtype=np.float32)
    want, got = run(plain, batch), run(half, batch)
    assert np.unique(want[0]).size > 100 and np.abs(want[0]).max() > 256  # values FP16 must round
    for a, b in zip(got[:2], want[:2]):
        assert a.dtype == np.float16 and np.array_equal(a, b.astype(np.float16))
        assert not np.array_equal(a.astype(np.float32), b)
    assert np.array_equal(got[2], want[2])
    back = float32_outputs(half)
    assert back.graph.SerializeToString() == plain.graph.SerializeToString() and output_dtype_of(back) == "float32"
    assert float32_outputs(plain) is plain and plain.graph.SerializeToString() == tiny_graph().graph.SerializeToString()


def test_refusals_are_one_line():
    with pytest.raises(StepError, match="cast twice"):
        float16_outputs(float16_outputs(tiny_graph()))
    ints = tiny_graph()
    del ints.graph.output[:2]
    with pytest.raises(StepError, match="no float32 output"):
        float16_outputs(ints)


def test_precision_is_the_network_s_not_the_output_casts():
    assert onnx_precision(tiny_graph()) == "fp32"
    half = float16_outputs(tiny_graph())
    assert onnx_precision(half) == "fp32" and output_dtype_of(half) == "float16"  # unchanged by the check
    assert val.tolerance_precision({"precision": "fp32", "output_dtype": "float16"}) == "fp16"
    assert val.tolerance_precision({"precision": "fp32"}) == "fp32"
    assert val.tolerance_precision({"precision": "int8", "output_dtype": "float16"}) == "int8"


@pytest.mark.parametrize("conf", [0.25, 0.3, 0.0, 1e-8, 0.9995, 2.0])
def test_track_a_nms_on_fp16_equals_the_nms_on_its_float32_values(conf):
    """postprocess reads FP16 output0 itself (converting only anchors whose best score can reach CONF): the
    same detections and anchors, in every mode, as on the whole array converted; CONF values FP16 cannot
    hold (0.3), zero, tiny, near 1 and above every score; exact ties, negative and NaN scores included."""
    rng = np.random.default_rng(3)
    boxes = np.concatenate([rng.uniform(0, 320, (2, 2, 2100)), rng.uniform(4, 120, (2, 2, 2100))], axis=1)
    scores = rng.beta(0.3, 3.0, (2, 80, 2100))
    scores[:, :, :40] = 0.3  # ties, right at a CONF that FP16 rounds
    scores[0, 5, 50:60] = -0.25
    scores[1, 7, 70] = np.nan
    out16 = np.concatenate([boxes, scores], axis=1).astype(np.float16)
    infos = [pp.LetterboxInfo(1.0, 0, 0, 320, 320)] * 2
    for mode in pp.MODES:
        for agnostic in (False, True):
            got = pp.track_a_kept(out16, infos, conf, 0.45, 100, mode, agnostic)
            want = pp.track_a_kept(out16.astype(np.float32), infos, conf, 0.45, 100, mode, agnostic)
            for (a, anchors_a), (b, anchors_b) in zip(got, want, strict=True):
                assert np.array_equal(anchors_a, anchors_b), (mode, agnostic)
                for x, y in zip((a.boxes, a.scores, a.classes), (b.boxes, b.scores, b.classes)):
                    assert x.dtype == y.dtype and np.array_equal(x, y), (mode, agnostic)
    if conf == 0.25:
        assert sum(len(d) for d, _ in want) > 50


# ---- the artefacts make writes (exports from the scratch checkpoint) ----------------------------------
@pytest.fixture(scope="module")
def half_tree(fp16_tree) -> Tree:
    """The defaults (PRECISION=fp16, OUTPUT_DTYPE=auto = float16, NMS=efficient): ``make onnx``."""
    return fp16_tree


@pytest.fixture(scope="module")
def full_tree(session_dir, scratch_weights) -> Tree:
    """The same with ``OUTPUT_DTYPE=float32``: the float32 outputs the FP16 ones are rounded from."""
    return _session_onnx_tree(session_dir, scratch_weights, "fp16_float32_out", f"IMGSZ={IMGSZ}", "OUTPUT_DTYPE=float32")


@pytest.fixture(scope="module")
def letterboxed(sample_images):
    batch, _ = pp.letterbox_batch([cv2.imread(str(p)) for p in sample_images[:2]], IMGSZ)
    return batch


def test_track_a_output0_is_the_float32_models_rounded_and_end2end_is_unchanged(half_tree, full_tree, letterboxed):
    half = onnx.load(str(half_tree.artefact(SCRATCH_NAME)))
    full = onnx.load(str(full_tree.artefact(SCRATCH_NAME)))
    assert metadata(full)["output_dtype"] == "float32" and onnx_io(full_tree.artefact(SCRATCH_NAME))[1][0].dtype == "float32"
    meta = metadata(half)
    assert (meta["output_dtype"], meta["precision"], onnx_precision(half)) == ("float16", "fp16", "fp16")
    (out16,), (out32,) = run(half, letterboxed), run(full, letterboxed)
    assert np.unique(out32[:, 4:]).size > 1000  # varied outputs, so sameness means something
    assert out16.dtype == np.float16 and np.array_equal(out16, out32.astype(np.float16))
    # AutoCast decodes boxes in FP16 (the stride multiplication is exact): coordinates come through unchanged;
    # the float32 sigmoid's scores are rounded, by 2^-12 at most
    assert np.array_equal(out16[:, :4].astype(np.float32), out32[:, :4])
    assert 0 < np.abs(out16[:, 4:].astype(np.float32) - out32[:, 4:]).max() <= 2.0 ** -12
    config = tc.parse_config(half_tree.models / SCRATCH_NAME / "config.pbtxt")
    assert [(o.name, o.data_type) for o in config.output] == [("output0", tc.mc.TYPE_FP16)]
    # end2end (NMS=efficient, from this Track A file): the same graph as from the float32 one
    e2e = [onnx.load(str(t.artefact(f"{SCRATCH_NAME}_end2end"))) for t in (half_tree, full_tree)]
    assert same_graph(e2e[0], e2e[1])
    assert metadata(e2e[0])["output_dtype"] == "float32"
    assert [o.type.tensor_type.elem_type for o in e2e[0].graph.output][1:3] == [TensorProto.FLOAT] * 2
    assert same_graph(float32_outputs(half), full)


def test_padded_track_a_and_its_end2end(half_tree, full_tree, letterboxed):
    """ORT_BATCHING=pad (the GPU default), as export_onnx.py and add_nms.py do it (pad_batch after the casts, the
    surgery on the padded file): the casts sit inside the padding wrapper; the padded end2end (NMS=onnx) is the
    one made from the padded float32 file, and runs as its plain graph."""
    half, full = (pad_batch(onnx.load(str(t.artefact(SCRATCH_NAME))), 4) for t in (half_tree, full_tree))
    assert padded_size(half) == 4 and [o.type.tensor_type.elem_type for o in half.graph.output] == [TensorProto.FLOAT16]
    (out16,), (out32,) = run(half, letterboxed), run(full, letterboxed)
    assert out16.shape == out32.shape and np.array_equal(out16, out32.astype(np.float16))
    e2e, e2e_full = (add_nms(m, "onnx", 0.25, 0.45, 100, 0) for m in (half, full))
    assert padded_size(e2e) == 4 and same_graph(e2e, e2e_full)
    plain_e2e = run(unpad_batch(e2e), letterboxed)
    padded_e2e = run(e2e, letterboxed)
    assert all(np.array_equal(a, b) for a, b in zip(plain_e2e, padded_e2e)) and int(plain_e2e[0].sum()) > 5
    assert [a.dtype for a in padded_e2e] == [np.int32, np.float32, np.float32, np.int32]


def test_track_b_plan_is_built_from_the_fp16_output_graph(half_tree, tmp_path):
    """The plan (fake trtexec, TEST DOUBLE) is built from Track A's file as it is: strongly typed, the Cast is
    honoured, so its output0 is FP16 and so is its config's. (In a copy of the session's tree.)"""
    import shutil

    tree = Tree(tmp_path / "tree")
    shutil.copytree(half_tree.root, tree.root, symlinks=True)
    plan, argv = make_plan_config(tree, SCRATCH_NAME, tmp_path, f"IMGSZ={IMGSZ}", "MAX_BATCH=4")
    record = read_sidecar(plan)
    assert [(o.name, o.dtype) for o in tensor_specs(record["outputs"])] == [("output0", "float16")]
    assert record["precision"] == "fp16"
    assert any(a.startswith("--onnx=") and a.endswith(f"{SCRATCH_NAME}/1/model.onnx") for a in argv[-1])
    config = tc.parse_config(plan.parent.parent / "config.pbtxt")
    assert [(o.name, o.data_type) for o in config.output] == [("output0", tc.mc.TYPE_FP16)]


def test_validate_passes_an_fp32_network_with_fp16_outputs(tmp_path_factory, scratch_weights, tmp_path, capsys):
    """scripts/validate.py against PyTorch: an FP32 network's FP16 outputs are off by the rounding (0.125-0.25
    px, beyond fp32's 0.05 px tolerance), so the fp16 tolerances apply and it passes."""
    import json

    import validate as validate_cli  # scripts/validate.py, the command line

    tree = _tree_with_weights(tmp_path_factory, scratch_weights, "half_out_fp32")  # Track A only
    tree.make(str(tree.artefact(SCRATCH_NAME)), f"IMGSZ={IMGSZ}", "PRECISION=fp32", "OUTPUT_DTYPE=float16")
    out = tmp_path / "report.json"
    code = validate_cli.main(["--model", SCRATCH_NAME, "--models-dir", str(tree.models), "--weights-dir",
                              str(tree.weights), "--json", str(out)])
    table = capsys.readouterr().out
    onnx_fmt = next(f for f in json.loads(out.read_text())["formats"] if f["name"] == "onnx")
    assert code == 0 and onnx_fmt["status"] == "passed", table
    # the rounding (0.25 px at most for coordinates in 512..1024: an untrained box can reach past the image)
    # plus fp32's own 0.05 px
    assert onnx_fmt["precision"] == "fp32" and 0 < onnx_fmt["raw"]["max_box_diff_px"] <= 0.3
    assert onnx_fmt["detections"]["matched"] > 10  # (one near the TOPK cut may be excused: the rounding moves it)


def test_bad_output_dtype_is_refused_before_anything_is_built(tmp_path):
    tree = Tree(tmp_path)
    done = tree.make("onnx", "OUTPUT_DTYPE=bfloat16", check=False)
    assert done.returncode != 0 and "OUTPUT_DTYPE=bfloat16 is not auto, float32 or float16" in done.stderr
    assert not tree.models.exists()


def test_h200_summary_is_computed_from_the_kept_runs():
    """benchmarks/h200_2026-12-03_output_dtype/summary.json is what scripts/summarise_output_dtype.py makes
    of the kept bench-serving JSON (README's table cites run 3)."""
    import json
    from pathlib import Path

    import summarise_output_dtype as summary  # scripts/summarise_output_dtype.py

    folder = Path(__file__).resolve().parents[1] / "benchmarks" / "h200_2026-12-03_output_dtype"
    rows = [row for run in ("run1", "run2", "run3") for row in summary.summarise(folder / run)]
    assert rows == json.loads((folder / "summary.json").read_text())["rows"]
    run3 = {(r["input_dtype"], r["shared_memory"], r["concurrency"]): r for r in rows if r["run"] == "run3"}
    assert len(run3) == 16 and run3[("float32", "none", 64)]["ratio"] == 1.47
    assert all(json.loads((folder / run / "agreement.json").read_text())["yolo11s_f16o"]["equal"]
               for run in ("run1", "run2", "run3"))


@pytest.mark.parametrize("arch", ["yolo11n-seg", "yolo11n-pose"])
def test_other_tasks_decode_their_fp16_outputs(task_tree, sample_images, tmp_path, arch):
    """Segment (output0 and the prototypes output1 both FP16) and pose: make's FP32 Track A graph of the task tree
    with the FP16 casts added; its outputs, read the way validation and the client read them (as float32), are
    the float32 graph's rounded to FP16, and the task decodes them into exactly the rounded outputs' results."""
    import cv2

    from conftest import TASK_ARCHS, TASK_IMGSZ, task_model_name
    from yolo_triton.task_base import NmsParams
    from yolo_triton.tasks import for_task
    from yolo_triton.validate_tasks import run_graph, shape_of

    source = task_tree.artefact(task_model_name(arch))
    half_path = tmp_path / "model.onnx"
    onnx.save(float16_outputs(onnx.load(str(source))), str(half_path))
    task = for_task(TASK_ARCHS[arch][0])
    images = [cv2.imread(str(p)) for p in sample_images[:2]]
    full, infos, meta = run_graph(source, task, images, TASK_IMGSZ, 2)
    half, _, _ = run_graph(half_path, task, images, TASK_IMGSZ, 2)
    assert sorted(half) == sorted(full) and (len(full) == 2) == (arch == "yolo11n-seg")
    for name in full:
        assert half[name].dtype == np.float32
        assert np.array_equal(half[name], full[name].astype(np.float16).astype(np.float32)), name
        assert not np.array_equal(half[name], full[name]), name
    shape = shape_of(meta, task.name, len(class_names(meta)))
    params = NmsParams(0.25, 0.45, 100, "ultralytics", False)
    rounded = {name: value.astype(np.float16).astype(np.float32) for name, value in full.items()}
    ours, want = (task.decode(o, infos, shape, params, "track_a") for o in (half, rounded))
    assert sum(len(r.boxes) for r in want) > 5
    for a, b in zip(ours, want, strict=True):
        for field in ("boxes", "scores", "classes", "masks", "keypoints"):
            x, y = getattr(a, field), getattr(b, field)
            assert (x is None and y is None) or np.array_equal(x, y), field
