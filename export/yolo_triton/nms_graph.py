"""End2end graphs by surgery on the Track A ONNX (never a second export from PyTorch).

The head output ``output0 [B, 4+nc+extra, A]`` (centre x, centre y, width, height in input pixels,
sigmoid class scores, then the task's per-anchor values) is transposed and split into ``boxes [B, A, 4]``,
``scores [B, A, nc]`` and ``extra [B, A, extra]``, then one NMS stage produces the four outputs

    num_dets [B, 1] INT32, det_boxes [B, TOPK, 4] FP32 (x1, y1, x2, y2 in input pixels),
    det_scores [B, TOPK] FP32, det_classes [B, TOPK] INT32; rows past num_dets are zeros (class 0),

followed by the task's ``settings.END2END_TASK_OUTPUTS`` (rows past num_dets zero too):

* segment: ``det_mask_coeffs [B, TOPK, nm]`` (each kept anchor's mask coefficients) and the prototypes
  ``output1 [B, nm, S/4, S/4]`` passed through; the client assembles its ``num_dets`` masks
  (``coeffs @ protos``, upsampling, ``> 0``, crop: ultralytics' ``process_mask``). Chosen by measurement
  against masks assembled in the graph for all TOPK rows (scripts/bench_seg_masks.py,
  benchmarks/cpu_seg_masks.json; yolo11n-seg, S=640, TOPK=100, onnxruntime CPU): 3.29 MB per image,
  against 10.2 MB for FP32 mask logits at S/4 (the same masks after the client's upsampling) and 41.0 MB
  for binary masks at S; only binary masks at S/4 are smaller (2.56 MB), with coarser edges (thresholded
  before upsampling) and still an upsampling in the client. Graph time: the same within noise as the
  S/4 variants, 1.8x less than binary masks at S (62 against 111 ms per image at batch 4); the client's
  assembly took 18 ms per image (61 detections). Masks in the graph also grow with TOPK, the
  prototypes do not.
* pose: ``det_keypoints [B, TOPK, K, 3]`` (x, y in input pixels, confidence; 1.0 when the head predicts
  only x, y).
* obb: ``det_xywhr [B, TOPK, 5]`` (centre, size, angle in radians, as the head writes them) and
  ``det_boxes`` = the axis-aligned hull of the rotated box.

The task is read from the ONNX itself (ultralytics' ``task`` and ``kpt_shape`` metadata and the output
shapes, :func:`read_head`), never from the checkpoint.

Modes: ``efficient`` (the EfficientNMS_TRT plugin; detect only: it returns no indices, so no per-anchor
values can follow the kept boxes), ``onnx`` (standard ``NonMaxSuppression``, ``yolo_triton.nms_onnx``,
multi-label per class) and ``ultralytics`` (the same operators, each box's best class only and one
class-offset NMS, as ultralytics' predictor) work on the one-to-many head; their ``NonMaxSuppression``
indices gather the task's values (``GatherND``). ``free`` works on the NMS-free one-to-one head of
YOLO26/YOLOv10 (``output0 [B, TOPK, 6+extra]``: x1, y1, x2, y2 (obb: centre x, centre y, w, h), score,
class, extra; sorted by score) and only thresholds it: no plugin, no NMS, so the same file runs in
onnxruntime and TensorRT 10/11. Refused (``options.RULES``, before anything is written): segment and pose
with ``efficient``, OBB other than ``free`` (no standard-op rotated NMS), classify (no NMS at all).
Every operator the surgery adds is native to TensorRT's ONNX parser (onnx/onnx-tensorrt
docs/operators.md: ``NonMaxSuppression`` -> ``INMSLayer``, ``GatherND`` with ``batch_dims``, ``Pad``,
``Cos``/``Sin``/``Abs`` for the OBB hull; tests/test_nms_tasks.py checks the list).
"""
from __future__ import annotations

import ast
import logging
from dataclasses import dataclass

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from yolo_triton.batch_pad import pad_batch, padded_size, unpad_batch
from yolo_triton.output_dtype import float32_outputs
from yolo_triton.errors import StepError
from yolo_triton.nms_onnx import Builder, gather_rows, select_onnx_nms, zero_past_num_dets
from yolo_triton.onnx_io import class_names, metadata, model_io, set_metadata
from yolo_triton.options import check_options
from yolo_triton.settings import END2END_OUTPUTS, END2END_TASK_OUTPUTS, PROTOS_OUTPUT, TRACK_A_OUTPUT

