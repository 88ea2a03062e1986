"""What the generated configs tell Triton: the EfficientNMS end2end ONNX runs through ONNX Runtime's
TensorRT execution provider (its plugin node in the domain that provider registers), INSTANCE_KIND=cpu
writes KIND_CPU and refuses, before anything is written, what cannot run on a CPU Triton."""
from __future__ import annotations

import onnx
import pytest

from conftest import SCRATCH_NAME, TEST_IMGSZ
from yolo_triton import triton_config as tc
from yolo_triton.errors import StepError
from yolo_triton.settings import defaults

D = defaults()


def _accelerators(config):
    return [(a.name, dict(a.parameters)) for a in config.optimization.execution_accelerators.gpu_execution_accelerator]


def test_efficient_end2end_runs_through_the_tensorrt_provider(fp16_tree, fp32_tree):
    for tree, precision in ((fp16_tree, "FP16"), (fp32_tree, "FP32")):
        model = onnx.load(str(tree.artefact(f"{SCRATCH_NAME}_end2end")))
        (node,) = [n for n in model.graph.node if n.op_type == "EfficientNMS_TRT"]
        assert node.domain == "trt.plugins"
        assert ("trt.plugins", 1) in [(o.domain, o.version) for o in model.opset_import]
        config = tc.parse_config(tree.models / f"{SCRATCH_NAME}_end2end" / "config.pbtxt")
        assert config.platform == tc.ONNX_PLATFORM
        assert [g.kind for g in config.instance_group] == [tc.mc.ModelInstanceGroup.KIND_GPU]
        assert _accelerators(config) == [("tensorrt", {
            "precision_mode": precision, "max_workspace_size_bytes": str(4 << 30),
            "trt_engine_cache_enable": "1",
            "trt_engine_cache_path": f"{D['ORT_TRT_CACHE_DIR']}/{SCRATCH_NAME}_end2end"})]
        # Track A needs no TensorRT: plain ONNX Runtime
        assert not _accelerators(tc.parse_config(tree.models / SCRATCH_NAME / "config.pbtxt"))


def test_cpu_instance_kind_refuses_efficient_nms_and_plans(fp16_tree, tmp_path, restore_logging):
    from write_config import build_config

    artefact = fp16_tree.artefact(f"{SCRATCH_NAME}_end2end")
    with pytest.raises(StepError, match="NMS=onnx"):
        build_config(artefact, 8, 100, None, kind="cpu", workspace_bytes=1 << 30, ort_trt_cache_dir="/c")
    plan = tmp_path / "m_trt" / "1" / "model.plan"
    plan.parent.mkdir(parents=True)
    plan.write_bytes(b"not read")
    with pytest.raises(StepError, match="GPU instances only"):
        build_config(plan, 8, 100, artefact, kind="cpu")
    _, config, _ = build_config(fp16_tree.artefact(SCRATCH_NAME), 8, 100, None, kind="cpu")
    assert [g.kind for g in config.instance_group] == [tc.mc.ModelInstanceGroup.KIND_CPU]


@pytest.mark.parametrize("goal,settings,cause", [
    ("onnx", [], "NMS=efficient"),
    ("trt", ["NMS=onnx"], "trt needs TensorRT"),
    ("dali", ["NMS=onnx"], "dali needs TensorRT"),
])
def test_make_refuses_cpu_combinations_before_building(fp16_tree, goal, settings, cause):
    before = sorted(p for p in fp16_tree.root.rglob("*"))
    result = fp16_tree.make(goal, f"NAMES={SCRATCH_NAME}", f"IMGSZ={TEST_IMGSZ}", "INSTANCE_KIND=cpu", *settings,
                            check=False)
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if "***" in line]
    assert len(errors) == 1 and cause in errors[0] and "INSTANCE_KIND=cpu" in errors[0], result.stderr
    assert sorted(p for p in fp16_tree.root.rglob("*")) == before  # nothing written, stamps included


# ---- the metadata parameter ultralytics' own Triton client reads (served for real: test_served_repository)
def _apply_as_ultralytics(meta: dict) -> dict:
    """ultralytics' own ``BaseBackend.apply_metadata`` (what ``YOLO("http://...")`` runs on the parameter)."""
    from types import SimpleNamespace

    from ultralytics.nn.backends.base import BaseBackend

    backend = SimpleNamespace(dynamic=False)
    BaseBackend.apply_metadata(backend, dict(meta))
    return vars(backend)


