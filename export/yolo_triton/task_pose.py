"""Pose: :class:`task_base.Task` for keypoint heads (boxes, scores, classes and ``keypoints [n, K, 3]``).

Decoding reproduces ultralytics 8.4.190's ``PosePredictor``: the detect NMS on the box and class rows
(``postprocess.track_a_kept``, ``NmsParams.mode``), then the kept anchors' keypoint rows, mapped
back like ``ultralytics.utils.ops.scale_coords`` (subtract the padding, divide by the per-axis gain,
clip to the image). A head with ``kpt_shape (K, 2)`` has no keypoint confidence: it is 1.0 here.

Layouts (``output0``'s rows / columns after the box and class values: ``K * D`` keypoint values,
keypoint-major ``x, y[, conf]``, in network-input pixels, confidences sigmoided):

* ``track_a``: ``output0 [B, 4+nc+K*D, anchors]``;
* ``one2one``: ``output0 [B, max_det, 6+K*D]`` (x1, y1, x2, y2, score, class, keypoints; YOLO26 ``nms=False``);
* ``end2end``: ``num_dets, det_boxes, det_scores, det_classes`` and ``det_keypoints [B, topk, K, 3]``.

No torch import: a client needs NumPy and OpenCV only.
"""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from yolo_triton import postprocess as pp
from yolo_triton.errors import StepError
from yolo_triton.settings import END2END_OUTPUTS, END2END_TASK_OUTPUTS, TRACK_A_OUTPUT
from yolo_triton.task_base import Instances, NmsParams, Task, TaskShape, Tolerance, greedy_pairs
from yolo_triton.task_detect import box_iou, draw_boxes, line_width, unmatched_problems

KEYPOINTS_OUTPUT = END2END_TASK_OUTPUTS["pose"][0]  # det_keypoints
KPT_DRAW_CONF = 0.25  # ultralytics Annotator.kpts(conf_thres=0.25): fainter keypoints and their limbs are not drawn
# ultralytics utils/plotting.py (Annotator): the COCO-17 skeleton (1-based keypoint pairs) and its colours
SKELETON = ((16, 14), (14, 12), (17, 15), (15, 13), (12, 13), (6, 12), (7, 13), (6, 7), (6, 8), (7, 9), (8, 10),
            (9, 11), (2, 3), (1, 2), (1, 3), (2, 4), (3, 5), (4, 6), (5, 7))
POSE_PALETTE = ((255, 128, 0), (255, 153, 51), (255, 178, 102), (230, 230, 0), (255, 153, 255), (153, 204, 255),
                (255, 102, 255), (255, 51, 255), (102, 178, 255), (51, 153, 255), (255, 153, 153), (255, 102, 102),
                (255, 51, 51), (153, 255, 153), (102, 255, 102), (51, 255, 51), (0, 255, 0), (0, 0, 255),
                (255, 0, 0), (255, 255, 255))
LIMB_COLOURS = (9, 9, 9, 9, 7, 7, 7, 0, 0, 0, 0, 0, 16, 16, 16, 16, 16, 16, 16)  # POSE_PALETTE index per limb
KPT_COLOURS = (16, 16, 16, 16, 16, 0, 0, 0, 0, 0, 0, 9, 9, 9, 9, 9, 9)  # POSE_PALETTE index per keypoint


def kpt_shape_of(shape: TaskShape) -> tuple[int, int]:
    if shape.kpt_shape is None or len(shape.kpt_shape) != 2 or shape.kpt_shape[1] not in (2, 3):
        raise StepError(f"a pose head needs kpt_shape (K, 2 or 3), got {shape.kpt_shape}")
    return int(shape.kpt_shape[0]), int(shape.kpt_shape[1])


def with_confidence(keypoints: np.ndarray) -> np.ndarray:
    """``[n, K, 2 or 3]`` -> ``[n, K, 3]`` float32 (confidence 1.0 where the head predicts none)."""
    keypoints = np.asarray(keypoints, np.float32)
    if keypoints.shape[-1] == 3:
        return keypoints
    return np.concatenate([keypoints, np.ones((*keypoints.shape[:-1], 1), np.float32)], axis=-1)


