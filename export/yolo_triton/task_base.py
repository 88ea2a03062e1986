"""One small interface for every YOLO task (detect, segment, pose, obb, classify).

Each task has one module (``task_detect``, ``task_segment``, ``task_pose``, ``task_obb``,
``task_classify``) with a :class:`Task` subclass; ``tasks.for_task(name)`` picks it from the task that
``checkpoint.inspect`` reports (or that a model's ONNX / Triton ``metadata`` names). Client, validation
and drawing call only this interface, so ``postprocess`` and ``validate`` grow no per-task branch.

Results are in original-image pixels:

* :class:`Instances` (detect, segment, pose, obb): ``postprocess.Detections`` (corner boxes, scores,
  classes) plus, by task, ``masks`` ``[n, H, W]`` bool at the original image size, ``keypoints``
  ``[n, K, 3]`` (x, y, confidence; confidence 1.0 where the head predicts none) or ``xywhr`` ``[n, 5]``
  (centre, size, angle in radians; ``boxes`` is then the axis-aligned hull of the rotated box).
* :class:`Classification` (classify): the class probabilities of one image.

Layouts of the outputs a task decodes (``Task.decode``'s ``layout``):

* ``track_a``: ultralytics' raw one-to-many head (``output0`` ``[B, 4+nc+extra, anchors]``, segment's
  prototypes ``output1``); NMS runs in the client.
* ``one2one``: ultralytics' NMS-free export (``nms=False`` on a YOLO26 / v10 head): ``output0``
  ``[B, max_det, 6+extra]`` (segment: + prototypes ``output1``).
* ``end2end``: our graph's NMS outputs ``num_dets, det_boxes, det_scores, det_classes`` plus the
  task's ``settings.END2END_TASK_OUTPUTS``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from yolo_triton.postprocess import Detections, LetterboxInfo

TASK_NAMES = ("detect", "segment", "pose", "obb", "classify")
LAYOUTS = ("track_a", "one2one", "end2end")


@dataclass(frozen=True)
class TaskShape:
    """The head facts a task needs: the task, its class count and its extra per-anchor values."""

    task: str
    num_classes: int
    num_masks: int = 0  # segment: mask coefficients per anchor = prototype channels (32)
    kpt_shape: tuple[int, int] | None = None  # pose: (keypoints, 2 or 3 values each)

    @property
    def extra_channels(self) -> int:
        """Values per anchor after the 4 box values and the class scores in a ``track_a`` output0."""
        if self.task == "segment":
            return self.num_masks
        if self.task == "pose":
            return int(np.prod(self.kpt_shape))
        if self.task == "obb":
            return 1
        return 0


@dataclass(frozen=True)
class NmsParams:
    """What the client-side NMS uses (defaults from export/defaults.mk, passed down explicitly)."""

    conf: float
    iou: float
    topk: int
    mode: str = "ultralytics"  # postprocess.MODES
    agnostic: bool = False


@dataclass
class Instances(Detections):
    """Detections of one image with the task's extras (see the module docstring)."""

    masks: np.ndarray | None = None
    keypoints: np.ndarray | None = None
    xywhr: np.ndarray | None = None
    gain: float | None = None  # the image's letterbox gain (input px per original px): Tolerance.box_px / gain


@dataclass
class Classification:
    """Class probabilities of one image, ``probs [nc]`` float32."""

    probs: np.ndarray

    def top(self, k: int = 5) -> tuple[np.ndarray, np.ndarray]:
        """Class ids and probabilities of the ``k`` most probable classes, most probable first (stable:
        equal probabilities keep the lower class id first, as ``torch.argsort(descending=True, stable=True)``)."""
        order = np.argsort(-self.probs, kind="stable")[:k]
        return order.astype(np.int64), self.probs[order].astype(np.float32)

    def __len__(self) -> int:
        return 1


Result = Instances | Classification


@dataclass(frozen=True)
class Tolerance:
    """How close a result must be to ultralytics' for one precision."""

    box_px: float  # box corners, keypoints: network-input pixels (divide by the letterbox gain for the original)
    score: float  # scores, keypoint confidences, probabilities
    mask_iou: float = 0.9  # segment: binary-mask IoU per matched instance
    probiou: float = 0.9  # obb: probabilistic IoU per matched instance
    angle_rad: float = 0.05  # obb


class Task:
    """The interface each task module implements; detect is the first implementation."""

    name: str = ""
    letterbox: bool = True  # False: the task's own preprocessing (classify)

    def preprocess(self, images_bgr: Sequence[np.ndarray], imgsz: int, dtype: str = "FP32"
                   ) -> tuple[np.ndarray, list]:
        """The network input batch for BGR images, and per image what ``decode`` needs to map back
        (a LetterboxInfo for the letterbox tasks)."""
        from yolo_triton.postprocess import letterbox_batch

        return letterbox_batch(list(images_bgr), imgsz, dtype)

    def output_names(self, layout: str, shape: TaskShape) -> tuple[str, ...]:
        """The model outputs ``decode`` reads for ``layout``."""
        raise NotImplementedError

    def decode(self, outputs: dict[str, np.ndarray], infos: Sequence[LetterboxInfo], shape: TaskShape,
               params: NmsParams, layout: str) -> list[Result]:
        """A batch of model outputs -> one result per image, in original-image pixels."""
        raise NotImplementedError

    def reference(self, yolo, images_bgr: Sequence[np.ndarray], imgsz: int, params: NmsParams) -> list[Result]:
        """ultralytics' own ``predict`` on the same images, as results of this task (tests, validation)."""
        raise NotImplementedError

    def compare(self, ref: Sequence[Result], test: Sequence[Result], tol: Tolerance, params: NmsParams
                ) -> list[str]:
        """Every disagreement beyond ``tol`` as one line each; an empty list means they agree."""
        raise NotImplementedError

    def to_json(self, result: Result, names: Sequence[str] | None) -> list[dict] | dict:
        """JSON of one image's result (the client's ``--json``)."""
        raise NotImplementedError

    def draw(self, image_bgr: np.ndarray, result: Result, names: Sequence[str] | None) -> np.ndarray:
        """A copy of the image with the result drawn on it (the client's ``--draw``)."""
        raise NotImplementedError


def label(names: Sequence[str] | None, class_id: int) -> str:
    """The class name, or the id as text when there is no name for it."""
    return names[class_id] if names is not None and 0 <= class_id < len(names) else str(class_id)


def greedy_pairs(similarity: np.ndarray, minimum: float) -> list[tuple[int, int]]:
    """Greedy one-to-one pairs (row, column) of a similarity matrix, most similar first, each at least
    ``minimum`` (NaN never pairs); how every task matches reference and test instances."""
    pairs, used_r, used_t = [], set(), set()
    for flat in np.argsort(-similarity, axis=None, kind="stable"):
        i, j = divmod(int(flat), similarity.shape[1])
        if not similarity[i, j] >= minimum:
            break
        if i not in used_r and j not in used_t:
            pairs.append((i, j))
            used_r.add(i)
            used_t.add(j)
    return pairs


def empty_instances() -> Instances:
    return Instances(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int32))
