"""yolo_triton.cli.run_step: one line for the user's errors, the traceback for bugs and under -v."""
from __future__ import annotations

import logging

import pytest

from yolo_triton.cli import run_step
from yolo_triton.errors import StepError


def _user_error():
    raise StepError("IMGSZ=100 is not a multiple of the model stride 32 (try 96)")


def _bug():
    return int("not a number")  # a ValueError from a programming error


def _errors(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.parametrize("verbose", [False, True])
def test_a_user_error_is_one_line_and_a_traceback_only_under_v(caplog, restore_logging, verbose):
    assert run_step("step", _user_error, verbose) == 1
    (record,) = _errors(caplog)
    assert record.getMessage() == "error: IMGSZ=100 is not a multiple of the model stride 32 (try 96)"
    assert bool(record.exc_info) is verbose


def test_a_bug_keeps_its_traceback(caplog, restore_logging):
    assert run_step("step", _bug, False) == 1
    (record,) = _errors(caplog)
    assert record.getMessage().startswith("internal error (a bug, not your input): ValueError: invalid literal")
    assert record.exc_info is not None and record.exc_info[0] is ValueError
    assert "_bug" in logging.Formatter().formatException(record.exc_info)  # where it happened


def test_a_step_that_works_returns_0(caplog, restore_logging):
    assert run_step("step", lambda: None, False) == 0
    assert _errors(caplog) == []