def map_keypoints_to_original(keypoints: np.ndarray, info: pp.LetterboxInfo) -> np.ndarray:
    """Keypoints ``[n, K, 2+]`` in network-input pixels -> original-image pixels, as
    ``ultralytics.utils.ops.scale_coords``: x, y minus the padding, divided by the per-axis gain, clipped
    to the image (float32, in that order); confidences untouched. Returns a new array."""
    out = np.array(keypoints, dtype=np.float32)
    for axis, pad, gain, limit in ((0, info.pad_x, info.gain_x, info.orig_w),
                                   (1, info.pad_y, info.gain_y, info.orig_h)):
        values = out[..., axis]
        values -= np.float32(pad)
        values /= np.float32(gain)
        np.clip(values, np.float32(0), np.float32(limit), out=values)
    return out


def instances(dets: pp.Detections, keypoints_input_px: np.ndarray, info: pp.LetterboxInfo) -> Instances:
    return Instances(dets.boxes, dets.scores, dets.classes,
                     keypoints=with_confidence(map_keypoints_to_original(keypoints_input_px, info)), gain=info.ratio)


def _check_batch(batch: int, infos: Sequence[pp.LetterboxInfo]) -> None:
    if len(infos) != batch:
        raise StepError(f"{len(infos)} LetterboxInfo for a batch of {batch}")


def decode_track_a(output0: np.ndarray, infos: Sequence[pp.LetterboxInfo], shape: TaskShape, params: NmsParams
                   ) -> list[Instances]:
    """``output0 [B, 4+nc+K*D, A]``: the detect NMS on the box and class rows, the kept anchors' keypoints."""
    k, d = kpt_shape_of(shape)
    rows = 4 + shape.num_classes + k * d
    if output0.ndim != 3 or output0.shape[1] != rows:
        raise StepError(f"a pose output0 with {shape.num_classes} classes and kpt_shape ({k}, {d}) is "
                        f"[B, {rows}, anchors], got {list(output0.shape)}")
    _check_batch(output0.shape[0], infos)
    kept = pp.track_a_kept(output0, infos, params.conf, params.iou, params.topk, params.mode, params.agnostic,
                           num_classes=shape.num_classes)
    results = []
    for out, info, (dets, anchors) in zip(output0, infos, kept):
        kpts = out[4 + shape.num_classes:].take(anchors, axis=1).T.reshape(len(anchors), k, d)
        results.append(instances(dets, kpts, info))
    return results


def decode_one2one(output0: np.ndarray, infos: Sequence[pp.LetterboxInfo], shape: TaskShape, params: NmsParams
                   ) -> list[Instances]:
    """``output0 [B, max_det, 6+K*D]`` (sorted by score): rows with ``score > conf`` (ultralytics' end-to-end
    filter), at most ``topk``; no NMS."""
    k, d = kpt_shape_of(shape)
    if output0.ndim != 3 or output0.shape[2] != 6 + k * d:
        raise StepError(f"an NMS-free pose output0 with kpt_shape ({k}, {d}) is [B, max_det, {6 + k * d}], "
                        f"got {list(output0.shape)}")
    _check_batch(output0.shape[0], infos)
    results = []
    for rows, info in zip(output0, infos):
        rows = rows[rows[:, 4] > np.float32(params.conf)][:params.topk]
        dets = pp.Detections(pp.map_boxes_to_original(rows[:, :4], info), rows[:, 4].astype(np.float32),
                             rows[:, 5].astype(np.int32))
        results.append(instances(dets, rows[:, 6:].reshape(len(rows), k, d), info))
    return results


