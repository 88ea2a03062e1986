"""Option combinations are refused in one place (yolo_triton.options), in one line, before any work."""
from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import REPO
from yolo_triton.errors import StepError
from yolo_triton.options import RULES, Options, check_options, violations


@pytest.mark.parametrize("known,needle", [
    ({"nms": "efficient", "instance_kind": "cpu"}, "NMS=efficient puts TensorRT's EfficientNMS_TRT plugin"),
    ({"nms": "free", "has_one2one_head": False}, "NMS=free needs a one-to-one (NMS-free) head"),
    ({"precision": "int8", "calib_dir": ""}, "PRECISION=int8 needs calibration images"),
    ({"imgsz": 100, "stride": 32}, "IMGSZ=100 is not a positive multiple of the model stride 32 (try 96)"),
    ({"imgsz": 640, "stride": 64}, None),
])
def test_each_rule(known, needle):
    if needle is None:
        assert check_options(**known) == Options(**known)
    else:
        with pytest.raises(StepError, match=rf"^{needle.replace('(', '[(]').replace(')', '[)]')}"):
            check_options(**known)


@pytest.mark.parametrize("known", [
    {"nms": "onnx", "instance_kind": "cpu"}, {"nms": "efficient", "instance_kind": "gpu"},
    {"nms": "free", "has_one2one_head": True}, {"precision": "int8", "calib_dir": "data/calib"},
    {"precision": "fp16", "calib_dir": ""},
    {"nms": "efficient"}, {"precision": "int8"},  # a rule whose facts are not all known is not applied
])
def test_good_or_unknown_combinations_pass(known):
    check_options(**known)


def test_every_violation_in_one_line():
    options = Options(nms="efficient", instance_kind="cpu", precision="int8", calib_dir="")
    assert len(violations(options)) == 2
    with pytest.raises(StepError) as err:
        check_options(nms="efficient", instance_kind="cpu", precision="int8", calib_dir="")
    text = str(err.value)
    assert "\n" not in text and "NMS=efficient puts" in text and "PRECISION=int8 needs" in text


def test_rules_name_only_known_options():
    assert all(set(rule.needs) <= set(Options.__dataclass_fields__) for rule in RULES)
    with pytest.raises(TypeError, match="unknown options"):
        check_options(instance="cpu")


def test_export_models_refuses_a_bad_combination_before_running_make(tmp_path):
    cmd = [sys.executable, str(REPO / "export/export_models.py"), "--models", "small", "--formats", "onnx",
           "--models-dir", str(tmp_path / "models"), "PRECISION=int8", f"BUILD_DIR={tmp_path / 'b'}"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip() == ("error: PRECISION=int8 needs calibration images: set CALIB_DIR to a folder "
                                     "of representative images")
    assert result.stdout == "" and not (tmp_path / "models").exists() and not (tmp_path / "b").exists()
