"""Classify: the :class:`task_base.Task` of image classification (class probabilities, no boxes, no NMS).

Preprocessing is ultralytics' own for classify predict (8.4.190, ``ClassificationPredictor`` with
``classify_transforms(imgsz)`` = torchvision ``Resize(imgsz, BILINEAR)``, ``CenterCrop(imgsz)``,
``ToTensor()``, ``Normalize(mean=0, std=1)``), not the detectors' letterbox:

* resize so the SHORT side is ``imgsz``: ``long = int(imgsz * long / short)`` (truncated, torchvision's
  ``_compute_resized_output_size``), skipped when the size does not change;
* the resize is Pillow's ``Image.resize(..., BILINEAR)``, as torchvision does on the PIL image the
  predictor makes. Pillow, not OpenCV, because Pillow's bilinear is a separable triangle filter whose
  support widens with the downscale factor (antialiased, fixed-point, rounded to uint8 between the
  horizontal and vertical pass); no ``cv2.resize`` mode gives the same pixels (``INTER_LINEAR`` samples
  2x2 neighbours, ``INTER_AREA`` averages boxes). Pillow is an ultralytics dependency;
* centre crop ``imgsz x imgsz`` at ``top = int(round((h - imgsz) / 2))``, ``left`` alike (Python's
  round-half-to-even, torchvision's ``center_crop``);
* BGR -> RGB, HWC -> CHW, ``float(x) / 255`` in float32; the normalisation is the identity (mean 0,
  std 1), so the uint8 pixels before ``/ 255`` are an exact wire format (``UINT8``: the graph casts and
  divides, bit for bit the same).

The resize works per channel, so resizing the BGR image (what the predictor's host transform does) or
the RGB one (its fallback path) gives the same pixels. A ``.pt`` checkpoint that carries its own
training ``transforms`` of size ``imgsz`` makes ultralytics' ``.pt`` predict use those instead;
:func:`transforms_problem` says when they differ from the above (ultralytics' exported models, ONNX and
TensorRT alike, always use ``classify_transforms(imgsz)``).

Output: ultralytics' classify export applies the softmax in the graph (``Classify.forward`` in export
mode; the ONNX ends ``Gemm -> Softmax``), so ``output0 [B, nc]`` holds probabilities. Only the
``track_a`` layout exists: there is nothing to suppress, so no NMS-free ``one2one`` head and no end2end
NMS graph.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np

from yolo_triton.postprocess import to_chw_rgb_uint8, to_model_input
from yolo_triton.settings import TRACK_A_OUTPUT
from yolo_triton.task_base import Classification, NmsParams, Task, TaskShape, Tolerance, label

TOP_K = 5  # classes in the JSON, the drawing and the comparison (ultralytics' Probs.top5)
SOFTMAX_SUM_TOL = 0.02  # a row of output0 must sum to 1 within this (fp16 engines included)


@dataclass(frozen=True)
class ClassifyInfo:
    """Where an original image's centre crop came from (what the network saw)."""

    orig_h: int
    orig_w: int
    resized_h: int  # after the short-side resize
    resized_w: int
    top: int  # crop offset in the resized image
    left: int


def resized_size(orig_h: int, orig_w: int, imgsz: int) -> tuple[int, int]:
    """``(h, w)`` with the short side ``imgsz`` and the long side truncated, as torchvision's ``Resize(int)``."""
    short, long = (orig_w, orig_h) if orig_w <= orig_h else (orig_h, orig_w)
    new_short, new_long = imgsz, int(imgsz * long / short)
    return (new_long, new_short) if orig_w <= orig_h else (new_short, new_long)


def crop_params(orig_h: int, orig_w: int, imgsz: int) -> ClassifyInfo:
    """Resized size and centre-crop offsets exactly as ``Resize(imgsz)`` + ``CenterCrop(imgsz)`` compute them."""
    new_h, new_w = resized_size(orig_h, orig_w, imgsz)
    top, left = int(round((new_h - imgsz) / 2.0)), int(round((new_w - imgsz) / 2.0))
    return ClassifyInfo(orig_h, orig_w, new_h, new_w, top, left)


