"""Atomic file writing, the one way every step writes its output: a temporary name beside the target,
then a rename, so a crash or a kill never leaves a half-written file under the final name (which Make
would take as built).

A failed write also removes the folders it had to create: Triton treats every folder of its model
repository as a model, and with ``--load-model=*`` and strict readiness (docker-compose.yml) a folder
holding no model keeps the server from ever reporting ready. Ctrl-C and SIGTERM count as failures
(yolo_triton.cli turns SIGTERM into KeyboardInterrupt)."""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def tmp_name(path: str | Path, suffix: str = "") -> Path:
    """``model.onnx`` -> ``model.onnx.<pid>.tmp<suffix>`` in the same directory (same file system).

    ``suffix`` keeps an extension for writers that choose the format from it (``.png`` for OpenCV)."""
    path = Path(path)
    return path.with_name(f"{path.name}.{os.getpid()}.tmp{suffix}")


@contextmanager
def atomic_path(path: str | Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path to write; on success it is renamed over ``path``, on failure removed."""
    path = Path(path)
    missing = [p for p in (path.parent, *path.parent.parents) if not p.exists()]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_name(path, suffix)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        for folder in missing:  # deepest first; stop at the first that something else now uses
            try:
                folder.rmdir()
            except OSError:
                break
        raise
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: str | Path, data: bytes, fsync: bool = False) -> Path:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            handle.write(data)
            if fsync:
                handle.flush()
                os.fsync(handle.fileno())
    return Path(path)


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode())