def decode_end2end(outputs: dict[str, np.ndarray], infos: Sequence[pp.LetterboxInfo], shape: TaskShape
                   ) -> list[Instances]:
    """The end2end outputs: ``num_dets`` rows of each image, ``det_keypoints [B, topk, K, 3]`` in input pixels."""
    k, _ = kpt_shape_of(shape)
    keypoints = outputs[KEYPOINTS_OUTPUT]
    det_scores = outputs["det_scores"]
    if keypoints.ndim != 4 or keypoints.shape[:2] != det_scores.shape[:2] or keypoints.shape[2:] != (k, 3):
        raise StepError(f"{KEYPOINTS_OUTPUT} must be [B, topk, {k}, 3] beside det_scores {list(det_scores.shape)}, "
                        f"got {list(keypoints.shape)}")
    _check_batch(keypoints.shape[0], infos)
    dets = pp.postprocess_end2end(*(outputs[name] for name in END2END_OUTPUTS), infos)
    return [instances(d, keypoints[b, :len(d)], info) for b, (d, info) in enumerate(zip(dets, infos))]


def results_to_instances(results, imgsz: int) -> list[Instances]:
    """ultralytics ``Results`` of a pose model -> :class:`Instances` (keypoints ``[n, K, 3]``)."""
    out = []
    for r in results:
        h, w = r.orig_shape
        kpts = r.keypoints.data.cpu().numpy() if r.keypoints is not None else np.zeros((0, 0, 3), np.float32)
        boxes = r.boxes
        out.append(Instances(boxes.xyxy.cpu().numpy().astype(np.float32), boxes.conf.cpu().numpy().astype(np.float32),
                             boxes.cls.cpu().numpy().astype(np.int32), keypoints=with_confidence(kpts),
                             gain=pp.letterbox_params(h, w, imgsz)[0].ratio))
    return out


def match(ref: Instances, test: Instances, same_px: float, iou_min: float = 0.9) -> list[tuple[int, int]]:
    """Greedy pairs (ref index, test index) of the same class, best first, whose boxes have IoU >= ``iou_min``
    after ordering their corners (an untrained head can emit x2 < x1) or agree within ``same_px`` (boxes
    that clipping left without area)."""
    if not len(ref) or not len(test):
        return []
    def ordered(boxes):
        return np.concatenate([np.minimum(boxes[:, :2], boxes[:, 2:]), np.maximum(boxes[:, :2], boxes[:, 2:])], 1)
    sim = box_iou(ordered(ref.boxes), ordered(test.boxes))
    sim[np.abs(ref.boxes[:, None] - test.boxes[None]).max(axis=-1) <= same_px] = 1.0
    sim[ref.classes[:, None] != test.classes[None, :]] = 0.0
    return greedy_pairs(sim, iou_min)


def tolerance_px(ref: Instances, test: Instances, tol: Tolerance) -> tuple[float, float]:
    """``tol.box_px`` (network-input pixels) in original pixels: divided by the image's letterbox gain."""
    gain = ref.gain or test.gain or 1.0
    return tol.box_px / gain, gain


def keypoint_problems(ref: Instances, test: Instances, pairs, tol: Tolerance) -> list[str]:
    """Matched instances whose keypoints differ by more than ``tol.box_px / gain`` original pixels (x or y;
    every keypoint, whatever its confidence) or whose keypoint confidences differ by more than ``tol.score``."""
    px, gain = tolerance_px(ref, test, tol)
    problems = []
    for i, j in pairs:
        a, b = ref.keypoints[i], test.keypoints[j]
        if a.shape != b.shape:
            problems.append(f"instance {i}: keypoints {list(a.shape)} vs {list(b.shape)}")
            continue
        xy = float(np.abs(a[:, :2] - b[:, :2]).max(initial=0))
        conf = float(np.abs(a[:, 2] - b[:, 2]).max(initial=0))
        if not xy <= px:
            problems.append(f"instance {i}: keypoint position differs by {xy:.3g} px > {px:.3g} "
                            f"({tol.box_px:g} input px / gain {gain:.4g})")
        if not conf <= tol.score:
            problems.append(f"instance {i}: keypoint confidence differs by {conf:.3g} > {tol.score:g}")
    return problems