def resize_crop_uint8(image_bgr: np.ndarray, imgsz: int) -> tuple[np.ndarray, ClassifyInfo]:
    """One BGR image -> its ``imgsz x imgsz`` centre crop after the short-side resize (HWC uint8 BGR)."""
    from PIL import Image

    image_bgr = np.asarray(image_bgr)
    if image_bgr.ndim != 3 or image_bgr.shape[2] != 3 or image_bgr.dtype != np.uint8:
        raise ValueError(f"expected an HxWx3 uint8 BGR image, got shape {image_bgr.shape} {image_bgr.dtype}")
    if int(imgsz) != imgsz or imgsz <= 0:
        raise ValueError(f"imgsz must be a positive integer, got {imgsz}")
    info = crop_params(image_bgr.shape[0], image_bgr.shape[1], int(imgsz))
    resized = image_bgr
    if (info.resized_h, info.resized_w) != image_bgr.shape[:2]:
        pil = Image.fromarray(np.ascontiguousarray(image_bgr))  # channel order is irrelevant to the resize
        resized = np.asarray(pil.resize((info.resized_w, info.resized_h), Image.BILINEAR))
    crop = resized[info.top:info.top + imgsz, info.left:info.left + imgsz]
    return crop, info


def transforms_problem(yolo, imgsz: int) -> str | None:
    """Why ultralytics' ``.pt`` predict at ``imgsz`` would not preprocess like :meth:`ClassifyTask.preprocess`
    (the checkpoint's own saved ``transforms`` differ), or None when it does."""
    transforms = getattr(getattr(yolo, "model", None), "transforms", None)
    steps = getattr(transforms, "transforms", None)
    if transforms is None:
        return None
    size = getattr(steps[0], "size", None) if steps else None
    size = (size, size) if isinstance(size, int) else tuple(size) if size is not None else None
    if size != (imgsz, imgsz):
        return None  # predict ignores saved transforms of another size and uses classify_transforms(imgsz)
    names = tuple(type(step).__name__ for step in steps)
    if names != ("Resize", "CenterCrop", "ToTensor", "Normalize"):
        return f"the checkpoint's saved transforms are {names}, not Resize, CenterCrop, ToTensor, Normalize"
    resize, crop, _, norm = steps
    if (resize.size not in (imgsz, [imgsz], (imgsz,)) or str(resize.interpolation.value) != "bilinear"
            or resize.max_size is not None):
        return f"the checkpoint's saved Resize is {resize}, not Resize({imgsz}, bilinear)"
    if tuple(crop.size) != (imgsz, imgsz):
        return f"the checkpoint's saved CenterCrop is {crop}, not CenterCrop({imgsz})"
    if np.any(np.asarray(norm.mean, np.float64) != 0) or np.any(np.asarray(norm.std, np.float64) != 1):
        return f"the checkpoint's saved Normalize is {norm}, not mean 0 std 1"
    return None


def draw_top(image_bgr: np.ndarray, result: Classification, names: Sequence[str] | None, k: int = TOP_K
             ) -> np.ndarray:
    """The top-``k`` classes as ``label score`` lines in the top-left corner of a copy of the image."""
    out = image_bgr.copy()
    scale = max(0.4, min(out.shape[:2]) / 600)
    thickness = max(1, int(round(scale * 1.5)))
    y = 0
    for class_id, score in zip(*(a.tolist() for a in result.top(k))):
        text = f"{label(names, int(class_id))} {score:.2f}"
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
        cv2.rectangle(out, (0, y), (tw + 8, y + th + base + 6), (0, 0, 0), -1)
        cv2.putText(out, text, (4, y + th + 3), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thickness,
                    cv2.LINE_AA)
        y += th + base + 6
    return out


