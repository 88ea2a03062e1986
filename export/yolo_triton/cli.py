"""The shared ``main`` wrapper of every step script: logging set-up and one-line failures.

A :class:`~yolo_triton.errors.StepError` is the user's to fix: one line on stderr (with the traceback
only under ``-v``), exit 1. Anything else is a bug in this code: the full traceback, exit 1.
"""
from __future__ import annotations

import logging
import signal
import sys
from typing import Callable

from yolo_triton.errors import StepError


def sigterm_as_interrupt() -> None:
    """make, docker stop and kill send SIGTERM: raise KeyboardInterrupt, so that ``with``/``finally``
    blocks clean up (stop a started server, remove temp folders) as for Ctrl-C."""
    def _terminated(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _terminated)


def run_step(name: str, body: Callable[[], None], verbose: bool) -> int:
    """Run ``body``; a StepError becomes one line on stderr and exit 1, any other exception a traceback."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format=f"[{name}] %(message)s",
                        stream=sys.stderr)
    log = logging.getLogger(name)
    for noisy in ("modelopt", "onnx_graphsurgeon", "ultralytics", "matplotlib", "PIL"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if verbose else logging.WARNING)
    sigterm_as_interrupt()
    try:
        body()
    except StepError as err:
        log.error("error: %s", err, exc_info=verbose)
        return 1
    except KeyboardInterrupt:
        log.error("interrupted; nothing was written in place")
        return 130
    except Exception as err:  # noqa: BLE001 - a bug: keep the whole story
        log.error("internal error (a bug, not your input): %s: %s", type(err).__name__, err, exc_info=True)
        return 1
    return 0
