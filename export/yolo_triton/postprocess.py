"""Client-side pre- and post-processing for YOLO detectors served by Triton (NumPy only).

One importable place used by ``scripts/validate.py``, the Triton smoke client and the tests:

* :func:`letterbox` / :func:`letterbox_batch` reproduce ultralytics' ``LetterBox(new_shape=(S, S),
  auto=False, scaleup=True, center=True)`` plus the predictor's BGR->RGB, HWC->CHW, ``/255`` exactly;
  :func:`to_model_input` turns letterboxed uint8 pixels into what a model's image input takes (float32
  ``/255``, or the uint8 pixels themselves for an ``INPUT_DTYPE=uint8`` model).
* :func:`decode_yolo_output` splits a Track A ``output0 [B, 4+nc, A]`` into corner boxes and scores.
* :func:`efficient_nms` is a NumPy model of TensorRT's ``EfficientNMS_TRT`` (TensorRT plugin/efficientNMSPlugin, efficientNMSInference.cu): multi-label
  candidates ``score >= conf``, global descending sort, top-5000 candidate cap, per-class (or
  agnostic) greedy suppression of ``IoU >= iou``, global top-k, corner output, zero padding with class
  0. ``strict_thresholds=True`` switches to the ONNX ``NonMaxSuppression`` / ``INMSLayer`` comparisons
  (``score > conf``, suppress ``IoU > iou``), the ``NMS=onnx`` graph's semantics.
* :func:`ultralytics_nms` matches ``ultralytics.utils.nms.non_max_suppression`` (best class per box,
  ``score > conf``, suppress ``IoU > iou`` with the per-class coordinate offset, ``max_det``).
* :func:`map_boxes_to_original`, :func:`postprocess_track_a`, :func:`postprocess_end2end` return
  per-image detections in original-image pixels.
  :func:`track_a_kept` also returns each detection's anchor (column of ``output0``), from which a task
  with extra channels (segment's mask coefficients) gathers them; NMS reads only the class scores.

Cost: one pass over the scores (``score >= CONF`` reduced over classes on ``output0``'s own class-major
layout) finds the candidate anchors; everything after reads only their rows. Greedy NMS is vectorised
(same-class pairs and a fixed point, or dense IoU blocks and a walk over the kept boxes) and gives
exactly the result of the reference loop :func:`greedy_nms` (tests/test_postprocess.py compares every
path bit for bit against the earlier, literal implementation).

No torch import: a client needs NumPy and OpenCV only.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np

PAD_VALUE = 114
BOX_CORNER = 0  # EfficientNMS box_coding 0: [x1, y1, x2, y2]
BOX_CENTER_SIZE = 1  # EfficientNMS box_coding 1: [cx, cy, w, h] (YOLO heads)
EFFICIENT_NMS_CANDIDATES = 5000  # numSelectedBoxes on GPUs with >= 64K registers per block (TensorRT plugin/efficientNMSPlugin, efficientNMSInference.cu)
ULTRALYTICS_MAX_WH = 7680  # ultralytics' per-class offset (max_wh) for class-aware NMS
ULTRALYTICS_MAX_NMS = 30000  # ultralytics' max_nms: candidates kept before NMS
MODES = ("efficient", "onnx", "ultralytics")


# --------------------------------------------------------------------------------------------------
# Letterbox
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LetterboxInfo:
    """How an original image was placed in the square network input (what maps boxes back)."""

    ratio: float  # r = min(S/h, S/w)
    pad_x: int  # left padding in input pixels
    pad_y: int  # top padding in input pixels
    orig_h: int
    orig_w: int

    @property
    def new_w(self) -> int:
        return max(round(self.orig_w * self.ratio), 1)

    @property
    def new_h(self) -> int:
        return max(round(self.orig_h * self.ratio), 1)

    @property
    def gain_x(self) -> float:
        """Per-axis scale after rounding, as ``ultralytics.utils.ops.scale_boxes`` uses it."""
        return self.new_w / self.orig_w

    @property
    def gain_y(self) -> float:
        return self.new_h / self.orig_h


def letterbox_params(orig_h: int, orig_w: int, imgsz: int) -> tuple[LetterboxInfo, tuple[int, int, int, int]]:
    """Ratio, resized size and padding ``(top, bottom, left, right)`` exactly as ultralytics computes them."""
    r = min(imgsz / orig_h, imgsz / orig_w)
    new_w, new_h = max(round(orig_w * r), 1), max(round(orig_h * r), 1)
    dw, dh = (imgsz - new_w) / 2, (imgsz - new_h) / 2
    top, bottom = round(dh - 0.1), round(dh + 0.1)
    left, right = round(dw - 0.1), round(dw + 0.1)
    return LetterboxInfo(r, left, top, orig_h, orig_w), (top, bottom, left, right)


def letterbox_uint8(image_bgr: np.ndarray, imgsz: int) -> tuple[np.ndarray, LetterboxInfo]:
    """Resize (INTER_LINEAR, only when the size changes) and pad with 114: HWC uint8 BGR, ``imgsz`` square."""
    if image_bgr.ndim != 3 or image_bgr.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 BGR image, got shape {image_bgr.shape}")
    h, w = image_bgr.shape[:2]
    info, (top, bottom, left, right) = letterbox_params(h, w, imgsz)
    img = image_bgr
    if (w, h) != (info.new_w, info.new_h):
        img = cv2.resize(img, (info.new_w, info.new_h), interpolation=cv2.INTER_LINEAR)
    img = cv2.copyMakeBorder(img, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(PAD_VALUE,) * 3)
    return img, info


def to_chw_rgb_uint8(image_bgr_hwc: np.ndarray) -> np.ndarray:
    """BGR HWC uint8 -> RGB CHW uint8 (contiguous): the letterboxed pixels as a model input takes them."""
    return np.ascontiguousarray(image_bgr_hwc[..., ::-1].transpose(2, 0, 1))


# What a model's image input takes (INPUT_DTYPE; ONNX / numpy names and Triton's wire names)
FLOAT_INPUT_DTYPES = ("float32", "FP32", "TYPE_FP32")
UINT8_INPUT_DTYPES = ("uint8", "UINT8", "TYPE_UINT8")


def to_model_input(chw_uint8: np.ndarray, dtype: str) -> np.ndarray:
    """Letterboxed RGB CHW uint8 (one image or a batch) -> what the model's image input takes.

    ``dtype`` is the input's type as the artefact or its Triton config states it: ``uint8``/``UINT8``
    (INPUT_DTYPE=uint8, the graph casts and divides by 255 itself): the pixels as they are;
    ``float32``/``FP32``: ``float(x) / 255`` in float32, like the ultralytics predictor. The one
    place where every feeder (client, validation, benchmarks, versions, A/B) makes the input.
    """
    chw_uint8 = np.asarray(chw_uint8)
    if chw_uint8.dtype != np.uint8:
        raise ValueError(f"expected letterboxed uint8 pixels, got {chw_uint8.dtype}")
    if dtype in UINT8_INPUT_DTYPES:
        return chw_uint8
    if dtype in FLOAT_INPUT_DTYPES:
        return chw_uint8.astype(np.float32) / np.float32(255.0)
    raise ValueError(f"no image input of type {dtype!r}: a detector here takes float32 or uint8")


def to_chw_rgb_float(image_bgr_hwc: np.ndarray) -> np.ndarray:
    """BGR HWC uint8 -> RGB CHW float32 in [0, 1] (``float(x) / 255`` in float32, like the predictor)."""
    return to_model_input(to_chw_rgb_uint8(image_bgr_hwc), "float32")


def letterbox(image_bgr: np.ndarray, imgsz: int) -> tuple[np.ndarray, LetterboxInfo]:
    """One BGR image -> ``([3, imgsz, imgsz] float32 RGB 0..1, LetterboxInfo)``."""
    padded, info = letterbox_uint8(image_bgr, imgsz)
    return to_chw_rgb_float(padded), info


def letterbox_batch(images_bgr: Sequence[np.ndarray], imgsz: int,
                    dtype: str = "float32") -> tuple[np.ndarray, list[LetterboxInfo]]:
    """Several BGR images -> ``([B, 3, imgsz, imgsz] in the input type dtype, [LetterboxInfo] * B)``:
    float32 0..1 by default, the uint8 pixels for a model with a UINT8 input (:func:`to_model_input`)."""
    if not images_bgr:
        raise ValueError("letterbox_batch needs at least one image")
    pairs = [letterbox_uint8(image, imgsz) for image in images_bgr]
    batch = np.stack([to_chw_rgb_uint8(p[0]) for p in pairs])
    return to_model_input(batch, dtype), [p[1] for p in pairs]


# --------------------------------------------------------------------------------------------------
# Boxes
# --------------------------------------------------------------------------------------------------
def xywh_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    """Centre-size ``[..., 4]`` -> corners, in the input's dtype."""
    xy, half = boxes[..., :2], boxes[..., 2:4] / 2
    return np.concatenate([xy - half, xy + half], axis=-1)


