"""Fixed-batch padding inside an ONNX graph, for ONNX Runtime's CUDA execution provider under Triton.

ONNX Runtime's CUDA EP (1.2x-1.31 with cuDNN 9) pays seconds whenever a convolution sees an input shape
other than the previous run's (README, "GPU serving under load"); Triton's dynamic batcher changes the
batch size from one execution to the next, so a GPU-served ONNX model with dynamic batching collapses
under load. :func:`pad_batch` makes every convolution see one shape: the graph input ``[N, ...]`` is
concatenated with ``max(size - N, 0)`` zero images, the network runs on ``[size, ...]``, and every graph
output is sliced back to its first ``N`` rows. Each image's result depends only on its own row (the
detector has no cross-batch op), so the padded graph's outputs equal the plain graph's for every N.

The padding is recorded in the ONNX metadata (:data:`META_KEY`), so the Triton config written from the
artefact sets ``max_batch_size`` to it, and :func:`unpad_batch` restores the plain graph where the padding
does no good (TensorRT builds its own kernels per profile shape; graph surgery on the head).
Padding is the last thing done to a graph, so it wraps whatever input conversion comes before it.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

META_KEY = "batch_pad"  # ONNX metadata: the padded execution batch, absent for a plain graph
PREFIX = "batch_pad/"  # every node and tensor this module adds carries this prefix
_PAD_CONCAT = PREFIX + "concat"
_SLICED = "/sliced"  # output slice node names: PREFIX + <output name> + _SLICED


def padded_size(model: onnx.ModelProto) -> int | None:
    """The batch the graph pads to, or None for a plain graph."""
    for prop in model.metadata_props:
        if prop.key == META_KEY:
            return int(prop.value)
    return None


def _set_meta(model: onnx.ModelProto, size: int | None) -> None:
    keep = [(p.key, p.value) for p in model.metadata_props if p.key != META_KEY]
    if size is not None:
        keep.append((META_KEY, str(int(size))))
    del model.metadata_props[:]
    for key, value in sorted(keep):
        model.metadata_props.add(key=key, value=value)


def _image_input(model: onnx.ModelProto) -> onnx.ValueInfoProto:
    initializers = {init.name for init in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if len(inputs) != 1 or len(inputs[0].type.tensor_type.shape.dim) < 1:
        raise ValueError(f"batch padding needs one batched graph input, the graph has {[i.name for i in inputs]}")
    return inputs[0]


def _rename_input(nodes, old: str, new: str) -> None:
    for node in nodes:
        for i, name in enumerate(node.input):
            if name == old:
                node.input[i] = new


def pad_batch(model: onnx.ModelProto, size: int) -> onnx.ModelProto:
    """Return ``model`` padded to run every execution at batch ``size`` (see the module docstring)."""
    if int(size) < 1:
        raise ValueError(f"the padded batch must be >= 1, got {size}")
    if padded_size(model) is not None:
        raise ValueError(f"the graph is already padded to {padded_size(model)}; unpad it first")
    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    image = _image_input(model)
    x = image.name
    padded = PREFIX + "input"
    elem = image.type.tensor_type.elem_type
    zero = numpy_helper.from_array(np.zeros(1, dtype=helper.tensor_dtype_to_np_dtype(elem)), "value")
    consts = [
        numpy_helper.from_array(np.array([int(size)], np.int64), PREFIX + "size"),
        numpy_helper.from_array(np.array([0], np.int64), PREFIX + "zero"),
    ]
    mk = helper.make_node
    head = [
        mk("Shape", [x], [PREFIX + "shape"], name=PREFIX + "shape"),
        mk("Shape", [x], [PREFIX + "n"], name=PREFIX + "n", start=0, end=1),  # [N]
        mk("Shape", [x], [PREFIX + "rest"], name=PREFIX + "rest", start=1),  # [C, H, W]
        mk("Sub", [PREFIX + "size", PREFIX + "n"], [PREFIX + "missing"], name=PREFIX + "missing"),
        # more than `size` images (a server allowing a larger batch): no padding, the graph still answers
        mk("Max", [PREFIX + "missing", PREFIX + "zero"], [PREFIX + "count"], name=PREFIX + "count"),
        mk("Concat", [PREFIX + "count", PREFIX + "rest"], [PREFIX + "pad_shape"], name=PREFIX + "pad_shape", axis=0),
        mk("ConstantOfShape", [PREFIX + "pad_shape"], [PREFIX + "zeros"], name=PREFIX + "zeros", value=zero),
        mk("Concat", [x, PREFIX + "zeros"], [padded], name=_PAD_CONCAT, axis=0),
    ]
    _rename_input(graph.node, x, padded)
    tail = []
    for output in graph.output:
        if len(output.type.tensor_type.shape.dim) < 1:
            raise ValueError(f"output {output.name!r} has no batch dimension to slice back")
        inner = PREFIX + output.name
        for node in graph.node:
            for i, name in enumerate(node.output):
                if name == output.name:
                    node.output[i] = inner
        _rename_input(graph.node, output.name, inner)
        tail.append(mk("Slice", [inner, PREFIX + "zero", PREFIX + "n", PREFIX + "zero"], [output.name],
                       name=PREFIX + output.name + _SLICED))
    graph.initializer.extend(consts)
    nodes = head + list(graph.node) + tail
    del graph.node[:]
    graph.node.extend(nodes)
    _set_meta(model, size)
    onnx.checker.check_model(model)
    return model


def unpad_batch(model: onnx.ModelProto) -> onnx.ModelProto:
    """The plain graph of a padded one (a plain graph is returned unchanged)."""
    if padded_size(model) is None:
        return model
    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    x = _image_input(model).name
    keep = [n for n in graph.node if not n.name.startswith(PREFIX)]
    outputs = {o.name for o in graph.output}
    inner_to_output = {PREFIX + name: name for name in outputs}
    for node in keep:  # consumers of the padded input read the graph input; producers write the outputs again
        for i, name in enumerate(node.input):
            if name == PREFIX + "input":
                node.input[i] = x
            elif name in inner_to_output:
                node.input[i] = inner_to_output[name]
        for i, name in enumerate(node.output):
            if name in inner_to_output:
                node.output[i] = inner_to_output[name]
    del graph.node[:]
    graph.node.extend(keep)
    dead = [init for init in graph.initializer if init.name.startswith(PREFIX)]
    for init in dead:
        graph.initializer.remove(init)
    dead_info = [v for v in graph.value_info if v.name.startswith(PREFIX)]
    for value in dead_info:
        graph.value_info.remove(value)
    _set_meta(model, None)
    onnx.checker.check_model(model)
    return model
