"""OBB: :class:`task_base.Task` for rotated boxes (``xywhr [n, 5]``: centre, size, angle in radians;
``boxes`` is the axis-aligned hull of the rotated box, like ultralytics' ``Results.obb.xyxy``).

Decoding reproduces ultralytics 8.4.190's ``OBBPredictor``: ``non_max_suppression(rotated=True)`` (best
class per anchor, ``score > conf``, at most ``max_nms`` candidates, the class offset ``class * 7680`` added
to the centres, ``TorchNMS.fast_nms`` with :func:`batch_probiou` suppressing ``probiou > iou`` against
any higher-scored box, then ``max_det``), and ``scale_boxes(xywh=True)`` back to the original image
(centre minus the padding, centre and size divided by the per-axis gain, no clipping; the angle as it
is). ultralytics 8.4.190 does not call ``regularize_rboxes`` when predicting, so neither does this.

Layouts:

* ``track_a``: ``output0 [B, 4+nc+1, anchors]`` (cx, cy, w, h in network-input pixels, class scores, angle);
* ``one2one``: ``output0 [B, max_det, 7]``: cx, cy, w, h, score, class, angle (YOLO26 ``nms=False``);
* ``end2end``: ``num_dets, det_boxes`` (the hull), ``det_scores, det_classes`` and ``det_xywhr [B, topk, 5]``.

No torch import: a client needs NumPy and OpenCV only.
"""
from __future__ import annotations

import math
from typing import Sequence

import cv2
import numpy as np

from yolo_triton import postprocess as pp
from yolo_triton.errors import StepError
from yolo_triton.settings import END2END_OUTPUTS, END2END_TASK_OUTPUTS, TRACK_A_OUTPUT
from yolo_triton.task_base import Instances, NmsParams, Task, TaskShape, Tolerance, label, greedy_pairs
from yolo_triton.task_detect import colour, line_width, unmatched_problems

XYWHR_OUTPUT = END2END_TASK_OUTPUTS["obb"][0]  # det_xywhr
PROBIOU_EPS = 1e-7  # ultralytics.utils.metrics.batch_probiou's eps
NMS_BLOCK = 1 << 20  # probiou pairs per block of fast NMS (bounds the float32 temporaries, a few MB each)
SQUARE = 0.02  # |w - h| <= SQUARE * max(w, h): nearly square, the angle is compared modulo pi/2


