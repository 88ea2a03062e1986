"""Segment: boxes, scores, classes and instance masks ``[n, H, W]`` bool at the original image size.

NumPy and OpenCV only (no torch): boxes come from ``postprocess``'s NMS exactly as detect's
(:func:`postprocess.track_a_kept` also names each kept anchor, whose mask coefficients are gathered), and
the masks follow ultralytics 8.4.190's default predict path (``retina_masks=False``):

1. ``SegmentationPredictor.construct_result`` -> ``ops.process_mask(protos, coeffs, boxes, img.shape[2:],
   upsample=True)``: ``coeffs @ protos`` at prototype resolution (``S/4``), bilinear upsampling to the
   network input ``S x S`` (``F.interpolate``, half-pixel centres; here ``cv2.resize`` ``INTER_LINEAR`` on
   float32, the same sampling), binarised ``> 0`` (``sigmoid > 0.5``), then ``ops.crop_mask`` to the box
   in network-input pixels (columns ``x1 <= c < x2``, rows ``y1 <= r < y2``). ``construct_result`` then
   drops the detections whose mask is empty (``masks.amax((-2, -1)) > 0``); so does :func:`decode`.
2. ``Results.masks.data`` is that input-size mask; it reaches the original image the way ultralytics
   draws it (``Annotator.masks`` in ``utils/plotting.py``): ``ops.scale_masks(masks[None].float(),
   orig_shape)[0] > 0.5``, i.e. cut the letterbox content ``[top:bottom, left:right]`` out of the input,
   resize it bilinearly to ``H x W`` and keep ``> 0.5``. :func:`to_original` does that here;
   :meth:`SegmentTask.reference` calls ultralytics' own ``scale_masks`` on ``Results.masks``.

The network input size is four times the prototypes' (as ``ops.process_mask_native`` assumes). Masks are
resized one plane at a time, so the only stacks at the original size are the bool masks ``Instances.masks``
holds.

JSON masks are COCO *uncompressed* RLE: ``{"size": [h, w], "counts": [...]}``, runs over the mask read
column by column (Fortran order), starting with a run of zeros (0 when the first pixel is set), as
``pycocotools.mask.frPyObjects`` reads them.
"""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from yolo_triton import postprocess as pp
from yolo_triton.errors import StepError
from yolo_triton.settings import END2END_OUTPUTS, END2END_TASK_OUTPUTS, PROTOS_OUTPUT, TRACK_A_OUTPUT
from yolo_triton.task_base import LAYOUTS, Instances, NmsParams, Task, TaskShape, Tolerance
from yolo_triton.task_detect import colour, draw_boxes, match, unmatched_problems

PROTO_STRIDE = 4  # network input pixels per prototype pixel (ultralytics' Proto upsamples stride 8 by 2)
MASK_ALPHA = 0.5  # draw: mask opacity, ultralytics' Annotator.masks default


# --------------------------------------------------------------------------------------------------
# Masks
# --------------------------------------------------------------------------------------------------
def _resize_above(planes: np.ndarray, height: int, width: int, threshold: float) -> np.ndarray:
    """``[n, h, w]`` (as float32) -> ``[n, height, width]`` bool: resized bilinearly with half-pixel centres
    (``F.interpolate`` ``mode="bilinear"``, ``align_corners=False``, no antialias), then ``> threshold``.
    One plane at a time: no float stack at the output size, and cv2 is far faster on single planes."""
    out = np.empty((len(planes), height, width), bool)
    for plane, dst in zip(planes, out):
        resized = cv2.resize(plane.astype(np.float32, copy=False), (width, height), interpolation=cv2.INTER_LINEAR)
        np.greater(resized, threshold, out=dst)
    return out


