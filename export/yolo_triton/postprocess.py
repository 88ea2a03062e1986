"""Client-side pre- and post-processing for YOLO detectors served by Triton (NumPy only).

One importable place used by ``scripts/validate.py``, the Triton smoke client and the tests:

* :func:`letterbox` / :func:`letterbox_batch` reproduce ultralytics' ``LetterBox(new_shape=(S, S),
  auto=False, scaleup=True, center=True)`` plus the predictor's BGR->RGB, HWC->CHW, ``/255`` exactly.
* :func:`decode_yolo_output` splits a Track A ``output0 [B, 4+nc, A]`` into corner boxes and scores.
* :func:`efficient_nms` is a NumPy model of TensorRT's ``EfficientNMS_TRT`` (spec §1.5): multi-label
  candidates ``score >= conf``, global descending sort, top-5000 candidate cap, per-class (or
  agnostic) greedy suppression of ``IoU >= iou``, global top-k, corner output, zero padding with class
  0. ``strict_thresholds=True`` switches to the ONNX ``NonMaxSuppression`` / ``INMSLayer`` comparisons
  (``score > conf``, suppress ``IoU > iou``), the ``NMS=onnx`` graph's semantics.
* :func:`ultralytics_nms` matches ``ultralytics.utils.nms.non_max_suppression`` (best class per box,
  ``score > conf``, suppress ``IoU > iou`` with the per-class coordinate offset, ``max_det``).
* :func:`map_boxes_to_original`, :func:`postprocess_track_a`, :func:`postprocess_end2end` return
  per-image detections in original-image pixels.

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
EFFICIENT_NMS_CANDIDATES = 5000  # numSelectedBoxes on GPUs with >= 64K registers per block (spec §1.5)
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


def to_chw_rgb_float(image_bgr_hwc: np.ndarray) -> np.ndarray:
    """BGR HWC uint8 -> RGB CHW float32 in [0, 1] (``float(x) / 255`` in float32, like the predictor)."""
    chw = np.ascontiguousarray(image_bgr_hwc[..., ::-1].transpose(2, 0, 1))
    return chw.astype(np.float32) / np.float32(255.0)


def letterbox(image_bgr: np.ndarray, imgsz: int) -> tuple[np.ndarray, LetterboxInfo]:
    """One BGR image -> ``([3, imgsz, imgsz] float32 RGB 0..1, LetterboxInfo)``."""
    padded, info = letterbox_uint8(image_bgr, imgsz)
    return to_chw_rgb_float(padded), info


def letterbox_batch(images_bgr: Sequence[np.ndarray], imgsz: int) -> tuple[np.ndarray, list[LetterboxInfo]]:
    """Several BGR images -> ``([B, 3, imgsz, imgsz] float32, [LetterboxInfo] * B)``."""
    if not images_bgr:
        raise ValueError("letterbox_batch needs at least one image")
    pairs = [letterbox(image, imgsz) for image in images_bgr]
    return np.stack([p[0] for p in pairs]), [p[1] for p in pairs]


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


def _reorder_corners(boxes: np.ndarray) -> np.ndarray:
    """EfficientNMS computes IoU on ``reorder()``-ed copies (x1 <= x2, y1 <= y2)."""
    return np.concatenate(
        [np.minimum(boxes[:, :2], boxes[:, 2:]), np.maximum(boxes[:, :2], boxes[:, 2:])], axis=1
    )


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


MAX_PAIRS = 2_000_000  # above this many overlapping same-class pairs, use the per-kept-box loop


def _pairs_iou(columns: np.ndarray, area: np.ndarray, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """IoU of boxes ``src`` and ``dst`` pairwise (``columns [4, n]``: contiguous x1, y1, x2, y2 rows),
    float32, same values as :func:`_iou_one_to_many`. 1-D ``take`` is several times faster than fancy
    indexing of ``[n, 4]`` rows."""
    x1, y1, x2, y2 = columns
    iw = np.minimum(x2.take(src), x2.take(dst))
    iw -= np.maximum(x1.take(src), x1.take(dst))
    ih = np.minimum(y2.take(src), y2.take(dst))
    ih -= np.maximum(y1.take(src), y1.take(dst))
    np.maximum(iw, 0, out=iw)  # max(0, w) * max(0, h) == (w > 0 and h > 0 ? w * h : 0)
    np.maximum(ih, 0, out=ih)
    inter = iw * ih
    union = area.take(src) + area.take(dst) - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def _overlap_candidates(columns: np.ndarray, classes: np.ndarray | None
                        ) -> tuple[np.ndarray, np.ndarray] | None:
    """Every pair of boxes of the same class whose x-intervals overlap, as ``(src, dst)`` with ``src`` the
    higher-ranked (lower index). Sweep line: sort by (class, left edge); each box pairs with the boxes after
    it whose left edge lies before its right edge. Pairs without x-overlap have IoU 0 and can never
    suppress (thresholds are > 0), so they are not generated."""
    n = columns.shape[1]
    lo = np.minimum(columns[0], columns[2]).astype(np.float64)
    hi = np.maximum(columns[0], columns[2]).astype(np.float64)
    lo_min = lo.min()
    span = float(hi.max() - lo_min) * 2 + 1
    group = np.zeros(n) if classes is None else classes.astype(np.float64)
    order = np.lexsort((lo, group))
    start_key = (group * span + (lo - lo_min))[order]
    end_key = (group * span + (hi - lo_min))[order]
    later = np.searchsorted(start_key, end_key, side="left") - np.arange(n) - 1
    np.maximum(later, 0, out=later)
    total = int(later.sum())
    if total > MAX_PAIRS:
        return None
    first = np.repeat(np.arange(n), later)
    second = first + 1 + np.arange(total) - np.repeat(np.cumsum(later) - later, later)
    a, b = order.take(first), order.take(second)
    return np.minimum(a, b), np.maximum(a, b)


def fast_greedy_nms(boxes: np.ndarray, classes: np.ndarray | None, iou: float, limit: int, strict: bool) -> np.ndarray:
    """Same result as :func:`greedy_nms`, without a Python loop per kept box.

    Builds the pairs (higher-ranked i, lower-ranked j) of the same class (any class when ``classes`` is
    None) that overlap in x, keeps the suppressing edges, then iterates
    ``keep[j] = not any(keep[i] for edges i -> j)`` to its fixed point. Greedy NMS is that fixed point,
    and it is unique (each box's fate depends only on higher-ranked boxes), so the iteration, which
    settles the boxes in rank order, ends exactly there; it needs as many rounds as the longest
    suppression chain (a handful). For the same reason the best ``r`` boxes alone decide their own fate:
    the work starts on a prefix and grows it only while fewer than ``limit`` boxes are kept.
    """
    n = len(boxes)
    if n == 0:
        return np.zeros(0, np.int64)
    if iou <= 0:  # every pair suppresses (non-strict) or any overlap does: the plain loop handles it
        return greedy_nms(boxes, classes, iou, limit, strict)
    prefix = min(n, max(4 * limit, 256))
    while True:
        keep = _fixed_point_nms(boxes[:prefix], None if classes is None else classes[:prefix], iou, strict)
        if keep is None:  # a huge candidate set (very low CONF): the per-kept-box loop needs less memory
            return greedy_nms(boxes, classes, iou, limit, strict)
        if len(keep) >= limit or prefix == n:
            return keep[:limit]
        prefix = min(n, prefix * 4)


def _fixed_point_nms(boxes: np.ndarray, classes: np.ndarray | None, iou: float, strict: bool) -> np.ndarray | None:
    """Every kept index of greedy NMS over ``boxes`` (see :func:`fast_greedy_nms`); None when there
    are more than ``MAX_PAIRS`` overlapping pairs."""
    n = len(boxes)
    columns = np.ascontiguousarray(boxes.T, dtype=np.float32)
    pairs = _overlap_candidates(columns, classes)
    if pairs is None:
        return None
    src, dst = pairs
    area = (columns[2] - columns[0]) * (columns[3] - columns[1])
    overlap = _pairs_iou(columns, area, src, dst)
    edge = overlap > np.float32(iou) if strict else overlap >= np.float32(iou)
    src, dst = src[edge], dst[edge]
    keep = np.ones(n, bool)
    while True:
        suppressed = np.zeros(n, bool)
        suppressed[dst[keep[src]]] = True
        if np.array_equal(suppressed, ~keep):
            return np.flatnonzero(keep)
        keep = ~suppressed


# --------------------------------------------------------------------------------------------------
# NMS models
# --------------------------------------------------------------------------------------------------
def _empty_outputs(batch: int, topk: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    return (
        np.zeros((batch, 1), np.int32),
        np.zeros((batch, topk, 4), np.float32),
        np.zeros((batch, topk), np.float32),
        np.zeros((batch, topk), np.int32),
    )


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
    """NumPy model of ``EfficientNMS_TRT`` (spec §1.5) on ``boxes [B, A, 4]`` and ``scores [B, A, nc]``.

    Every (anchor, class) pair with ``score >= conf`` is a candidate (multi-label); candidates are sorted
    by descending score per image (ties: anchor-major flat index ``a * nc + c`` first, the GPU sort leaves
    ties unordered), the best ``candidate_cap`` are kept, greedy suppression removes ``IoU >= iou`` against
    kept boxes of the same class (all classes when ``agnostic``), and the first ``topk`` survivors are
    written in score order. Boxes are decoded to corners (``box_coding`` 1 = [cx, cy, w, h] in, 0 =
    corners in); padding rows are zeros with class 0. ``strict_thresholds`` uses ``score > conf`` and
    suppresses ``IoU > iou`` instead (ONNX ``NonMaxSuppression`` / ``INMSLayer``).

    Returns ``num_dets [B, 1] int32, det_boxes [B, topk, 4] float32, det_scores [B, topk] float32,
    det_classes [B, topk] int32``.
    """
    if box_coding not in (BOX_CORNER, BOX_CENTER_SIZE):
        raise ValueError(f"box_coding must be 0 (corners) or 1 (centre-size), got {box_coding}")
    if boxes.ndim != 3 or boxes.shape[2] != 4 or scores.ndim != 3 or scores.shape[:2] != boxes.shape[:2]:
        raise ValueError(f"expected boxes [B, A, 4] and scores [B, A, nc], got {boxes.shape} and {scores.shape}")
    batch, _, nc = scores.shape
    outputs = _empty_outputs(batch, topk)
    conf32 = np.float32(conf)
    for b in range(batch):
        s = scores[b]
        # Cheap pre-filter on the per-anchor maximum, then the exact (anchor, class) pairs.
        best = s.max(axis=1)
        anchors = np.flatnonzero(best > conf32 if strict_thresholds else best >= conf32)
        if not anchors.size:
            continue
        sub = s[anchors]
        flat = np.flatnonzero(sub > conf32 if strict_thresholds else sub >= conf32)  # anchor-major order
        ai, ci = np.divmod(flat, nc)  # (faster than the 2-D np.nonzero)
        cand_scores = sub[ai, ci]
        order = np.argsort(-cand_scores, kind="stable")
        if candidate_cap is not None:
            order = order[:candidate_cap]
        anchor_idx, cls, cand_scores = anchors[ai[order]], ci[order], cand_scores[order]
        cand = boxes[b, anchor_idx].astype(np.float32)
        if box_coding == BOX_CENTER_SIZE:
            cand = xywh_to_xyxy(cand)
        iou_boxes = cand if box_coding == BOX_CENTER_SIZE and (cand[:, 2:] >= cand[:, :2]).all() \
            else _reorder_corners(cand)  # w, h >= 0 already ordered
        if agnostic:
            # A lower-ranked label of an anchor already seen has IoU 1 with it and can never be kept (nor
            # suppress anything): drop it before NMS. Zero-area boxes have IoU 0 with themselves and stay.
            _, first = np.unique(anchor_idx, return_index=True)
            mask = np.zeros(len(anchor_idx), bool)
            mask[first] = True
            mask |= (iou_boxes[:, 2] <= iou_boxes[:, 0]) | (iou_boxes[:, 3] <= iou_boxes[:, 1])
            cand, cls, cand_scores, iou_boxes = cand[mask], cls[mask], cand_scores[mask], iou_boxes[mask]
        keep = fast_greedy_nms(iou_boxes, None if agnostic else cls, iou, topk, strict_thresholds)
        n = len(keep)
        outputs[0][b, 0] = n
        outputs[1][b, :n] = cand[keep]
        outputs[2][b, :n] = cand_scores[keep]
        outputs[3][b, :n] = cls[keep]
    return outputs


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
        s = scores[b]
        best = s.max(axis=1)
        anchors = np.flatnonzero(best > conf32)
        if not anchors.size:
            results.append(np.zeros((0, 6), np.float32))
            continue
        cls = s[anchors].argmax(axis=1)
        score = best[anchors]
        order = np.argsort(-score, kind="stable")[:ULTRALYTICS_MAX_NMS]
        anchors, cls, score = anchors[order], cls[order], score[order]
        box = boxes_xyxy[b, anchors].astype(np.float32)
        if box_coding == BOX_CENTER_SIZE:
            box = xywh_to_xyxy(box)
        shifted = box if agnostic else box + (cls.astype(np.float32) * np.float32(ULTRALYTICS_MAX_WH))[:, None]
        keep = fast_greedy_nms(shifted, None if agnostic else cls, iou, max_det, strict=True)
        results.append(
            np.concatenate([box[keep], score[keep, None], cls[keep, None].astype(np.float32)], axis=1)
        )
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
    boxes = np.asarray(det_boxes, dtype=np.float32).copy()
    boxes[..., [0, 2]] = (boxes[..., [0, 2]] - info.pad_x) / np.float32(info.gain_x)
    boxes[..., [1, 3]] = (boxes[..., [1, 3]] - info.pad_y) / np.float32(info.gain_y)
    boxes[..., [0, 2]] = boxes[..., [0, 2]].clip(0, info.orig_w)
    boxes[..., [1, 3]] = boxes[..., [1, 3]].clip(0, info.orig_h)
    return boxes


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
    ``NMS=onnx`` end2end graph) or ``ultralytics`` (same as ``YOLO.predict``).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if len(infos) != output0.shape[0]:
        raise ValueError(f"{len(infos)} LetterboxInfo for a batch of {output0.shape[0]}")
    if mode == "ultralytics":
        boxes_xywh = output0[:, :4, :].transpose(0, 2, 1)
        scores = output0[:, 4:, :].transpose(0, 2, 1)
        rows = ultralytics_nms(boxes_xywh, scores, conf, iou, topk, agnostic, box_coding=BOX_CENTER_SIZE)
        return [
            Detections(map_boxes_to_original(r[:, :4], info), r[:, 4].copy(), r[:, 5].astype(np.int32))
            for r, info in zip(rows, infos)
        ]
    boxes_xywh = output0[:, :4, :].transpose(0, 2, 1)
    scores = output0[:, 4:, :].transpose(0, 2, 1)
    strict = mode == "onnx"
    outputs = efficient_nms(
        boxes_xywh, scores, conf, iou, topk, agnostic, BOX_CENTER_SIZE,
        candidate_cap=EFFICIENT_NMS_CANDIDATES, strict_thresholds=strict,
    )
    return postprocess_end2end(*outputs, infos)


def postprocess_end2end(
    num_dets: np.ndarray,
    det_boxes: np.ndarray,
    det_scores: np.ndarray,
    det_classes: np.ndarray,
    infos: Sequence[LetterboxInfo],
) -> list[Detections]:
    """The four end2end outputs -> per-image :class:`Detections` in original pixels.

    Slices each image by ``num_dets`` (padding rows are zeros with class 0) and maps the corner boxes
    back; no xywh->xyxy conversion (EfficientNMS already writes corners, spec §1.5).
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