# --------------------------------------------------------------------------------------------------
# Geometry
# --------------------------------------------------------------------------------------------------
def _covariance(boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``ultralytics.utils.metrics._get_covariance_matrix`` (floor 0): the Gaussian's ``a, b, c`` per box."""
    a = boxes[:, 2] * boxes[:, 2] / np.float32(12)
    b = boxes[:, 3] * boxes[:, 3] / np.float32(12)
    cos, sin = np.cos(boxes[:, 4]), np.sin(boxes[:, 4])
    cos2, sin2 = cos * cos, sin * sin
    return a * cos2 + b * sin2, a * sin2 + b * cos2, (a - b) * cos * sin


def batch_probiou(obb1: np.ndarray, obb2: np.ndarray) -> np.ndarray:
    """Probabilistic IoU ``[N, M]`` of rotated boxes ``xywhr [N, 5]`` and ``[M, 5]``, float32, with the
    operations of ``ultralytics.utils.metrics.batch_probiou`` in their order (arxiv 2106.06072)."""
    obb1, obb2 = np.asarray(obb1, np.float32), np.asarray(obb2, np.float32)
    eps = np.float32(PROBIOU_EPS)
    x1, y1 = obb1[:, 0:1], obb1[:, 1:2]
    x2, y2 = obb2[None, :, 0], obb2[None, :, 1]
    a1, b1, c1 = (v[:, None] for v in _covariance(obb1))
    a2, b2, c2 = (v[None, :] for v in _covariance(obb2))
    sa, sb, sc = a1 + a2, b1 + b2, c1 + c2
    dx, dy = x1 - x2, y1 - y2
    det = sa * sb - sc * sc
    denom = det + eps
    t1 = (sa * (dy * dy) + sb * (dx * dx)) / denom * np.float32(0.25)
    t2 = (sc * (x2 - x1) * dy) / denom * np.float32(0.5)
    own1 = np.maximum(a1 * b1 - c1 * c1, np.float32(0))
    own2 = np.maximum(a2 * b2 - c2 * c2, np.float32(0))
    t3 = np.log(det / (np.float32(4) * np.sqrt(own1 * own2) + eps) + eps) * np.float32(0.5)
    bd = np.clip(t1 + t2 + t3, eps, np.float32(100))
    hd = np.sqrt(np.float32(1) - np.exp(-bd) + eps)
    return np.float32(1) - hd


def xywhr_corners(xywhr: np.ndarray) -> np.ndarray:
    """``[n, 5]`` -> the four corners ``[n, 4, 2]`` (``ultralytics.utils.ops.xywhr2xyxyxyxy``'s order)."""
    xywhr = np.asarray(xywhr, np.float32)
    ctr = xywhr[:, None, :2]
    cos, sin = np.cos(xywhr[:, 4:5]), np.sin(xywhr[:, 4:5])
    w, h = xywhr[:, 2:3], xywhr[:, 3:4]
    vec1 = np.concatenate([w / 2 * cos, w / 2 * sin], axis=-1)[:, None]
    vec2 = np.concatenate([-h / 2 * sin, h / 2 * cos], axis=-1)[:, None]
    return np.concatenate([ctr + vec1 + vec2, ctr + vec1 - vec2, ctr - vec1 - vec2, ctr - vec1 + vec2], axis=1)


def hull(xywhr: np.ndarray) -> np.ndarray:
    """The axis-aligned hull ``[n, 4]`` (x1, y1, x2, y2) of rotated boxes (``Results.obb.xyxy``)."""
    corners = xywhr_corners(xywhr)
    return np.concatenate([corners.min(axis=1), corners.max(axis=1)], axis=1).astype(np.float32)


def map_xywhr_to_original(xywhr: np.ndarray, info: pp.LetterboxInfo) -> np.ndarray:
    """Rotated boxes in network-input pixels -> original pixels, as ``scale_boxes(..., xywh=True)``: the
    centre minus the padding, x and w divided by gain_x, y and h by gain_y (float32), no clipping; the
    angle unchanged. Returns a new array."""
    out = np.array(xywhr, dtype=np.float32).reshape(-1, 5)
    out[:, 0] -= np.float32(info.pad_x)
    out[:, 1] -= np.float32(info.pad_y)
    out[:, 0:4] /= np.array([info.gain_x, info.gain_y, info.gain_x, info.gain_y], np.float32)
    return out


# --------------------------------------------------------------------------------------------------
# Rotated NMS (ultralytics non_max_suppression(rotated=True))
# --------------------------------------------------------------------------------------------------
def fast_nms(xywhr_sorted: np.ndarray, iou: float) -> np.ndarray:
    """``TorchNMS.fast_nms`` on boxes already sorted by descending score: the indices of the boxes that no
    higher-ranked box (kept or not) overlaps with ``probiou > iou``, ascending. Blocks of rows bound memory."""
    n = len(xywhr_sorted)
    iou32 = np.float32(iou)
    suppressed = np.zeros(n, bool)
    rows = max(1, NMS_BLOCK // max(n, 1))
    for start in range(0, max(n - 1, 0), rows):
        stop = min(start + rows, n - 1)
        cols = xywhr_sorted[start + 1:]  # every box ranked below the block's first row
        over = batch_probiou(xywhr_sorted[start:stop], cols) > iou32
        over &= np.arange(start + 1, n)[None, :] > np.arange(start, stop)[:, None]  # triu(diagonal=1)
        suppressed[start + 1:] |= over.any(axis=0)
    return np.flatnonzero(~suppressed)


def nms_rotated(scores_ca: np.ndarray, xywhr_5a: np.ndarray, conf: float, iou: float, max_det: int, agnostic: bool
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One image: ``scores [nc, A]`` and ``xywhr [5, A]`` -> kept ``(xywhr [k, 5] input px, scores [k],
    classes [k], anchors [k])``, by descending score."""
    conf32 = np.float32(conf)
    anchors = np.flatnonzero((scores_ca > conf32).any(axis=0))
    sub = scores_ca.take(anchors, axis=1)
    cls = sub.argmax(axis=0) if anchors.size else np.zeros(0, np.int64)  # first maximum, like torch.max
    score = sub.max(axis=0) if anchors.size else np.zeros(0, np.float32)
    valid = np.flatnonzero(score > conf32)
    order = valid.take((-score.take(valid)).argsort(kind="stable"))[:pp.ULTRALYTICS_MAX_NMS]
    anchors, cls, score = anchors.take(order), cls.take(order), score.take(order)
    boxes = xywhr_5a.take(anchors, axis=1).T.astype(np.float32)
    shifted = boxes.copy()
    if not agnostic:
        shifted[:, :2] += (cls.astype(np.float32) * np.float32(pp.ULTRALYTICS_MAX_WH))[:, None]
    keep = fast_nms(shifted, iou)[:max_det]
    return boxes.take(keep, axis=0), score.take(keep).astype(np.float32), cls.take(keep), anchors.take(keep)


# --------------------------------------------------------------------------------------------------
# Decoding
# --------------------------------------------------------------------------------------------------
def instances(xywhr_input_px: np.ndarray, scores: np.ndarray, classes: np.ndarray, info: pp.LetterboxInfo
              ) -> Instances:
    xywhr = map_xywhr_to_original(xywhr_input_px, info)
    return Instances(hull(xywhr), np.asarray(scores, np.float32), np.asarray(classes, np.int32), xywhr=xywhr,
                     gain=info.ratio)


def _check_batch(batch: int, infos: Sequence[pp.LetterboxInfo]) -> None:
    if len(infos) != batch:
        raise StepError(f"{len(infos)} LetterboxInfo for a batch of {batch}")


def decode_track_a(output0: np.ndarray, infos: Sequence[pp.LetterboxInfo], shape: TaskShape, params: NmsParams
                   ) -> list[Instances]:
    """``output0 [B, 4+nc+1, A]`` -> rotated NMS (:func:`nms_rotated`) per image. ``params.mode`` does not
    apply: no end2end graph model other than ultralytics' exists for rotated boxes here."""
    nc = shape.num_classes
    if output0.ndim != 3 or output0.shape[1] != 4 + nc + 1:
        raise StepError(f"an OBB output0 with {nc} classes is [B, {4 + nc + 1}, anchors], got {list(output0.shape)}")
    _check_batch(output0.shape[0], infos)
    results = []
    for out, info in zip(output0, infos):
        xywhr = np.concatenate([out[:4], out[4 + nc:]])
        boxes, scores, classes, _ = nms_rotated(out[4:4 + nc], xywhr, params.conf, params.iou, params.topk,
                                                params.agnostic)
        results.append(instances(boxes, scores, classes, info))
    return results


def decode_one2one(output0: np.ndarray, infos: Sequence[pp.LetterboxInfo], params: NmsParams) -> list[Instances]:
    """``output0 [B, max_det, 7]`` (cx, cy, w, h, score, class, angle; sorted by score): rows with
    ``score > conf`` (ultralytics' end-to-end filter), at most ``topk``; no NMS."""
    if output0.ndim != 3 or output0.shape[2] != 7:
        raise StepError(f"an NMS-free OBB output0 is [B, max_det, 7], got {list(output0.shape)}")
    _check_batch(output0.shape[0], infos)
    results = []
    for rows, info in zip(output0, infos):
        rows = rows[rows[:, 4] > np.float32(params.conf)][:params.topk]
        results.append(instances(rows[:, [0, 1, 2, 3, 6]], rows[:, 4], rows[:, 5].astype(np.int32), info))
    return results


def decode_end2end(outputs: dict[str, np.ndarray], infos: Sequence[pp.LetterboxInfo]) -> list[Instances]:
    """``num_dets`` rows of ``det_xywhr [B, topk, 5]`` (input px), ``det_scores``, ``det_classes``; the hull
    is recomputed from the mapped rotated box (``det_boxes`` is the hull in input pixels)."""
    num_dets, det_xywhr, det_scores, det_classes = (
        outputs[name] for name in ("num_dets", XYWHR_OUTPUT, "det_scores", "det_classes"))
    if det_xywhr.ndim != 3 or det_xywhr.shape[2] != 5 or det_xywhr.shape[:2] != det_scores.shape[:2]:
        raise StepError(f"{XYWHR_OUTPUT} must be [B, topk, 5] beside det_scores {list(det_scores.shape)}, "
                        f"got {list(det_xywhr.shape)}")
    _check_batch(num_dets.shape[0], infos)
    results = []
    for b, info in enumerate(infos):
        n = int(np.clip(num_dets[b].reshape(-1)[0], 0, det_scores.shape[1]))
        results.append(instances(det_xywhr[b, :n], det_scores[b, :n], det_classes[b, :n], info))
    return results


def results_to_instances(results, imgsz: int) -> list[Instances]:
    """ultralytics ``Results`` of an OBB model -> :class:`Instances`."""
    out = []
    for r in results:
        h, w = r.orig_shape
        obb = r.obb
        out.append(Instances(obb.xyxy.cpu().numpy().astype(np.float32), obb.conf.cpu().numpy().astype(np.float32),
                             obb.cls.cpu().numpy().astype(np.int32), xywhr=obb.xywhr.cpu().numpy().astype(np.float32),
                             gain=pp.letterbox_params(h, w, imgsz)[0].ratio))
    return out


# --------------------------------------------------------------------------------------------------
# Comparison
# --------------------------------------------------------------------------------------------------
def _modulo_pi(angle: float) -> float:
    """|angle| folded into [0, pi/2]: the distance of two angles of a rectangle that repeats every pi."""
    return abs((angle + math.pi / 2) % math.pi - math.pi / 2)


def angle_difference(a: np.ndarray, b: np.ndarray) -> float:
    """The angle difference of two rotated boxes ``[5]`` modulo the rectangle's symmetries: pi, and pi/2
    with w and h swapped. Which reading applies follows from the sizes (|w|, |h|: a negative size draws
    the same rectangle); for a nearly square box (within SQUARE) both do and the smaller difference counts."""
    wa, ha, wb, hb = abs(float(a[2])), abs(float(a[3])), abs(float(b[2])), abs(float(b[3]))
    straight = _modulo_pi(float(a[4]) - float(b[4]))
    swapped = _modulo_pi(float(a[4]) - float(b[4]) - math.pi / 2)
    if abs(wa - ha) <= SQUARE * max(wa, ha) or abs(wb - hb) <= SQUARE * max(wb, hb):
        return min(straight, swapped)
    return straight if abs(wa - wb) + abs(ha - hb) <= abs(wa - hb) + abs(ha - wb) else swapped


SAME_BOX_PX = 0.5  # original-image pixels
SAME_ANGLE_RAD = 1e-3


def match(ref: Instances, test: Instances, probiou_min: float) -> list[tuple[int, int]]:
    """Greedy pairs (ref index, test index) of the same class with probiou >= ``probiou_min``, best first.
    Boxes equal within SAME_BOX_PX (and SAME_ANGLE_RAD) pair whatever their probiou: a box a few pixels thin
    has a near-singular covariance, whose probiou is unreliable even against itself."""
    if not len(ref) or not len(test):
        return []
    sim = batch_probiou(ref.xywhr, test.xywhr)
    diff = np.abs(ref.xywhr[:, None] - test.xywhr[None])
    sim[(diff[..., :4].max(axis=-1) <= SAME_BOX_PX) & (diff[..., 4] <= SAME_ANGLE_RAD)] = 1.0
    sim[ref.classes[:, None] != test.classes[None, :]] = -1
    return greedy_pairs(sim, probiou_min)


def draw_rotated(image_bgr: np.ndarray, result: Instances, names: Sequence[str] | None) -> np.ndarray:
    """Rotated polygons with ``label score`` at their top corner, on a copy of the image."""
    out = image_bgr.copy()
    thickness = line_width(out)
    corners = xywhr_corners(result.xywhr) if result.xywhr is not None else np.zeros((0, 4, 2), np.float32)
    for poly, score, cls in zip(corners, result.scores.tolist(), result.classes.tolist()):
        col = colour(int(cls))
        points = np.round(poly).astype(np.int32)
        cv2.polylines(out, [points.reshape(-1, 1, 2)], True, col, thickness, cv2.LINE_AA)
        x, y = points[points[:, 1].argmin()].tolist()
        cv2.putText(out, f"{label(names, int(cls))} {score:.2f}", (x, max(y - 4, 10)), cv2.FONT_HERSHEY_SIMPLEX,
                    0.4 * thickness, col, max(1, thickness // 2), cv2.LINE_AA)
    return out


class OBBTask(Task):
    name = "obb"

    def output_names(self, layout: str, shape: TaskShape) -> tuple[str, ...]:
        return END2END_OUTPUTS + (XYWHR_OUTPUT,) if layout == "end2end" else (TRACK_A_OUTPUT,)

    def decode(self, outputs, infos, shape: TaskShape, params: NmsParams, layout: str) -> list[Instances]:
        if layout == "end2end":
            return decode_end2end(outputs, infos)
        if layout == "one2one":
            return decode_one2one(outputs[TRACK_A_OUTPUT], infos, params)
        if layout == "track_a":
            return decode_track_a(outputs[TRACK_A_OUTPUT], infos, shape, params)
        raise StepError(f"unknown layout '{layout}'; one of track_a, one2one, end2end")

    def reference(self, yolo, images_bgr, imgsz: int, params: NmsParams) -> list[Instances]:
        """``YOLO.predict`` on the pipeline's square letterbox (``rect=False``): the one-to-many head and
        the rotated NMS, or the NMS-free one-to-one head (``one2one`` layout) after ``yolo.overrides["nms"] = False``
        (the ultralytics switch ``predict`` reads when the call does not name it)."""
        results = yolo.predict(list(images_bgr), imgsz=imgsz, conf=params.conf, iou=params.iou, max_det=params.topk,
                               agnostic_nms=params.agnostic, rect=False, verbose=False)
        return results_to_instances(results, imgsz)

    def compare(self, ref, test, tol: Tolerance, params: NmsParams) -> list[str]:
        """Pairs of the same class with probiou >= ``tol.probiou`` (unmatched ones excused near CONF or the
        top-k cut, as detect's); matched scores within ``tol.score`` and angles within ``tol.angle_rad``
        (:func:`angle_difference`)."""
        problems = []
        for index, (r, t) in enumerate(zip(ref, test)):
            pairs = match(r, t, tol.probiou)
            found = unmatched_problems(r, t, pairs, tol, params)
            for i, j in pairs:
                if abs(float(r.scores[i]) - float(t.scores[j])) > tol.score:
                    found.append(f"instance {i}: score {r.scores[i]:.4f} vs {t.scores[j]:.4f}")
                angle = angle_difference(r.xywhr[i], t.xywhr[j])
                if not angle <= tol.angle_rad:
                    found.append(f"instance {i}: angle differs by {angle:.4f} rad > {tol.angle_rad:g} "
                                 f"({np.round(r.xywhr[i], 3).tolist()} vs {np.round(t.xywhr[j], 3).tolist()})")
            problems += [f"image {index}: {p}" for p in found]
        if len(ref) != len(test):
            problems.append(f"{len(ref)} reference images but {len(test)} results")
        return problems

    def to_json(self, result: Instances, names: Sequence[str] | None) -> list[dict]:
        rows = result.to_list(names)
        corners = xywhr_corners(result.xywhr) if result.xywhr is not None else np.zeros((0, 4, 2), np.float32)
        for row, xywhr, poly in zip(rows, result.xywhr.tolist() if result.xywhr is not None else [], corners.tolist()):
            row["obb"] = {"xywhr": [round(v, 2) for v in xywhr[:4]] + [round(xywhr[4], 5)],
                          "corners": [[round(x, 2), round(y, 2)] for x, y in poly]}
        return rows

    def draw(self, image_bgr: np.ndarray, result: Instances, names: Sequence[str] | None) -> np.ndarray:
        return draw_rotated(image_bgr, result, names)


TASK = OBBTask()
