"""Artefacts built once per test session and shared by every pytest-xdist worker (``make test`` runs two).

A session fixture of one worker is not seen by the other: each would build the same checkpoints and exports
again. ``built_once`` keeps them in the session's folder that both workers' temporary folders live in, under
a file lock: the first caller builds, the others wait for it and reuse the result.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Callable

from filelock import FileLock

BUILT = ".built"


def shared_root(tmp_path_factory) -> Path:
    """This session's folder common to all xdist workers (each worker's basetemp is ``<it>/gwN``); without
    xdist, the session's own basetemp."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def built_once(folder: Path, build: Callable[[Path], object]) -> Path:
    """``folder`` once ``build(folder)`` has completed in some worker of this session. A folder left by a build
    that failed (no marker) is removed and built again, so the failure is reported by every test that needs it."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(f"{folder}.lock"):
        if not (folder / BUILT).is_file():
            if folder.exists():
                shutil.rmtree(folder)
            folder.mkdir()
            build(folder)
            (folder / BUILT).touch()
    return folder