def decode_yolo_output(output0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``output0 [B, 4+nc, A]`` (xywh centre in input pixels, sigmoided scores) ->
    ``(boxes_xyxy [B, A, 4], scores [B, A, nc])``."""
    if output0.ndim != 3 or output0.shape[1] < 5:
        raise ValueError(f"expected output0 [B, 4+nc, A], got shape {output0.shape}")
    boxes = xywh_to_xyxy(output0[:, :4, :].transpose(0, 2, 1))
    return np.ascontiguousarray(boxes), output0[:, 4:, :].transpose(0, 2, 1)

def _iou_one_to_many(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one corner box with many, float32, as both the EfficientNMS kernel and torchvision compute it
    (no intersection or no union -> 0)."""
    iw = np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0])
    ih = np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1])
    inter = np.where((iw > 0) & (ih > 0), iw * ih, np.float32(0))
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    union = area + areas - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def greedy_nms(boxes: np.ndarray, classes: np.ndarray | None, iou: float, limit: int, strict: bool) -> np.ndarray:
    """Greedy NMS over boxes already sorted by descending score (the reference implementation).

    Returns indices of kept boxes (at most ``limit``). A box is suppressed by a kept box of the same class
    (any class when ``classes`` is None) with IoU ``>= iou`` (``> iou`` when ``strict``). The loop runs once
    per kept box; every step is vectorised over the boxes still alive.
    """
    alive = np.arange(len(boxes))
    keep: list[int] = []
    iou32 = np.float32(iou)
    while alive.size and len(keep) < limit:
        i = alive[0]
        keep.append(i)
        rest = alive[1:]
        overlap = _iou_one_to_many(boxes[i], boxes[rest])
        suppress = overlap > iou32 if strict else overlap >= iou32
        if classes is not None:
            suppress &= classes[rest] == classes[i]
        alive = rest[~suppress]
    return np.asarray(keep, dtype=np.int64)


