"""make promote / make rollback when Triton's answer to the load never comes (issue 21, item 8): a
transport error, a timeout or Ctrl-C while the load runs must leave config.pbtxt as it was, and the
message must say so truthfully. Pure: a tiny ONNX model folder and a Triton double (named so)."""
from __future__ import annotations

from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from yolo_triton import triton_config as tc
from yolo_triton import versions as vs
from yolo_triton.errors import StepError

NAME = "m"


def identity_onnx(path: Path) -> None:
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "identity",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, path)


CONFIG = f'''name: "{NAME}"
platform: "onnxruntime_onnx"
max_batch_size: 8
input [{{ name: "x" data_type: TYPE_FP32 dims: [4] }}]
output [{{ name: "y" data_type: TYPE_FP32 dims: [4] }}]
version_policy {{ specific {{ versions: [1] }} }}
'''


@pytest.fixture
def models(tmp_path) -> Path:
    for version in (1, 2):
        identity_onnx(tmp_path / NAME / str(version) / "model.onnx")
    (tmp_path / NAME / "config.pbtxt").write_text(CONFIG)
    return tmp_path


class TritonDouble:
    """A TEST DOUBLE of versions.Triton: live, serves version 1, and ``load`` raises ``failure``."""

    base = "http://127.0.0.1:1"

    def __init__(self, failure: BaseException):
        self.failure, self.loads = failure, 0

    def live(self) -> bool:
        return True

    def ready_versions(self, model: str) -> list[int]:
        return [1]

    def load(self, model: str):
        self.loads += 1
        raise self.failure


TRANSPORT = StepError("no Triton at http://127.0.0.1:1 (<urlopen error timed out>); start it "
                      "(docker compose up -d triton-api) or set TRITON_HTTP=host:port")


@pytest.mark.parametrize("failure", [TRANSPORT, KeyboardInterrupt()], ids=["transport-or-timeout", "ctrl-c"])
def test_promote_without_an_answer_restores_the_config(models, failure, caplog):
    config_path = models / NAME / "config.pbtxt"
    before = config_path.read_text()
    triton = TritonDouble(failure)
    with pytest.raises(type(failure)) as raised:
        vs.promote(models, NAME, 2, keep=1, triton=triton, force=True)
    assert triton.loads == 1  # the load was sent: the policy had been written before it
    assert config_path.read_text() == before
    assert tc.version_policy(tc.parse_config(config_path)) == {"specific": [1]}
    assert not (models / NAME / vs.ROLLOUT).exists()
    said = str(raised.value) if isinstance(failure, StepError) else caplog.text
    assert "config.pbtxt restored" in said and "make versions" in said, said


def test_rollback_without_an_answer_restores_the_config(models):
    config_path = models / NAME / "config.pbtxt"
    vs.promote(models, NAME, 2, keep=2, triton=None, force=True)  # offline: config only
    promoted = config_path.read_text()
    with pytest.raises(StepError, match="config.pbtxt restored"):
        vs.rollback(models, NAME, TritonDouble(TRANSPORT), force=True)
    assert config_path.read_text() == promoted


# ---- issue 21, item 7: a version Triton cannot load never reaches it, even forced ------------------
def test_a_version_triton_cannot_load_is_refused_even_forced(models):
    config_path = models / NAME / "config.pbtxt"
    before = config_path.read_text()
    onnx_path = models / NAME / "2" / "model.onnx"
    onnx_path.write_bytes(onnx_path.read_bytes()[:40])  # truncated
    triton = TritonDouble(AssertionError("load must not be sent"))
    with pytest.raises(StepError, match="Triton cannot load it.*FORCE=1 does not skip"):
        vs.promote(models, NAME, 2, keep=1, triton=triton, force=True)
    assert triton.loads == 0 and config_path.read_text() == before


class FailingLoadDouble(TritonDouble):
    """A TEST DOUBLE of a Triton whose load of version 2 fails server-side (it passed every local check):
    it keeps serving 1 and lists 2 as UNAVAILABLE with the error, so strict readiness fails."""

    def __init__(self):
        super().__init__(AssertionError("unused"))

    def load(self, model: str):
        self.loads += 1
        return False, "load failed for model 'm': version 2 is at UNAVAILABLE state: Internal: out of memory;"

    def failed_versions(self, model: str) -> list[int]:
        return [2]

    def ready(self) -> bool:
        return False


def test_a_failed_load_says_the_server_stays_not_ready_and_how_to_recover(models):
    config_path = models / NAME / "config.pbtxt"
    before = config_path.read_text()
    with pytest.raises(StepError) as raised:
        vs.promote(models, NAME, 2, keep=1, triton=FailingLoadDouble(), force=True)
    message = str(raised.value)
    assert "config.pbtxt restored" in message and "serves versions [1]" in message
    assert "reports not ready until it restarts" in message and "versions [2]" in message
    assert config_path.read_text() == before
