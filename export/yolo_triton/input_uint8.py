"""INPUT_DTYPE=uint8: the image input becomes UINT8 ``[B, 3, H, W]``; the graph casts and scales it.

A client then sends the letterboxed pixels as they are (1 byte per value instead of 4: 1.2 MB instead
of 4.9 MB per 640x640 image) and the graph computes what the client used to: ``Cast(to=FLOAT)`` then
``Div`` by a float32 constant 255, the same IEEE float32 division as ``x.astype(np.float32) / 255``
(``postprocess.to_model_input``), so the result is bit-identical to the float32 graph fed the client's
own ``/255`` values.

The two nodes go in front of whatever consumed the input (found generically: every node input and graph
output naming it is rewired to the scaled tensor), AFTER precision conversion, so AutoCast FP16 and Q/DQ
INT8 graphs keep their float32 entry untouched and the cast/division stays float32.
"""
from __future__ import annotations

import logging

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from yolo_triton.errors import StepError

LOG = logging.getLogger(__name__)

INPUT_DTYPES = ("float32", "uint8")  # INPUT_DTYPE: what the image input of the exported graphs takes
SCALE = 255.0


def check_input_dtype(input_dtype: str) -> str:
    if input_dtype not in INPUT_DTYPES:
        raise StepError(f"INPUT_DTYPE={input_dtype} is not one of {', '.join(INPUT_DTYPES)}")
    return input_dtype


def _image_input(graph: onnx.GraphProto) -> onnx.ValueInfoProto:
    initializers = {init.name for init in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise StepError(f"expected one image input, the graph has {len(inputs)} ({[i.name for i in inputs]})")
    return inputs[0]


def _unique(graph: onnx.GraphProto, base: str) -> str:
    taken = {i.name for i in graph.initializer} | {i.name for i in graph.input} | {o.name for o in graph.output}
    taken |= {name for node in graph.node for name in (*node.input, *node.output)}
    taken |= {node.name for node in graph.node}
    name, n = base, 1
    while name in taken:
        name, n = f"{base}_{n}", n + 1
    return name


def uint8_input(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` (changed in place and returned) with its float32 image input taken as UINT8 and turned
    into float32 ``/ 255`` inside the graph, before the input's first consumers."""
    graph = model.graph
    image = _image_input(graph)
    tensor_type = image.type.tensor_type
    if tensor_type.elem_type != TensorProto.FLOAT:
        raise StepError(f"input '{image.name}' is {helper.tensor_dtype_to_np_dtype(tensor_type.elem_type)}, "
                        "expected float32 (an INPUT_DTYPE=uint8 graph is made from a float32 export)")
    name = image.name
    as_float = _unique(graph, f"{name}_as_float")
    scaled = _unique(graph, f"{name}_scaled")
    scale = _unique(graph, f"{name}_uint8_scale")
    rewired = 0
    for node in graph.node:
        for i, value in enumerate(node.input):
            if value == name:
                node.input[i] = scaled
                rewired += 1
        for attr in node.attribute:  # control flow reading the input from an outer scope: not rewired here
            if attr.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS):
                raise StepError(f"node '{node.name}' ({node.op_type}) has a subgraph; uint8_input rewires only "
                                "top-level consumers of the image input")
    for output in graph.output:
        if output.name == name:
            raise StepError(f"the image input '{name}' is also a graph output; nothing to rewire")
    if not rewired:
        raise StepError(f"no node reads the image input '{name}'")
    graph.initializer.append(numpy_helper.from_array(np.array(SCALE, dtype=np.float32), scale))
    nodes = [
        helper.make_node("Cast", [name], [as_float], name=_unique(graph, f"{name}_cast_to_float"),
                         to=TensorProto.FLOAT),
        helper.make_node("Div", [as_float, scale], [scaled], name=_unique(graph, f"{name}_div_255")),
    ]
    for node in reversed(nodes):  # first in the node list: the graph stays topologically sorted
        graph.node.insert(0, node)
    dims = [d for d in tensor_type.shape.dim]
    for value in (as_float, scaled):
        info = helper.make_tensor_value_info(value, TensorProto.FLOAT, None)
        info.type.tensor_type.shape.dim.extend(dims)
        graph.value_info.append(info)
    tensor_type.elem_type = TensorProto.UINT8
    LOG.info("input %s: uint8, Cast to float32 and / 255 in the graph (%d consumer input(s) rewired)", name, rewired)
    return model
