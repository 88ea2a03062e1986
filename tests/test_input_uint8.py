"""INPUT_DTYPE=uint8: the image input is UINT8 and the graph casts and divides by 255 itself.

The promise is bit-identity: a uint8 graph fed the letterboxed pixels returns exactly (``np.array_equal``)
what the float32 graph returns for the client's own ``/ 255`` values (postprocess.to_model_input), for
every precision (FP32, FP16 = AutoCast with FP32 I/O, INT8 = Q/DQ), Track A and end2end (NMS=onnx,
NMS=efficient up to its plugin, NMS=free), all run by ONNX Runtime on the CPU. The artefacts are the ones
``make INPUT_DTYPE=uint8`` writes from UNTRAINED scratch checkpoints with varied outputs (make scratch);
their float32 twins are the same files with the Cast and Div taken out again (:func:`float_twin`), and for
FP32 also the independent ``INPUT_DTYPE=float32`` export of the same checkpoint.
"""
from __future__ import annotations

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import SCRATCH_NAME, TEST_IMGSZ, Tree
from yolo_triton import client as cl
from yolo_triton import postprocess as pp
from yolo_triton import triton_config as tc
from yolo_triton.errors import StepError
from yolo_triton.input_uint8 import uint8_input
from yolo_triton.nms_graph import add_nms, pre_nms_model
from yolo_triton.onnx_io import model_io as onnx_io_of
from yolo_triton.onnx_io import onnx_io, onnx_metadata
from yolo_triton.settings import defaults

IMGSZ = TEST_IMGSZ


def session(model: onnx.ModelProto) -> ort.InferenceSession:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def uint8_entry(graph: onnx.GraphProto) -> tuple[onnx.NodeProto, onnx.NodeProto]:
    """The Cast of the graph input and the Div of its result (wherever a later toposort put them)."""
    image = graph.input[0].name
    (cast,) = [n for n in graph.node if n.op_type == "Cast" and list(n.input) == [image]]
    (div,) = [n for n in graph.node if n.op_type == "Div" and n.input[0] == cast.output[0]]
    assert [n for n in graph.node if image in n.input] == [cast]
    return cast, div


def float_twin(model: onnx.ModelProto) -> onnx.ModelProto:
    """The same graph with the uint8 entry (Cast, Div, the 255 constant) taken out: a float32 input again."""
    twin = onnx.ModelProto()
    twin.CopyFrom(model)
    graph = twin.graph
    cast, div = uint8_entry(graph)
    image = graph.input[0].name
    scaled, scale = div.output[0], div.input[1]
    kept_nodes = [n for n in graph.node if n.name not in (cast.name, div.name)]
    del graph.node[:]
    graph.node.extend(kept_nodes)
    for node in graph.node:
        for i, value in enumerate(node.input):
            if value == scaled:
                node.input[i] = image
    kept = [init for init in graph.initializer if init.name != scale]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    graph.input[0].type.tensor_type.elem_type = TensorProto.FLOAT
    return twin


@pytest.fixture(scope="module")
def pixels(sample_images):
    """bus.jpg and zidane.jpg letterboxed: uint8 RGB CHW, and the float32 /255 batch a client sends."""
    u8, _ = pp.letterbox_batch([cv2.imread(str(p)) for p in sample_images[:2]], IMGSZ, dtype="uint8")
    return u8, pp.to_model_input(u8, "float32")


def assert_identical(uint8_model: onnx.ModelProto, float_model: onnx.ModelProto, pixels) -> list[np.ndarray]:
    u8, f32 = pixels
    got = session(uint8_model).run(None, {uint8_model.graph.input[0].name: u8})
    want = session(float_model).run(None, {float_model.graph.input[0].name: f32})
    assert len(got) == len(want)
    for a, b in zip(got, want):
        assert a.dtype == b.dtype and a.shape == b.shape
        assert np.array_equal(a, b)
    return got


