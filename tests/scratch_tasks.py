"""Untrained pose / OBB / segment checkpoints and their ultralytics ONNX exports, for tests/test_task_pose.py,
tests/test_task_obb.py and tests/test_nms_tasks.py (built once per session: conftest's ``task_artefacts``).

``scratch.make_scratch_checkpoint`` builds a ``DetectionModel`` with task ``detect`` whatever the yaml's
head (a pose yaml gives a checkpoint ultralytics loads as a detector), so the task checkpoints are built
here as ultralytics builds them (``YOLO('<arch>.yaml')``: PoseModel / OBBModel) and given varied outputs
by ``scratch.vary_outputs`` (BatchNorm recalibrated on the sample images, class convolutions rescaled).
NOT trained weights; the tests check that what they compare is varied.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from shared_build import built_once

IMGSZ = 320
SEED = 1  # with it every arch here has instances above CONF in both sample images (seed 0: none in zidane.jpg)


def task_checkpoint(arch: str, out_dir: Path) -> Path:
    """``<arch>_untrained.pt`` in ``out_dir`` (e.g. ``yolo11n-pose``, ``yolo26n-obb``)."""
    import torch
    import ultralytics
    from ultralytics import YOLO

    from yolo_triton.scratch import vary_outputs

    torch.manual_seed(SEED)
    yolo = YOLO(f"{arch}.yaml")
    model = yolo.model
    vary_outputs(model, IMGSZ)
    model.args = {"task": yolo.task, "imgsz": IMGSZ}
    path = Path(out_dir) / f"{arch}_untrained.pt"
    torch.save({"model": model, "train_args": {"task": yolo.task, "imgsz": IMGSZ, "model": f"{arch}.yaml"},
                "version": ultralytics.__version__, "untrained": True,
                "description": f"UNTRAINED scratch checkpoint from {arch}.yaml: not trained weights"}, path)
    return path


def export_onnx(pt_path: Path, out_dir: Path, one2one: bool, topk: int) -> Path:
    """ultralytics' ONNX export (dynamic batch, IMGSZ) of a link to ``pt_path`` inside ``out_dir``: the
    one-to-many head (``nms=None``) or the NMS-free one-to-one head (``nms=False``, ``max_det=topk``)."""
    from ultralytics import YOLO

    out_dir.mkdir(parents=True, exist_ok=True)
    link = out_dir / "model.pt"
    link.symlink_to(Path(pt_path).resolve())
    extra = {"max_det": topk} if one2one else {}
    return Path(YOLO(str(link)).export(format="onnx", imgsz=IMGSZ, dynamic=True, simplify=True,
                                       nms=False if one2one else None, verbose=False, **extra))


def run_onnx(path: Path, batch: np.ndarray) -> dict[str, np.ndarray]:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, {session.get_inputs()[0].name: batch})))


def sample_images() -> list[np.ndarray]:
    """ultralytics' sample images (BGR): bus.jpg (portrait) and zidane.jpg (landscape)."""
    from ultralytics.utils import ASSETS

    return [cv2.imread(str(Path(ASSETS) / name)) for name in ("bus.jpg", "zidane.jpg")]


class TaskArtefacts:
    """``task_checkpoint`` per architecture and ``export_onnx`` per (architecture, one2one, topk), each built
    on first use and kept for the session, shared by the xdist workers (conftest's ``task_artefacts``): the
    pose, OBB and task-NMS test modules compare against the same checkpoints and exports instead of building
    their own."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self._checkpoints: dict[str, Path] = {}
        self._exports: dict[tuple[str, bool, int], Path] = {}

    def checkpoint(self, arch: str) -> Path:
        if arch not in self._checkpoints:
            folder = built_once(self.root / arch, lambda f: task_checkpoint(arch, f))
            self._checkpoints[arch] = folder / f"{arch}_untrained.pt"
        return self._checkpoints[arch]

    def export(self, arch: str, one2one: bool, topk: int) -> Path:
        """The ONNX file (dynamic batch and size, simplified); callers must not write to it."""
        key = (arch, one2one, topk)
        if key not in self._exports:
            out = self.root / f"{arch}-{'one2one' if one2one else 'track_a'}-{topk}"
            folder = built_once(out, lambda f: export_onnx(self.checkpoint(arch), f, one2one, topk))
            self._exports[key] = folder / "model.onnx"
        return self._exports[key]
