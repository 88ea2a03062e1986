"""``NMS=onnx``: the end2end NMS stage from standard ONNX operators (no TensorRT plugin).

The stage runs in onnxruntime as is and maps onto TensorRT's built-in layers (``NonMaxSuppression`` ->
``INMSLayer``; ``TopK``, ``Gather``/``GatherND``, ``ScatterND``, ``ConstantOfShape``, ``Where``, ``Cast``,
``ReduceMax``/``ReduceSum``, ``ArgMax``, elementwise ops), so it survives the EfficientNMS_TRT
deprecation (see NVIDIA's "Migrating from TensorRT 10.x to 11.x", docs.nvidia.com/deeplearning/tensorrt).
Opset 18 operators only. It produces exactly the four outputs of the EfficientNMS stage (the plugin's
README: https://github.com/NVIDIA/TensorRT/tree/release/10.16/plugin/efficientNMSPlugin):

    num_dets [B, 1] INT32, det_boxes [B, TOPK, 4] FP32 (x1, y1, x2, y2 in input pixels),
    det_scores [B, TOPK] FP32, det_classes [B, TOPK] INT32,

ordered by descending score across classes, rows past ``num_dets`` all zeros (class 0).

Graph: centre-size boxes -> corners; ``NonMaxSuppression(corners, scores^T)`` gives ``selected [K, 3]``
(batch, class, anchor) with at most ``TOPK`` per class; the selected scores are scattered into a dense
``[B, A, nc]`` tensor filled with -1 elsewhere, flattened to ``[B, A*nc]``, and ``TopK(TOPK)`` picks the
best per image (ties: lower flat index ``anchor*nc + class`` first, as the NumPy model orders them);
entries with a score above -1 are detections, the rest are zeroed. Class-agnostic NMS runs on the
per-anchor maximum score (``[B, 1, A]``) and takes the class from the per-anchor ``ArgMax``.

Semantic differences from EfficientNMS_TRT (efficientNMSInference.cu in the plugin's folder), all visible only at
exact ties:

* score threshold: kept when ``score > CONF`` (ONNX / onnxruntime / INMSLayer), EfficientNMS keeps
  ``score >= CONF``;
* IoU: suppressed when ``IoU > IOU``, EfficientNMS suppresses ``IoU >= IOU``;
* NMS is always per class in ``NonMaxSuppression``; the agnostic mode here feeds it one "class" (the
  per-anchor maximum), which equals EfficientNMS' class-agnostic result (a lower label of an anchor
  has IoU 1 with its best label and is always suppressed there);
* candidate cap: EfficientNMS sorts all classes together and keeps the best 5000 candidates per image;
  INMSLayer caps its TopK at 5000 per class (2000 on SM 5.3/6.2), onnxruntime has no cap;
* ties in score may come out in another order (EfficientNMS' GPU sort leaves them unordered).

``yolo_triton.postprocess.efficient_nms(..., strict_thresholds=True)`` is the NumPy model of this graph.
Scores must lie in [0, 1] (sigmoid outputs): -1 marks "not selected".

:func:`select_onnx_nms` also hands back which anchor each output row came from (the ``NonMaxSuppression``
indices after the TopK), so a task's per-anchor values (mask coefficients, keypoints) are gathered with
exactly the indices the NMS kept (:func:`gather_rows`, :func:`zero_past_num_dets`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx_graphsurgeon as gs

from yolo_triton.settings import END2END_OUTPUTS

OUTPUT_NAMES = END2END_OUTPUTS
NOT_SELECTED = -1.0  # fill value of the dense score tensor; real scores are >= 0
# ultralytics' constants (utils/nms.py), also in postprocess (tests/test_nms_onnx.py checks they agree;
# not imported from there so that the graph step does not load OpenCV).
ULTRALYTICS_MAX_WH = 7680  # per-class box offset (max_wh)
ULTRALYTICS_MAX_NMS = 30000  # candidates kept before NMS (max_nms)


@dataclass(frozen=True)
class Selection:
    """What the NMS stage kept: the four outputs, and per output row its anchor and whether it is a detection."""

    outputs: list  # num_dets, det_boxes, det_scores, det_classes (gs.Variable)
    anchor_index: gs.Variable  # [B, TOPK, 1] int64: the anchor of each row (0 past num_dets)
    valid: gs.Variable  # [B, TOPK] bool: True for the first num_dets rows


class Builder:
    """Appends nodes to ``graph`` with unique, prefixed names."""

    def __init__(self, graph: gs.Graph, prefix: str = "onnx_nms"):
        self.graph = graph
        self.prefix = prefix
        self.count = 0

    def name(self, label: str) -> str:
        self.count += 1
        return f"{self.prefix}/{label}_{self.count}"

    def const(self, label: str, value) -> gs.Constant:
        return gs.Constant(self.name(label), np.asarray(value))

    def op(self, op: str, inputs: list, dtype, shape, attrs: dict | None = None, out: gs.Variable | None = None,
           label: str | None = None) -> gs.Variable:
        out = out if out is not None else gs.Variable(self.name((label or op).lower()), dtype=dtype, shape=shape)
        self.graph.nodes.append(gs.Node(op, self.name(label or op), attrs=attrs or {}, inputs=inputs, outputs=[out]))
        return out

    def ops(self, op: str, inputs: list, outputs: list[gs.Variable], attrs: dict | None = None) -> list[gs.Variable]:
        self.graph.nodes.append(gs.Node(op, self.name(op), attrs=attrs or {}, inputs=inputs, outputs=outputs))
        return outputs


def _corners(b: Builder, boxes_xywh: gs.Variable, anchors) -> gs.Variable:
    """``[B, A, 4]`` centre-size -> corners (x1, y1, x2, y2)."""
    f32 = np.float32
    xy = gs.Variable(b.name("xy"), dtype=f32, shape=["batch", anchors, 2])
    wh = gs.Variable(b.name("wh"), dtype=f32, shape=["batch", anchors, 2])
    b.ops("Split", [boxes_xywh, b.const("split_2_2", np.array([2, 2], np.int64))], [xy, wh], {"axis": 2})
    half = b.op("Mul", [wh, b.const("half", np.array(0.5, f32))], f32, ["batch", anchors, 2])
    top_left = b.op("Sub", [xy, half], f32, ["batch", anchors, 2])
    bottom_right = b.op("Add", [xy, half], f32, ["batch", anchors, 2])
    return b.op("Concat", [top_left, bottom_right], f32, ["batch", anchors, 4], {"axis": 2}, label="corners")


def add_onnx_nms(
    graph: gs.Graph,
    boxes_xywh: gs.Variable,
    scores: gs.Variable,
    conf: float,
    iou: float,
    topk: int,
    agnostic: bool,
    multi_label: bool = True,
) -> list[gs.Variable]:
    """Append the standard-op NMS stage to ``graph``; return ``[num_dets, det_boxes, det_scores, det_classes]``
    (:func:`select_onnx_nms`, without the selection)."""
    return select_onnx_nms(graph, boxes_xywh, scores, conf, iou, topk, agnostic, multi_label).outputs


def select_onnx_nms(
    graph: gs.Graph,
    boxes_xywh: gs.Variable,
    scores: gs.Variable,
    conf: float,
    iou: float,
    topk: int,
    agnostic: bool,
    multi_label: bool = True,
) -> Selection:
    """Append the standard-op NMS stage to ``graph``; return its four outputs and the selection.

    ``boxes_xywh [B, A, 4]`` (centre x, centre y, w, h in input pixels) and ``scores [B, A, nc]`` (sigmoid
    probabilities) are float32 variables of ``graph``. The caller sets ``graph.outputs`` and cleans up.
    ``multi_label=False`` is ``NMS=ultralytics``: each anchor's best class only, one NonMaxSuppression
    class on boxes offset by ``class * 7680`` (none when ``agnostic``), as ultralytics' predictor.
    """
    if topk <= 0:
        raise ValueError(f"topk must be positive, got {topk}")
    f32, i64, i32 = np.float32, np.int64, np.int32
    b = Builder(graph)
    anchors = boxes_xywh.shape[1] if boxes_xywh.shape else "anchors"
    nc = scores.shape[2] if scores.shape else "classes"
    corners = _corners(b, boxes_xywh, anchors)
    nms_boxes = corners

    # Scores NMS sees: [B, C', A] with C' = nc, or 1 (the per-anchor maximum) when agnostic or single-label.
    if agnostic or not multi_label:
        nms_scores = b.op("ReduceMax", [scores, b.const("axis2", np.array([2], i64))], f32,
                          ["batch", anchors, 1], {"keepdims": 1})
        labels = b.op("ArgMax", [scores], i64, ["batch", anchors, 1],
                      {"axis": 2, "keepdims": 1, "select_last_index": 0})  # ties: the lower class, as EfficientNMS
        width = 1
        # [B, A, 1] -> [B, 1, A] is the same memory: a Reshape, not a Transpose.
        nms_scores_t = b.op("Reshape", [nms_scores, b.const("one_row", np.array([0, 1, -1], i64))], f32,
                            ["batch", 1, anchors])
        if not multi_label:
            if not agnostic:
                nms_boxes = _class_offset(b, corners, labels, anchors)
            if not isinstance(anchors, int) or anchors > ULTRALYTICS_MAX_NMS:
                nms_scores_t = _keep_best(b, nms_scores_t, anchors)
    else:
        nms_scores, labels, width = scores, None, nc
        nms_scores_t = b.op("Transpose", [nms_scores], f32, ["batch", width, anchors], {"perm": [0, 2, 1]})

    selected = b.op(
        "NonMaxSuppression",
        [
            nms_boxes,
            nms_scores_t,
            b.const("max_output_boxes_per_class", np.array([topk], i64)),  # no class can contribute more
            b.const("iou_threshold", np.array([iou], f32)),  # suppresses IoU > iou
            b.const("score_threshold", np.array([conf], f32)),  # keeps score > conf
        ],
        i64, ["selected", 3], {"center_point_box": 0}, label="NonMaxSuppression",  # corners in
    )
    # (batch, class, anchor) -> (batch, anchor, class): index the anchor-major [B, A, C'] tensors.
    index_bac = b.op("Gather", [selected, b.const("perm_bac", np.array([0, 2, 1], i64))], i64, ["selected", 3],
                     {"axis": 1})
    selected_scores = b.op("GatherND", [nms_scores, index_bac], f32, ["selected"], {"batch_dims": 0})
    dense_init = b.op("ConstantOfShape", [b.op("Shape", [nms_scores], i64, [3])], f32,
                      ["batch", anchors, width], {"value": _tensor_value(NOT_SELECTED)})
    dense = b.op("ScatterND", [dense_init, index_bac, selected_scores], f32, ["batch", anchors, width])
    flat = b.op("Reshape", [dense, b.const("flat_shape", np.array([0, -1], i64))], f32, ["batch", "flat"])
    # TopK needs k <= A * C'; a smaller graph (tests, tiny heads) takes all and pads to TOPK rows.
    k = min(topk, anchors * width) if isinstance(anchors, int) and isinstance(width, int) else topk
    top_scores = gs.Variable(b.name("top_scores"), dtype=f32, shape=["batch", k])
    top_index = gs.Variable(b.name("top_index"), dtype=i64, shape=["batch", k])
    b.ops("TopK", [flat, b.const("k", np.array([k], i64))], [top_scores, top_index],
          {"axis": 1, "largest": 1, "sorted": 1})
    if k < topk:
        pads = b.const("pads", np.array([0, 0, 0, topk - k], i64))
        top_scores = b.op("Pad", [top_scores, pads, b.const("pad_score", np.array(NOT_SELECTED, f32))], f32,
                          ["batch", topk], {"mode": "constant"})
        top_index = b.op("Pad", [top_index, pads, b.const("pad_index", np.array(0, i64))], i64,
                         ["batch", topk], {"mode": "constant"})

    valid = b.op("Greater", [top_scores, b.const("not_selected", np.array(NOT_SELECTED / 2, f32))], bool,
                 ["batch", topk])
    valid_f = b.op("Cast", [valid], f32, ["batch", topk], {"to": _onnx_type(f32)})
    count = b.op("ReduceSum", [valid_f, b.const("axis1", np.array([1], i64))], f32, ["batch", 1], {"keepdims": 1})

    # Flat index -> anchor and class (int32 arithmetic: TensorRT's safest integer path).
    top_index32 = b.op("Cast", [top_index], i32, ["batch", topk], {"to": _onnx_type(i32)})
    width_c = b.const("width", np.array(width, i32))
    anchor32 = b.op("Div", [top_index32, width_c], i32, ["batch", topk])
    anchor64 = b.op("Cast", [anchor32], i64, ["batch", topk], {"to": _onnx_type(i64)})
    anchor_idx = b.op("Unsqueeze", [anchor64, b.const("axis_last", np.array([2], i64))], i64, ["batch", topk, 1])
    if labels is not None:  # one NMS "class": the label is the anchor's ArgMax
        label = b.op("GatherND", [labels, anchor_idx], i64, ["batch", topk, 1], {"batch_dims": 1})
        label = b.op("Squeeze", [label, b.const("axis_last2", np.array([2], i64))], i64, ["batch", topk])
        cls32 = b.op("Cast", [label], i32, ["batch", topk], {"to": _onnx_type(i32)})
    else:
        cls32 = b.op("Sub", [top_index32, b.op("Mul", [anchor32, width_c], i32, ["batch", topk])], i32,
                     ["batch", topk])
    picked_boxes = b.op("GatherND", [corners, anchor_idx], f32, ["batch", topk, 4], {"batch_dims": 1})

    num_dets, det_boxes, det_scores, det_classes = (
        gs.Variable(name, dtype=dtype, shape=shape) for name, dtype, shape in zip(
            OUTPUT_NAMES, (i32, f32, f32, i32), (["batch", 1], ["batch", topk, 4], ["batch", topk], ["batch", topk])))
    b.op("Cast", [count], i32, None, {"to": _onnx_type(i32)}, out=num_dets)
    valid3 = b.op("Unsqueeze", [valid, b.const("axis_last3", np.array([2], i64))], bool, ["batch", topk, 1])
    zero_f, zero_i = b.const("zero_f", np.array(0, f32)), b.const("zero_i", np.array(0, i32))
    b.op("Where", [valid3, picked_boxes, zero_f], None, None, out=det_boxes)  # padding rows -> 0
    b.op("Where", [valid, top_scores, zero_f], None, None, out=det_scores)  # -1 -> 0
    b.op("Where", [valid, cls32, zero_i], None, None, out=det_classes)  # padding class -> 0
    return Selection([num_dets, det_boxes, det_scores, det_classes], anchor_idx, valid)


def gather_rows(b: Builder, data: gs.Variable, anchor_index: gs.Variable, topk: int) -> gs.Variable:
    """``data [B, A, ...]`` -> ``[B, TOPK, ...]``: each output row's anchor (``GatherND``, batch_dims 1)."""
    rest = list(data.shape[2:]) if data.shape else []
    return b.op("GatherND", [data, anchor_index], data.dtype, ["batch", topk, *rest], {"batch_dims": 1},
                label="gather_rows")


