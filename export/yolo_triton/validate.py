"""Validate one model's artefacts against its PyTorch checkpoint on real images (``scripts/validate.py``).

    python scripts/validate.py --model NAME --models-dir models --weights-dir pytorch_models \
        [--images DIR] [--conf C] [--iou I] [--json OUT]

Formats (each one that exists is checked; a missing one is reported and skipped):

* ``pytorch``: the ``.pt`` through ultralytics (the reference). Raw ``output0`` on the same letterboxed
  input, detections from ``ultralytics.utils.nms.non_max_suppression`` + ``scale_boxes``.
* ``onnx`` (Track A, ``NAME/1/model.onnx``) in onnxruntime + ``postprocess`` in ultralytics mode:
  raw output vs PyTorch, detections vs ultralytics' own NMS.
* ``end2end`` (``NAME_end2end/1/model.onnx``): with an ``EfficientNMS_TRT`` node onnxruntime cannot run
  the plugin, so its pre-NMS part runs (``nms_graph.pre_nms_model``) and the NumPy model of the plugin
  (``postprocess.efficient_nms`` with the node's own attributes) finishes it; without a plugin
  (``NMS=onnx``) the whole graph runs. Reference detections: the same NMS semantics applied to the
  PyTorch raw output (EfficientNMS is multi-label, ultralytics is not, so they legitimately differ);
  the agreement with ultralytics' detections is reported too, for information.
* ``trt`` / ``trt_end2end`` (``NAME_trt[_end2end]/1/model.plan``): only where ``tensorrt`` imports and a
  GPU is present; otherwise skipped with a note.

Pass criteria per format (tolerances depend on the artefact's precision, from its metadata): raw scores
(every anchor) and box coordinates (anchors PyTorch scores >= CONF) within ``score_tol`` / ``box_tol`` px
of PyTorch; every reference detection with score >= CONF + score_tol has a partner of the same class with
IoU >= 0.9 and vice versa (detections closer than score_tol to CONF or to the TOPK cut, and NMS swaps
between overlapping boxes whose scores differ by less than score_tol, may flip and are excused); matched
scores within score_tol. A table goes to the terminal, the full report to JSON; exit 1 when any format
fails.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from yolo_triton import postprocess as pp
from yolo_triton.errors import StepError
from yolo_triton.settings import ARTEFACTS, END2END_OUTPUTS, TRACK_A_OUTPUT, artefact_path, weights_path

LOG = logging.getLogger("validate")

MATCH_IOU = 0.9
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
CHUNK = 8  # images per inference batch
# (box_tol px in input pixels, score_tol) by precision of the artefact
TOLERANCES = {"fp32": (0.05, 1e-3), "fp16": (1.0, 0.02), "int8": (8.0, 0.1)}
TRT_TOLERANCE_PRECISION = "fp16"  # plans without a readable sidecar, and fp32 plans (TF32)
PLUGIN_OP = "EfficientNMS_TRT"


# --------------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------------
SAME_BOX_PX = 0.5  # coordinates this close are the same box, whatever its area


def artefact_paths(name: str, models_dir: Path) -> dict[str, Path]:
    return {kind: artefact_path(models_dir, name, kind) for kind in ARTEFACTS}


def image_paths(images_dir: Path | None) -> list[Path]:
    if images_dir is None:
        from ultralytics.utils import ASSETS

        images_dir = Path(ASSETS)
    if not images_dir.is_dir():
        raise StepError(f"--images {images_dir} is not a directory")
    paths = sorted(p for p in images_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise StepError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {images_dir}")
    return paths


def read_images(paths: list[Path]) -> list[np.ndarray]:
    import cv2

    images = []
    for path in paths:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise StepError(f"cannot decode image {path}")
        images.append(image)
    return images


def onnx_imgsz(model) -> int:
    """Square input size of an exported graph (input ``[batch, 3, S, S]``)."""
    dims = model.graph.input[0].type.tensor_type.shape.dim
    if len(dims) != 4 or not dims[2].HasField("dim_value") or dims[2].dim_value != dims[3].dim_value:
        raise StepError(f"input '{model.graph.input[0].name}' is not [batch, 3, S, S] with a fixed S")
    return int(dims[2].dim_value)


def precision_of(meta: dict[str, str]) -> str:
    precision = meta.get("precision", "fp32")
    return precision if precision in TOLERANCES else "fp32"


def tolerance_precision(meta: dict[str, str]) -> str:
    """The precision whose tolerances apply: the graph's, but at least fp16's when its outputs are FP16
    (OUTPUT_DTYPE=float16 rounds an FP32 network's boxes by up to 0.25 px at 640, beyond fp32's 0.05 px)."""
    precision = precision_of(meta)
    return "fp16" if precision == "fp32" and meta.get("output_dtype") == "float16" else precision


# --------------------------------------------------------------------------------------------------
# Runners
# --------------------------------------------------------------------------------------------------
def torch_reference(weights: Path, batch: np.ndarray, infos, conf: float, iou: float, topk: int,
                    agnostic: bool) -> tuple[np.ndarray, list[pp.Detections]]:
    """PyTorch raw ``output0`` and ultralytics' own detections (NMS + scale_boxes) for ``batch`` (the
    letterboxed uint8 pixels, as every runner here takes them: each turns them into its input type)."""
    import torch
    from ultralytics.utils.nms import non_max_suppression
    from ultralytics.utils.ops import scale_boxes

    from yolo_triton.checkpoint import inspect, load_yolo

    yolo = load_yolo(weights)
    num_classes = inspect(yolo, weights).num_classes
    model = yolo.model.float().eval()
    model = model.fuse(verbose=False) if hasattr(model, "fuse") else model
    outputs = []
    with torch.no_grad():
        for start in range(0, len(batch), CHUNK):
            out = model(torch.from_numpy(pp.to_model_input(batch[start:start + CHUNK], "float32")))
            outputs.append((out[0] if isinstance(out, (list, tuple)) else out).float())
    raw = torch.cat(outputs)
    check_output0_shape(tuple(raw.shape), num_classes, f"{weights} (PyTorch)")
    dets = []
    imgsz = batch.shape[2]
    for row, info in zip(non_max_suppression(raw, conf, iou, agnostic=agnostic, max_det=topk), infos):
        boxes = scale_boxes((imgsz, imgsz), row[:, :4].clone(), (info.orig_h, info.orig_w))
        dets.append(pp.Detections(boxes.numpy().astype(np.float32), row[:, 4].numpy().copy(),
                                  row[:, 5].numpy().astype(np.int32)))
    return raw.numpy(), dets


def torch_one2one_reference(weights: Path, batch: np.ndarray, infos, conf: float, topk: int) -> list[pp.Detections]:
    """ultralytics' NMS-free one-to-one head (YOLO26/YOLOv10, ``max_det=topk``): rows with score >= conf,
    boxes scaled back like the predictor. The reference for ``NMS=free`` end2end artefacts."""
    import torch
    from ultralytics.utils.ops import scale_boxes

    from yolo_triton.checkpoint import load_yolo

    model = load_yolo(weights).model.float().eval()
    model.end2end = True
    model.model[-1].max_det = topk
    rows = []
    with torch.no_grad():
        for start in range(0, len(batch), CHUNK):
            out = model(torch.from_numpy(pp.to_model_input(batch[start:start + CHUNK], "float32")))
            rows.append((out[0] if isinstance(out, (list, tuple)) else out).float())
    dets, imgsz = [], batch.shape[2]
    for row, info in zip(torch.cat(rows), infos):
        row = row[row[:, 4] >= conf]
        boxes = scale_boxes((imgsz, imgsz), row[:, :4].clone(), (info.orig_h, info.orig_w))
        dets.append(pp.Detections(boxes.numpy().astype(np.float32), row[:, 4].numpy().copy(),
                                  row[:, 5].numpy().astype(np.int32)))
    return dets


def check_output0_shape(shape: tuple[int, ...], num_classes: int, what: str) -> None:
    """``output0`` must be exactly ``[B, 4 + nc, anchors]``; an NMS-free export ``[B, max_det, 6]`` is not."""
    if len(shape) != 3 or shape[1] != 4 + num_classes:
        raise StepError(f"{what}: output0 {tuple(shape)} is not [B, 4+nc = {4 + num_classes}, anchors] for "
                        f"{num_classes} classes (an NMS-free [B, max_det, 6] export?)")


def ort_session(model):
    from yolo_triton.onnx_io import cpu_session

    return cpu_session(model)


ORT_INPUT_TYPES = {"tensor(float)": "float32", "tensor(uint8)": "uint8"}


def run_ort(session, batch: np.ndarray) -> list[np.ndarray]:
    """Run ``session`` over ``batch`` (uint8 pixels, made into the graph's input type) in chunks; outputs
    concatenated along the batch."""
    (image,) = session.get_inputs()
    dtype = ORT_INPUT_TYPES.get(image.type, image.type)
    chunks = [session.run(None, {image.name: pp.to_model_input(batch[s:s + CHUNK], dtype)})
              for s in range(0, len(batch), CHUNK)]
    return [pp.as_float32(np.concatenate([c[i] for c in chunks])) for i in range(len(chunks[0]))]


def plugin_node(model):
    nodes = [n for n in model.graph.node if n.op_type == PLUGIN_OP]
    if len(nodes) > 1:
        raise StepError(f"expected at most one {PLUGIN_OP} node, found {len(nodes)}")
    return nodes[0] if nodes else None


def node_attrs(node) -> dict:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def end2end_nms_params(model, meta: dict[str, str]) -> dict:
    """conf / iou / topk / agnostic / semantics of an end2end graph: the plugin's attributes, or the
    metadata ``add_nms`` writes (NMS=onnx)."""
    node = plugin_node(model)
    if node is not None:
        attrs = node_attrs(node)
        return {"mode": "efficient", "conf": float(attrs["score_threshold"]), "iou": float(attrs["iou_threshold"]),
                "topk": int(attrs["max_output_boxes"]), "agnostic": bool(attrs.get("class_agnostic", 0)),
                "box_coding": int(attrs.get("box_coding", 1))}
    if meta.get("nms") == "free":  # NMS-free head: thresholded only; IOU means nothing
        return {"mode": "free", "conf": float(meta["conf"]), "iou": None, "topk": int(meta["topk"]),
                "agnostic": False, "box_coding": 1}
    try:
        return {"mode": meta.get("nms", "onnx"), "conf": float(meta["conf"]), "iou": float(meta["iou"]),
                "topk": int(meta["topk"]), "agnostic": bool(int(meta.get("agnostic", "0"))), "box_coding": 1}
    except KeyError as err:
        raise StepError(f"end2end graph has no {PLUGIN_OP} node and no '{err.args[0]}' metadata "
                        "(was it written by export/add_nms.py?)") from None


def pre_nms(model):
    """The pre-NMS part (outputs ``boxes`` xywh, ``scores``) of an end2end graph."""
    from yolo_triton import nms_graph

    return nms_graph.pre_nms_model(model)


def trt_available() -> str | None:
    """None when TensorRT and a GPU can run plans here, else why not."""
    try:
        import tensorrt  # noqa: F401
    except ModuleNotFoundError as err:
        if err.name == "tensorrt":
            return "tensorrt is not installed"
        return f"tensorrt is installed but does not import: {err}"
    except Exception as err:  # a library that fails to load: say which
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        return f"tensorrt is installed but does not import: {type(err).__name__}: {first}"
    try:
        from polygraphy import cuda

        cuda.DeviceArray(shape=(1,), dtype=np.float32).free()  # needs a driver and a device
    except Exception as err:
        return f"no usable CUDA GPU ({str(err).splitlines()[0] if str(err) else type(err).__name__})"
    return None


def run_trt(plan: Path, batch: np.ndarray, max_batch: int) -> dict[str, np.ndarray]:
    """Run a plan with polygraphy's TrtRunner (standard plugins registered first)."""
    import tensorrt as trt
    from polygraphy.backend.trt import EngineFromBytes, TrtRunner

    trt.init_libnvinfer_plugins(trt.Logger(trt.Logger.WARNING), "")
    outputs: dict[str, list[np.ndarray]] = {}
    with TrtRunner(EngineFromBytes(plan.read_bytes())) as runner:
        ((input_name, meta),) = runner.get_input_metadata().items()
        dtype = str(getattr(meta.dtype, "name", meta.dtype)).lower()  # numpy or polygraphy DataType
        dtype = "uint8" if "uint8" in dtype else "float32"
        step = max(1, min(CHUNK, max_batch))
        for start in range(0, len(batch), step):
            result = runner.infer({input_name: pp.to_model_input(batch[start:start + step], dtype)})
            for key, value in result.items():
                outputs.setdefault(key, []).append(np.array(value))
    return {key: np.concatenate(values) for key, values in outputs.items()}


# --------------------------------------------------------------------------------------------------
# Comparisons (pure)
# --------------------------------------------------------------------------------------------------
def box_iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of corner boxes ``a [n, 4]`` with ``b [m, 4]`` -> ``[n, m]`` (float64). Corners are reordered
    first (an untrained head can emit x2 < x1, as EfficientNMS tolerates), and two boxes whose
    coordinates agree within SAME_BOX_PX count as IoU 1 even when clipping left them without area."""
    a, b = a.astype(np.float64)[:, None], b.astype(np.float64)[None]
    same = np.abs(a - b).max(axis=-1) <= SAME_BOX_PX
    a = np.concatenate([np.minimum(a[..., :2], a[..., 2:]), np.maximum(a[..., :2], a[..., 2:])], axis=-1)
    b = np.concatenate([np.minimum(b[..., :2], b[..., 2:]), np.maximum(b[..., :2], b[..., 2:])], axis=-1)
    iw = (np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0])).clip(0)
    ih = (np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1])).clip(0)
    inter = iw * ih
    union = ((a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1]) + (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
             - inter)
    return np.where(same, 1.0, np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0))


def match_detections(ref: pp.Detections, test: pp.Detections, iou_min: float = MATCH_IOU
                     ) -> tuple[list[tuple[int, int]], list[int], list[int]]:
    """Greedy one-to-one matching in reference score order: same class, IoU >= ``iou_min``, best IoU
    first. Returns ``(pairs (ref_i, test_j), unmatched ref, unmatched test)``."""
    iou = box_iou_matrix(ref.boxes, test.boxes) if len(ref) and len(test) else np.zeros((len(ref), len(test)))
    iou = np.where(ref.classes[:, None] == test.classes[None, :], iou, 0.0) if iou.size else iou
    taken = np.zeros(len(test), bool)
    pairs = []
    for i in np.argsort(-ref.scores, kind="stable"):
        if not len(test):
            break
        candidates = np.where(taken, -1.0, iou[i])
        j = int(np.argmax(candidates))
        if candidates[j] >= iou_min:
            taken[j] = True
            pairs.append((int(i), j))
    matched_ref = {i for i, _ in pairs}
    return pairs, [i for i in range(len(ref)) if i not in matched_ref], [j for j in range(len(test)) if not taken[j]]


def excused(score: float, conf: float, score_tol: float, cut_score: float | None) -> bool:
    """A detection that may legitimately flip: within score_tol of CONF, or of the TOPK cut."""
    return score < conf + score_tol or (cut_score is not None and score <= cut_score + score_tol)


def nms_swap(dets: pp.Detections, i: int, other: pp.Detections, nms_iou: float, score_tol: float) -> bool:
    """Detection ``i`` lost to a near-equal rival: ``other`` holds a same-class box that NMS would
    suppress against it (IoU >= ``nms_iou``) with a score within ``score_tol``. Which of two such boxes
    survives NMS may flip under rounding; both sides still report one detection there."""
    if not len(other):
        return False
    iou = box_iou_matrix(dets.boxes[i:i + 1], other.boxes)[0]
    close = np.abs(other.scores - dets.scores[i]) <= score_tol
    rival = (other.classes == dets.classes[i]) & (iou >= nms_iou) & close
    return bool(rival.any())


def compare_detections(refs: list[pp.Detections], tests: list[pp.Detections], conf: float, topk: int,
                       score_tol: float, nms_iou: float | None = None) -> dict:
    """Match per image; count failures (non-excused unmatched detections on either side, score gaps).

    Excused: detections within ``score_tol`` of CONF or of the TOPK cut, and (given ``nms_iou``) NMS
    swaps between overlapping near-equal-score boxes (:func:`nms_swap`)."""
    summary = {"reference": 0, "test": 0, "matched": 0, "unmatched_reference": 0, "unmatched_test": 0,
               "excused": 0, "max_score_diff": 0.0, "min_matched_iou": 1.0, "failures": []}
    for image, (ref, test) in enumerate(zip(refs, tests)):
        pairs, lost, extra = match_detections(ref, test)
        cut = lambda d: float(d.scores.min()) if len(d) >= topk else None  # noqa: E731
        summary["reference"] += len(ref)
        summary["test"] += len(test)
        summary["matched"] += len(pairs)
        for side, dets, idx, other, other_cut in (("reference", ref, lost, test, cut(test)),
                                                  ("test", test, extra, ref, cut(ref))):
            for i in idx:
                score = float(dets.scores[i])
                if excused(score, conf, score_tol, other_cut) or (
                        nms_iou is not None and nms_swap(dets, i, other, nms_iou, score_tol)):
                    summary["excused"] += 1
                else:
                    summary[f"unmatched_{side}"] += 1
                    summary["failures"].append(
                        f"image {image}: {side} detection class {int(dets.classes[i])} score {score:.3f} "
                        f"box {np.round(dets.boxes[i], 1).tolist()} has no partner")
        if pairs:
            ri, tj = map(list, zip(*pairs))
            diff = float(np.abs(ref.scores[ri] - test.scores[tj]).max())
            summary["max_score_diff"] = max(summary["max_score_diff"], diff)
            ious = box_iou_matrix(ref.boxes[ri], test.boxes[tj]).diagonal()
            summary["min_matched_iou"] = min(summary["min_matched_iou"], float(ious.min()))
    if summary["max_score_diff"] > score_tol:
        summary["failures"].append(f"matched score difference {summary['max_score_diff']:.4g} > {score_tol:g}")
    summary["passed"] = not summary["failures"]
    return summary


def compare_raw(ref_output0: np.ndarray, boxes_xywh: np.ndarray, scores: np.ndarray, box_tol: float,
                score_tol: float, conf: float) -> dict:
    """Max abs differences vs PyTorch's ``output0 [B, 4+nc, A]``: scores over every anchor, boxes (px)
    over the anchors PyTorch scores >= ``conf`` for some class (those that can become detections; the
    maximum over all anchors is reported too)."""
    ref_boxes = ref_output0[:, :4, :].transpose(0, 2, 1)
    ref_scores = ref_output0[:, 4:, :].transpose(0, 2, 1)
    if ref_boxes.shape != boxes_xywh.shape or ref_scores.shape != scores.shape:
        return {"passed": False, "failures": [f"shape {boxes_xywh.shape}/{scores.shape} differs from PyTorch "
                                              f"{ref_boxes.shape}/{ref_scores.shape}"]}
    box_abs = np.abs(ref_boxes.astype(np.float64) - boxes_xywh).max(axis=2)
    candidates = ref_scores.max(axis=2) >= np.float32(conf)
    box_diff = float(box_abs[candidates].max()) if candidates.any() else 0.0
    score_diff = float(np.abs(ref_scores.astype(np.float64) - scores).max())
    failures = []
    if not np.isfinite(box_diff) or box_diff > box_tol:
        failures.append(f"raw box difference {box_diff:.4g} px > {box_tol:g}")
    if not np.isfinite(score_diff) or score_diff > score_tol:
        failures.append(f"raw score difference {score_diff:.4g} > {score_tol:g}")
    return {"max_box_diff_px": box_diff, "max_box_diff_px_all_anchors": float(box_abs.max()),
            "candidate_anchors": int(candidates.sum()), "max_score_diff": score_diff, "passed": not failures,
            "failures": failures}


# --------------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------------
@dataclass
class Settings:
    conf: float
    iou: float
    topk: int
    agnostic: bool
    box_tol: float | None = None  # None: by precision
    score_tol: float | None = None


@dataclass
class FormatResult:
    name: str
    artefact: str
    status: str  # passed / failed / skipped
    precision: str = ""
    raw: dict = field(default_factory=dict)
    detections: dict = field(default_factory=dict)
    vs_ultralytics: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def tolerances(precision: str, settings: Settings) -> tuple[float, float]:
    box_tol, score_tol = TOLERANCES[precision]
    return (settings.box_tol if settings.box_tol is not None else box_tol,
            settings.score_tol if settings.score_tol is not None else score_tol)


def nms_reference(raw: np.ndarray, infos, params: dict) -> list[pp.Detections]:
    """The PyTorch raw output through the given NMS semantics (efficient, onnx or ultralytics), in original
    pixels."""
    if params["mode"] == "free":
        return params["reference"]
    mode = params["mode"] if params["mode"] in ("onnx", "ultralytics") else "efficient"
    return pp.postprocess_track_a(raw, infos, params["conf"], params["iou"], params["topk"], mode, params["agnostic"])


def finish(result: FormatResult, parts: list[dict]) -> FormatResult:
    failures = [f for part in parts for f in part.get("failures", [])]
    result.status = "failed" if failures else "passed"
    result.notes.extend(failures)
    return result


def check_track_a(path: Path, raw_ref, torch_dets, batch, infos, settings: Settings) -> FormatResult:
    import onnx

    from yolo_triton.onnx_io import metadata

    model = onnx.load(str(path))
    precision = precision_of(metadata(model))
    box_tol, score_tol = tolerances(tolerance_precision(metadata(model)), settings)
    (output0,) = run_ort(ort_session(model), batch)[:1]
    result = FormatResult("onnx", str(path), "", precision)
    return check_output0(result, output0, raw_ref, torch_dets, infos, settings, box_tol, score_tol)


def check_output0(result: FormatResult, output0: np.ndarray, raw_ref, torch_dets, infos, settings: Settings,
                  box_tol: float, score_tol: float) -> FormatResult:
    """A Track A/B ``output0``: raw values against PyTorch, client NMS (ultralytics mode) against ultralytics."""
    check_output0_shape(output0.shape, raw_ref.shape[1] - 4, result.artefact)  # raw_ref is [B, 4+nc, A]
    output0 = pp.as_float32(output0)
    result.raw = compare_raw(raw_ref, output0[:, :4].transpose(0, 2, 1), output0[:, 4:].transpose(0, 2, 1),
                             box_tol, score_tol, settings.conf)
    dets = pp.postprocess_track_a(output0, infos, settings.conf, settings.iou, settings.topk, "ultralytics",
                                  settings.agnostic)
    result.detections = compare_detections(torch_dets, dets, settings.conf, settings.topk, score_tol,
                                           settings.iou)
    return finish(result, [result.raw, result.detections])


def end2end_detections(model, params: dict, batch, infos
                       ) -> tuple[np.ndarray, np.ndarray, list[pp.Detections], list[str]]:
    """(boxes, scores, detections, notes) of an end2end ONNX graph in onnxruntime."""
    notes = []
    boxes = scores = None
    if params["mode"] != "free":
        boxes, scores = run_ort(ort_session(pre_nms(model)), batch)
    if plugin_node(model) is not None:
        notes.append(f"{PLUGIN_OP} does not run in onnxruntime: pre-NMS graph + NumPy model of the plugin")
        outputs = pp.efficient_nms(boxes, scores, params["conf"], params["iou"], params["topk"], params["agnostic"],
                                   params["box_coding"])
    else:
        session = ort_session(model)
        names = [o.name for o in session.get_outputs()]
        values = dict(zip(names, run_ort(session, batch)))
        outputs = tuple(values[n] for n in END2END_OUTPUTS)
    return boxes, scores, pp.postprocess_end2end(*outputs, infos), notes


def check_end2end(path: Path, raw_ref, torch_dets, batch, infos, settings: Settings,
                  params: dict) -> FormatResult:
    """``params``: :func:`end2end_nms_params` of the graph (plus ``reference`` detections for NMS=free)."""
    import onnx

    from yolo_triton.onnx_io import metadata

    model = onnx.load(str(path))
    meta = metadata(model)
    precision = precision_of(meta)
    box_tol, score_tol = tolerances(precision, settings)
    result = FormatResult("end2end", str(path), "", precision)
    as_graph = (np.float32(settings.conf), np.float32(settings.iou), settings.topk)  # attributes are float32
    graph_iou = settings.iou if params["iou"] is None else params["iou"]
    if (np.float32(params["conf"]), np.float32(graph_iou), params["topk"]) != as_graph:
        result.notes.append(f"graph NMS settings conf={params['conf']} iou={params['iou']} topk={params['topk']} "
                            "are used (they differ from the command line)")
    boxes, scores, dets, notes = end2end_detections(model, params, batch, infos)
    result.notes.extend(notes)
    if params["mode"] == "free":
        result.notes.append("NMS-free one-to-one head: compared with ultralytics' one-to-one output (no NMS)")
        result.raw = {"passed": True, "failures": []}
    else:
        result.raw = compare_raw(raw_ref, boxes, scores, box_tol, score_tol, params["conf"])
    reference = nms_reference(raw_ref, infos, params)
    result.detections = compare_detections(reference, dets, params["conf"], params["topk"], score_tol,
                                           params["iou"])
    info = compare_detections(torch_dets, dets, params["conf"], params["topk"], score_tol, params["iou"])
    result.vs_ultralytics = {k: info[k] for k in ("reference", "test", "matched", "excused")}
    return finish(result, [result.raw, result.detections])


def check_trt(kind: str, path: Path, raw_ref, torch_dets, batch, infos, settings: Settings,
              end2end_params: dict | None) -> FormatResult:
    from yolo_triton import engine

    record = engine.read_sidecar(path) or {}
    precision = record.get("precision", TRT_TOLERANCE_PRECISION)
    precision = precision if precision in TOLERANCES else TRT_TOLERANCE_PRECISION
    result = FormatResult(kind, str(path), "", precision)
    if precision == "fp32":  # TensorRT may run FP32 layers as TF32 (on by default): FP16 tolerances
        result.notes.append("fp32 plan checked with fp16 tolerances (TensorRT may use TF32)")
        precision = TRT_TOLERANCE_PRECISION
    box_tol, score_tol = tolerances(precision, settings)
    profile_max = (record.get("profile") or {}).get("max") or [CHUNK]
    outputs = run_trt(path, batch, int(profile_max[0]))
    if kind == "trt":
        output0 = outputs.get(TRACK_A_OUTPUT, next(iter(outputs.values())))
        return check_output0(result, output0, raw_ref, torch_dets, infos, settings, box_tol, score_tol)
    if end2end_params is None:
        result.status = "skipped"
        result.notes.append("needs the end2end ONNX beside it for the NMS settings")
        return result
    dets = pp.postprocess_end2end(*(outputs[name] for name in END2END_OUTPUTS), infos)
    reference = nms_reference(raw_ref, infos, end2end_params)
    result.detections = compare_detections(reference, dets, end2end_params["conf"], end2end_params["topk"],
                                           score_tol, end2end_params["iou"])
    return finish(result, [result.detections])


def validate(name: str, models_dir: Path, weights_dir: Path, images_dir: Path | None,
             settings: Settings) -> dict:
    """Run every available format; returns the report (``report['passed']``)."""
    import onnx

    from yolo_triton.onnx_io import metadata

    paths = artefact_paths(name, models_dir)
    present = {k: p for k, p in paths.items() if p.is_file()}
    onnx_paths = [p for k, p in present.items() if k in ("onnx", "end2end")]
    if not onnx_paths:
        raise StepError(f"no ONNX artefact for '{name}' in {models_dir} (expected {paths['onnx']} or "
                        f"{paths['end2end']}; build it with 'make {paths['onnx']}')")
    weights = weights_path(name, weights_dir)
    try:
        imgsz = onnx_imgsz(onnx.load(str(onnx_paths[0]), load_external_data=False))
    except Exception as err:  # DecodeError and friends from a damaged file
        raise StepError(f"cannot read {onnx_paths[0]} as ONNX ({type(err).__name__}); rebuild it with make") from err
    images = image_paths(images_dir)
    task = task_of(onnx_paths[0])
    if task != "detect":  # every other task: one generic path through the task interface
        return validate_other_task(name, task, paths, weights, images, imgsz, settings)
    batch, infos = pp.letterbox_batch(read_images(images), imgsz, dtype="uint8")  # each runner makes its input
    LOG.info("%s: %d images at %d px, reference %s", name, len(images), imgsz, weights)
    raw_ref, torch_dets = torch_reference(weights, batch, infos, settings.conf, settings.iou, settings.topk,
                                          settings.agnostic)
    results = [FormatResult("pytorch", str(weights), "passed", "fp32",
                            detections={"reference": sum(len(d) for d in torch_dets)})]
    end2end_params = None
    for kind, path in paths.items():
        if kind not in present:
            results.append(FormatResult(kind, str(path), "skipped", notes=["artefact not built"]))
            continue
        LOG.info("checking %s: %s", kind, path)
        try:
            if kind == "onnx":
                results.append(check_track_a(path, raw_ref, torch_dets, batch, infos, settings))
            elif kind == "end2end":
                model = onnx.load(str(path))
                end2end_params = end2end_nms_params(model, metadata(model))
                if end2end_params["mode"] == "free":
                    end2end_params["reference"] = torch_one2one_reference(weights, batch, infos, end2end_params["conf"],
                                                                          end2end_params["topk"])
                results.append(check_end2end(path, raw_ref, torch_dets, batch, infos, settings, end2end_params))
            else:
                why_not = trt_available()
                if why_not:
                    results.append(FormatResult(kind, str(path), "skipped", notes=[why_not]))
                    continue
                results.append(check_trt(kind, path, raw_ref, torch_dets, batch, infos, settings, end2end_params))
        except StepError as err:
            results.append(FormatResult(kind, str(path), "failed", notes=[str(err)]))
        except Exception as err:  # a broken artefact: report it as this format's failure, keep going
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            results.append(FormatResult(kind, str(path), "failed", notes=[f"{type(err).__name__}: {first}"]))
    checked = [r for r in results[1:] if r.status != "skipped"]
    return {
        "model": name,
        "images": [str(p) for p in images],
        "imgsz": imgsz,
        "settings": {"conf": settings.conf, "iou": settings.iou, "topk": settings.topk,
                     "agnostic": settings.agnostic},
        "match_iou": MATCH_IOU,
        "tolerances": {p: {"box_px": tolerances(p, settings)[0], "score": tolerances(p, settings)[1]}
                       for p in TOLERANCES},
        "formats": [r.__dict__ for r in results],
        "passed": bool(checked) and all(r.status == "passed" for r in checked),
    }


def task_of(onnx_path: Path) -> str:
    """The task ultralytics wrote into the graph's metadata (``detect`` when absent)."""
    import onnx

    from yolo_triton.onnx_io import metadata

    return metadata(onnx.load(str(onnx_path), load_external_data=False)).get("task", "detect")


def validate_other_task(name: str, task: str, paths: dict[str, Path], weights: Path, images: list[Path], imgsz: int,
                        settings: Settings) -> dict:
    """Segment, pose, OBB, classify: :mod:`yolo_triton.validate_tasks` against ultralytics' predict."""
    from yolo_triton import validate_tasks as vt
    from yolo_triton.checkpoint import inspect, load_yolo
    from yolo_triton.task_base import NmsParams

    params = NmsParams(settings.conf, settings.iou, settings.topk, "ultralytics", settings.agnostic)
    num_classes = inspect(load_yolo(weights), weights).num_classes
    results = vt.validate_task(name, task, paths, weights, read_images(images), imgsz, num_classes, params,
                               tolerance_precision, trt_available(), CHUNK)
    return vt.report(name, task, images, imgsz, params, results)


def format_table(report: dict) -> str:
    if report.get("task", "detect") != "detect":
        from yolo_triton.validate_tasks import format_table as task_table

        return task_table(report)
    header = f"{'format':<12} {'prec':<5} {'raw box Δpx':>11} {'raw score Δ':>11} {'ref/test/match':>15} " \
             f"{'score Δ':>8}  status"
    lines = [f"validate {report['model']}: {len(report['images'])} images, imgsz {report['imgsz']}, "
             f"conf {report['settings']['conf']} iou {report['settings']['iou']} topk {report['settings']['topk']}, "
             f"match = same class and IoU >= {report['match_iou']}", header, "-" * len(header)]
    for r in report["formats"]:
        raw, det = r["raw"], r["detections"]
        box = f"{raw['max_box_diff_px']:.4f}" if "max_box_diff_px" in raw else "-"
        score = f"{raw['max_score_diff']:.2e}" if "max_score_diff" in raw else "-"
        counts = f"{det['reference']}/{det['test']}/{det['matched']}" if "matched" in det else \
            (str(det.get("reference", "-")))
        sdiff = f"{det['max_score_diff']:.1e}" if "max_score_diff" in det else "-"
        lines.append(f"{r['name']:<12} {r['precision'] or '-':<5} {box:>11} {score:>11} {counts:>15} {sdiff:>8}  "
                     f"{r['status'].upper()}")
        if r.get("vs_ultralytics"):
            v = r["vs_ultralytics"]
            lines.append(f"{'':<12} vs ultralytics NMS (info): {v['reference']}/{v['test']}/{v['matched']}")
        for note in r["notes"][:5]:
            lines.append(f"{'':<12} - {note}")
    lines.append(f"RESULT: {'PASS' if report['passed'] else 'FAIL'}")
    return "\n".join(lines)
