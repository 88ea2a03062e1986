"""Detect: the first implementation of :class:`task_base.Task` (boxes, scores, classes).

Decoding is ``postprocess``'s (Track A NMS in the chosen mode, NMS-free rows, end2end outputs); the
comparison with ultralytics is ``validate``'s matching; drawing is the client's box drawing.
"""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from yolo_triton import postprocess as pp
from yolo_triton.settings import END2END_OUTPUTS, TRACK_A_OUTPUT
from yolo_triton.task_base import Instances, NmsParams, Task, TaskShape, Tolerance, label, greedy_pairs


def colour(class_id: int) -> tuple[int, int, int]:
    """A stable BGR colour per class."""
    rng = np.random.default_rng(int(class_id))
    return tuple(int(c) for c in rng.integers(64, 256, size=3))


def as_instances(dets: pp.Detections) -> Instances:
    return Instances(dets.boxes, dets.scores, dets.classes)


def draw_boxes(image_bgr: np.ndarray, boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray,
               names: Sequence[str] | None, canvas: np.ndarray | None = None) -> np.ndarray:
    """A box and ``label score`` per detection on a copy of the image (or on ``canvas``), line width scaled
    to the image."""
    canvas = image_bgr.copy() if canvas is None else canvas
    thickness = line_width(canvas)
    for box, score, cls in zip(np.asarray(boxes).tolist(), np.asarray(scores).tolist(), np.asarray(classes).tolist()):
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        col = colour(int(cls))
        cv2.rectangle(canvas, (x1, y1), (x2, y2), col, thickness)
        cv2.putText(canvas, f"{label(names, int(cls))} {score:.2f}", (x1, max(y1 - 4, 10)), cv2.FONT_HERSHEY_SIMPLEX,
                    0.4 * thickness, col, max(1, thickness // 2), cv2.LINE_AA)
    return canvas


def line_width(image: np.ndarray) -> int:
    return max(1, round(sum(image.shape[:2]) / 600))


class DetectTask(Task):
    name = "detect"

    def output_names(self, layout: str, shape: TaskShape) -> tuple[str, ...]:
        return END2END_OUTPUTS if layout == "end2end" else (TRACK_A_OUTPUT,)

    def decode(self, outputs, infos, shape: TaskShape, params: NmsParams, layout: str) -> list[Instances]:
        if layout == "end2end":
            dets = pp.postprocess_end2end(*(outputs[name] for name in END2END_OUTPUTS), infos)
        elif layout == "one2one":
            dets = pp.postprocess_one2one(outputs[TRACK_A_OUTPUT], infos, params.conf)
        else:
            dets = pp.postprocess_track_a(outputs[TRACK_A_OUTPUT], infos, params.conf, params.iou, params.topk,
                                          params.mode, params.agnostic)
        return [as_instances(d) for d in dets]

    def to_json(self, result: Instances, names: Sequence[str] | None) -> list[dict]:
        return result.to_list(names)

    def draw(self, image_bgr: np.ndarray, result: Instances, names: Sequence[str] | None) -> np.ndarray:
        return draw_boxes(image_bgr, result.boxes, result.scores, result.classes, names)

    def reference(self, yolo, images_bgr, imgsz: int, params: NmsParams) -> list[Instances]:
        # rect=False: the square letterbox the exported model sees (a .pt predicts on a minimal rectangle)
        results = yolo.predict(list(images_bgr), imgsz=imgsz, conf=params.conf, iou=params.iou, rect=False,
                               max_det=params.topk, agnostic_nms=params.agnostic, verbose=False)
        return [Instances(r.boxes.xyxy.cpu().numpy().astype(np.float32), r.boxes.conf.cpu().numpy().astype(np.float32),
                          r.boxes.cls.cpu().numpy().astype(np.int32)) for r in results]

    def compare(self, ref, test, tol: Tolerance, params: NmsParams) -> list[str]:
        """Same classes and boxes within ``tol`` (greedy one-to-one matching by IoU >= 0.9)."""
        problems = []
        for index, (r, t) in enumerate(zip(ref, test)):
            problems += [f"image {index}: {p}" for p in match_problems(r, t, tol, params)]
        if len(ref) != len(test):
            problems.append(f"{len(ref)} reference images but {len(test)} results")
        return problems


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix of corner boxes ``a [n, 4]`` and ``b [m, 4]``."""
    tl = np.maximum(a[:, None, :2], b[None, :, :2])
    br = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(br - tl, 0, None).prod(-1)
    area_a = (a[:, 2:] - a[:, :2]).clip(0).prod(-1)
    area_b = (b[:, 2:] - b[:, :2]).clip(0).prod(-1)
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def match(ref: Instances, test: Instances, iou_min: float = 0.9) -> list[tuple[int, int]]:
    """Greedy pairs (ref index, test index) of the same class with box IoU >= ``iou_min``, best IoU first."""
    if not len(ref) or not len(test):
        return []
    iou = box_iou(ref.boxes, test.boxes)
    iou[ref.classes[:, None] != test.classes[None, :]] = 0
    return greedy_pairs(iou, iou_min)


def unmatched_problems(ref: Instances, test: Instances, pairs, tol: Tolerance, params: NmsParams) -> list[str]:
    """Instances without a partner, except those whose score lies within ``tol.score`` of the threshold or
    of the top-k cut (they may legitimately flip)."""
    problems = []
    for what, dets, used in (("reference", ref, {i for i, _ in pairs}), ("served", test, {j for _, j in pairs})):
        cut = float(dets.scores[params.topk - 1]) if len(dets) >= params.topk else None
        for k in range(len(dets)):
            score = float(dets.scores[k])
            if k in used or score < params.conf + tol.score or (cut is not None and score < cut + tol.score):
                continue
            problems.append(f"{what} instance class {int(dets.classes[k])} score {score:.3f} box "
                            f"{np.round(dets.boxes[k], 1).tolist()} has no partner")
    return problems


def match_problems(ref: Instances, test: Instances, tol: Tolerance, params: NmsParams) -> list[str]:
    pairs = match(ref, test)
    problems = unmatched_problems(ref, test, pairs, tol, params)
    for i, j in pairs:
        if abs(float(ref.scores[i]) - float(test.scores[j])) > tol.score:
            problems.append(f"instance {i}: score {ref.scores[i]:.4f} vs {test.scores[j]:.4f}")
    return problems


TASK = DetectTask()