def zero_past_num_dets(b: Builder, rows: gs.Variable, valid: gs.Variable, out: gs.Variable | None = None
                       ) -> gs.Variable:
    """``rows [B, TOPK, ...]`` with every row past ``num_dets`` (``valid [B, TOPK]`` False) set to +0."""
    rank = len(rows.shape) if rows.shape else 3
    mask = valid
    if rank > 2:
        mask = b.op("Unsqueeze", [valid, b.const("row_axes", np.arange(2, rank, dtype=np.int64))], bool,
                    ["batch", valid.shape[1] if valid.shape else "topk", *([1] * (rank - 2))])
    zero = b.const("zero_row", np.array(0, rows.dtype or np.float32))
    return b.op("Where", [mask, rows, zero], rows.dtype, rows.shape, out=out, label="zero_past_num_dets")


def _class_offset(b: Builder, corners: gs.Variable, labels: gs.Variable, anchors) -> gs.Variable:
    """``corners + class * 7680`` in float32, the same two roundings as ultralytics (``max_wh``) and
    ``postprocess.ultralytics_nms``: boxes of different classes never overlap, so one NMS class is per class."""
    f32 = np.float32
    label_f = b.op("Cast", [labels], f32, ["batch", anchors, 1], {"to": _onnx_type(f32)})
    offset = b.op("Mul", [label_f, b.const("max_wh", np.array(ULTRALYTICS_MAX_WH, f32))], f32, ["batch", anchors, 1])
    return b.op("Add", [corners, offset], f32, ["batch", anchors, 4], label="offset_corners")


