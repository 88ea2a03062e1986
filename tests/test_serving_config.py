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
