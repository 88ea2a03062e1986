"""``NMS=onnx``: the standard-op NMS stage in onnxruntime against the NumPy model of EfficientNMS."""
from __future__ import annotations

import numpy as np
import onnx
import onnx_graphsurgeon as gs
import pytest

from yolo_triton import postprocess as pp
from yolo_triton.nms_onnx import OUTPUT_NAMES, add_onnx_nms

# Operators TensorRT's ONNX parser imports natively (no plugin); the stage must use nothing else.
TENSORRT_NATIVE_OPS = {
    "ArgMax", "Cast", "Concat", "ConstantOfShape", "Div", "Gather", "GatherND", "Greater", "Mul",
    "NonMaxSuppression", "ReduceMax", "ReduceSum", "Reshape", "ScatterND", "Shape", "Split", "Squeeze", "Sub",
    "TopK", "Transpose", "Unsqueeze", "Where", "Add", "Pad", "Min", "ScatterElements",
}


def nms_model(anchors: int, nc: int, conf: float, iou: float, topk: int, agnostic: bool,
              multi_label: bool = True) -> onnx.ModelProto:
    """A graph whose inputs are ``boxes`` (xywh) and ``scores`` and whose body is the NMS stage only
    (``multi_label=False``: the ``NMS=ultralytics`` stage)."""
    graph = gs.Graph(opset=18)
    boxes = gs.Variable("boxes", np.float32, ["batch", anchors, 4])
    scores = gs.Variable("scores", np.float32, ["batch", anchors, nc])
    graph.inputs = [boxes, scores]
    graph.outputs = add_onnx_nms(graph, boxes, scores, conf, iou, topk, agnostic, multi_label)
    graph.cleanup().toposort()
    model = gs.export_onnx(graph)
    onnx.checker.check_model(model, full_check=True)
    return model


def run(model: onnx.ModelProto, boxes: np.ndarray, scores: np.ndarray) -> list[np.ndarray]:
    import onnxruntime as ort

    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(list(OUTPUT_NAMES), {"boxes": boxes, "scores": scores})


def random_inputs(seed: int, batch: int, anchors: int, nc: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 320, (batch, anchors, 2))
    wh = rng.uniform(4, 80, (batch, anchors, 2))
    boxes = np.concatenate([xy, wh], 2).astype(np.float32)
    scores = (rng.uniform(0, 1, (batch, anchors, nc)) ** 4).astype(np.float32)  # most below CONF
    scores[-1] = 0.0  # the last image has no candidate at all
    return boxes, scores


def assert_outputs_equal(got, expected):
    for name, g, e in zip(OUTPUT_NAMES, got, expected):
        assert g.dtype == e.dtype and g.shape == e.shape, name
        assert np.array_equal(g, e), f"{name} differs by {np.abs(g.astype(float) - e).max()}"


def test_outputs_names_dtypes_shapes():
    model = nms_model(200, 3, 0.25, 0.45, 17, False)
    outputs = {o.name: o.type.tensor_type for o in model.graph.output}
    assert list(outputs) == list(OUTPUT_NAMES)
    expected = {
        "num_dets": (onnx.TensorProto.INT32, ["batch", 1]),
        "det_boxes": (onnx.TensorProto.FLOAT, ["batch", 17, 4]),
        "det_scores": (onnx.TensorProto.FLOAT, ["batch", 17]),
        "det_classes": (onnx.TensorProto.INT32, ["batch", 17]),
    }
    for name, (dtype, shape) in expected.items():
        assert outputs[name].elem_type == dtype
        assert [d.dim_param or d.dim_value for d in outputs[name].shape.dim] == shape
    got = run(model, *random_inputs(0, 3, 200, 3))
    assert [g.shape for g in got] == [(3, 1), (3, 17, 4), (3, 17), (3, 17)]
    assert [g.dtype for g in got] == [np.int32, np.float32, np.float32, np.int32]