# ---- the graph function on a tiny graph (fast) ---------------------------------------------------
def tiny_graph(input_dtype=TensorProto.FLOAT) -> onnx.ModelProto:
    """images -> Conv and images -> ReduceMax (two consumers), both outputs."""
    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w")
    axes = numpy_helper.from_array(np.array([1, 2, 3], np.int64), "axes")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["images", "w"], ["conv"], pads=[1, 1, 1, 1]),
         helper.make_node("ReduceMax", ["images", "axes"], ["peak"], keepdims=0)],
        "tiny", [helper.make_tensor_value_info("images", input_dtype, ["batch", 3, 8, 8])],
        [helper.make_tensor_value_info("conv", TensorProto.FLOAT, ["batch", 4, 8, 8]),
         helper.make_tensor_value_info("peak", TensorProto.FLOAT, ["batch"])], [weight, axes])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def test_every_consumer_reads_the_scaled_input_and_results_are_bit_identical():
    model = uint8_input(tiny_graph())
    onnx.checker.check_model(model, full_check=True)
    graph = model.graph
    assert graph.input[0].type.tensor_type.elem_type == TensorProto.UINT8
    assert [d.dim_param or d.dim_value for d in graph.input[0].type.tensor_type.shape.dim] == ["batch", 3, 8, 8]
    cast, div, *rest = graph.node
    assert (cast.op_type, div.op_type) == ("Cast", "Div")
    assert helper.get_attribute_value(cast.attribute[0]) == TensorProto.FLOAT
    scale = {i.name: numpy_helper.to_array(i) for i in graph.initializer}[div.input[1]]
    assert scale.dtype == np.float32 and scale.shape == () and scale == 255
    assert all(n.input[0] == div.output[0] for n in rest) and "images" not in {i for n in rest for i in n.input}
    pixels = np.random.default_rng(1).integers(0, 256, (2, 3, 8, 8), dtype=np.uint8)
    assert_identical(model, tiny_graph(), (pixels, pp.to_model_input(pixels, "float32")))
    # every uint8 value, once: x / 255 in the graph == the client's float32 / 255
    every = np.arange(256, dtype=np.uint8).repeat(3)[: 3 * 8 * 8].reshape(1, 3, 8, 8)
    every[0, 0, 0, :] = [0, 1, 127, 128, 200, 254, 255, 3]
    assert_identical(model, tiny_graph(), (every, pp.to_model_input(every, "float32")))


def test_refusals_are_one_line():
    with pytest.raises(StepError, match="expected float32"):
        uint8_input(uint8_input(tiny_graph()))  # already uint8
    two = tiny_graph()
    two.graph.input.append(helper.make_tensor_value_info("extra", TensorProto.FLOAT, [1]))
    with pytest.raises(StepError, match="one image input"):
        uint8_input(two)


def test_to_model_input_is_the_one_conversion():
    pixels = np.arange(256, dtype=np.uint8).reshape(1, 1, 16, 16)
    assert pp.to_model_input(pixels, "uint8") is pixels and pp.to_model_input(pixels, "UINT8") is pixels
    for name in ("float32", "FP32"):
        out = pp.to_model_input(pixels, name)
        assert out.dtype == np.float32 and np.array_equal(out, pixels.astype(np.float32) / np.float32(255))
    with pytest.raises(ValueError, match="uint8 pixels"):
        pp.to_model_input(pixels.astype(np.float32), "float32")
    with pytest.raises(ValueError, match="FP16"):
        pp.to_model_input(pixels, "FP16")
    image = np.random.default_rng(2).integers(0, 256, (50, 70, 3), dtype=np.uint8)
    f32, infos = pp.letterbox_batch([image], 64)
    u8, infos_u8 = pp.letterbox_batch([image], 64, "UINT8")
    assert u8.dtype == np.uint8 and infos == infos_u8
    assert np.array_equal(f32, pp.letterbox(image, 64)[0][None]) and np.array_equal(f32, pp.to_model_input(u8, "FP32"))


