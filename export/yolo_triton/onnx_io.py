"""Read the inputs, outputs and metadata of an ONNX file (what configs are generated from)."""
from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import onnx
from onnx import helper


@dataclass(frozen=True)
class TensorSpec:
    """One graph input or output: numpy dtype name and full shape (batch included, -1 = dynamic)."""

    name: str
    dtype: str
    shape: tuple[int, ...]


def _spec(value_info: onnx.ValueInfoProto) -> TensorSpec:
    tensor_type = value_info.type.tensor_type
    dtype = helper.tensor_dtype_to_np_dtype(tensor_type.elem_type).name
    shape = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in tensor_type.shape.dim)
    return TensorSpec(value_info.name, dtype, shape)


def model_io(model: onnx.ModelProto) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """Graph inputs (initializers excluded) and outputs of a loaded model."""
    initializers = {init.name for init in model.graph.initializer}
    inputs = [_spec(v) for v in model.graph.input if v.name not in initializers]
    return inputs, [_spec(v) for v in model.graph.output]


def onnx_io(path: str | Path) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """Inputs and outputs of the ONNX file at ``path`` (weights are not loaded)."""
    return model_io(onnx.load(str(path), load_external_data=False))


def metadata(model: onnx.ModelProto) -> dict[str, str]:
    """The model's ``metadata_props`` (ultralytics writes names, stride, task, imgsz, end2end)."""
    return {prop.key: prop.value for prop in model.metadata_props}


def onnx_metadata(path: str | Path) -> dict[str, str]:
    return metadata(onnx.load(str(path), load_external_data=False))


def class_names(meta: dict[str, str]) -> list[str]:
    """Class names in id order from ultralytics' ``names`` metadata (a dict literal)."""
    if "names" not in meta:
        raise KeyError("ONNX metadata has no 'names' entry (was it exported by this pipeline?)")
    names = ast.literal_eval(meta["names"])
    return [str(names[i]) for i in sorted(names)]


def set_metadata(model: onnx.ModelProto, values: dict[str, str]) -> None:
    """Replace ``metadata_props`` with ``values`` (keys sorted, for a stable file)."""
    del model.metadata_props[:]
    for key in sorted(values):
        model.metadata_props.add(key=key, value=str(values[key]))


def onnx_precision(model: onnx.ModelProto) -> str:
    """What the graph itself asks for: int8 (Q/DQ), fp16 (float16 tensors or Casts), else fp32. The FP16
    output Casts of OUTPUT_DTYPE=float16 (yolo_triton.output_dtype) do not count: they round the answer,
    the network runs at the precision before them."""
    from yolo_triton.output_dtype import float32_outputs, output_dtype_of

    if output_dtype_of(model) == "float16":
        plain = onnx.ModelProto()
        plain.CopyFrom(model)
        model = float32_outputs(plain)
    graph = model.graph
    ops = {node.op_type for node in graph.node}
    if "QuantizeLinear" in ops or "DequantizeLinear" in ops:
        return "int8"
    fp16 = onnx.TensorProto.FLOAT16
    if any(init.data_type == fp16 for init in graph.initializer):
        return "fp16"
    for value in list(graph.value_info) + list(graph.input) + list(graph.output):
        if value.type.tensor_type.elem_type == fp16:
            return "fp16"
    for node in graph.node:
        if node.op_type == "Cast" and any(a.name == "to" and a.i == fp16 for a in node.attribute):
            return "fp16"
        if node.op_type == "Constant" and any(a.name == "value" and a.t.data_type == fp16
                                              for a in node.attribute):
            return "fp16"
    return "fp32"


def has_efficient_nms(model: onnx.ModelProto) -> bool:
    return any(node.op_type == "EfficientNMS_TRT" for node in model.graph.node)


def cpu_session(model):
    """An onnxruntime CPU session of an in-memory ONNX model (errors only in its log)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