@pytest.mark.parametrize("multi_label", [True, False])
@pytest.mark.parametrize("agnostic", [False, True])
def test_only_tensorrt_native_standard_ops(agnostic, multi_label):
    model = nms_model(50, 3, 0.25, 0.45, 10, agnostic, multi_label)
    ops = {node.op_type for node in model.graph.node}
    assert ops <= TENSORRT_NATIVE_OPS, ops - TENSORRT_NATIVE_OPS
    assert {node.domain for node in model.graph.node} <= {""}
    assert [(o.domain, o.version) for o in model.opset_import] == [("", 18)]


@pytest.mark.parametrize("agnostic", [False, True])
@pytest.mark.parametrize("seed", range(4))
def test_equals_numpy_model_with_onnx_semantics(seed, agnostic):
    """Exactly the NumPy model with ONNX comparisons (score > conf, suppress IoU > iou): all four outputs,
    padding included, bit for bit."""
    boxes, scores = random_inputs(seed, 3, 300, 4)
    conf, iou, topk = 0.25, [0.45, 0.6, 0.3, 0.7][seed], [10, 50, 300, 1][seed]
    got = run(nms_model(300, 4, conf, iou, topk, agnostic), boxes, scores)
    expected = pp.efficient_nms(boxes, scores, conf, iou, topk, agnostic, strict_thresholds=True)
    assert got[0][:-1].min() > 0 and got[0][-1, 0] == 0  # detections exist, the empty image has none
    assert_outputs_equal(got, expected)


@pytest.mark.parametrize("agnostic", [False, True])
def test_same_detections_as_efficient_nms_without_ties(agnostic):
    """Random float scores and boxes have no exact ties: same result as EfficientNMS semantics (>=)."""
    boxes, scores = random_inputs(11, 2, 400, 5)
    got = run(nms_model(400, 5, 0.25, 0.45, 100, agnostic), boxes, scores)
    assert_outputs_equal(got, pp.efficient_nms(boxes, scores, 0.25, 0.45, 100, agnostic))


def test_ties_show_the_documented_differences():
    """score == CONF: EfficientNMS keeps it, NonMaxSuppression drops it; IoU == IOU: EfficientNMS
    suppresses, NonMaxSuppression keeps."""
    # Anchors 0 and 1: IoU([0,0,10,10], [0,0,10,5]) = 0.5 exactly; anchor 2 far away with score == CONF.
    boxes = np.array([[[5, 5, 10, 10], [5, 2.5, 10, 5], [100, 100, 10, 10]]], np.float32)
    scores = np.array([[[0.9], [0.8], [0.25]]], np.float32)
    got = run(nms_model(3, 1, 0.25, 0.5, 5, False), boxes, scores)
    assert got[0][0, 0] == 2 and got[2][0, :2].tolist() == pytest.approx([0.9, 0.8])
    efficient = pp.efficient_nms(boxes, scores, 0.25, 0.5, 5)
    assert efficient[0][0, 0] == 2 and efficient[2][0, :2].tolist() == pytest.approx([0.9, 0.25])


def test_no_candidates_anywhere_gives_zero_padding():
    boxes, scores = random_inputs(0, 2, 30, 2)
    got = run(nms_model(30, 2, 0.25, 0.45, 8, False), boxes, np.zeros_like(scores))
    assert got[0].tolist() == [[0], [0]]
    assert not got[1].any() and not got[2].any() and not got[3].any()


def test_multilabel_descending_across_classes_and_corner_output():
    boxes = np.array([[[50, 50, 20, 20], [200, 200, 10, 10]]], np.float32)
    scores = np.array([[[0.6, 0.9, 0.0], [0.0, 0.0, 0.7]]], np.float32)
    num, det_boxes, det_scores, det_classes = run(nms_model(2, 3, 0.25, 0.45, 4, False), boxes, scores)
    assert num[0, 0] == 3
    assert det_scores[0].tolist() == pytest.approx([0.9, 0.7, 0.6, 0.0])
    assert det_classes[0].tolist() == [1, 2, 0, 0]
    assert det_boxes[0, 0].tolist() == [40, 40, 60, 60] and det_boxes[0, 3].tolist() == [0, 0, 0, 0]


