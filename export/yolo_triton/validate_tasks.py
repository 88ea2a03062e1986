"""Validation of segment, pose, OBB and classify models against ultralytics' own ``predict``, through the
task interface (``task_base.Task``): one code path for every task, no branch per task.

(Detect keeps ``validate``'s finer checks: raw ``output0`` per anchor against PyTorch, NMS swaps excused.)

The chain of evidence, per format that exists:

* ``onnx`` (Track A) in onnxruntime, the task's client decoding (``ultralytics`` NMS semantics), against
  ``YOLO.predict`` on the same images: ``Task.compare`` with the tolerances of the artefact's precision
  (boxes and keypoints within ``box_px`` network-input pixels, scores within ``score``; masks: IoU of the
  binary masks in original-image pixels >= 0.9 per matched instance; OBB: probiou >= 0.9 and the angle;
  classify: the same top-5, probabilities within ``score``).
* ``end2end`` (NMS in the graph) in onnxruntime: with ``NMS=ultralytics`` or ``free`` the graph's semantics
  are ``predict``'s, so it is compared with ``predict``; with ``NMS=onnx`` (multi-label, as EfficientNMS) it
  is compared with the Track A graph's outputs decoded by the same semantics in NumPy (the graph was built
  from that Track A graph, so this isolates the NMS stage), and its agreement with ``predict`` is reported
  for information.
* ``trt`` / ``trt_end2end`` plans: where TensorRT and a GPU are present (else skipped, with the reason).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from yolo_triton import postprocess as pp
from yolo_triton.task_base import NmsParams, TaskShape, Tolerance
from yolo_triton.tasks import for_task

LOG = logging.getLogger("validate")

# (box_px in network-input pixels, score) by precision; masks, probiou and angle as task_base.Tolerance
TASK_TOLERANCES = {
    "fp32": Tolerance(box_px=0.5, score=2e-3),
    "fp16": Tolerance(box_px=2.0, score=0.02),
    "int8": Tolerance(box_px=8.0, score=0.1, mask_iou=0.8, probiou=0.8, angle_rad=0.15),
}
ONNX_INPUT_WIRE = {"tensor(float)": "FP32", "tensor(uint8)": "UINT8"}


@dataclass
class TaskResult:
    name: str
    artefact: str
    status: str  # passed / failed / skipped
    precision: str = ""
    counts: dict = field(default_factory=dict)  # instances (or images) in the reference and the test
    notes: list[str] = field(default_factory=list)


def shape_of(meta: dict[str, str], task: str, num_classes: int) -> TaskShape:
    """The TaskShape of a Track A graph from ultralytics' ONNX metadata (``kpt_shape``) and the class count."""
    import ast

    kpt = ast.literal_eval(meta["kpt_shape"]) if meta.get("kpt_shape") else None
    return TaskShape(task, num_classes, 32 if task == "segment" else 0, tuple(kpt) if kpt else None)


def run_graph(path: Path, task, images, imgsz: int, chunk: int) -> tuple[dict[str, np.ndarray], list, dict[str, str]]:
    """All outputs of the ONNX graph at ``path`` for ``images`` (the task's own preprocessing, ``chunk``
    images a run), per-image infos, and the graph's metadata."""
    import onnx

    from yolo_triton.onnx_io import cpu_session, metadata

    model = onnx.load(str(path))
    session = cpu_session(model)
    (image_input,) = session.get_inputs()
    wire = ONNX_INPUT_WIRE.get(image_input.type, "FP32")
    names = [o.name for o in session.get_outputs()]
    outputs: dict[str, list[np.ndarray]] = {name: [] for name in names}
    infos: list = []
    for start in range(0, len(images), chunk):
        batch, part = task.preprocess(images[start:start + chunk], imgsz, wire)
        infos += part
        for name, value in zip(names, session.run(None, {image_input.name: batch})):
            outputs[name].append(pp.as_float32(value))  # OUTPUT_DTYPE=float16
    return {name: np.concatenate(values) for name, values in outputs.items()}, infos, metadata(model)


def _number(meta: dict[str, str], key: str, default: float) -> float:
    """A numeric NMS setting add_nms wrote into the graph's metadata; ``default`` where it has none or
    writes a note instead (the IoU of an NMS-free graph)."""
    try:
        return float(meta[key])
    except (KeyError, ValueError):
        return float(default)


def _check(result: TaskResult, task, ref, test, tol: Tolerance, params: NmsParams) -> TaskResult:
    problems = task.compare(ref, test, tol, params)
    result.counts = {"reference": sum(len(r) for r in ref), "test": sum(len(t) for t in test)}
    result.status = "failed" if problems else "passed"
    result.notes += problems
    return result