class _ConfigOnlyClientFake:
    def __init__(self, configs):
        self.configs = configs

    def get_model_config(self, name):
        return self.configs[name]


def test_client_tells_uint8_images_from_encoded_bytes_by_rank():
    outputs = [{"name": "output0", "data_type": "TYPE_FP32", "dims": [84, 2100]}]
    e2e = [{"name": n, "data_type": "TYPE_FP32", "dims": [1]} for n in cl.END2END_OUTPUTS]
    fake = _ConfigOnlyClientFake({
        "a": {"name": "a", "max_batch_size": 8, "output": outputs,
              "input": [{"name": "images", "data_type": "TYPE_UINT8", "dims": [3, 320, 320]}]},
        "e": {"name": "e", "max_batch_size": 8, "output": e2e,
              "input": [{"name": "images", "data_type": "TYPE_UINT8", "dims": [3, 320, 320]}]},
        "bytes": {"name": "bytes", "max_batch_size": 8, "output": e2e,
                  "input": [{"name": "IMAGE_BYTES", "data_type": "TYPE_UINT8", "dims": [-1]}]},
        "odd": {"name": "odd", "max_batch_size": 8, "output": e2e,
                "input": [{"name": "images", "data_type": "TYPE_UINT8", "dims": [3, 320]}]},
    })
    a, e, encoded = (cl.describe_model(fake, n) for n in ("a", "e", "bytes"))
    assert (a.kind, a.input_dtype, a.imgsz) == (cl.KIND_OUTPUT0, "UINT8", 320)
    assert (e.kind, e.input_dtype, e.imgsz) == (cl.KIND_END2END, "UINT8", 320)
    assert encoded.kind == cl.KIND_ENCODED
    with pytest.raises(cl.ClientError, match=r"\[3, S, S\]"):
        cl.describe_model(fake, "odd")


def test_ensemble_refuses_a_dali_step_of_the_other_input_dtype():
    from yolo_triton import ensemble as ens

    detector = tc.mc.ModelConfig(name="det", max_batch_size=8)
    detector.input.add(name="images", data_type=tc.mc.TYPE_UINT8, dims=[3, 320, 320])
    for name in cl.END2END_OUTPUTS:
        detector.output.add(name=name, data_type=tc.mc.TYPE_FP32, dims=[1])
    uint8_pre = ens.preprocess_config("pre", 320, 8, 100, 2, input_dtype="uint8")
    assert ens.ensemble_config("ens", uint8_pre, detector).ensemble_scheduling.step[1].model_name == "det"
    with pytest.raises(ens.EnsembleError, match="INPUT_DTYPE"):
        ens.ensemble_config("ens", ens.preprocess_config("pre", 320, 8, 100, 2), detector)


