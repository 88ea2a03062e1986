"""The shared ``main`` wrapper of every step script: logging set-up and one-line failures."""
from __future__ import annotations

import logging
import signal
import sys
from typing import Callable

from yolo_triton.errors import StepError


def run_step(name: str, body: Callable[[], None], verbose: bool) -> int:
    """Run ``body``; a StepError or a refused value becomes one line on stderr and exit 1."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format=f"[{name}] %(message)s",
                        stream=sys.stderr)
    log = logging.getLogger(name)
    for noisy in ("modelopt", "onnx_graphsurgeon", "ultralytics", "matplotlib", "PIL"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if verbose else logging.WARNING)
    def _terminated(signum, frame):  # make, docker stop and kill send SIGTERM: clean up as for Ctrl-C
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _terminated)
    try:
        body()
    except (StepError, ValueError) as err:
        log.error("error: %s", err)
        return 1
    except KeyboardInterrupt:
        log.error("interrupted; nothing was written in place")
        return 130
    return 0