@pytest.mark.parametrize("mode", ["onnx", "ultralytics"])
def test_add_nms_onnx_mode_on_a_track_a_head(mode):
    """Through the lead's nms_graph.add_nms: a stand-in Track A graph (output0 [B, 4+nc, A] fed as input)
    gets the standard-op NMS stage; its outputs equal the NumPy model of the mode before mapping back."""
    from onnx import TensorProto, helper

    from yolo_triton.nms_graph import add_nms, pre_nms_model
    from yolo_triton.onnx_io import metadata, set_metadata

    nc, anchors = 3, 64
    head_in = helper.make_tensor_value_info("head_in", TensorProto.FLOAT, ["batch", 4 + nc, anchors])
    head_out = helper.make_tensor_value_info("output0", TensorProto.FLOAT, ["batch", 4 + nc, anchors])
    graph = helper.make_graph([helper.make_node("Identity", ["head_in"], ["output0"])], "head", [head_in], [head_out])
    track_a = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    set_metadata(track_a, {"names": str({i: f"c{i}" for i in range(nc)})})
    end2end = add_nms(track_a, mode, 0.25, 0.45, 20, 0)
    assert [o.name for o in end2end.graph.output] == list(OUTPUT_NAMES)
    assert not any(n.op_type == "EfficientNMS_TRT" for n in end2end.graph.node)
    assert metadata(end2end)["nms"] == mode

    import onnxruntime as ort

    boxes, scores = random_inputs(5, 2, anchors, nc)
    output0 = np.concatenate([boxes, scores], 2).transpose(0, 2, 1).copy()
    got = ort.InferenceSession(end2end.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        list(OUTPUT_NAMES), {"head_in": output0})
    if mode == "onnx":
        expected = pp.efficient_nms(boxes, scores, 0.25, 0.45, 20, strict_thresholds=True)
    else:
        expected = ultralytics_outputs(boxes, scores, 0.25, 0.45, 20, False)
    assert_outputs_equal(got, expected)
    pre = pre_nms_model(end2end)  # validate.py runs this part for raw comparisons
    assert [o.name for o in pre.graph.output] == ["boxes", "scores"]


def tie_inputs(seed: int, batch: int, anchors: int, nc: int) -> tuple[np.ndarray, np.ndarray]:
    """Integer boxes (exact IoU ties) and scores quantised to 1/8 (score ties, scores equal to CONF 0.25)."""
    rng = np.random.default_rng(seed)
    xy = np.round(rng.uniform(0, 100, (batch, anchors, 2)))
    wh = np.round(rng.uniform(1, 40, (batch, anchors, 2)))
    scores = np.round(rng.uniform(0, 1, (batch, anchors, nc)) ** 3 * 8) / 8
    return np.concatenate([xy, wh], 2).astype(np.float32), scores.astype(np.float32)


@pytest.mark.parametrize("agnostic", [False, True])
def test_equals_numpy_model_on_score_and_iou_ties(agnostic):
    """Exact ties of score and IoU (IOU 0.5 on integer boxes), and a saturated TOPK: still bit for bit."""
    for seed in range(6):
        boxes, scores = tie_inputs(seed, 2, 300, 3)
        iou, topk = [0.5, 0.45][seed % 2], [100, 7, 300][seed % 3]
        got = run(nms_model(300, 3, 0.25, iou, topk, agnostic), boxes, scores)
        assert_outputs_equal(got, pp.efficient_nms(boxes, scores, 0.25, iou, topk, agnostic, strict_thresholds=True))


# ------------------------------------------------------------------------------------- NMS=ultralytics
def ultralytics_outputs(boxes, scores, conf, iou, topk, agnostic):
    """``postprocess.ultralytics_nms`` (YOLO.predict's NMS) in the padded end2end layout."""
    num, det_boxes, det_scores, det_classes = (np.zeros((len(boxes), 1), np.int32),
                                               np.zeros((len(boxes), topk, 4), np.float32),
                                               np.zeros((len(boxes), topk), np.float32),
                                               np.zeros((len(boxes), topk), np.int32))
    for b, det in enumerate(pp.ultralytics_nms(boxes, scores, conf, iou, topk, agnostic, pp.BOX_CENTER_SIZE)):
        n = len(det)
        num[b, 0] = n
        det_boxes[b, :n], det_scores[b, :n], det_classes[b, :n] = det[:, :4], det[:, 4], det[:, 5]
    return num, det_boxes, det_scores, det_classes


