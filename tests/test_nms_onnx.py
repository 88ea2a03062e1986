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
    "TopK", "Transpose", "Unsqueeze", "Where", "Add", "Pad",
}


def nms_model(anchors: int, nc: int, conf: float, iou: float, topk: int, agnostic: bool) -> onnx.ModelProto:
    """A graph whose inputs are ``boxes`` (xywh) and ``scores`` and whose body is the NMS stage only."""
    graph = gs.Graph(opset=18)
    boxes = gs.Variable("boxes", np.float32, ["batch", anchors, 4])
    scores = gs.Variable("scores", np.float32, ["batch", anchors, nc])
    graph.inputs = [boxes, scores]
    graph.outputs = add_onnx_nms(graph, boxes, scores, conf, iou, topk, agnostic)
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


@pytest.mark.parametrize("agnostic", [False, True])
def test_only_tensorrt_native_standard_ops(agnostic):
    model = nms_model(50, 3, 0.25, 0.45, 10, agnostic)
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


def test_add_nms_onnx_mode_on_a_track_a_head():
    """Through the lead's nms_graph.add_nms: a stand-in Track A graph (output0 [B, 4+nc, A] fed as input)
    gets the onnx NMS stage; its outputs equal postprocess_track_a(mode='onnx') before mapping back."""
    from onnx import TensorProto, helper

    from yolo_triton.nms_graph import add_nms, pre_nms_model
    from yolo_triton.onnx_io import set_metadata

    nc, anchors = 3, 64
    head_in = helper.make_tensor_value_info("head_in", TensorProto.FLOAT, ["batch", 4 + nc, anchors])
    head_out = helper.make_tensor_value_info("output0", TensorProto.FLOAT, ["batch", 4 + nc, anchors])
    graph = helper.make_graph([helper.make_node("Identity", ["head_in"], ["output0"])], "head", [head_in], [head_out])
    track_a = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    set_metadata(track_a, {"names": str({i: f"c{i}" for i in range(nc)})})
    end2end = add_nms(track_a, "onnx", 0.25, 0.45, 20, 0)
    assert [o.name for o in end2end.graph.output] == list(OUTPUT_NAMES)
    assert not any(n.op_type == "EfficientNMS_TRT" for n in end2end.graph.node)

    import onnxruntime as ort

    boxes, scores = random_inputs(5, 2, anchors, nc)
    output0 = np.concatenate([boxes, scores], 2).transpose(0, 2, 1).copy()
    got = ort.InferenceSession(end2end.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        list(OUTPUT_NAMES), {"head_in": output0})
    expected = pp.efficient_nms(boxes, scores, 0.25, 0.45, 20, strict_thresholds=True)
    assert_outputs_equal(got, expected)
    pre = pre_nms_model(end2end)  # validate.py runs this part for raw comparisons
    assert [o.name for o in pre.graph.output] == ["boxes", "scores"]
