"""OUTPUT_DTYPE=float16: the raw-head outputs of Track A (and the Track B plan built from it) become FP16.

OUTPUT_DTYPE=auto (the default) chooses float16 at PRECISION=fp16 and float32 at fp32/int8
(:func:`resolve_output_dtype`; README "Raw-head outputs" has the H200 measurement behind it).

``output0`` of a detector is ``[B, 4+nc, anchors]`` float32: 2.8 MB per 640x640 image of an 80-class
model, more than twice the 1.2 MB of an INPUT_DTYPE=uint8 input. A ``Cast(to=FLOAT16)`` after each
float32 graph output halves it. What that rounds depends on the precision before it:

* PRECISION=fp16 (the default; ModelOpt AutoCast): the box decode runs in FP16 and only its last
  multiplication by the strides (powers of two, exact) is float32, so the box coordinates are FP16 values
  already and come through unchanged (measured on yolo11n at 320 and 640: every coordinate equal); the
  class scores, a float32 sigmoid, are rounded to 11 significant bits (at most 2^-12 = 0.00024 in 0.5..1).
* PRECISION=fp32 or int8: coordinates are rounded too, to half FP16's spacing at most: 0.125 px in 256..512,
  0.25 px in 512..1024. Validation then uses the fp16 tolerances (``yolo_triton.validate``).

The graphs made FROM the Track A file never keep the casts: ``float32_outputs`` removes exactly what
``float16_outputs`` added (the end2end surgery, whose outputs are the few kept detections, and the
TensorRT builds of end2end graphs see float32 again). The Track B plan is built from Track A's graph as it
is, so its ``output0`` is FP16 too (every build is strongly typed: the Cast is honoured).

The client reads each output's type from the served config; detect's NMS reads FP16 itself
(``postprocess.fp16_candidates``), other tasks turn it into float32 on receipt.
"""
from __future__ import annotations

import logging

import onnx
from onnx import TensorProto, helper

from yolo_triton.errors import StepError

LOG = logging.getLogger(__name__)

OUTPUT_DTYPES = ("float32", "float16")  # what the raw-head outputs of Track A (and B) are
OUTPUT_DTYPE_SETTINGS = ("auto", *OUTPUT_DTYPES)  # OUTPUT_DTYPE; auto = float16 at PRECISION=fp16, else float32
META_KEY = "output_dtype"  # ONNX metadata: "float16" when float16_outputs made the outputs FP16
CAST_SUFFIX = "_to_float16"  # the Cast node's name: <output><CAST_SUFFIX>
FLOAT32_SUFFIX = "_float32"  # the tensor the Cast reads: <output><FLOAT32_SUFFIX>


def check_output_dtype(output_dtype: str) -> str:
    if output_dtype not in OUTPUT_DTYPES:
        raise StepError(f"OUTPUT_DTYPE={output_dtype} is not one of {', '.join(OUTPUT_DTYPES)}")
    return output_dtype


def resolve_output_dtype(setting: str, precision: str) -> str:
    """OUTPUT_DTYPE as exported: ``auto`` is float16 for an FP16 network (PRECISION=fp16: its boxes are FP16
    values already and its scores move by 2^-12 at most, while the answer is half the bytes), float32 for
    fp32 and int8 (whoever asks for FP32 gets FP32 answers)."""
    if setting == "auto":
        return "float16" if precision == "fp16" else "float32"
    return check_output_dtype(setting)


def _names(graph: onnx.GraphProto) -> set[str]:
    taken = {i.name for i in graph.initializer} | {i.name for i in graph.input} | {o.name for o in graph.output}
    taken |= {name for node in graph.node for name in (*node.input, *node.output)}
    return taken | {node.name for node in graph.node}


def _set_meta(model: onnx.ModelProto, value: str | None) -> None:
    kept = [p for p in model.metadata_props if p.key != META_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    if value is not None:
        model.metadata_props.add(key=META_KEY, value=value)


def _rename_tensor(graph: onnx.GraphProto, old: str, new: str) -> None:
    """Every node input/output and value_info named ``old`` named ``new`` (graph outputs are left alone)."""
    for node in graph.node:
        node.output[:] = [new if v == old else v for v in node.output]
        node.input[:] = [new if v == old else v for v in node.input]
    for info in graph.value_info:
        if info.name == old:
            info.name = new


def output_dtype_of(model: onnx.ModelProto) -> str:
    """``float16`` for a graph made by :func:`float16_outputs`, else ``float32``."""
    return next((p.value for p in model.metadata_props if p.key == META_KEY), "float32")


def float16_outputs(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` (changed in place and returned) with every float32 graph output cast to FP16 as its last
    node; the float32 tensor is renamed ``<output>_float32`` (every reader of it rewired)."""
    if output_dtype_of(model) == "float16":
        raise StepError("the outputs are FP16 already (cast twice? OUTPUT_DTYPE=float16 is applied to a float32 "
                        "export once)")
    graph = model.graph
    if any(node.attribute and any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
                                  for a in node.attribute) for node in graph.node):
        raise StepError("the graph has control flow (If/Loop/Scan); OUTPUT_DTYPE=float16 rewires top-level "
                        "tensors only")
    taken = _names(graph)
    inputs = {i.name for i in graph.input}
    cast = 0
    for output in graph.output:
        tensor_type = output.type.tensor_type
        if tensor_type.elem_type != TensorProto.FLOAT:
            continue
        name = output.name
        if name in inputs:
            raise StepError(f"output '{name}' is also a graph input; nothing to cast")
        renamed, node_name = name + FLOAT32_SUFFIX, name + CAST_SUFFIX
        if renamed in taken or node_name in taken:
            raise StepError(f"output '{name}': the graph already has a '{renamed}' or '{node_name}' "
                            "(cast twice? OUTPUT_DTYPE=float16 is applied to a float32 export once)")
        _rename_tensor(graph, name, renamed)
        graph.node.append(helper.make_node("Cast", [renamed], [name], name=node_name, to=TensorProto.FLOAT16))
        tensor_type.elem_type = TensorProto.FLOAT16
        cast += 1
    if not cast:
        raise StepError("no float32 output to make FP16 (OUTPUT_DTYPE=float16 needs a float32 export)")
    _set_meta(model, "float16")
    LOG.info("%d float32 output(s) cast to FP16 as the graph's last node(s) (OUTPUT_DTYPE=float16)", cast)
    return model


def float32_outputs(model: onnx.ModelProto) -> onnx.ModelProto:
    """The graph :func:`float16_outputs` started from (``model`` changed in place and returned): its output
    Casts removed, the float32 tensors named as the outputs again. Any other graph is returned unchanged."""
    if output_dtype_of(model) != "float16":
        return model
    graph = model.graph
    casts = {node.output[0]: node for node in graph.node
             if node.op_type == "Cast" and node.name == node.output[0] + CAST_SUFFIX}
    for output in graph.output:
        node = casts.get(output.name)
        if node is None or output.type.tensor_type.elem_type != TensorProto.FLOAT16:
            continue
        name, renamed = output.name, node.input[0]
        graph.node.remove(node)
        _rename_tensor(graph, renamed, name)
        output.type.tensor_type.elem_type = TensorProto.FLOAT
    _set_meta(model, "float32")
    return model