# ---- the artefacts make writes (slow: exports from the scratch checkpoint) ----------------------
@pytest.fixture(scope="module")
def uint8_trees(tmp_path_factory, scratch_weights, fp32_tree):
    """``make INPUT_DTYPE=uint8 NMS=onnx onnx`` at each precision."""
    from ultralytics.utils import ASSETS

    trees = {}
    for precision in ("fp32", "fp16", "int8"):
        tree = Tree(tmp_path_factory.mktemp(f"uint8_{precision}"))
        tree.weights.mkdir()
        (tree.weights / scratch_weights.name).symlink_to(scratch_weights)
        extra = [f"CALIB_DIR={ASSETS}"] if precision == "int8" else []
        tree.make("onnx", f"NAMES={SCRATCH_NAME}", f"PRECISION={precision}", f"IMGSZ={IMGSZ}", "NMS=onnx",
                  "INPUT_DTYPE=uint8", "INSTANCE_KIND=cpu", *extra)
        trees[precision] = tree
    return trees


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_exported_uint8_graphs_equal_their_float32_twins(uint8_trees, pixels, precision):
    tree = uint8_trees[precision]
    for kind in ("", "_end2end"):
        path = tree.artefact(SCRATCH_NAME + kind)
        model = onnx.load(str(path))
        (image,), _ = onnx_io(path)
        assert (image.name, image.dtype, image.shape) == ("images", "uint8", (-1, 3, IMGSZ, IMGSZ))
        meta = onnx_metadata(path)
        assert (meta["input_dtype"], meta["precision"]) == ("uint8", precision)
        # after the precision step: the entry stays float32 and feeds what the float32 graph began with
        # (FP16 and INT8 graphs: their Cast to float16, before AutoCast's nodes or the first QuantizeLinear)
        _, div = uint8_entry(model.graph)
        consumers = [n for n in model.graph.node if div.output[0] in n.input]
        assert {n.op_type for n in consumers} == {"fp32": {"Conv"}, "fp16": {"Cast"}, "int8": {"Cast"}}[precision]
        if precision != "fp32":
            assert {helper.get_attribute_value(a) for n in consumers for a in n.attribute} == {TensorProto.FLOAT16}
        got = assert_identical(model, float_twin(model), pixels)
        if not kind:  # varied outputs: many distinct scores, so sameness means something
            assert np.unique(got[0][:, 4:]).size > 1000
        elif precision != "int8":  # (INT8 moves this untrained net's rescaled scores below CONF: test_int8.py)
            assert int(got[0].sum()) > 10, "the scratch model should detect something"
        config = tc.parse_config(path.parent.parent / "config.pbtxt")
        assert (config.input[0].data_type, list(config.input[0].dims)) == (tc.mc.TYPE_UINT8, [3, IMGSZ, IMGSZ])


@pytest.mark.slow
def test_uint8_export_equals_the_float32_export(uint8_trees, fp32_tree, pixels):
    """Two independent exports of the same checkpoint, INPUT_DTYPE=uint8 and float32: same outputs, bit for
    bit (Track A, and the NMS=efficient end2end up to its TensorRT plugin: boxes and scores)."""
    tree = uint8_trees["fp32"]
    assert_identical(onnx.load(str(tree.artefact(SCRATCH_NAME))), onnx.load(str(fp32_tree.artefact(SCRATCH_NAME))),
                     pixels)
    # the NMS=efficient surgery (add_nms.py's function) on the uint8 Track A, as make does it
    d = defaults()
    efficient = add_nms(onnx.load(str(tree.artefact(SCRATCH_NAME))), "efficient", float(d["CONF"]), float(d["IOU"]),
                        int(d["TOPK"]), int(d["AGNOSTIC"]))
    assert onnx_io_of(efficient)[0][0].dtype == "uint8"
    assert any(n.op_type == "EfficientNMS_TRT" for n in efficient.graph.node)
    reference = onnx.load(str(fp32_tree.artefact(f"{SCRATCH_NAME}_end2end")))
    assert_identical(pre_nms_model(efficient), pre_nms_model(reference), pixels)


@pytest.mark.slow
def test_nms_free_end2end_uint8(tmp_path, pixels, scratch_checkpoint):
    """YOLO26's one-to-one export (NMS=free) takes uint8 too, and equals its float32 twin."""
    tree = Tree(tmp_path)
    name = "yolo26n_untrained"
    tree.weights.mkdir()
    (tree.weights / f"{name}.pt").symlink_to(scratch_checkpoint("yolo26n"))
    tree.make(f"{tree.models}/{name}_end2end/1/model.onnx", "NMS=free", "PRECISION=fp32", f"IMGSZ={IMGSZ}",
              "INPUT_DTYPE=uint8")
    path = tree.artefact(f"{name}_end2end")
    assert onnx_metadata(path)["input_dtype"] == "uint8" and onnx_io(path)[0][0].dtype == "uint8"
    model = onnx.load(str(path))
    got = assert_identical(model, float_twin(model), pixels)
    assert int(got[0].sum()) > 10