# The exact IoU test of the vectorised paths, on the same float32 values as :func:`_iou_one_to_many`: with
# rows ``(x1, y1, -x2, -y2)``, one ``maximum`` of two boxes' rows gives ``(max x1, max y1, -min x2,
# -min y2)``, and ``s = -(iw, ih)`` is a sum of its halves (negation is exact: ``-(a + b) == -a - b`` bit for
# bit). ``min(s, 0) = -max(iw, 0)``, and the product of the two equals the reference's ``iw * ih if iw > 0
# and ih > 0 else 0``. The reference's ``where=union > 0`` becomes ``union += union == 0``: a positive
# intersection implies both boxes are ordered and ``union >= max(area) > 0`` (unchanged); otherwise
# ``inter == 0`` and the ratio is 0 or -0 (or NaN from NaN input), none of which passes a threshold > 0,
# like the reference's 0.
WAVE = 32  # head rows of one dense IoU block in _nms_waves
MAX_PAIRS = 2_000_000  # above this many same-class pairs in a prefix, _nms_waves takes over (memory)


def _pair_suppresses(a: np.ndarray, b: np.ndarray, area_a: np.ndarray, area_b: np.ndarray, iou32: np.float32,
                     strict: bool) -> np.ndarray:
    """Whether box ``a`` suppresses box ``b`` (IoU > or >= ``iou``), elementwise over broadcastable rows
    ``a``, ``b`` of ``(x1, y1, -x2, -y2)`` (leading axis 4) and their areas."""
    m = np.maximum(a, b)
    s = np.add(m[2:], m[:2])  # -(iw, ih)
    np.minimum(s, np.zeros(s.shape, np.float32), out=s)  # an array, not a scalar: NumPy's vector loop
    inter = np.multiply(s[0], s[1])
    union = np.add(area_a, area_b)
    union -= inter
    union += union == 0  # 0 / 0 (zero-area boxes) -> 0 / 1: the same 0, and no warning
    ratio = np.divide(inter, union, out=inter)
    return ratio > iou32 if strict else ratio >= iou32