def draw_keypoints(image: np.ndarray, keypoints: np.ndarray) -> None:
    """Keypoints with confidence >= KPT_DRAW_CONF (in place), and the COCO skeleton when K == 17, sized as
    ultralytics' Annotator sizes them: radius the line width, limbs half of it."""
    pose = len(keypoints) == 17
    radius = line_width(image) + 1
    limb_width = max(1, (radius + 1) // 2)
    for index, (x, y, conf) in enumerate(keypoints.tolist()):
        if conf >= KPT_DRAW_CONF:
            colour = POSE_PALETTE[KPT_COLOURS[index]] if pose else POSE_PALETTE[index % len(POSE_PALETTE)]
            cv2.circle(image, (int(x), int(y)), radius, colour, -1, lineType=cv2.LINE_AA)
    if not pose:
        return
    for limb, (a, b) in enumerate(SKELETON):
        (xa, ya, ca), (xb, yb, cb) = keypoints[a - 1].tolist(), keypoints[b - 1].tolist()
        if ca >= KPT_DRAW_CONF and cb >= KPT_DRAW_CONF:
            cv2.line(image, (int(xa), int(ya)), (int(xb), int(yb)), POSE_PALETTE[LIMB_COLOURS[limb]], limb_width,
                     lineType=cv2.LINE_AA)


class PoseTask(Task):
    name = "pose"

    def output_names(self, layout: str, shape: TaskShape) -> tuple[str, ...]:
        return END2END_OUTPUTS + (KEYPOINTS_OUTPUT,) if layout == "end2end" else (TRACK_A_OUTPUT,)

    def decode(self, outputs, infos, shape: TaskShape, params: NmsParams, layout: str) -> list[Instances]:
        if layout == "end2end":
            return decode_end2end(outputs, infos, shape)
        if layout == "one2one":
            return decode_one2one(outputs[TRACK_A_OUTPUT], infos, shape, params)
        if layout == "track_a":
            return decode_track_a(outputs[TRACK_A_OUTPUT], infos, shape, params)
        raise StepError(f"unknown layout '{layout}'; one of track_a, one2one, end2end")

    def reference(self, yolo, images_bgr, imgsz: int, params: NmsParams) -> list[Instances]:
        """``YOLO.predict`` on the pipeline's square letterbox (``rect=False``): the one-to-many head and
        its NMS, or the NMS-free one-to-one head (``one2one`` layout) after ``yolo.overrides["nms"] = False``
        (the ultralytics switch ``predict`` reads when the call does not name it)."""
        results = yolo.predict(list(images_bgr), imgsz=imgsz, conf=params.conf, iou=params.iou, max_det=params.topk,
                               agnostic_nms=params.agnostic, rect=False, verbose=False)
        return results_to_instances(results, imgsz)

    def compare(self, ref, test, tol: Tolerance, params: NmsParams) -> list[str]:
        """Pairs by :func:`match` (unmatched ones excused near CONF or the top-k cut, as detect's), matched
        scores within ``tol.score``, then :func:`keypoint_problems`."""
        problems = []
        for index, (r, t) in enumerate(zip(ref, test)):
            pairs = match(r, t, tolerance_px(r, t, tol)[0])
            found = unmatched_problems(r, t, pairs, tol, params)
            found += [f"instance {i}: score {r.scores[i]:.4f} vs {t.scores[j]:.4f}" for i, j in pairs
                      if abs(float(r.scores[i]) - float(t.scores[j])) > tol.score]
            found += keypoint_problems(r, t, pairs, tol)
            problems += [f"image {index}: {p}" for p in found]
        if len(ref) != len(test):
            problems.append(f"{len(ref)} reference images but {len(test)} results")
        return problems

    def to_json(self, result: Instances, names: Sequence[str] | None) -> list[dict]:
        rows = result.to_list(names)
        for row, kpts in zip(rows, result.keypoints.tolist() if result.keypoints is not None else []):
            row["keypoints"] = [[round(x, 2), round(y, 2), round(c, 5)] for x, y, c in kpts]
        return rows

    def draw(self, image_bgr: np.ndarray, result: Instances, names: Sequence[str] | None) -> np.ndarray:
        out = draw_boxes(image_bgr, result.boxes, result.scores, result.classes, names)
        for kpts in result.keypoints if result.keypoints is not None else ():
            draw_keypoints(out, kpts)
        return out


TASK = PoseTask()