LOG = logging.getLogger(__name__)

NMS_MODES = ("efficient", "onnx", "ultralytics", "free")
BOXES, SCORES, EXTRA = "boxes", "scores", "extra"
# ONNX Runtime knows TensorRT plugins only through its TensorRT execution provider, and only in this
# domain (onnxruntime docs, "TensorRT Plugins Support"; onnxruntime/core/providers/tensorrt/
# tensorrt_execution_provider_custom_ops.cc); TensorRT's own ONNX parser finds the plugin by op type,
# plugin_version and plugin_namespace and reads the domain only when that lookup fails
# (onnx/onnx-tensorrt onnxOpImporters.cpp, FallbackPluginImporter). So plans build from it too.
PLUGIN_DOMAIN = "trt.plugins"
TASKS = tuple(END2END_TASK_OUTPUTS)  # detect, segment, pose, obb, classify


@dataclass(frozen=True)
class Head:
    """The head an ONNX carries, as the surgery needs it (read from the file by :func:`read_head`)."""

    task: str
    num_classes: int
    one2one: bool  # the NMS-free one-to-one export (ultralytics nms=False): output0 [B, max_det, 6+extra]
    extra: int = 0  # per-anchor values after the box and the class scores (Track A) / score, class (one2one)
    kpt_shape: tuple[int, int] | None = None  # pose: (keypoints, 2 or 3 values each)


def check_nms_params(conf: float, iou: float, topk: int, agnostic: int) -> None:
    """Refuse settings EfficientNMS would reject or silently misread."""
    if not 0.0 < conf <= 1.0:
        raise StepError(f"CONF={conf} is outside (0, 1]")
    if not 0.0 < iou <= 1.0:
        raise StepError(f"IOU={iou} is outside (0, 1]")
    if topk <= 0:
        raise StepError(f"TOPK={topk} must be a positive number of detections per image")
    if agnostic not in (0, 1):
        raise StepError(f"AGNOSTIC={agnostic} must be 0 or 1")


def model_task(meta: dict[str, str]) -> str:
    """The task ultralytics wrote into the ONNX metadata (``detect`` when there is none: older exports)."""
    task = meta.get("task", "detect")
    if task not in TASKS:
        raise StepError(f"the ONNX metadata names task '{task}'; an end2end graph is made for {', '.join(TASKS)}")
    return task


def is_one2one(meta: dict[str, str]) -> bool:
    """Exported from the one-to-one head: this pipeline's ``one2one`` flag or ultralytics' own ``end2end``."""
    return meta.get("one2one") == "True" or meta.get("end2end") == "True"


def _kpt_shape(meta: dict[str, str]) -> tuple[int, int]:
    try:
        k, d = (int(v) for v in ast.literal_eval(meta["kpt_shape"]))
    except (KeyError, ValueError, SyntaxError, TypeError):
        raise StepError(f"pose ONNX without a usable 'kpt_shape' metadata entry ({meta.get('kpt_shape')!r}); "
                        "export it with ultralytics, which writes [keypoints, 2 or 3]") from None
    if k <= 0 or d not in (2, 3):
        raise StepError(f"kpt_shape [{k}, {d}] in the ONNX metadata: expected [keypoints > 0, 2 or 3]")
    return k, d


def read_head(model: onnx.ModelProto, meta: dict[str, str]) -> Head:
    """The head of a Track A or one-to-one ONNX from its own metadata and output shapes; a file that does
    not agree with itself is a StepError naming the layout expected."""
    task = model_task(meta)
    nc = len(class_names(meta))
    one2one = is_one2one(meta)
    _, outputs = model_io(model)
    names = [o.name for o in outputs]
    wanted = [TRACK_A_OUTPUT, PROTOS_OUTPUT] if task == "segment" else [TRACK_A_OUTPUT]
    if names != wanted:
        raise StepError(f"a {task} ONNX has the outputs {wanted}; this one has {names}")
    shape = outputs[0].shape
    extra, kpt_shape = 0, None
    if task == "segment":
        protos = outputs[1].shape
        if len(protos) != 4 or protos[1] <= 0:
            raise StepError(f"the prototypes '{PROTOS_OUTPUT}' have shape {list(protos)}; expected [batch, nm, h, w]")
        extra = protos[1]
    elif task == "pose":
        kpt_shape = _kpt_shape(meta)
        extra = kpt_shape[0] * kpt_shape[1]
    elif task == "obb":
        extra = 1
    if one2one:
        if len(shape) != 3 or shape[2] != 6 + extra:
            raise StepError(f"'{TRACK_A_OUTPUT}' of this one-to-one {task} export has shape {list(shape)}; expected "
                            f"[batch, max_det, 6+{extra}] (box, score, class, {extra} {task} values)")
    elif len(shape) != 3 or shape[1] != 4 + nc + extra:
        raise StepError(f"head output '{TRACK_A_OUTPUT}' has shape {list(shape)}; expected [batch, 4+{nc}+{extra}, "
                        f"anchors] for a {task} head with {nc} classes (an NMS-free [batch, max_det, 6+extra] export "
                        "cannot take an NMS stage)")
    if outputs[0].dtype != "float32":
        raise StepError(f"head output '{TRACK_A_OUTPUT}' is {outputs[0].dtype}, expected float32 (FP32 I/O)")
    return Head(task, nc, one2one, extra, kpt_shape)


