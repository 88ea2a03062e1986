"""The real parts the served tests need (tritonserver, Triton's ONNX Runtime backend) are looked for,
and under CI=true a missing one FAILS: a clone without them must not pass green having served nothing."""
from __future__ import annotations

import pytest

import conftest
from yolo_triton import triton_server as ts


def _no_backend(monkeypatch):
    monkeypatch.setattr(ts, "find_onnxruntime_backend", lambda: None)


def _no_server(monkeypatch):
    def missing():
        raise ts.ServerError("nvidia-pytriton is not installed (make setup installs it): no tritonserver here")
    monkeypatch.setattr(ts, "tritonserver_dir", missing)


@pytest.mark.parametrize("missing", [_no_backend, _no_server], ids=["no-backend", "no-tritonserver"])
def test_missing_real_triton_fails_under_ci(monkeypatch, missing):
    missing(monkeypatch)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(BaseException) as outcome:  # a skip must not escape as a skip: it would pass
        conftest.skip_without_real_triton()
    assert outcome.type is pytest.fail.Exception and "required in CI" in str(outcome.value), outcome


@pytest.mark.parametrize("missing", [_no_backend, _no_server], ids=["no-backend", "no-tritonserver"])
def test_missing_real_triton_skips_on_a_developer_machine(monkeypatch, missing):
    missing(monkeypatch)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception):
        conftest.skip_without_real_triton()
