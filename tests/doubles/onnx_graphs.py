"""Tiny stand-in detector graphs (TEST DOUBLES for exported YOLO ONNX files), built in milliseconds.

``plain_detector`` has the shape of a Track B export (``images`` -> ``output0`` [N, 4+nc, anchors]);
``end2end_detector`` has the shape of a Track C graph (an ``EfficientNMS_TRT`` node producing
``num_dets``/``det_boxes``/``det_scores``/``det_classes``). ``precision`` adds what the real
pipeline adds: ``fp16`` AutoCast-style Casts and float16 weights, ``int8`` Q/DQ pairs.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def _body(imgsz: int, precision: str, nodes: list, inits: list) -> str:
    """images -> (precision-specific) -> 1x1 conv to 84 channels -> flatten to [N, 84, anchors]."""
    x = "images"
    weight = np.random.default_rng(0).standard_normal((84, 3, 1, 1)).astype(np.float32)
    if precision == "int8":
        inits += [numpy_helper.from_array(np.array(0.02, np.float32), "x_scale"),
                  numpy_helper.from_array(np.array(0, np.int8), "x_zp")]
        nodes += [helper.make_node("QuantizeLinear", [x, "x_scale", "x_zp"], ["x_q"]),
                  helper.make_node("DequantizeLinear", ["x_q", "x_scale", "x_zp"], ["x_dq"])]
        x = "x_dq"
    if precision == "fp16":
        inits.append(numpy_helper.from_array(weight.astype(np.float16), "w"))
        nodes.append(helper.make_node("Cast", [x], ["x16"], to=TensorProto.FLOAT16))
        nodes.append(helper.make_node("Conv", ["x16", "w"], ["y16"]))
        nodes.append(helper.make_node("Cast", ["y16"], ["y"], to=TensorProto.FLOAT))
    else:
        inits.append(numpy_helper.from_array(weight, "w"))
        nodes.append(helper.make_node("Conv", [x, "w"], ["y"]))
    inits.append(numpy_helper.from_array(np.array([0, 84, -1], np.int64), "flat_shape"))
    nodes.append(helper.make_node("Reshape", ["y", "flat_shape"], ["output0"]))
    return "output0"


def _images(imgsz: int, batch) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info("images", TensorProto.FLOAT, [batch, 3, imgsz, imgsz])


def plain_detector(path: Path, imgsz: int = 640, precision: str = "fp32", batch="batch") -> Path:
    nodes: list = []
    inits: list = []
    _body(imgsz, precision, nodes, inits)
    out = helper.make_tensor_value_info("output0", TensorProto.FLOAT, [batch, 84, "anchors"])
    graph = helper.make_graph(nodes, "plain_detector_double", [_images(imgsz, batch)], [out], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])
    onnx.save(model, str(path))
    return Path(path)


def end2end_detector(path: Path, imgsz: int = 640, precision: str = "fp32", topk: int = 100) -> Path:
    nodes: list = []
    inits: list = []
    raw = _body(imgsz, precision, nodes, inits)
    nodes += [
        helper.make_node("Transpose", [raw], ["pred"], perm=[0, 2, 1]),
        helper.make_node("Split", ["pred", "split_sizes"], ["boxes", "scores"], axis=2),
        helper.make_node("EfficientNMS_TRT", ["boxes", "scores"],
                         ["num_dets", "det_boxes", "det_scores", "det_classes"], domain="trt.plugins",
                         plugin_version="1", background_class=-1, box_coding=1, iou_threshold=0.45,
                         max_output_boxes=topk, score_activation=0, score_threshold=0.25,
                         class_agnostic=0),
    ]
    inits.append(numpy_helper.from_array(np.array([4, 80], np.int64), "split_sizes"))
    outputs = [helper.make_tensor_value_info("num_dets", TensorProto.INT32, ["batch", 1]),
               helper.make_tensor_value_info("det_boxes", TensorProto.FLOAT, ["batch", topk, 4]),
               helper.make_tensor_value_info("det_scores", TensorProto.FLOAT, ["batch", topk]),
               helper.make_tensor_value_info("det_classes", TensorProto.INT32, ["batch", topk])]
    graph = helper.make_graph(nodes, "end2end_detector_double", [_images(imgsz, "batch")], outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19),
                                                    helper.make_opsetid("trt.plugins", 1)])
    onnx.save(model, str(path))
    return Path(path)
