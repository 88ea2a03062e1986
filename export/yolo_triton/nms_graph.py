"""End2end graphs by surgery on the Track A ONNX (never a second export from PyTorch).

The head output ``output0 [B, 4+nc, A]`` (centre x, centre y, width, height in input pixels, then
sigmoid class scores) is transposed and split into ``boxes [B, A, 4]`` and ``scores [B, A, nc]``,
then one NMS stage produces exactly four outputs, whatever the mode:

    num_dets [B, 1] INT32, det_boxes [B, TOPK, 4] FP32 (x1, y1, x2, y2 in input pixels),
    det_scores [B, TOPK] FP32, det_classes [B, TOPK] INT32; rows past num_dets are zeros (class 0).

Modes: ``efficient`` (the EfficientNMS_TRT plugin), ``onnx`` (standard ``NonMaxSuppression``,
``yolo_triton.nms_onnx``, multi-label per class) and ``ultralytics`` (the same operators, each box's best
class only and one class-offset NMS, as ultralytics' predictor) work on the one-to-many head; ``free`` works on the NMS-free one-to-one
head of YOLO26/YOLOv10 (``output0 [B, TOPK, 6]``: x1, y1, x2, y2, score, class, sorted by score) and
only thresholds it: no plugin, no NMS, so the same file runs in onnxruntime and TensorRT 10/11.
"""
from __future__ import annotations

import logging

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from yolo_triton.batch_pad import pad_batch, padded_size, unpad_batch
from yolo_triton.errors import StepError
from yolo_triton.onnx_io import class_names, metadata, set_metadata
from yolo_triton.settings import END2END_OUTPUTS

LOG = logging.getLogger(__name__)

NMS_MODES = ("efficient", "onnx", "ultralytics", "free")
BOXES, SCORES = "boxes", "scores"
# ONNX Runtime knows TensorRT plugins only through its TensorRT execution provider, and only in this
# domain (onnxruntime docs, "TensorRT Plugins Support"; onnxruntime/core/providers/tensorrt/
# tensorrt_execution_provider_custom_ops.cc); TensorRT's own ONNX parser finds the plugin by op type,
# plugin_version and plugin_namespace and reads the domain only when that lookup fails
# (onnx/onnx-tensorrt onnxOpImporters.cpp, FallbackPluginImporter). So plans build from it too.
PLUGIN_DOMAIN = "trt.plugins"


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


def split_head(graph: gs.Graph, num_classes: int) -> tuple[gs.Variable, gs.Variable]:
    """Turn the single head output into ``boxes`` (xywh) and ``scores`` variables."""
    if len(graph.outputs) != 1:
        raise StepError(f"expected one head output (output0), found {[o.name for o in graph.outputs]}")
    head = graph.outputs[0]
    shape = list(head.shape or [])
    if len(shape) != 3 or shape[1] != 4 + num_classes:
        raise StepError(
            f"head output '{head.name}' has shape {shape}; expected [batch, 4+{num_classes}, anchors] "
            "(an NMS-free [batch, max_det, 6] export cannot take an NMS stage)"
        )
    if head.dtype != np.float32:
        raise StepError(f"head output '{head.name}' is {head.dtype}, expected float32 (FP32 I/O)")
    anchors = shape[2]
    transposed = gs.Variable("head_transposed", dtype=np.float32, shape=["batch", anchors, 4 + num_classes])
    graph.nodes.append(gs.Node("Transpose", "head_to_anchor_major", attrs={"perm": [0, 2, 1]},
                               inputs=[head], outputs=[transposed]))
    boxes = gs.Variable(BOXES, dtype=np.float32, shape=["batch", anchors, 4])
    scores = gs.Variable(SCORES, dtype=np.float32, shape=["batch", anchors, num_classes])
    split_sizes = gs.Constant("split_box_class", np.array([4, num_classes], dtype=np.int64))
    graph.nodes.append(gs.Node("Split", "split_boxes_scores", attrs={"axis": 2},
                               inputs=[transposed, split_sizes], outputs=[boxes, scores]))
    return boxes, scores


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