class ClassifyTask(Task):
    name = "classify"
    letterbox = False  # short-side resize + centre crop (module docstring)

    def preprocess(self, images_bgr, imgsz: int, dtype: str = "FP32") -> tuple[np.ndarray, list[ClassifyInfo]]:
        """``[B, 3, imgsz, imgsz]``: float32 ``x / 255`` (FP32) or the uint8 pixels (UINT8), RGB."""
        images_bgr = list(images_bgr)
        if not images_bgr:
            raise ValueError("preprocess needs at least one image")
        pairs = [resize_crop_uint8(image, imgsz) for image in images_bgr]
        batch = np.stack([to_chw_rgb_uint8(crop) for crop, _ in pairs])
        return to_model_input(batch, dtype), [info for _, info in pairs]

    def output_names(self, layout: str, shape: TaskShape) -> tuple[str, ...]:
        check_layout(layout)
        return (TRACK_A_OUTPUT,)

    def decode(self, outputs, infos, shape: TaskShape, params: NmsParams, layout: str) -> list[Classification]:
        check_layout(layout)
        probs = np.asarray(outputs[TRACK_A_OUTPUT])
        if probs.ndim != 2 or probs.shape[0] != len(infos):
            raise ValueError(f"expected {TRACK_A_OUTPUT} [{len(infos)}, nc] for {len(infos)} images, "
                             f"got shape {probs.shape}")
        if shape.num_classes and probs.shape[1] != shape.num_classes:
            raise ValueError(f"{TRACK_A_OUTPUT} has {probs.shape[1]} classes, the model {shape.num_classes}")
        probs = probs.astype(np.float32)
        sums = probs.sum(axis=1, dtype=np.float64)
        if np.any(np.abs(sums - 1) > SOFTMAX_SUM_TOL) or np.any(probs < 0):
            raise ValueError(f"{TRACK_A_OUTPUT} rows are not probabilities (row sums {np.round(sums, 4).tolist()}): "
                             "expected ultralytics' classify export, which ends in Softmax")
        return [Classification(row) for row in probs]

    def reference(self, yolo, images_bgr, imgsz: int, params: NmsParams) -> list[Classification]:
        """``YOLO.predict`` at ``imgsz``: ``Results.probs.data`` per image."""
        problem = transforms_problem(yolo, imgsz)
        if problem:
            raise ValueError(f"{problem}; ultralytics' .pt predict uses them, its exported models and this "
                             f"pipeline use classify_transforms({imgsz}), so the two cannot be compared")
        results = yolo.predict(list(images_bgr), imgsz=imgsz, verbose=False)
        return [Classification(r.probs.data.cpu().numpy().astype(np.float32)) for r in results]

    def compare(self, ref, test, tol: Tolerance, params: NmsParams) -> list[str]:
        """Same top-5 classes (two may swap only where their probabilities tie within ``tol.score``) and
        every class probability within ``tol.score``."""
        problems = []
        for index, (r, t) in enumerate(zip(ref, test)):
            problems += [f"image {index}: {p}" for p in classification_problems(r, t, tol.score)]
        if len(ref) != len(test):
            problems.append(f"{len(ref)} reference images but {len(test)} results")
        return problems

    def to_json(self, result: Classification, names: Sequence[str] | None) -> dict:
        ids, scores = result.top(TOP_K)
        return {"top5": [{"class_id": int(c), "label": label(names, int(c)), "score": float(s)}
                         for c, s in zip(ids, scores)]}

    def draw(self, image_bgr: np.ndarray, result: Classification, names: Sequence[str] | None) -> np.ndarray:
        return draw_top(image_bgr, result, names)


def check_layout(layout: str) -> None:
    if layout == "track_a":
        return
    if layout in ("one2one", "end2end"):
        raise ValueError(f"classify has no '{layout}' layout: a classifier outputs class probabilities "
                         f"({TRACK_A_OUTPUT} [B, nc]) and has no boxes to suppress, so there is no NMS-free head "
                         "and no NMS graph; use track_a")
    raise ValueError(f"unknown layout '{layout}'; classify has only track_a")


def classification_problems(ref: Classification, test: Classification, tol: float, k: int = TOP_K) -> list[str]:
    """Disagreements of one image: class count, top-``k`` ranks, probabilities."""
    if ref.probs.shape != test.probs.shape:
        return [f"{ref.probs.shape[0]} reference classes but {test.probs.shape[0]} served"]
    problems = []
    ref_ids, _ = ref.top(k)
    test_ids, _ = test.top(k)
    for rank, (r, t) in enumerate(zip(ref_ids.tolist(), test_ids.tolist())):
        # a swap is a tie when both sides score the two classes within tol of each other
        if r != t and (abs(ref.probs[r] - ref.probs[t]) > tol or abs(test.probs[r] - test.probs[t]) > tol):
            problems.append(f"rank {rank + 1}: class {r} ({ref.probs[r]:.4f}) vs served class {t} "
                            f"({test.probs[t]:.4f}; reference gives it {ref.probs[t]:.4f})")
    diff = np.abs(ref.probs.astype(np.float64) - test.probs.astype(np.float64))
    worst = int(np.argmax(diff))
    if diff[worst] > tol:
        problems.append(f"class {worst}: probability {ref.probs[worst]:.5f} vs {test.probs[worst]:.5f} "
                        f"(|diff| {diff[worst]:.2e} > {tol:g}; {int((diff > tol).sum())} classes beyond)")
    return problems


TASK = ClassifyTask()