def validate_task(name: str, task_name: str, paths: dict[str, Path], weights: Path, images: list[np.ndarray],
                  imgsz: int, num_classes: int, params: NmsParams, precision_of, trt_reason: str | None,
                  chunk: int) -> list[TaskResult]:
    """Every format of ``paths`` that exists, checked as the module docstring says. ``precision_of``: the
    precision whose tolerances apply, from a graph's metadata (fp16 for FP16 outputs: OUTPUT_DTYPE); ``trt_reason``: why plans cannot run here (None: they can)."""
    from yolo_triton.checkpoint import load_yolo

    task = for_task(task_name)
    yolo = load_yolo(weights)
    references: dict[bool, list] = {}

    def reference_of(one2one: bool) -> list:
        """predict with the one-to-many head and its NMS, or (one2one) the NMS-free head (nms=False)."""
        if one2one not in references:
            yolo.overrides["nms"] = False if one2one else None
            references[one2one] = task.reference(yolo, images, imgsz, params)
        return references[one2one]

    reference = reference_of(False) if not paths["onnx"].is_file() else None
    results = [TaskResult("pytorch", str(weights), "passed", "fp32")]
    track_a = None
    for kind, path in paths.items():
        if not path.is_file():
            results.append(TaskResult(kind, str(path), "skipped", notes=["artefact not built"]))
            continue
        if kind.startswith("trt"):
            results.append(TaskResult(kind, str(path), "skipped", notes=[trt_reason or
                                      "plans of this task are checked on the served path only"]))
            continue
        LOG.info("checking %s: %s", kind, path)
        try:
            outputs, infos, meta = run_graph(path, task, images, imgsz, chunk)
            precision = precision_of(meta)
            tol = TASK_TOLERANCES[precision]
            result = TaskResult(kind, str(path), "", precision)
            shape = shape_of(meta, task_name, num_classes)
            if kind == "onnx":
                layout = "one2one" if meta.get("one2one") == "True" else "track_a"
                track_a = (outputs, infos, layout, shape)
                reference = reference_of(layout == "one2one")
                results.append(_check(result, task, reference, task.decode(outputs, infos, shape, params, layout),
                                      tol, params))
                continue
            mode = meta.get("nms", "onnx")
            reference = reference_of(mode == "free")
            graph_params = NmsParams(_number(meta, "conf", params.conf), _number(meta, "iou", params.iou),
                                     int(_number(meta, "topk", params.topk)), mode,
                                     bool(int(_number(meta, "agnostic", 0))))
            test = task.decode(outputs, infos, shape, graph_params, "end2end")
            if mode in ("ultralytics", "free") or track_a is None:
                results.append(_check(result, task, reference, test, tol, graph_params))
                continue
            a_outputs, a_infos, layout, a_shape = track_a
            expected = task.decode(a_outputs, a_infos, a_shape, graph_params, layout)
            _check(result, task, expected, test, tol, graph_params)
            info = task.compare(reference, test, tol, graph_params)
            result.notes.append(f"vs ultralytics predict (information; NMS={mode} is multi-label): "
                                f"{len(info)} differences")
            results.append(result)
        except Exception as err:  # a broken artefact: this format's failure, keep going
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            results.append(TaskResult(kind, str(path), "failed", notes=[f"{type(err).__name__}: {first}"]))
    results[0].counts = {"reference": sum(len(r) for r in references.get(False, references.get(True, [])))}
    return results


def report(name: str, task_name: str, image_paths: list[Path], imgsz: int, params: NmsParams,
           results: list[TaskResult]) -> dict:
    checked = [r for r in results[1:] if r.status != "skipped"]
    return {
        "model": name,
        "task": task_name,
        "images": [str(p) for p in image_paths],
        "imgsz": imgsz,
        "settings": {"conf": params.conf, "iou": params.iou, "topk": params.topk, "agnostic": params.agnostic},
        "tolerances": {p: t.__dict__ for p, t in TASK_TOLERANCES.items()},
        "formats": [r.__dict__ for r in results],
        "passed": bool(checked) and all(r.status == "passed" for r in checked),
    }


def format_table(rep: dict) -> str:
    header = f"{'format':<12} {'prec':<5} {'reference':>9} {'test':>6}  status"
    lines = [f"validate {rep['model']} ({rep['task']}): {len(rep['images'])} images, imgsz {rep['imgsz']}, "
             f"conf {rep['settings']['conf']} iou {rep['settings']['iou']} topk {rep['settings']['topk']}",
             header, "-" * len(header)]
    for r in rep["formats"]:
        lines.append(f"{r['name']:<12} {r['precision'] or '-':<5} {r['counts'].get('reference', '-'):>9} "
                     f"{r['counts'].get('test', '-'):>6}  {r['status'].upper()}")
        lines += [f"{'':<12} - {note}" for note in r["notes"][:5]]
    lines.append(f"RESULT: {'PASS' if rep['passed'] else 'FAIL'}")
    return "\n".join(lines)