def split_head(graph: gs.Graph, head: Head) -> tuple[gs.Variable, gs.Variable, gs.Variable | None]:
    """Turn the head output into ``boxes`` (xywh), ``scores`` and the task's ``extra`` values (None: none)."""
    tensors = graph.tensors()
    output0 = tensors[TRACK_A_OUTPUT]
    anchors = output0.shape[2]
    width = 4 + head.num_classes + head.extra
    transposed = gs.Variable("head_transposed", dtype=np.float32, shape=["batch", anchors, width])
    graph.nodes.append(gs.Node("Transpose", "head_to_anchor_major", attrs={"perm": [0, 2, 1]},
                               inputs=[output0], outputs=[transposed]))
    boxes = gs.Variable(BOXES, dtype=np.float32, shape=["batch", anchors, 4])
    scores = gs.Variable(SCORES, dtype=np.float32, shape=["batch", anchors, head.num_classes])
    parts, sizes = [boxes, scores], [4, head.num_classes]
    extra = None
    if head.extra:
        extra = gs.Variable(EXTRA, dtype=np.float32, shape=["batch", anchors, head.extra])
        parts.append(extra)
        sizes.append(head.extra)
    split_sizes = gs.Constant("split_box_class", np.array(sizes, dtype=np.int64))
    graph.nodes.append(gs.Node("Split", "split_boxes_scores", attrs={"axis": 2},
                               inputs=[transposed, split_sizes], outputs=parts))
    return boxes, scores, extra


def end2end_outputs(topk: int) -> list[gs.Variable]:
    num_dets, det_boxes, det_scores, det_classes = END2END_OUTPUTS
    return [
        gs.Variable(num_dets, dtype=np.int32, shape=["batch", 1]),
        gs.Variable(det_boxes, dtype=np.float32, shape=["batch", topk, 4]),
        gs.Variable(det_scores, dtype=np.float32, shape=["batch", topk]),
        gs.Variable(det_classes, dtype=np.int32, shape=["batch", topk]),
    ]


def add_efficient_nms(graph: gs.Graph, boxes: gs.Variable, scores: gs.Variable, conf: float, iou: float,
                      topk: int, agnostic: bool) -> list[gs.Variable]:
    """One EfficientNMS_TRT node with every attribute stated (the plugin's README, "Parameters":
    https://github.com/NVIDIA/TensorRT/tree/release/10.16/plugin/efficientNMSPlugin)."""
    outputs = end2end_outputs(topk)
    attrs = {
        "plugin_version": "1",
        "plugin_namespace": "",        # trtexec and Triton register the standard plugins under ""
        "score_threshold": float(conf),  # keeps score >= CONF
        "iou_threshold": float(iou),     # suppresses IoU >= IOU
        "max_output_boxes": int(topk),   # global per image, not per class
        "background_class": -1,          # YOLO has no background class
        "score_activation": 0,           # head scores are already sigmoid probabilities
        "class_agnostic": int(agnostic), # always explicit: the creator leaks it between instances
        "box_coding": 1,                 # inputs are centre-size (x, y, w, h); outputs are always corners
    }
    graph.nodes.append(gs.Node("EfficientNMS_TRT", "efficient_nms", attrs=attrs, inputs=[boxes, scores],
                               outputs=outputs, domain=PLUGIN_DOMAIN))
    return outputs


