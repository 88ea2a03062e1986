"""Load an ultralytics checkpoint, name its task from its head module, and decide whether this pipeline
can serve it.

Served, by the class of the last module (ultralytics 8.4, ``ultralytics.nn.modules.head``; exact class
names, so a subclass with other outputs is not taken for its parent):

=========  ===============================  ====================================================
task       heads                            families
=========  ===============================  ====================================================
detect     ``Detect``, ``v10Detect``        YOLOv8, YOLOv10, YOLO11, YOLO12, YOLO26
segment    ``Segment``, ``Segment26``       YOLOv8/11/12-seg, YOLO26-seg
pose       ``Pose``, ``Pose26``             YOLOv8/11/12-pose, YOLO26-pose (any ``kpt_shape``)
obb        ``OBB``, ``OBB26``               YOLOv8/11/12-obb, YOLO26-obb
classify   ``Classify``                     YOLOv8/11/12/26-cls
=========  ===============================  ====================================================

Everything else (RT-DETR, YOLO-World, YOLOE, depth and semantic-segmentation heads) is refused with one
line, before any graph is written. :func:`inspect` returns the head's facts as a :class:`CheckpointInfo`
whose ``shape`` is the :class:`yolo_triton.task_base.TaskShape` every task module decodes with (class
count, mask coefficients of a segment head, keypoint shape of a pose head), and whether the head has a
one-to-one (NMS-free) branch (YOLO26, YOLOv10: ``NMS=free``).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from yolo_triton.errors import StepError
from yolo_triton.task_base import TaskShape

LOG = logging.getLogger(__name__)

# head class name -> task (tests/test_tasks_export.py checks every class of ultralytics' head module is
# either here or refused)
HEAD_TASKS = {
    "Detect": "detect", "v10Detect": "detect",
    "Segment": "segment", "Segment26": "segment",
    "Pose": "pose", "Pose26": "pose",
    "OBB": "obb", "OBB26": "obb",
    "Classify": "classify",
}
SERVED_HEADS = tuple(HEAD_TASKS)


@dataclass(frozen=True)
class CheckpointInfo:
    """What the pipeline needs to know about a checkpoint."""

    path: Path
    task: str  # task_base.TASK_NAMES
    head: str  # the head's class name, e.g. "Segment26"
    names: tuple[str, ...]
    stride: int  # the largest stride (1 for classify)
    has_one2one_head: bool
    shape: TaskShape

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


def head_module(model):
    """The last module of an ultralytics model (its head), or None for a foreign model."""
    layers = getattr(model, "model", None)
    try:
        return layers[-1]
    except (TypeError, IndexError, KeyError):
        return None


def task_shape(task: str, head, path: str | Path) -> TaskShape:
    """The TaskShape of a served ``head`` of ``task``."""
    if task == "classify":
        return TaskShape(task, int(head.linear.out_features))
    if task == "segment":
        return TaskShape(task, int(head.nc), num_masks=int(head.nm))
    if task == "pose":
        kpt_shape = tuple(int(v) for v in head.kpt_shape)
        if len(kpt_shape) != 2 or kpt_shape[0] < 1 or kpt_shape[1] not in (2, 3):
            raise StepError(f"{path}: pose head with kpt_shape {list(head.kpt_shape)}; expected [keypoints, 2 or 3]")
        return TaskShape(task, int(head.nc), kpt_shape=kpt_shape)
    return TaskShape(task, int(head.nc))


def inspect(yolo, path: str | Path) -> CheckpointInfo:
    """Checkpoint facts from a loaded ``YOLO``; refuses (one line) a head the pipeline cannot serve."""
    model = yolo.model
    head = head_module(model)
    head_name = type(head).__name__ if head is not None else type(model).__name__
    task = HEAD_TASKS.get(head_name)
    if task is None:
        from ultralytics.nn.tasks import guess_model_task

        claimed = guess_model_task(model.yaml if isinstance(getattr(model, "yaml", None), dict) else model)
        raise StepError(
            f"{path}: head '{head_name}' (task '{claimed}') is not supported; this pipeline serves the heads "
            f"{', '.join(SERVED_HEADS)} (YOLOv8/v10/11/12/26 detect, segment, pose, obb, classify)"
        )
    shape = task_shape(task, head, path)
    names = model.names
    ordered = tuple(str(names[i]) for i in sorted(names)) if isinstance(names, dict) else tuple(map(str, names))
    if len(ordered) != shape.num_classes:
        raise StepError(f"{path}: {len(ordered)} class names but the head predicts {shape.num_classes} classes")
    return CheckpointInfo(
        path=Path(path),
        task=task,
        head=head_name,
        names=ordered,
        stride=int(max(model.stride)),
        has_one2one_head=getattr(head, "one2one_cv2", None) is not None,
        shape=shape,
    )
