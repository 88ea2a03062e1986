"""Artefacts appear whole or not at all, and a failed step leaves no folder behind in the repository.

Triton treats every folder of its model repository as a model; with ``--load-model=*`` and strict
readiness (docker-compose.yml) a folder holding only a half-written file keeps the server from ever
reporting ready. So a step writes ``<target>.tmp`` beside its target (same file system: the rename is
atomic) and renames it into place; on any failure, Ctrl-C or SIGTERM included (see yolo_triton.cli),
it removes the temporary file and every folder it had to create for it.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def tmp_path(target: Path) -> Path:
    return target.with_name(target.name + ".tmp")


@contextmanager
def atomic_output(target: str | Path) -> Iterator[Path]:
    """Yield the temporary path to write; rename it onto ``target`` when the block succeeds."""
    target = Path(target)
    missing = [p for p in (target.parent, *target.parent.parents) if not p.exists()]
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_path(target)
    try:
        yield tmp
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        for folder in missing:  # deepest first
            try:
                folder.rmdir()
            except OSError:
                break  # not empty: something else lives there now
        raise