def threshold_one2one(graph: gs.Graph, head: Head, conf: float, topk: int) -> list[gs.Variable]:
    """``free`` mode: the one-to-one head's ``[B, TOPK, 6+extra]`` rows, kept where score >= CONF.

    The head's TopK output is sorted by descending score, so the kept rows are the first
    ``num_dets``; the others are set to +0 (class 0), exactly like EfficientNMS padding.
    Returns the four outputs, then the task's (:func:`task_outputs`).
    """
    head_out = graph.tensors()[TRACK_A_OUTPUT]
    if isinstance(head_out.shape[1], int) and head_out.shape[1] != topk:
        raise StepError(f"the one-to-one head was exported with max_det={head_out.shape[1]}, but TOPK={topk}")
    rows = ["batch", topk]
    xyxy = head.task != "obb"  # obb rows carry the rotated box as centre, size (and the angle last)
    boxes = gs.Variable("one2one_boxes", dtype=np.float32, shape=[*rows, 4])
    score = gs.Variable("one2one_score", dtype=np.float32, shape=[*rows, 1])
    label = gs.Variable("one2one_class", dtype=np.float32, shape=[*rows, 1])
    parts, sizes = [boxes, score, label], [4, 1, 1]
    extra = None
    if head.extra:
        extra = gs.Variable("one2one_extra", dtype=np.float32, shape=[*rows, head.extra])
        parts.append(extra)
        sizes.append(head.extra)
    keep = gs.Variable("keep", dtype=np.bool_, shape=[*rows, 1])
    keep_f = gs.Variable("keep_float", dtype=np.float32, shape=[*rows, 1])
    kept_score = gs.Variable("kept_score", dtype=np.float32, shape=[*rows, 1])
    kept_class = gs.Variable("kept_class", dtype=np.float32, shape=[*rows, 1])
    class_f = gs.Variable("kept_class_2d", dtype=np.float32, shape=rows)
    count_f = gs.Variable("num_dets_float", dtype=np.float32, shape=["batch", 1])
    num_dets, det_boxes, det_scores, det_classes = end2end_outputs(topk)
    axis2 = gs.Constant("axis_2", np.array([2], dtype=np.int64))
    axis1 = gs.Constant("axis_1", np.array([1], dtype=np.int64))
    graph.nodes += [
        gs.Node("Split", "split_one2one", attrs={"axis": 2},
                inputs=[head_out, gs.Constant("split_one2one_sizes", np.array(sizes, dtype=np.int64))],
                outputs=parts),
        gs.Node("GreaterOrEqual", "score_at_least_conf",
                inputs=[score, gs.Constant("conf", np.array(conf, dtype=np.float32))], outputs=[keep]),
        gs.Node("Cast", "keep_to_float", attrs={"to": onnx.TensorProto.FLOAT}, inputs=[keep], outputs=[keep_f]),
        gs.Node("Mul", "mask_scores", inputs=[score, keep_f], outputs=[kept_score]),
        gs.Node("Squeeze", "scores_2d", inputs=[kept_score, axis2], outputs=[det_scores]),
        gs.Node("Mul", "mask_classes", inputs=[label, keep_f], outputs=[kept_class]),
        gs.Node("Squeeze", "classes_2d", inputs=[kept_class, axis2], outputs=[class_f]),
        gs.Node("Cast", "classes_to_int32", attrs={"to": onnx.TensorProto.INT32}, inputs=[class_f],
                outputs=[det_classes]),
        gs.Node("ReduceSum", "count_kept", attrs={"keepdims": 0}, inputs=[keep_f, axis1], outputs=[count_f]),
        gs.Node("Cast", "count_to_int32", attrs={"to": onnx.TensorProto.INT32}, inputs=[count_f],
                outputs=[num_dets]),
    ]
    if xyxy:  # Where, not Mul: +0 past num_dets also for negative coordinates (Mul would give -0)
        graph.nodes.append(gs.Node("Where", "mask_boxes", inputs=[keep, boxes, gs.Constant(
            "zero_box", np.array(0, dtype=np.float32))], outputs=[det_boxes]))
    outputs = [num_dets, det_boxes, det_scores, det_classes]
    if head.task == "detect":
        return outputs
    b = Builder(graph, "one2one_task")
    valid = b.op("Squeeze", [keep, b.const("keep_axis", np.array([2], np.int64))], np.bool_, rows)
    return outputs + task_outputs(b, graph, head, extra, valid, topk, rotated=(boxes, det_boxes))


