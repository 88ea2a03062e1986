"""Option combinations, validated in one place before any work (as ultralytics' exporter does up front).

Each step passes the options it knows (settings, and facts read from the checkpoint or the artefact) to
:func:`check_options`; every rule whose fields are all given is checked, and all violations come back
as ONE line (a StepError) before anything is written. A rule is one entry of :data:`RULES`: a new
combination to refuse is one line there. Single values (CONF range, a known PRECISION) are checked
where they are parsed; this module is about values that are fine alone and wrong together.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Callable

from yolo_triton.errors import StepError


@dataclass(frozen=True)
class Options:
    """What a step knows; None = not known to this step (rules on it are skipped)."""

    nms: str | None = None  # NMS: efficient | onnx | ultralytics | free
    task: str | None = None  # read from the checkpoint or the ONNX metadata: detect | segment | pose | obb | classify
    precision: str | None = None  # PRECISION: fp32 | fp16 | int8
    calib_dir: str | None = None  # CALIB_DIR ("" = none)
    instance_kind: str | None = None  # INSTANCE_KIND of the Triton configs: gpu | cpu
    has_one2one_head: bool | None = None  # read from the checkpoint (YOLO26, YOLOv10)
    imgsz: int | None = None  # IMGSZ
    stride: int | None = None  # read from the checkpoint (its largest stride)
    gpus: tuple[int, ...] | None = None  # GPUS as indices (empty = every GPU)
    listed_gpus: tuple[int, ...] | None = None  # the indices nvidia-smi lists here (None: none listed)


@dataclass(frozen=True)
class Rule:
    needs: tuple[str, ...]  # Options fields that must all be known for the rule to apply
    broken: Callable[[Options], bool]
    message: Callable[[Options], str]


RULES = (
    Rule(("nms", "instance_kind"), lambda o: o.nms == "efficient" and o.instance_kind == "cpu",
         lambda o: "NMS=efficient puts TensorRT's EfficientNMS_TRT plugin in the graph, which only a GPU instance "
                   "runs; use NMS=onnx with INSTANCE_KIND=cpu"),
    Rule(("nms", "has_one2one_head"), lambda o: o.nms == "free" and not o.has_one2one_head and o.task != "classify",
         lambda o: "NMS=free needs a one-to-one (NMS-free) head (YOLO26, YOLOv10); this checkpoint has none "
                   + ("(an OBB model without one has no end2end graph: serve its Track A)" if o.task == "obb"
                      else "(use NMS=efficient or NMS=onnx)")),
    # End2end per task (nms_graph): what the NMS stage cannot carry through.
    Rule(("nms", "task"), lambda o: o.nms == "efficient" and o.task in ("segment", "pose"),
         lambda o: f"NMS=efficient with a {o.task} model: EfficientNMS_TRT returns no indices, so the "
                   f"{'masks' if o.task == 'segment' else 'keypoints'} of the kept boxes cannot be gathered; "
                   "use NMS=onnx or ultralytics"),
    Rule(("nms", "task"), lambda o: o.task == "obb" and o.nms != "free",
         lambda o: f"NMS={o.nms} with an OBB model: there is no standard-operator rotated NMS (NonMaxSuppression "
                   "and EfficientNMS_TRT overlap axis-aligned boxes); YOLO26-OBB works with NMS=free, a YOLO11/v8-OBB "
                   "is served as Track A (client NMS)"),
    Rule(("nms", "task"), lambda o: o.task == "classify",
         lambda o: "a classify model has no NMS, so there is no end2end graph to make: its Track A model "
                   "(models/<name>) is the model"),
    Rule(("precision", "calib_dir"), lambda o: o.precision == "int8" and not o.calib_dir,
         lambda o: "PRECISION=int8 needs calibration images: set CALIB_DIR to a folder of representative images"),
    Rule(("imgsz", "stride"), lambda o: o.imgsz <= 0 or o.imgsz % o.stride != 0,
         lambda o: f"IMGSZ={o.imgsz} is not a positive multiple of the model stride {o.stride} "
                   f"(try {max(o.stride, o.imgsz - o.imgsz % o.stride)})"),
    Rule(("gpus", "listed_gpus"), lambda o: bool(set(o.gpus) - set(o.listed_gpus)),
         lambda o: f"GPUS={','.join(map(str, o.gpus))}: GPU {sorted(set(o.gpus) - set(o.listed_gpus))[0]} is not on "
                   f"this machine (nvidia-smi lists {','.join(map(str, o.listed_gpus))})"),
)
OPTION_NAMES = tuple(f.name for f in fields(Options))


def violations(options: Options) -> list[str]:
    """The message of every rule that applies to ``options`` and is broken."""
    return [rule.message(options) for rule in RULES
            if all(getattr(options, name) is not None for name in rule.needs) and rule.broken(options)]


def check_options(**known) -> Options:
    """Raise one StepError naming every broken combination of ``known`` (Options fields); else return them."""
    unknown = sorted(set(known) - set(OPTION_NAMES))
    if unknown:
        raise TypeError(f"unknown options {unknown}; known: {OPTION_NAMES}")
    options = Options(**known)
    problems = violations(options)
    if problems:
        raise StepError("; ".join(problems))
    return options