def _signed_rows(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(x1, y1, -x2, -y2) [4, n]`` and the areas ``(x2 - x1) * (y2 - y1)`` (float32, as the reference)."""
    rows = np.empty((4, lo.shape[1]), np.float32)  # C order whatever the inputs' layout (fast loops)
    rows[:2] = lo
    np.negative(hi, out=rows[2:])
    wh = np.subtract(hi, lo)
    return rows, np.multiply(wh[0], wh[1])


def _nms_pairs(lo: np.ndarray, hi: np.ndarray, classes: np.ndarray, iou32: np.float32, limit: int,
               strict: bool) -> np.ndarray | None:
    """Class-aware greedy NMS from every pair of the same class (``i`` ranked above ``j``) at once.

    The suppressing pairs are the edges of a graph whose greedy solution is the fixed point of
    ``keep[j] = not any(keep[i] for edges i -> j)``; it is unique (each box depends only on higher-ranked
    ones) and the iteration from all-kept settles the boxes in rank order, so it ends after (longest
    suppression chain + 1) rounds. None when there are more than ``MAX_PAIRS`` pairs."""
    n = lo.shape[1]
    order = classes.argsort(kind="stable")  # grouped by class, rank order inside each class
    grouped = classes.take(order)
    ends = grouped.searchsorted(grouped, side="right")
    later = ends - np.arange(1, n + 1)  # same-class boxes ranked after each one
    offsets = later.cumsum()
    total = int(offsets[-1])
    if total > MAX_PAIRS:
        return None
    if not total:
        return np.arange(min(n, limit))
    ends -= offsets  # first partner's position, minus the running pair offset
    pair = np.concatenate([np.arange(n), ends]).reshape(2, n).repeat(later, axis=1)
    pair[1] += np.arange(total)
    pair = order.take(pair)  # [2, P]: higher-ranked, lower-ranked
    rows, area = _signed_rows(lo, hi)
    src, dst = pair
    edge = pair.compress(
        _pair_suppresses(rows.take(src, axis=1), rows.take(dst, axis=1), area.take(src), area.take(dst),
                         iou32, strict), axis=1)
    src, dst = edge
    suppressed = np.zeros(n, bool)
    suppressed[dst] = True  # round 1 from all-kept
    while True:
        new = np.zeros(n, bool)
        new[dst.compress(np.logical_not(suppressed).take(src))] = True
        if not np.count_nonzero(np.not_equal(new, suppressed)):
            return np.logical_not(suppressed).nonzero()[0][:limit]
        suppressed = new


def _nms_waves(lo: np.ndarray, hi: np.ndarray, classes: np.ndarray | None, iou32: np.float32, limit: int,
               strict: bool) -> np.ndarray:
    """Greedy NMS in waves, for class-agnostic NMS (few boxes kept out of many overlapping ones) and, with
    bounded memory, for class-aware sets with too many same-class pairs: the best ``WAVE`` boxes still alive
    get their "suppresses" row against every box still alive in one dense block; the greedy walk over those
    rows is a Python loop over the *kept* boxes only, on rows packed into integers (bit j = box j). What
    the kept boxes suppress leaves the alive set; the next wave starts on the survivors after the head."""
    keep: list[int] = []
    rows, area = _signed_rows(lo, hi)
    alive = None  # None: every box, in order (no gather on the first wave)
    while True:
        a_rows, a_area, a_cls = (rows, area, classes) if alive is None else (
            rows.take(alive, axis=1), area.take(alive), None if classes is None else classes.take(alive))
        na = len(a_area)
        h = min(na, WAVE)
        beats = _pair_suppresses(a_rows[:, :h, None], a_rows[:, None, :], a_area[:h, None], a_area, iou32, strict)
        if a_cls is not None:
            beats &= a_cls[:h, None] == a_cls
        packed = np.packbits(beats, axis=1, bitorder="little")
        live = (1 << na) - 1
        head = (1 << h) - 1
        while live & head and len(keep) < limit:
            i = (live & -live).bit_length() - 1  # best box still alive: kept
            keep.append(i if alive is None else int(alive[i]))
            live &= ~int.from_bytes(packed[i].tobytes(), "little")
            live &= ~(1 << i)
        live >>= h
        if not live or len(keep) >= limit:
            break
        bits = np.unpackbits(np.frombuffer(live.to_bytes((na - h + 7) // 8, "little"), np.uint8),
                             count=na - h, bitorder="little")
        rest = np.flatnonzero(bits)
        rest += h
        alive = rest if alive is None else alive.take(rest)
    return np.asarray(keep, dtype=np.int64)


def _nms(lo: np.ndarray, hi: np.ndarray, classes: np.ndarray | None, iou: float, limit: int,
         strict: bool) -> np.ndarray:
    """Greedy NMS (same result as :func:`greedy_nms`) over boxes sorted by descending score given as float32
    ``lo [2, n]`` (x1, y1) and ``hi [2, n]`` (x2, y2): indices of the kept boxes, at most ``limit``."""
    n = lo.shape[1]
    if n <= 1 or limit <= 0:
        return np.arange(min(n, max(limit, 0)))
    iou32 = np.float32(iou)
    if not iou32 > 0:  # every same-class pair suppresses (or any overlap does): the plain loop handles it
        return greedy_nms(np.concatenate([lo, hi]).T, classes, iou, limit, strict)
    # Class-agnostic: dense blocks and a walk over the kept boxes (few kept, many pairs). Class-aware:
    # the same-class pairs (many small classes, most boxes kept). The best r boxes decide their own
    # fate, so a prefix is enough while it keeps >= limit boxes.
    prefix = n if n <= 4 * limit else max(4 * limit, 256)
    while True:
        lo_p, hi_p = lo[:, :prefix], hi[:, :prefix]
        cls_p = None if classes is None else classes[:prefix]
        keep = None if classes is None else _nms_pairs(lo_p, hi_p, cls_p, iou32, limit, strict)
        if keep is None:
            keep = _nms_waves(lo_p, hi_p, cls_p, iou32, limit, strict)
        if len(keep) >= limit or prefix >= n:
            return keep
        prefix *= 4


def fast_greedy_nms(boxes: np.ndarray, classes: np.ndarray | None, iou: float, limit: int, strict: bool) -> np.ndarray:
    """Same result as :func:`greedy_nms` (boxes ``[n, 4]`` corners sorted by descending score), vectorised."""
    columns = np.asarray(boxes, np.float32).T
    return _nms(columns[:2], columns[2:], classes, iou, limit, strict).astype(np.int64, copy=False)


# --------------------------------------------------------------------------------------------------
# NMS models
# --------------------------------------------------------------------------------------------------
# Both models start with the one pass over the scores that any exact implementation needs: a comparison
# with CONF on the class-major ``[nc, A]`` layout of ``output0`` (contiguous rows), reduced over classes
# to "anchor has a score above CONF". Its bool mask (a quarter of the scores' bytes) is the only temporary
# of that size: on the benchmark it costs less than the max-reduction then compare. Everything after it
# works on those anchors' rows only (tens to a few hundred), gathered once.
def _class_major(scores: np.ndarray) -> np.ndarray:
    """``scores [A, nc]`` of one image as a ``[nc, A]`` view (the layout of ``output0``)."""
    return scores.T


def _candidate_anchors(scores_ca: np.ndarray, conf32: np.float32, strict: bool) -> np.ndarray:
    """Indices of the anchors with any class score ``>= conf`` (``> conf`` when ``strict``), ascending."""
    above = np.greater(scores_ca, conf32) if strict else np.greater_equal(scores_ca, conf32)
    return above.any(axis=0).nonzero()[0]


def _corners(boxes_4a: np.ndarray, anchors: np.ndarray, box_coding: int) -> np.ndarray:
    """The candidate boxes as float32 corners ``[4, n]`` (x1, y1, x2, y2 rows)."""
    box = boxes_4a.take(anchors, axis=1).astype(np.float32, copy=False)
    if box_coding == BOX_CORNER:
        return box
    half = box[2:] / 2
    out = np.empty_like(box)
    np.subtract(box[:2], half, out=out[:2])
    np.add(box[:2], half, out=out[2:])
    return out


def _reordered(corners: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """EfficientNMS computes IoU on ``reorder()``-ed corners: ``(min, max)`` of each coordinate pair."""
    return np.minimum(corners[:2], corners[2:]), np.maximum(corners[:2], corners[2:])


def _efficient_image(
    scores_ca: np.ndarray, boxes_4a: np.ndarray, conf32: np.float32, iou: float, topk: int, agnostic: bool,
    box_coding: int, candidate_cap: int | None, strict: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """EfficientNMS on one image (``scores [nc, A]``, ``boxes [4, A]``): kept ``(corners [k, 4] float32,
    scores [k], classes [k] int, anchors [k])`` in output order, or None when no score passes CONF."""
    anchors = _candidate_anchors(scores_ca, conf32, strict)
    if not anchors.size:
        return None
    if agnostic:
        kept = _efficient_agnostic_best(scores_ca, boxes_4a, anchors, conf32, iou, topk, box_coding,
                                        candidate_cap, strict)
        if kept is not None:
            return kept
    nc = scores_ca.shape[0]
    sub = scores_ca.T[anchors]  # [n_anchors, nc], anchor-major like the flat index a * nc + c
    if np.isnan(np.maximum.reduce(sub, axis=None)):  # an anchor with a NaN score: NaN maximum, no candidate
        best = sub.max(axis=1)
        valid = best > conf32 if strict else best >= conf32
        anchors, sub = anchors[valid], sub[valid]
        if not anchors.size:
            return None
    above = sub > conf32 if strict else sub >= conf32
    flat = above.ravel().nonzero()[0]
    cand_scores = sub.ravel().take(flat)
    order = (-cand_scores).argsort(kind="stable")  # ties: lower flat index first
    if candidate_cap is not None and len(order) > candidate_cap:
        order = order[:candidate_cap]
    ai, cls = np.divmod(flat.take(order), nc)
    ai = anchors.take(ai)
    cand_scores = cand_scores.take(order)
    corners = _corners(boxes_4a, ai, box_coding)
    iou_lo, iou_hi = _reordered(corners)
    if agnostic:
        # A lower-ranked label of an anchor already seen has IoU 1 with it and can never be kept (nor
        # suppress anything): drop it before NMS. Zero-area boxes have IoU 0 with themselves and stay.
        seen = np.zeros(len(ai), bool)
        seen[np.unique(ai, return_index=True)[1]] = True
        seen |= (iou_hi[0] <= iou_lo[0]) | (iou_hi[1] <= iou_lo[1])
        if not seen.all():
            sel = seen.nonzero()[0]
            cls, cand_scores, ai = cls.take(sel), cand_scores.take(sel), ai.take(sel)
            corners, iou_lo, iou_hi = (x.take(sel, axis=1) for x in (corners, iou_lo, iou_hi))
    keep = _nms(iou_lo, iou_hi, None if agnostic else cls, iou, topk, strict)
    return corners.take(keep, axis=1).T, cand_scores.take(keep), cls.take(keep), ai.take(keep)


def _efficient_agnostic_best(
    scores_ca: np.ndarray, boxes_4a: np.ndarray, anchors: np.ndarray, conf32: np.float32, iou: float, topk: int,
    box_coding: int, candidate_cap: int | None, strict: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Class-agnostic EfficientNMS from each anchor's best label only; None when that shortcut does not
    apply (then the general path runs). A lower-ranked label of an anchor has IoU 1 with its best one, so
    it can neither be kept nor suppress anything; in the score-sorted multi-label list, the first label of
    each anchor is its maximum (lowest class on ties, as the flat order a * nc + c puts it first), and the
    anchors' best labels keep their relative order: (-score, anchor). The shortcut does not apply with a
    zero-area box (IoU 0 with itself: all its labels stay), a NaN score, or more labels than the cap."""
    sub = scores_ca.take(anchors, axis=1)  # [nc, n_anchors]
    best = sub.max(axis=0)
    if np.isnan(best.max()):
        return None
    if candidate_cap is not None and np.count_nonzero(sub > conf32 if strict else sub >= conf32) > candidate_cap:
        return None
    corners = _corners(boxes_4a, anchors, box_coding)
    iou_lo, iou_hi = _reordered(corners)
    if np.count_nonzero(np.less_equal(iou_hi, iou_lo)):
        return None
    cls = sub.argmax(axis=0)
    order = (-best).argsort(kind="stable")
    keep = order.take(_nms(iou_lo.take(order, axis=1), iou_hi.take(order, axis=1), None, iou, topk, strict))
    return corners.take(keep, axis=1).T, best.take(keep), cls.take(keep), anchors.take(keep)


def _empty_outputs(batch: int, topk: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    return (
        np.zeros((batch, 1), np.int32),
        np.zeros((batch, topk, 4), np.float32),
        np.zeros((batch, topk), np.float32),
        np.zeros((batch, topk), np.int32),
    )


def _check_efficient_inputs(boxes: np.ndarray, scores: np.ndarray, box_coding: int) -> None:
    if box_coding not in (BOX_CORNER, BOX_CENTER_SIZE):
        raise ValueError(f"box_coding must be 0 (corners) or 1 (centre-size), got {box_coding}")
    if boxes.ndim != 3 or boxes.shape[2] != 4 or scores.ndim != 3 or scores.shape[:2] != boxes.shape[:2]:
        raise ValueError(f"expected boxes [B, A, 4] and scores [B, A, nc], got {boxes.shape} and {scores.shape}")


def efficient_nms(
    boxes: np.ndarray,
    scores: np.ndarray,
    conf: float,
    iou: float,
    topk: int,
    agnostic: bool = False,
    box_coding: int = BOX_CENTER_SIZE,
    candidate_cap: int | None = EFFICIENT_NMS_CANDIDATES,
    strict_thresholds: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """NumPy model of ``EfficientNMS_TRT`` (TensorRT plugin/efficientNMSPlugin, efficientNMSInference.cu) on ``boxes [B, A, 4]`` and ``scores [B, A, nc]``.

    Every (anchor, class) pair with ``score >= conf`` is a candidate (multi-label); candidates are sorted
    by descending score per image (ties: anchor-major flat index ``a * nc + c`` first, the GPU sort leaves
    ties unordered), the best ``candidate_cap`` are kept, greedy suppression removes ``IoU >= iou`` against
    kept boxes of the same class (all classes when ``agnostic``), and the first ``topk`` survivors are
    written in score order. Boxes are decoded to corners (``box_coding`` 1 = [cx, cy, w, h] in, 0 =
    corners in); padding rows are zeros with class 0. ``strict_thresholds`` uses ``score > conf`` and
    suppresses ``IoU > iou`` instead (ONNX ``NonMaxSuppression`` / ``INMSLayer``).

    Fastest with the views of ``output0 [B, 4+nc, A]`` that :func:`decode_yolo_output`'s transposes give
    (``scores[b].T`` is then contiguous): only the candidates' rows are read after the first pass.

    Returns ``num_dets [B, 1] int32, det_boxes [B, topk, 4] float32, det_scores [B, topk] float32,
    det_classes [B, topk] int32``.
    """
    _check_efficient_inputs(boxes, scores, box_coding)
    batch = scores.shape[0]
    outputs = _empty_outputs(batch, topk)
    conf32 = np.float32(conf)
    for b in range(batch):
        kept = _efficient_image(_class_major(scores[b]), boxes[b].T, conf32, iou, topk, agnostic, box_coding,
                                candidate_cap, strict_thresholds)
        if kept is None:
            continue
        corners, det_scores, det_classes, _ = kept
        n = len(det_scores)
        outputs[0][b, 0] = n
        outputs[1][b, :n] = corners
        outputs[2][b, :n] = det_scores
        outputs[3][b, :n] = det_classes
    return outputs


def _ultralytics_image(
    scores_ca: np.ndarray, boxes_4a: np.ndarray, conf32: np.float32, iou: float, max_det: int, agnostic: bool,
    box_coding: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """ultralytics' NMS on one image: kept ``(corners [k, 4] float32, scores [k], classes [k] int, anchors [k])``."""
    anchors = _candidate_anchors(scores_ca, conf32, strict=True)
    if not anchors.size:
        return None
    sub = scores_ca.take(anchors, axis=1)  # [nc, n_anchors]
    cls = sub.argmax(axis=0)  # first maximum, like torch.max
    score = sub.max(axis=0)
    if np.count_nonzero(score > conf32) < len(score):  # a NaN score: NaN maximum, no candidate
        valid = (score > conf32).nonzero()[0]
        anchors, cls, score = anchors.take(valid), cls.take(valid), score.take(valid)
        if not anchors.size:
            return None
    order = (-score).argsort(kind="stable")[:ULTRALYTICS_MAX_NMS]
    anchors, cls, score = anchors.take(order), cls.take(order), score.take(order)
    corners = _corners(boxes_4a, anchors, box_coding)
    if agnostic:
        keep = _nms(corners[:2], corners[2:], None, iou, max_det, strict=True)
    else:
        shifted = corners + cls.astype(np.float32) * np.float32(ULTRALYTICS_MAX_WH)
        keep = _nms(shifted[:2], shifted[2:], cls, iou, max_det, strict=True)
    return corners.take(keep, axis=1).T, score.take(keep), cls.take(keep), anchors.take(keep)


def ultralytics_nms(
    boxes_xyxy: np.ndarray,
    scores: np.ndarray,
    conf: float,
    iou: float,
    max_det: int,
    agnostic: bool = False,
    box_coding: int = BOX_CORNER,
) -> list[np.ndarray]:
    """NumPy equivalent of ``ultralytics.utils.nms.non_max_suppression`` (defaults: ``multi_label=False``).

    Per image: best class per anchor, keep ``score > conf``, sort by score (first ``max_nms`` = 30000),
    greedy NMS suppressing ``IoU > iou`` on boxes offset by ``class * 7680`` (class-aware) or unshifted
    (agnostic), first ``max_det``. Returns per image an ``[n, 6]`` float32 array
    ``x1, y1, x2, y2, score, class`` in input pixels, like ultralytics. ``box_coding=1`` takes centre-size
    boxes and converts only the candidates (what :func:`postprocess_track_a` does).
    """
    results = []
    conf32 = np.float32(conf)
    for b in range(scores.shape[0]):
        kept = _ultralytics_image(_class_major(scores[b]), boxes_xyxy[b].T, conf32, iou, max_det, agnostic,
                                  box_coding)
        if kept is None:
            results.append(np.zeros((0, 6), np.float32))
            continue
        corners, score, cls, _ = kept
        results.append(np.concatenate([corners, score[:, None], cls[:, None].astype(np.float32)], axis=1))
    return results


# --------------------------------------------------------------------------------------------------
# Back to the original image
# --------------------------------------------------------------------------------------------------
@dataclass
class Detections:
    """Detections of one image: ``boxes [n, 4]`` x1, y1, x2, y2 in original pixels, ``scores [n]``,
    ``classes [n]`` int, in descending score order."""

    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray

    def __len__(self) -> int:
        return len(self.scores)

    def to_list(self, names: Sequence[str] | None = None) -> list[dict]:
        """Plain dicts for printing or JSON: class id, optional label, score, box."""
        rows = []
        for box, score, cls in zip(self.boxes.tolist(), self.scores.tolist(), self.classes.tolist()):
            row = {"class_id": int(cls), "score": round(float(score), 5), "box": [round(v, 2) for v in box]}
            if names is not None:
                row["label"] = names[int(cls)] if 0 <= int(cls) < len(names) else str(cls)
            rows.append(row)
        return rows

    def format(self, names: Sequence[str] | None = None) -> str:
        """One line per detection: ``label score x1 y1 x2 y2``."""
        return "\n".join(
            f"{row.get('label', row['class_id'])} {row['score']:.3f} " + " ".join(f"{v:.1f}" for v in row["box"])
            for row in self.to_list(names)
        )

def map_boxes_to_original(det_boxes: np.ndarray, info: LetterboxInfo) -> np.ndarray:
    """Corner boxes in network-input pixels -> original-image pixels, clipped to the image
    (``ultralytics.utils.ops.scale_boxes``: subtract the padding, divide by the per-axis gain, clip)."""
    pad, gain, limit = np.array(
        [[info.pad_x, info.pad_y] * 2, [info.gain_x, info.gain_y] * 2, [info.orig_w, info.orig_h] * 2], np.float32)
    mapped = np.subtract(np.asarray(det_boxes, dtype=np.float32), pad)
    mapped /= gain
    np.maximum(mapped, np.zeros(4, np.float32), out=mapped)  # == clip(0, limit): max, then min, NaN kept
    return np.minimum(mapped, limit, out=mapped)


def postprocess_track_a(
    output0: np.ndarray,
    infos: Sequence[LetterboxInfo],
    conf: float,
    iou: float,
    topk: int,
    mode: str = "efficient",
    agnostic: bool = False,
) -> list[Detections]:
    """Track A ``output0 [B, 4+nc, A]`` -> per-image :class:`Detections` in original pixels.

    ``mode``: ``efficient`` (same detections as the end2end EfficientNMS engine), ``onnx`` (same as the
    ``NMS=onnx`` end2end graph) or ``ultralytics`` (same as ``YOLO.predict``). Reads ``output0`` in its own
    layout (class-major rows, see :func:`efficient_nms`); no padded end2end arrays in between.
    """
    return [dets for dets, _ in track_a_kept(output0, infos, conf, iou, topk, mode, agnostic)]


def track_a_kept(
    output0: np.ndarray,
    infos: Sequence[LetterboxInfo],
    conf: float,
    iou: float,
    topk: int,
    mode: str = "efficient",
    agnostic: bool = False,
    num_classes: int | None = None,
) -> list[tuple[Detections, np.ndarray]]:
    """:func:`postprocess_track_a` that also says which anchor each detection came from.

    ``output0 [B, 4+nc+extra, A]``: rows ``4 : 4+num_classes`` are the scores (all rows after the box when
    ``num_classes`` is None); the ``extra`` rows (segment's mask coefficients, pose's keypoints) take no part
    in NMS. Per image: the :class:`Detections` and ``anchors [n]`` int64, the column of ``output0`` of each
    detection, so a task gathers its extras with ``output0[b, 4 + nc:, anchors]``.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if len(infos) != output0.shape[0]:
        raise ValueError(f"{len(infos)} LetterboxInfo for a batch of {output0.shape[0]}")
    if output0.ndim != 3 or output0.shape[1] < 5:
        raise ValueError(f"expected output0 [B, 4+nc, A], got shape {output0.shape}")
    end = output0.shape[1] if num_classes is None else 4 + num_classes
    if not 4 < end <= output0.shape[1]:
        raise ValueError(f"output0 {output0.shape} has no room for {num_classes} class scores")
    conf32 = np.float32(conf)
    floor_bits = fp16_floor_bits(conf) if output0.dtype == np.float16 else None
    results = []
    for out, info in zip(output0, infos):
        columns = None
        if output0.dtype == np.float16:  # OUTPUT_DTYPE=float16: convert only the anchors that can reach CONF
            out, columns = fp16_candidates(out, 4, end, floor_bits)
        if mode == "ultralytics":
            kept = _ultralytics_image(out[4:end], out[:4], conf32, iou, topk, agnostic, BOX_CENTER_SIZE)
        else:
            kept = _efficient_image(out[4:end], out[:4], conf32, iou, topk, agnostic, BOX_CENTER_SIZE,
                                    EFFICIENT_NMS_CANDIDATES, mode == "onnx")
        if kept is None:
            results.append((Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32),
                                       np.zeros(0, np.int32)), np.zeros(0, np.int64)))
            continue
        corners, scores, classes, anchors = kept
        if columns is not None:
            anchors = columns[anchors]
        results.append((Detections(map_boxes_to_original(corners, info), scores.astype(np.float32),
                                   classes.astype(np.int32)), anchors.astype(np.int64)))
    return results


def as_float32(value: np.ndarray) -> np.ndarray:
    """An FP16 model output (OUTPUT_DTYPE=float16) as float32; any other array as it is."""
    return value.astype(np.float32) if value.dtype == np.float16 else value


def fp16_floor_bits(conf: float) -> int | None:
    """The bit pattern of the largest FP16 value <= ``conf`` (None when ``conf`` <= 0: every anchor counts)."""
    if not conf > 0:
        return None
    floor = np.float16(conf)
    if float(floor) > conf:
        floor = np.nextafter(floor, np.float16(0))
    return int(floor.view(np.uint16))


def fp16_candidates(out: np.ndarray, first: int, end: int, floor_bits: int | None) -> tuple[np.ndarray, np.ndarray]:
    """One image's FP16 ``out [rows, A]`` (OUTPUT_DTYPE=float16) as float32, reduced to the anchors whose best
    score (rows ``first:end``) may reach CONF, and those anchors' columns (ascending).

    NumPy converts FP16 in software (about 1.3 ms per 640 image of 80 classes on the CI machine); the
    best score per anchor is taken on the bit patterns instead, which order like the values for
    non-negative FP16 numbers (a negative or NaN score has a larger pattern and is kept, never lost).
    Every anchor with a score >= CONF has a pattern >= ``floor_bits``, so the NMS sees every anchor it
    could keep, as the exact float32 values, in the original order: the same detections as converting all."""
    if floor_bits is None:
        return out.astype(np.float32), np.arange(out.shape[1])
    best = out[first:end].view(np.uint16).max(axis=0)
    columns = np.flatnonzero(best >= floor_bits)
    return out[:, columns].astype(np.float32), columns


def postprocess_end2end(
    num_dets: np.ndarray,
    det_boxes: np.ndarray,
    det_scores: np.ndarray,
    det_classes: np.ndarray,
    infos: Sequence[LetterboxInfo],
) -> list[Detections]:
    """The four end2end outputs -> per-image :class:`Detections` in original pixels.

    Slices each image by ``num_dets`` (padding rows are zeros with class 0) and maps the corner boxes
    back; no xywh->xyxy conversion (EfficientNMS already writes corners; TensorRT plugin/efficientNMSPlugin README).
    """
    if len(infos) != num_dets.shape[0]:
        raise ValueError(f"{len(infos)} LetterboxInfo for a batch of {num_dets.shape[0]}")
    results = []
    for b, info in enumerate(infos):
        n = int(np.clip(num_dets[b].reshape(-1)[0], 0, det_scores.shape[1]))
        results.append(
            Detections(
                map_boxes_to_original(det_boxes[b, :n], info),
                np.asarray(det_scores[b, :n], np.float32),
                np.asarray(det_classes[b, :n], np.int32),
            )
        )
    return results


def postprocess_one2one(output0: np.ndarray, infos: Sequence[LetterboxInfo], conf: float) -> list[Detections]:
    """An NMS-free (YOLO26 / YOLOv10 one-to-one head, ultralytics ``nms=False``) Track A output
    ``output0 [B, max_det, 6]`` (x1, y1, x2, y2, score, class; sorted by score) -> per-image
    :class:`Detections`: rows with ``score >= conf``, boxes mapped back. No NMS: the head needs none."""
    if output0.ndim != 3 or output0.shape[2] != 6:
        raise ValueError(f"expected an NMS-free output [B, max_det, 6], got {output0.shape}")
    if len(infos) != output0.shape[0]:
        raise ValueError(f"{len(infos)} LetterboxInfo for a batch of {output0.shape[0]}")
    results = []
    for rows, info in zip(output0, infos):
        rows = rows[rows[:, 4] >= np.float32(conf)]
        results.append(Detections(map_boxes_to_original(rows[:, :4], info), rows[:, 4].astype(np.float32),
                                  rows[:, 5].astype(np.int32)))
    return results