def task_outputs(b: Builder, graph: gs.Graph, head: Head, extra_rows: gs.Variable | None, valid: gs.Variable,
                 topk: int, rotated: tuple[gs.Variable, gs.Variable] | None = None) -> list[gs.Variable]:
    """The task's end2end outputs (``settings.END2END_TASK_OUTPUTS``) from ``extra_rows [B, TOPK, extra]``,
    the task values of each output row, and ``valid [B, TOPK]`` (rows past num_dets are set to zero).

    ``rotated`` (obb): the rows' ``(xywh [B, TOPK, 4], det_boxes)``: ``det_boxes`` is written here, as
    the axis-aligned hull of the rotated box.
    """
    names = END2END_TASK_OUTPUTS[head.task]
    f32 = np.float32
    if head.task == "segment":
        coeffs = gs.Variable(names[0], dtype=f32, shape=["batch", topk, head.extra])
        zero_past_num_dets(b, extra_rows, valid, out=coeffs)
        protos = graph.tensors()[PROTOS_OUTPUT]  # passed through: the client assembles the masks
        return [coeffs, protos]
    if head.task == "pose":
        k, d = head.kpt_shape
        kpts = b.op("Reshape", [extra_rows, b.const("kpt_shape", np.array([0, 0, k, d], np.int64))], f32,
                    ["batch", topk, k, d])
        if d == 2:  # no confidence predicted: 1.0 (zero past num_dets like every other value)
            kpts = b.op("Pad", [kpts, b.const("conf_column", np.array([0, 0, 0, 0, 0, 0, 0, 1], np.int64)),
                                b.const("conf_one", np.array(1.0, f32))], f32, ["batch", topk, k, 3],
                        {"mode": "constant"})
        out = gs.Variable(names[0], dtype=f32, shape=["batch", topk, k, 3])
        zero_past_num_dets(b, kpts, valid, out=out)
        return [out]
    if head.task == "obb":
        xywh, det_boxes = rotated
        xywhr = b.op("Concat", [xywh, extra_rows], f32, ["batch", topk, 5], {"axis": 2})
        out = gs.Variable(names[0], dtype=f32, shape=["batch", topk, 5])
        zero_past_num_dets(b, xywhr, valid, out=out)
        zero_past_num_dets(b, _rotated_hull(b, xywh, extra_rows, topk), valid, out=det_boxes)
        return [out]
    raise StepError(f"no end2end outputs for task '{head.task}'")


def _rotated_hull(b: Builder, xywh: gs.Variable, angle: gs.Variable, topk: int) -> gs.Variable:
    """Corners ``[B, TOPK, 4]`` of the axis-aligned hull of rotated boxes (centre, size, angle): the half
    extents are ``(|w cos| + |h sin|) / 2`` and ``(|w sin| + |h cos|) / 2``."""
    f32, rows = np.float32, ["batch", topk]
    xy = gs.Variable(b.name("centre"), dtype=f32, shape=[*rows, 2])
    wh = gs.Variable(b.name("size"), dtype=f32, shape=[*rows, 2])
    b.ops("Split", [xywh, b.const("split_2_2", np.array([2, 2], np.int64))], [xy, wh], {"axis": 2})
    half = b.op("Mul", [wh, b.const("half", np.array(0.5, f32))], f32, [*rows, 2])
    cos = b.op("Cos", [angle], f32, [*rows, 1])
    sin = b.op("Sin", [angle], f32, [*rows, 1])
    cos_sin = b.op("Concat", [cos, sin], f32, [*rows, 2], {"axis": 2})
    sin_cos = b.op("Concat", [sin, cos], f32, [*rows, 2], {"axis": 2})
    axis = b.const("axis_last", np.array([2], np.int64))
    # (|w/2 cos|, |h/2 sin|) summed -> x extent; (|w/2 sin|, |h/2 cos|) summed -> y extent
    ext_x = b.op("ReduceSum", [b.op("Abs", [b.op("Mul", [half, cos_sin], f32, [*rows, 2])], f32, [*rows, 2]), axis],
                 f32, [*rows, 1], {"keepdims": 1})
    ext_y = b.op("ReduceSum", [b.op("Abs", [b.op("Mul", [half, sin_cos], f32, [*rows, 2])], f32, [*rows, 2]), axis],
                 f32, [*rows, 1], {"keepdims": 1})
    extent = b.op("Concat", [ext_x, ext_y], f32, [*rows, 2], {"axis": 2})
    top_left = b.op("Sub", [xy, extent], f32, [*rows, 2])
    bottom_right = b.op("Add", [xy, extent], f32, [*rows, 2])
    return b.op("Concat", [top_left, bottom_right], f32, [*rows, 4], {"axis": 2}, label="hull")