def _keep_best(b: Builder, scores_1a: gs.Variable, anchors) -> gs.Variable:
    """ultralytics' ``max_nms``: only the best 30000 anchors (ties: lower anchor) enter NMS; the others get
    score 0, which never passes ``score > CONF``. Only graphs with more anchors than that need it."""
    f32, i64 = np.float32, np.int64
    shape = b.op("Shape", [scores_1a], i64, [3])
    count = b.op("Gather", [shape, b.const("anchor_dim", np.array([2], i64))], i64, [1], {"axis": 0})
    k = b.op("Min", [count, b.const("max_nms", np.array([ULTRALYTICS_MAX_NMS], i64))], i64, [1])
    values = gs.Variable(b.name("best_scores"), dtype=f32, shape=["batch", 1, "k"])
    index = gs.Variable(b.name("best_index"), dtype=i64, shape=["batch", 1, "k"])
    b.ops("TopK", [scores_1a, k], [values, index], {"axis": 2, "largest": 1, "sorted": 1})
    zeros = b.op("ConstantOfShape", [shape], f32, ["batch", 1, anchors], {"value": _tensor_value(0.0)})
    return b.op("ScatterElements", [zeros, index, values], f32, ["batch", 1, anchors], {"axis": 2})


def _onnx_type(dtype) -> int:
    from onnx import helper

    return helper.np_dtype_to_tensor_dtype(np.dtype(dtype))


def _tensor_value(value: float):
    from onnx import numpy_helper

    return numpy_helper.from_array(np.array([value], np.float32), name="value")
