"""Load an ultralytics checkpoint and decide whether this pipeline can serve it.

Served: detection models whose last module is ultralytics' ``Detect`` (YOLOv8, YOLO11, YOLO12,
YOLO26) or ``v10Detect`` (YOLOv10). Everything else (segment, pose, classify, OBB, RT-DETR,
world/open-vocabulary heads) is refused with one line, before any graph is written.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from yolo_triton.errors import StepError

LOG = logging.getLogger(__name__)

SERVED_HEADS = ("Detect", "v10Detect")


@dataclass(frozen=True)
class CheckpointInfo:
    """What the pipeline needs to know about a detector checkpoint."""

    path: Path
    task: str
    head: str
    names: tuple[str, ...]
    stride: int
    has_one2one_head: bool

    @property
    def num_classes(self) -> int:
        return len(self.names)


def load_yolo(path: str | Path, shown_as: str | Path | None = None):
    """Load ``path`` with ultralytics; a missing or unreadable file is a one-line StepError that names
    ``shown_as`` (the user's path, when ``path`` is a private link to it)."""
    path = Path(path)
    shown = str(shown_as or path)
    if not path.is_file():
        raise StepError(
            f"checkpoint not found: {path} (run 'make download' for the yolo11 sizes, put your own .pt there, "
            "or 'make scratch MODEL=yolo11n' for an untrained test checkpoint, which is written and served under "
            "its own name: yolo11n_untrained.pt -> models/yolo11n_untrained/...)"
        )
    from ultralytics import YOLO

    try:
        return YOLO(str(path), task=None)
    except Exception as err:  # ultralytics raises many types for a corrupt file
        text = str(err).strip().replace(str(path), shown).replace("ERROR ❌️ ", "")
        first_line = text.splitlines()[0] if text else type(err).__name__
        raise StepError(f"cannot load {shown} as an ultralytics checkpoint: {first_line}") from err


def inspect(yolo, path: str | Path) -> CheckpointInfo:
    """Checkpoint facts from a loaded ``YOLO``; refuses what the pipeline cannot serve correctly."""
    from ultralytics.nn.tasks import guess_model_task

    model = yolo.model
    # From the architecture (its head module), not from what the checkpoint's train args claim.
    task = guess_model_task(model.yaml if isinstance(getattr(model, "yaml", None), dict) else model)
    head = model.model[-1] if hasattr(model, "model") else None
    head_name = type(head).__name__ if head is not None else type(model).__name__
    if task != "detect" or head_name not in SERVED_HEADS:
        raise StepError(
            f"{path}: task '{task}' with head '{head_name}' is not supported; this pipeline serves detection "
            f"checkpoints with a {' or '.join(SERVED_HEADS)} head (YOLOv8/v10/11/12/26 detect)"
        )
    names = model.names
    ordered = tuple(str(names[i]) for i in sorted(names)) if isinstance(names, dict) else tuple(map(str, names))
    if len(ordered) != head.nc:
        raise StepError(f"{path}: {len(ordered)} class names but the head predicts {head.nc} classes")
    return CheckpointInfo(
        path=Path(path),
        task=task,
        head=head_name,
        names=ordered,
        stride=int(max(model.stride)),
        has_one2one_head=getattr(head, "one2one_cv2", None) is not None,
    )