def add_nms(model: onnx.ModelProto, mode: str, conf: float, iou: float, topk: int,
            agnostic: int) -> onnx.ModelProto:
    """Return the end2end model: from a Track A model (``output0 [B, 4+nc+extra, A]``) for ``efficient``,
    ``onnx`` and ``ultralytics``, from a one-to-one export (``output0 [B, TOPK, 6+extra]``) for ``free``.
    The task comes from the file (:func:`read_head`); what cannot work is refused before any surgery."""
    if mode not in NMS_MODES:
        raise StepError(f"NMS={mode} is not one of {', '.join(NMS_MODES)}")
    check_nms_params(conf, iou, topk, agnostic)
    pad = padded_size(model)
    if pad is not None:  # surgery on the plain graph, then the same padding around the end2end graph
        return pad_batch(add_nms(unpad_batch(model), mode, conf, iou, topk, agnostic), pad)
    model = float32_outputs(model)  # OUTPUT_DTYPE=float16 rounds Track A's answer; the surgery takes it unrounded
    meta = metadata(model)
    check_options(nms=mode, task=model_task(meta))
    if mode == "free" and not is_one2one(meta):
        raise StepError("NMS=free needs an ONNX exported from the one-to-one head (export_onnx.py --one2one)")
    if mode != "free" and is_one2one(meta):
        raise StepError(f"NMS={mode} needs the one-to-many head output; this ONNX is a one-to-one (NMS=free) export")
    head = read_head(model, meta)
    graph = gs.import_onnx(model)
    if mode == "free":
        outputs = threshold_one2one(graph, head, conf, topk)
    else:
        boxes, scores, extra = split_head(graph, head)
        if mode == "efficient":
            outputs = add_efficient_nms(graph, boxes, scores, conf, iou, topk, bool(agnostic))
        else:
            selection = select_onnx_nms(graph, boxes, scores, conf, iou, topk, bool(agnostic),
                                        multi_label=mode == "onnx")
            outputs = list(selection.outputs)
            if head.task != "detect":  # the task's values of the anchors the NMS kept
                b = Builder(graph, "end2end_task")
                rows = gather_rows(b, extra, selection.anchor_index, topk)
                outputs += task_outputs(b, graph, head, rows, selection.valid, topk)
    graph.outputs = outputs
    graph.cleanup().toposort()
    result = gs.export_onnx(graph)
    if mode == "efficient" and not any(op.domain == PLUGIN_DOMAIN for op in result.opset_import):
        result.opset_import.append(onnx.helper.make_opsetid(PLUGIN_DOMAIN, 1))
    if mode == "free":
        meta.update(nms=mode, conf=str(conf), iou="unused (NMS-free head)", topk=str(topk), agnostic="unused")
    else:
        meta.update(nms=mode, conf=str(conf), iou=str(iou), topk=str(topk), agnostic=str(int(agnostic)))
    set_metadata(result, meta)
    _log_io(result)
    return result


def pre_nms_model(end2end: onnx.ModelProto) -> onnx.ModelProto:
    """The part of an end2end graph before NMS, with outputs ``boxes`` and ``scores`` (runs anywhere)."""
    end2end = unpad_batch(end2end)
    graph = gs.import_onnx(end2end)
    tensors = graph.tensors()
    if BOXES not in tensors or SCORES not in tensors:
        raise StepError("this graph has no 'boxes'/'scores' tensors (not an end2end graph of this pipeline)")
    graph.outputs = [tensors[BOXES], tensors[SCORES]]
    graph.cleanup().toposort()
    model = gs.export_onnx(graph)
    kept = [op for op in model.opset_import if op.domain != PLUGIN_DOMAIN]
    del model.opset_import[:]
    model.opset_import.extend(kept)
    set_metadata(model, metadata(end2end))
    return model


def _log_io(model: onnx.ModelProto) -> None:
    from yolo_triton.onnx_io import model_io

    inputs, outputs = model_io(model)
    for kind, specs in (("input", inputs), ("output", outputs)):
        for spec in specs:
            LOG.info("%s %s %s %s", kind, spec.name, spec.dtype, list(spec.shape))
    for node in model.graph.node:
        if node.op_type == "EfficientNMS_TRT":
            for attr in node.attribute:
                LOG.info("EfficientNMS_TRT %s = %s", attr.name, onnx.helper.get_attribute_value(attr))