def test_ultralytics_constants_match_the_numpy_model():
    from yolo_triton import nms_onnx

    assert nms_onnx.ULTRALYTICS_MAX_WH == pp.ULTRALYTICS_MAX_WH
    assert nms_onnx.ULTRALYTICS_MAX_NMS == pp.ULTRALYTICS_MAX_NMS


@pytest.mark.parametrize("agnostic", [False, True])
@pytest.mark.parametrize("seed", range(4))
def test_ultralytics_mode_equals_numpy_model(seed, agnostic):
    """NMS=ultralytics: each box's best class, one class-offset NonMaxSuppression, bit for bit the NumPy
    model of ultralytics' non_max_suppression (postprocess.ultralytics_nms), padding included."""
    boxes, scores = random_inputs(seed, 3, 300, 4)
    conf, iou, topk = 0.25, [0.45, 0.6, 0.3, 0.7][seed], [10, 50, 300, 1][seed]
    got = run(nms_model(300, 4, conf, iou, topk, agnostic, multi_label=False), boxes, scores)
    assert got[0][:-1].min() > 0 and got[0][-1, 0] == 0
    assert_outputs_equal(got, ultralytics_outputs(boxes, scores, conf, iou, topk, agnostic))


@pytest.mark.parametrize("agnostic", [False, True])
def test_ultralytics_mode_on_ties_and_overlapping_classes(agnostic):
    """Score and IoU ties, scores equal to CONF, boxes of different classes on top of each other (the
    offset must keep them apart), saturated TOPK."""
    for seed in range(6):
        boxes, scores = tie_inputs(seed, 2, 300, 3)
        iou, topk = [0.5, 0.45][seed % 2], [100, 7, 300][seed % 3]
        got = run(nms_model(300, 3, 0.25, iou, topk, agnostic, multi_label=False), boxes, scores)
        assert_outputs_equal(got, ultralytics_outputs(boxes, scores, 0.25, iou, topk, agnostic))


def test_ultralytics_mode_keeps_one_label_per_box_and_separates_classes():
    # Anchor 0: classes 0 and 1 above CONF -> only its best (class 1). Anchor 1: the same box as anchor 0
    # but class 2 -> not suppressed (another class). Anchor 2: same box, class 1, lower score -> suppressed.
    boxes = np.array([[[50, 50, 20, 20], [50, 50, 20, 20], [50, 50, 20, 20]]], np.float32)
    scores = np.array([[[0.6, 0.9, 0.0], [0.0, 0.0, 0.7], [0.0, 0.5, 0.0]]], np.float32)
    num, det_boxes, det_scores, det_classes = run(nms_model(3, 3, 0.25, 0.45, 4, False, False), boxes, scores)
    assert num[0, 0] == 2
    assert det_scores[0].tolist() == pytest.approx([0.9, 0.7, 0.0, 0.0])
    assert det_classes[0].tolist() == [1, 2, 0, 0]
    assert det_boxes[0, 1].tolist() == [40, 40, 60, 60]  # unshifted corners out


def test_ultralytics_mode_caps_candidates_like_max_nms(monkeypatch):
    """More anchors than max_nms: only the best max_nms enter NMS (the NumPy model's cap), ties by anchor."""
    from yolo_triton import nms_onnx

    monkeypatch.setattr(nms_onnx, "ULTRALYTICS_MAX_NMS", 40)
    monkeypatch.setattr(pp, "ULTRALYTICS_MAX_NMS", 40)
    boxes, scores = tie_inputs(3, 2, 120, 2)
    boxes[..., 2:] = 1  # small boxes: almost nothing suppressed, so the cap decides
    model = nms_model(120, 2, 0.1, 0.45, 100, False, False)
    assert "TopK" in [n.op_type for n in model.graph.node if "best" in "".join(n.output)]
    got = run(model, boxes, scores)
    assert got[0].max() == 40
    assert_outputs_equal(got, ultralytics_outputs(boxes, scores, 0.1, 0.45, 100, False))