def test_ultralytics_metadata_in_track_a_and_plan_configs_refusal_elsewhere(fp16_tree, tmp_path):
    """Track A and its plan (Track B, I/O from the source ONNX here: no TensorRT) carry ultralytics' export
    metadata with the served image size, one image per request and no dynamic shapes; the end2end ONNX
    and plan carry metadata that ultralytics' own apply_metadata refuses with the reason."""
    from write_config import build_config

    track_a = fp16_tree.artefact(SCRATCH_NAME)
    end2end = fp16_tree.artefact(f"{SCRATCH_NAME}_end2end")
    plans = {}
    for name, source in (("m_trt", track_a), ("m_trt_end2end", end2end)):
        plans[name] = tmp_path / name / "1" / "model.plan"
        plans[name].parent.mkdir(parents=True)
        plans[name].write_bytes(b"not read")
    _, onnx_config, names = build_config(track_a, 8, 100, None)
    _, plan_config, _ = build_config(plans["m_trt"], 8, 100, track_a)
    meta = tc.ultralytics_metadata_of(onnx_config)
    assert meta == tc.ultralytics_metadata_of(plan_config)
    applied = _apply_as_ultralytics(meta)
    assert (applied["task"], applied["stride"], applied["imgsz"], applied["batch"], applied["channels"]) == (
        "detect", 32, [TEST_IMGSZ, TEST_IMGSZ], 1, 3)
    assert (applied["end2end"], applied["dynamic"], applied["args"]["nms"]) == (False, False, None)
    assert applied["names"] == dict(enumerate(names)) and len(names) == 80
    assert set(meta) <= set(tc.ULTRALYTICS_KEYS)  # the pipeline's own keys (precision, nms, ...) stay out
    # the guide's format: a Python dict literal in string_value, as ultralytics/utils/triton.py reads it
    assert 'key: "metadata"' in tc.to_text(onnx_config) and "string_value: \"{" in tc.to_text(onnx_config)

    refused = [tc.ultralytics_metadata_of(build_config(end2end, 8, 100, None, workspace_bytes=1 << 30,
                                                       ort_trt_cache_dir="/c")[1]),
               tc.ultralytics_metadata_of(build_config(plans["m_trt_end2end"], 8, 100, end2end)[1])]
    for model, meta in zip((f"{SCRATCH_NAME}_end2end", "m_trt_end2end"), refused):
        with pytest.raises(ValueError, match=f"{model} is not for ultralytics' Triton client: its outputs num_dets"):
            _apply_as_ultralytics(meta)


def test_ultralytics_cannot_use_uint8_input_or_other_outputs():
    from yolo_triton.onnx_io import TensorSpec

    image = TensorSpec("images", "float32", (-1, 3, 320, 320))
    output0 = TensorSpec("output0", "float32", (-1, 84, 2100))
    assert tc.ultralytics_unreadable([image], [output0]) is None
    assert tc.ultralytics_unreadable([TensorSpec("images", "float16", image.shape)], [output0]) is None
    assert "UINT8" in tc.ultralytics_unreadable([TensorSpec("images", "uint8", image.shape)], [output0])
    assert tc.ultralytics_unreadable([image], [TensorSpec("output1", "float32", (-1, 32)), output0]) is None  # seg
    assert "scores" in tc.ultralytics_unreadable([image], [output0, TensorSpec("scores", "float32", (-1, 32))])
    assert "[B, 3, H, W]" in tc.ultralytics_unreadable([TensorSpec("IMAGE_BYTES", "uint8", (-1, -1))], [output0])
    with pytest.raises(ValueError, match="names"):
        tc.ultralytics_metadata({"stride": "32", "task": "detect"}, image)



def test_an_onnx_without_ultralytics_metadata_still_gets_a_config(tmp_path, restore_logging):
    """A graph from elsewhere (class names, but no stride/task): the config is written, and its metadata
    makes ultralytics' client refuse it with the reason, instead of the step failing (multi-GPU fleet tests
    build plans from such graphs)."""
    from doubles.onnx_graphs import plain_detector
    from write_config import write_config

    onnx_path = tmp_path / "m1" / "1" / "model.onnx"
    onnx_path.parent.mkdir(parents=True)
    plain_detector(onnx_path, imgsz=64)
    from yolo_triton.onnx_io import set_metadata

    model = onnx.load(str(onnx_path))
    set_metadata(model, {"names": str({0: "a", 1: "b"})})
    onnx.save(model, str(onnx_path))
    path = write_config(str(onnx_path), 4, 100, kind="cpu", ort_batching_mode="dynamic")
    meta = tc.ultralytics_metadata_of(tc.parse_config(path))
    assert meta is not None and "not for ultralytics' Triton client" in meta["stride"]
    assert "stride" in meta["stride"] and "task" in meta["stride"]