def threshold_one2one(graph: gs.Graph, conf: float, topk: int) -> list[gs.Variable]:
    """``free`` mode: the one-to-one head's ``[B, TOPK, 6]`` rows, kept where score >= CONF.

    The head's TopK output is sorted by descending score, so the kept rows are the first
    ``num_dets``; the others are multiplied to zero (class 0), exactly like EfficientNMS padding.
    """
    if len(graph.outputs) != 1:
        raise StepError(f"expected one head output, found {[o.name for o in graph.outputs]}")
    head = graph.outputs[0]
    shape = list(head.shape or [])
    if len(shape) != 3 or shape[2] != 6:
        raise StepError(f"NMS=free needs the one-to-one head output [batch, TOPK, 6]; '{head.name}' is {shape}")
    if shape[1] != topk:
        raise StepError(f"the one-to-one head was exported with max_det={shape[1]}, but TOPK={topk}")
    rows = ["batch", topk]
    boxes = gs.Variable("one2one_boxes", dtype=np.float32, shape=[*rows, 4])
    score = gs.Variable("one2one_score", dtype=np.float32, shape=[*rows, 1])
    label = gs.Variable("one2one_class", dtype=np.float32, shape=[*rows, 1])
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
                inputs=[head, gs.Constant("split_4_1_1", np.array([4, 1, 1], dtype=np.int64))],
                outputs=[boxes, score, label]),
        gs.Node("GreaterOrEqual", "score_at_least_conf",
                inputs=[score, gs.Constant("conf", np.array(conf, dtype=np.float32))], outputs=[keep]),
        gs.Node("Cast", "keep_to_float", attrs={"to": onnx.TensorProto.FLOAT}, inputs=[keep], outputs=[keep_f]),
        gs.Node("Mul", "mask_boxes", inputs=[boxes, keep_f], outputs=[det_boxes]),
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
    return [num_dets, det_boxes, det_scores, det_classes]


def add_nms(model: onnx.ModelProto, mode: str, conf: float, iou: float, topk: int,
            agnostic: int) -> onnx.ModelProto:
    """Return the end2end model: from a Track A model (``output0 [B, 4+nc, A]``) for ``efficient``,
    ``onnx`` and ``ultralytics``, from a one-to-one export (``output0 [B, TOPK, 6]``) for ``free``."""
    if mode not in NMS_MODES:
        raise StepError(f"NMS={mode} is not one of {', '.join(NMS_MODES)}")
    check_nms_params(conf, iou, topk, agnostic)
    pad = padded_size(model)
    if pad is not None:  # surgery on the plain graph, then the same padding around the end2end graph
        return pad_batch(add_nms(unpad_batch(model), mode, conf, iou, topk, agnostic), pad)
    meta = metadata(model)
    graph = gs.import_onnx(model)
    if mode == "free":
        if meta.get("one2one") != "True":
            raise StepError("NMS=free needs an ONNX exported from the one-to-one head (export_onnx.py --one2one)")
        graph.outputs = threshold_one2one(graph, conf, topk)
        graph.cleanup().toposort()
        result = gs.export_onnx(graph)
        meta.update(nms=mode, conf=str(conf), iou="unused (NMS-free head)", topk=str(topk), agnostic="unused")
        set_metadata(result, meta)
        _log_io(result)
        return result
    if meta.get("one2one") == "True":
        raise StepError(f"NMS={mode} needs the one-to-many head output; this ONNX is a one-to-one (NMS=free) export")
    boxes, scores = split_head(graph, len(class_names(meta)))
    if mode == "efficient":
        outputs = add_efficient_nms(graph, boxes, scores, conf, iou, topk, bool(agnostic))
    else:
        from yolo_triton.nms_onnx import add_onnx_nms

        outputs = add_onnx_nms(graph, boxes, scores, conf, iou, topk, bool(agnostic), multi_label=mode == "onnx")
    graph.outputs = outputs
    graph.cleanup().toposort()
    result = gs.export_onnx(graph)
    if mode == "efficient" and not any(op.domain == PLUGIN_DOMAIN for op in result.opset_import):
        result.opset_import.append(onnx.helper.make_opsetid(PLUGIN_DOMAIN, 1))
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