def test_ultralytics_mode_on_the_scratch_checkpoint(tmp_path, scratch_weights, sample_images):
    """``make ... NMS=ultralytics`` on the scratch checkpoint: the end2end graph in onnxruntime equals the
    Track A graph + the client's ``ultralytics`` NMS bit for bit, and YOLO.predict within FP32 noise."""
    import cv2
    import onnxruntime as ort
    from conftest import SCRATCH_NAME, TEST_IMGSZ, Tree
    from ultralytics import YOLO

    tree = Tree(tmp_path)
    tree.weights.mkdir()
    (tree.weights / scratch_weights.name).symlink_to(scratch_weights)
    tree.make(str(tree.artefact(f"{SCRATCH_NAME}_end2end")), f"NAMES={SCRATCH_NAME}", "NMS=ultralytics",
              "PRECISION=fp32", f"IMGSZ={TEST_IMGSZ}", "INSTANCE_KIND=cpu")
    end2end = onnx.load(str(tree.artefact(f"{SCRATCH_NAME}_end2end")))
    ops = [n.op_type for n in end2end.graph.node]
    assert ops.count("NonMaxSuppression") == 1 and "ScatterND" in ops
    paths = [str(p) for p in sample_images]
    batch, infos = pp.letterbox_batch([cv2.imread(p) for p in paths], TEST_IMGSZ)

    def session(path):
        return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    got = session(tree.artefact(f"{SCRATCH_NAME}_end2end")).run(list(OUTPUT_NAMES), {"images": batch})
    assert got[0].min() > 0  # the untrained head has detections on every sample image
    (output0,) = session(tree.artefact(SCRATCH_NAME)).run(None, {"images": batch})
    boxes, scores = output0[:, :4].transpose(0, 2, 1), output0[:, 4:].transpose(0, 2, 1)
    assert_outputs_equal(got, ultralytics_outputs(boxes, scores, 0.25, 0.45, 100, False))
    ours = pp.postprocess_end2end(*got, infos)
    results = YOLO(str(scratch_weights)).predict(paths, imgsz=TEST_IMGSZ, conf=0.25, iou=0.45, max_det=100,
                                                 rect=False, verbose=False)
    for dets, result in zip(ours, results):
        assert len(dets) == len(result.boxes)
        assert np.array_equal(dets.classes, result.boxes.cls.numpy().astype(np.int32))
        np.testing.assert_allclose(dets.scores, result.boxes.conf.numpy(), atol=1e-4)
        np.testing.assert_allclose(dets.boxes, result.boxes.xyxy.numpy(), atol=0.5)


def test_profile_script_summarises_an_nms_graph(tmp_path):
    """scripts/profile_end2end_ort.py on the CPU provider: per op type, per stage, top nodes (no timing checks)."""
    import json
    import runpy

    path = tmp_path / "nms.onnx"
    onnx.save(nms_model(200, 3, 0.25, 0.45, 10, False, False), str(path))
    script = runpy.run_path(str(pytest.importorskip("conftest").REPO / "scripts/profile_end2end_ort.py"))
    out = tmp_path / "profile.json"
    assert script["main"]([str(path), "--provider", "CPU", "--batch", "1", "2", "--iterations", "3",
                           "--warmup", "1", "--threads", "1", "--out", str(out)]) == 0
    summary = json.loads(out.read_text())
    assert [r["batch"] for r in summary["runs"]] == [1, 2]
    run0 = summary["runs"][0]
    assert "NonMaxSuppression" in run0["kernel_us_per_run_by_op"]
    assert set(run0["kernel_us_per_run_by_stage"]) == {"nms"}  # every node of this graph is the NMS stage
    assert set(run0["kernel_us_per_run_by_provider"]) == {"CPUExecutionProvider"}
    assert run0["top_nodes_us_per_run"][0]["node"].startswith("onnx_nms/")
