"""The task registry: ``for_task(name)`` returns the :class:`task_base.Task` of a task name."""
from __future__ import annotations

from importlib import import_module

from yolo_triton.task_base import TASK_NAMES, Task

_MODULES = {"detect": "task_detect", "segment": "task_segment", "pose": "task_pose", "obb": "task_obb",
            "classify": "task_classify"}


def for_task(name: str) -> Task:
    """The Task of ``name`` (one of TASK_NAMES); anything else is a ValueError naming the choices."""
    if name not in TASK_NAMES:
        raise ValueError(f"unknown task '{name}'; one of {', '.join(TASK_NAMES)}")
    module = import_module(f"yolo_triton.{_MODULES[name]}")
    return module.TASK