def crop_to_boxes(masks: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """``ops.crop_mask``: zero every pixel of ``masks [n, h, w]`` outside its box ``[n, 4]`` (x1, y1, x2, y2
    in the masks' pixels; a pixel ``(r, c)`` stays when ``x1 <= c < x2`` and ``y1 <= r < y2``), in place."""
    _, h, w = masks.shape
    boxes = np.asarray(boxes, np.float32)
    cols = np.arange(w, dtype=np.float32)
    rows = np.arange(h, dtype=np.float32)
    masks &= ((cols >= boxes[:, 0:1]) & (cols < boxes[:, 2:3]))[:, None, :]
    masks &= ((rows >= boxes[:, 1:2]) & (rows < boxes[:, 3:4]))[:, :, None]
    return masks


def input_masks(protos: np.ndarray, coeffs: np.ndarray, boxes_input: np.ndarray) -> np.ndarray:
    """``ops.process_mask(..., upsample=True)``: prototypes ``[nm, mh, mw]``, coefficients ``[n, nm]`` and
    corner boxes ``[n, 4]`` in network-input pixels -> ``[n, 4*mh, 4*mw]`` bool masks at the input size."""
    nm, mh, mw = protos.shape
    if coeffs.ndim != 2 or coeffs.shape[1] != nm:
        raise StepError(f"mask coefficients {coeffs.shape} do not fit prototypes {protos.shape}: expected [n, {nm}]")
    logits = (np.asarray(coeffs, np.float32) @ np.asarray(protos, np.float32).reshape(nm, -1)).reshape(-1, mh, mw)
    out = _resize_above(logits, PROTO_STRIDE * mh, PROTO_STRIDE * mw, 0.0)
    return crop_to_boxes(out, boxes_input)


def to_original(masks: np.ndarray, info: pp.LetterboxInfo) -> np.ndarray:
    """Input-size masks ``[n, S, S]`` -> ``[n, H, W]`` bool at the original size, as
    ``ops.scale_masks(masks[None].float(), (H, W))[0] > 0.5`` (the letterbox content, resized bilinearly)."""
    top, left = info.pad_y, info.pad_x
    content = masks[:, top:top + info.new_h, left:left + info.new_w]
    return _resize_above(content, info.orig_h, info.orig_w, 0.5)


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two bool masks of one size (1.0 when both are empty: they agree)."""
    union = np.count_nonzero(a | b)
    return np.count_nonzero(a & b) / union if union else 1.0


# --------------------------------------------------------------------------------------------------
# COCO uncompressed RLE
# --------------------------------------------------------------------------------------------------
def rle_encode(mask: np.ndarray) -> dict:
    """A bool mask ``[h, w]`` -> ``{"size": [h, w], "counts": [...]}``: run lengths over the column-major
    (Fortran order) pixels, starting with the run of zeros (0 when the first pixel is set)."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"expected one [h, w] mask, got shape {mask.shape}")
    flat = mask.ravel(order="F").astype(bool)
    if not flat.size:
        return {"size": list(mask.shape), "counts": []}
    changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    counts = np.diff(np.concatenate([[0], changes, [flat.size]]))
    if flat[0]:
        counts = np.concatenate([[0], counts])
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": [int(c) for c in counts]}


def rle_decode(rle: dict) -> np.ndarray:
    """:func:`rle_encode`'s inverse: ``{"size": [h, w], "counts": [...]}`` -> bool mask ``[h, w]``."""
    h, w = (int(v) for v in rle["size"])
    counts = np.asarray(rle["counts"], np.int64)
    if counts.sum() != h * w or (counts < 0).any():
        raise ValueError(f"RLE counts sum to {int(counts.sum())}, not {h} x {w} = {h * w} pixels")
    values = np.arange(len(counts)) % 2 == 1  # runs alternate, zeros first
    return np.repeat(values, counts).reshape((h, w), order="F")


# --------------------------------------------------------------------------------------------------
# The task
# --------------------------------------------------------------------------------------------------
def _masked(dets: pp.Detections, boxes_input: np.ndarray, coeffs: np.ndarray, protos: np.ndarray,
            info: pp.LetterboxInfo) -> Instances:
    """One image's detections with their masks at the original size; detections with an empty mask at
    the input size are dropped (as ``construct_result``)."""
    masks = input_masks(protos, coeffs, boxes_input)
    keep = masks.any(axis=(1, 2))
    return Instances(dets.boxes[keep], dets.scores[keep], dets.classes[keep], masks=to_original(masks[keep], info))


def _protos(outputs: dict[str, np.ndarray], batch: int) -> np.ndarray:
    protos = outputs[PROTOS_OUTPUT]
    if protos.ndim != 4 or protos.shape[0] != batch:
        raise StepError(f"expected prototypes {PROTOS_OUTPUT} [{batch}, nm, h, w], got shape {protos.shape}")
    return protos


class SegmentTask(Task):
    name = "segment"

    def output_names(self, layout: str, shape: TaskShape) -> tuple[str, ...]:
        if layout == "end2end":
            return END2END_OUTPUTS + END2END_TASK_OUTPUTS["segment"]
        return TRACK_A_OUTPUT, PROTOS_OUTPUT

    def decode(self, outputs, infos, shape: TaskShape, params: NmsParams, layout: str) -> list[Instances]:
        if layout not in LAYOUTS:
            raise StepError(f"unknown layout '{layout}'; one of {', '.join(LAYOUTS)}")
        missing = [name for name in self.output_names(layout, shape) if name not in outputs]
        if missing:
            raise StepError(f"segment {layout} outputs lack {', '.join(missing)} (got {', '.join(outputs) or 'none'})")
        if layout == "end2end":
            return self._decode_end2end(outputs, infos)
        output0 = outputs[TRACK_A_OUTPUT]
        if output0.ndim != 3 or output0.shape[0] != len(infos):
            raise StepError(f"expected {TRACK_A_OUTPUT} with a batch of {len(infos)}, got shape {output0.shape}")
        protos = _protos(outputs, len(infos))
        nm = protos.shape[1]
        if layout == "one2one":
            return self._decode_one2one(output0, protos, infos, params)
        nc = shape.num_classes
        if output0.shape[1] != 4 + nc + nm:
            raise StepError(f"{TRACK_A_OUTPUT} {output0.shape} is not [B, 4 + {nc} classes + {nm} mask "
                            f"coefficients, anchors]")
        results = []
        for b, (dets, anchors) in enumerate(pp.track_a_kept(output0, infos, params.conf, params.iou, params.topk,
                                                            params.mode, params.agnostic, num_classes=nc)):
            columns = output0[b][:, anchors]  # [4 + nc + nm, n]: only the kept anchors
            boxes_input = pp.xywh_to_xyxy(columns[:4].T.astype(np.float32))
            results.append(_masked(dets, boxes_input, columns[4 + nc:].T, protos[b], infos[b]))
        return results

    @staticmethod
    def _decode_one2one(output0, protos, infos, params: NmsParams) -> list[Instances]:
        """``[B, max_det, 6 + nm]`` rows (x1, y1, x2, y2, score, class, coefficients; by score): those with
        ``score >= conf`` (as ``postprocess_one2one``), at most ``topk`` (predict's ``max_det``)."""
        nm = protos.shape[1]
        if output0.shape[2] != 6 + nm:
            raise StepError(f"expected an NMS-free {TRACK_A_OUTPUT} [B, max_det, 6 + {nm}], got {output0.shape}")
        results = []
        for rows, proto, info in zip(output0, protos, infos):
            rows = rows[rows[:, 4] >= np.float32(params.conf)][:params.topk]
            dets = pp.Detections(pp.map_boxes_to_original(rows[:, :4], info), rows[:, 4].astype(np.float32),
                                 rows[:, 5].astype(np.int32))
            results.append(_masked(dets, rows[:, :4], rows[:, 6:], proto, info))
        return results

    @staticmethod
    def _decode_end2end(outputs, infos) -> list[Instances]:
        num_dets, det_boxes, det_scores, det_classes = (outputs[name] for name in END2END_OUTPUTS)
        coeff_name = END2END_TASK_OUTPUTS["segment"][0]
        coeffs = outputs[coeff_name]
        protos = _protos(outputs, len(infos))
        if coeffs.ndim != 3 or coeffs.shape[:2] != det_scores.shape[:2]:
            raise StepError(f"expected {coeff_name} [B, topk, nm] beside det_scores {det_scores.shape}, got "
                            f"{coeffs.shape}")
        dets = pp.postprocess_end2end(num_dets, det_boxes, det_scores, det_classes, infos)
        return [_masked(d, det_boxes[b, :len(d)], coeffs[b, :len(d)], protos[b], infos[b])
                for b, d in enumerate(dets)]

    def reference(self, yolo, images_bgr, imgsz: int, params: NmsParams) -> list[Instances]:
        """``YOLO.predict`` (``retina_masks=False``) on the pipeline's square letterbox (``rect=False``); masks
        to the original size by ultralytics' own ``ops.scale_masks(...) > 0.5`` (how it draws them).

        ``predict`` runs the one-to-many head and its NMS unless ``nms=False`` selects the NMS-free one-to-one
        head (YOLO26 / v10, the ``one2one`` layout): set ``yolo.overrides["nms"] = False`` for that, the
        ultralytics switch that ``predict`` reads when the call does not name it."""
        from ultralytics.utils import ops

        results = yolo.predict(list(images_bgr), imgsz=imgsz, conf=params.conf, iou=params.iou, max_det=params.topk,
                               agnostic_nms=params.agnostic, retina_masks=False, rect=False, verbose=False)
        out = []
        for r in results:
            h, w = r.orig_shape
            if r.masks is None:
                masks = np.zeros((0, h, w), bool)
            else:
                masks = (ops.scale_masks(r.masks.data[None].float(), (h, w))[0] > 0.5).cpu().numpy()
            out.append(Instances(r.boxes.xyxy.cpu().numpy().astype(np.float32),
                                 r.boxes.conf.cpu().numpy().astype(np.float32),
                                 r.boxes.cls.cpu().numpy().astype(np.int32), masks=masks))
        return out

    def compare(self, ref, test, tol: Tolerance, params: NmsParams) -> list[str]:
        """Detect's matching (same class, box IoU >= 0.9, scores within ``tol.score``), and per matched pair
        a mask IoU >= ``tol.mask_iou`` in original-image pixels."""
        problems = []
        for index, (r, t) in enumerate(zip(ref, test)):
            problems += [f"image {index}: {p}" for p in instance_problems(r, t, tol, params)]
        if len(ref) != len(test):
            problems.append(f"{len(ref)} reference images but {len(test)} results")
        return problems

    def to_json(self, result: Instances, names: Sequence[str] | None) -> list[dict]:
        rows = result.to_list(names)
        for row, mask in zip(rows, result.masks if result.masks is not None else []):
            row["mask"] = rle_encode(mask)
        return rows

    def draw(self, image_bgr: np.ndarray, result: Instances, names: Sequence[str] | None) -> np.ndarray:
        """Each mask filled with its class colour at ``MASK_ALPHA`` opacity, then detect's boxes and labels."""
        out = image_bgr.copy()
        if result.masks is not None and len(result.masks):
            if result.masks.shape[1:] != image_bgr.shape[:2]:
                raise StepError(f"masks {result.masks.shape[1:]} do not fit the image {image_bgr.shape[:2]}")
            overlay = out.copy()
            for mask, cls in zip(result.masks, result.classes.tolist()):
                overlay[mask] = colour(int(cls))
            out = cv2.addWeighted(out, 1 - MASK_ALPHA, overlay, MASK_ALPHA, 0)
        return draw_boxes(out, result.boxes, result.scores, result.classes, names)


def instance_problems(ref: Instances, test: Instances, tol: Tolerance, params: NmsParams) -> list[str]:
    """One image: unmatched instances (detect's rules), scores beyond ``tol.score``, masks below
    ``tol.mask_iou``."""
    malformed = [f"{what}: {len(inst)} instances but masks {None if inst.masks is None else inst.masks.shape}"
                 for what, inst in (("reference", ref), ("served", test))
                 if inst.masks is None or len(inst.masks) != len(inst)]
    if malformed:
        return malformed
    pairs = match(ref, test)
    problems = unmatched_problems(ref, test, pairs, tol, params)
    for i, j in pairs:
        if abs(float(ref.scores[i]) - float(test.scores[j])) > tol.score:
            problems.append(f"instance {i}: score {ref.scores[i]:.4f} vs {test.scores[j]:.4f}")
        if ref.masks[i].shape != test.masks[j].shape:
            problems.append(f"instance {i}: mask size {ref.masks[i].shape} vs {test.masks[j].shape}")
            continue
        iou = mask_iou(ref.masks[i], test.masks[j])
        if iou < tol.mask_iou:
            problems.append(f"instance {i}: mask IoU {iou:.3f} < {tol.mask_iou}")
    return problems


TASK = SegmentTask()
