#!/usr/bin/env python3
"""Config step: ``models/<dir>/1/model.{onnx,plan}`` -> ``models/<dir>/config.pbtxt`` + ``labels.txt``.

Everything comes from the artefact, for every task (detect, segment, pose, obb, classify): every
input and output with its dtype and dims from the ONNX file (segment's prototypes ``output1`` too) or,
for a plan, from the engine itself when TensorRT is importable, else from the plan's sidecar
(``model.plan.json``, written by build_engine.py from the ONNX the plan was built from; a sidecar of an
older build without them: that ONNX, ``--source-onnx``); class names (``labels.txt``) and the task from
the ONNX metadata that the export step copied from the checkpoint (for a plan: its sidecar's copy).
``labels.txt`` is the ``label_filename`` of ``det_classes`` (end2end) or, for classify, of ``output0``
(the class probabilities: Triton's classification extension then answers ``class_count`` requests with
names). For models that ultralytics' own Triton client can use (one float image in, its own ``output0``
[+ ``output1``] out: Tracks A and B of every task) that metadata also goes into the config's
``metadata`` parameter, which the client reads (names, task, stride, imgsz, kpt_shape, ...); for the
others, a ``metadata`` that makes it refuse the model with the reason. Written through Triton's
ModelConfig protobuf.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

import onnx

from yolo_triton import triton_config as tc
from yolo_triton.cli import run_step
from yolo_triton.engine import parse_workspace
from yolo_triton.errors import StepError
from yolo_triton.options import check_options
from yolo_triton.onnx_io import TensorSpec, class_names, has_efficient_nms, onnx_io, onnx_metadata, onnx_precision
from yolo_triton.batch_pad import padded_size
from yolo_triton.settings import ORT_BATCHING_MODES, ort_batching

LOG = logging.getLogger("write_config")


def plan_io(plan: Path, source_onnx: Path | None) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """I/O of a plan: engine inspection when TensorRT is present, else the plan's sidecar, else (a sidecar
    without them) the source ONNX's."""
    from yolo_triton.engine import read_sidecar, sidecar_path, tensor_specs  # noqa: PLC0415 - plans only

    try:
        from yolo_triton.engine_build import engine_io
    except ImportError:
        engine_io = None
    io = engine_io(plan) if engine_io else None
    if io is not None:
        LOG.info("I/O read from the engine %s", plan)
        return io
    record = read_sidecar(plan) or {}
    if record.get("inputs") and record.get("outputs"):
        LOG.info("TensorRT not importable here: I/O read from %s (written when the plan was built)", sidecar_path(plan))
        return tensor_specs(record["inputs"]), tensor_specs(record["outputs"])
    if source_onnx is None:
        raise StepError(f"{plan}: neither TensorRT nor the plan's sidecar tells its inputs and outputs; pass "
                        "--source-onnx (the ONNX it was built from) or rebuild the plan")
    LOG.info("TensorRT not importable here: I/O read from %s (the plan's source)", source_onnx)
    return onnx_io(source_onnx)


def plan_metadata(plan: Path, source_onnx: Path | None) -> dict[str, str]:
    """The ONNX metadata a plan serves with: its sidecar's copy, else (an older sidecar) the source ONNX's."""
    from yolo_triton.engine import read_sidecar, sha256_file  # noqa: PLC0415 - plans only

    record = read_sidecar(plan) or {}
    if record.get("onnx_metadata"):
        if source_onnx is not None and source_onnx.is_file() and record.get("onnx_sha256") not in (
                None, sha256_file(source_onnx)):
            LOG.warning("%s was built from another %s than the one there now (its sidecar's SHA-256 differs); "
                        "the config describes the plan (make %s rebuilds it)", plan, source_onnx, plan)
        return dict(record["onnx_metadata"])
    if source_onnx is None:
        raise StepError(f"{plan}: its sidecar has no ONNX metadata (class names, task); pass --source-onnx")
    return onnx_metadata(source_onnx)


def plan_fleet(plan: Path) -> dict[str, str]:
    """``cc_model_filenames`` of a plan built for a mixed fleet (from its sidecar), each file checked."""
    from yolo_triton.engine import read_sidecar  # noqa: PLC0415 - plans only

    record = read_sidecar(plan) or {}
    fleet = dict(record.get("cc_model_filenames") or {})
    for cc, filename in sorted(fleet.items()):
        sibling = read_sidecar(plan.parent / filename)
        if sibling is None or not (plan.parent / filename).is_file():
            raise StepError(f"{plan.parent / filename} (the plan for compute capability {cc}) is missing; "
                            f"rebuild the plans: make {plan}")
        if sibling.get("compute_capability") != cc:
            raise StepError(f"{plan.parent / filename} was built on sm {sibling.get('compute_capability')}, "
                            f"not {cc}; rebuild the plans: make {plan}")
    return fleet


def parse_gpus(text: str | None, kind: str = "gpu", listed: list[int] | None = None) -> list[int]:
    """``GPUS`` (``0,2``; empty or ``all``: every GPU) -> the instance group's ``gpus``; for GPU instances,
    checked against the GPUs nvidia-smi lists (``listed``, default: asked) when it lists any."""
    text = (text or "").strip()
    if text in ("", "all"):
        return []
    try:
        gpus = [int(part) for part in text.split(",")]
    except ValueError:
        raise StepError(f"GPUS={text!r} is not a list of GPU indices (e.g. GPUS=0,2)") from None
    if kind == "gpu":
        if listed is None:
            from yolo_triton.engine_fleet import list_gpus
            listed = [gpu.index for gpu in list_gpus()]
        check_options(gpus=tuple(gpus), listed_gpus=tuple(listed) or None)
    return gpus


def build_config(artefact: Path, max_batch: int, queue_delay_us: int, source_onnx: Path | None,
                 kind: str = "gpu", workspace_bytes: int | None = None, ort_trt_cache_dir: str | None = None,
                 instances_per_gpu: int = 1, gpus: list[int] | None = None, keep_versions: int = 1,
                 ort_batching_mode: str = "dynamic"):
    if not artefact.is_file():
        raise StepError(f"artefact not found: {artefact}")
    model_dir = artefact.parent.parent
    accelerator = None
    batching = "dynamic"
    if artefact.suffix == ".onnx":
        platform, onnx_path = tc.ONNX_PLATFORM, artefact
        inputs, outputs = onnx_io(artefact)
        model = onnx.load(str(artefact), load_external_data=False)
        if has_efficient_nms(model):
            check_options(nms="efficient", instance_kind=kind)
            if workspace_bytes is None or ort_trt_cache_dir is None:
                raise StepError(f"{artefact} holds EfficientNMS_TRT: its config needs --workspace and "
                                "--ort-trt-cache-dir (ONNX Runtime's TensorRT execution provider)")
            accelerator = tc.ort_tensorrt_accelerator(onnx_precision(model), workspace_bytes,
                                                      f"{ort_trt_cache_dir.rstrip('/')}/{model_dir.name}")
        batching, max_batch = onnx_batching(artefact, model, ort_batching_mode, kind, max_batch)
    elif artefact.suffix == ".plan":
        if kind != "gpu":
            raise StepError(f"{artefact}: a TensorRT plan runs on GPU instances only, not INSTANCE_KIND={kind}")
        platform, onnx_path = tc.TENSORRT_PLATFORM, source_onnx or artefact
        inputs, outputs = plan_io(artefact, source_onnx)
        fleet = plan_fleet(artefact)
    else:
        raise StepError(f"{artefact}: expected model.onnx or model.plan")
    if artefact.suffix != ".plan":
        fleet = {}
    meta = plan_metadata(artefact, source_onnx) if artefact.suffix == ".plan" else onnx_metadata(onnx_path)
    try:
        names = class_names(meta)
    except KeyError as err:
        raise StepError(f"{onnx_path}: {err.args[0]}") from None
    label_output = tc.label_output(outputs, meta.get("task"))
    try:
        config = tc.model_config(model_dir.name, platform, inputs, outputs, max_batch, queue_delay_us, label_output,
                                 kind, accelerator, instances_per_gpu, gpus if kind == "gpu" else None, fleet,
                                 keep_versions=keep_versions, batching=batching)
    except ValueError as err:  # the artefact's tensors or the settings do not fit a Triton config
        raise StepError(f"{artefact}: {err}") from None
    add_ultralytics_metadata(config, meta, inputs, outputs, onnx_path)
    tc.set_task_parameter(config, tc.task_parameter(meta, outputs, len(names)))
    keep_pinned_versions(config, model_dir / "config.pbtxt")
    return model_dir, config, names


def add_ultralytics_metadata(config, meta: dict[str, str], inputs: list[TensorSpec], outputs: list[TensorSpec],
                             onnx_path: Path) -> None:
    """The ``metadata`` parameter that ultralytics' own Triton client (``YOLO("http://host:8000/<model>")``)
    reads names, task, stride and image size from, where that client can use the model (Tracks A/B with
    float input); elsewhere metadata that makes that client refuse the model with the reason."""
    reason = tc.ultralytics_unreadable(inputs, outputs)
    if reason is not None:
        tc.set_ultralytics_metadata(config, tc.ultralytics_refusal(config.name, reason))
        LOG.info("ultralytics' Triton client is refused by this config's metadata: %s", reason)
        return
    try:
        ultralytics = tc.ultralytics_metadata(meta, inputs[0])
    except (ValueError, SyntaxError) as err:  # an ONNX from elsewhere: it serves; ultralytics is told why not
        tc.set_ultralytics_metadata(config, tc.ultralytics_refusal(config.name, f"{onnx_path.name}: {err}"))
        LOG.warning("%s: %s; ultralytics' Triton client is refused by this config's metadata", onnx_path, err)
        return
    tc.set_ultralytics_metadata(config, ultralytics)
    LOG.info("ultralytics metadata: task %s, %d names, stride %s, imgsz %s (YOLO(\"http://host:8000/%s\") reads it)",
             ultralytics["task"], len(ultralytics["names"]), ultralytics["stride"], ultralytics["imgsz"], config.name)


def onnx_batching(artefact: Path, model, mode: str, kind: str, max_batch: int) -> tuple[str, int]:
    """How Triton batches an ONNX model (ORT_BATCHING, settings.ort_batching) and its max_batch_size: a
    graph padded by the export step runs at its padded batch, so that is the max; ``fixed`` runs one image."""
    try:
        effective = ort_batching(mode, kind)
    except ValueError as err:
        raise StepError(str(err)) from None
    pad = padded_size(model)
    if effective == "pad":
        if pad is None:
            raise StepError(f"{artefact} is not padded but ORT_BATCHING={mode} asks for padding "
                            f"(INSTANCE_KIND={kind}); re-export it with the same settings (make {artefact})")
        LOG.info("ORT_BATCHING=%s: every execution runs the padded batch %d (max_batch_size %d)", mode, pad, pad)
        return "pad", pad
    if pad is not None:
        raise StepError(f"{artefact} is padded to batch {pad} but ORT_BATCHING={mode} (INSTANCE_KIND={kind}) "
                        f"does not pad; re-export it with the same settings (make {artefact})")
    if effective == "fixed":
        LOG.info("ORT_BATCHING=fixed: max_batch_size 1, no dynamic batching (one image per execution)")
        return "fixed", 1
    return "dynamic", max_batch


def keep_pinned_versions(config, existing: Path) -> None:
    """A ``specific`` version policy in the config being replaced was pinned by ``make promote`` /
    ``make rollback`` (yolo_triton.versions): keep it, so that rebuilding a config never changes which
    versions are served. ``make promote VERSION=latest`` goes back to ``latest`` (KEEP_VERSIONS)."""
    if not existing.is_file():
        return
    try:
        policy = tc.version_policy(tc.parse_config(existing))
    except Exception:  # an unreadable old config pins nothing; it is replaced
        return
    if "specific" in policy:
        tc.apply_version_policy(config, policy)
        LOG.info("kept the served versions pinned by make promote/rollback: specific %s", policy["specific"])


def write_config(artefact: str, max_batch: int, queue_delay_us: int, source_onnx: str | None = None,
                 kind: str = "gpu", workspace: str | None = None, ort_trt_cache_dir: str | None = None,
                 instances_per_gpu: int = 1, gpus: str | None = None, keep_versions: int = 1,
                 ort_batching_mode: str = "dynamic") -> Path:
    workspace_bytes = parse_workspace(workspace) if workspace else None
    model_dir, config, names = build_config(Path(artefact), max_batch, queue_delay_us,
                                            Path(source_onnx) if source_onnx else None, kind, workspace_bytes,
                                            ort_trt_cache_dir, instances_per_gpu, parse_gpus(gpus, kind), keep_versions,
                                            ort_batching_mode)
    path = tc.write_model_config(model_dir, config, names)
    group = config.instance_group[0]
    where = f"GPUs {list(group.gpus)}" if group.gpus else ("every GPU" if kind == "gpu" else "the CPU")
    LOG.info("wrote %s (%s, max_batch_size %d, %d classes, %d %s instance(s) on %s)", path, config.platform,
             config.max_batch_size, len(names), group.count, kind, where)
    for output in config.output:
        LOG.info("  output %-16s %-10s %s%s", output.name, tc.mc.DataType.Name(output.data_type), list(output.dims),
                 f" (labels: {output.label_filename})" if output.label_filename else "")
    if config.cc_model_filenames:
        LOG.info("cc_model_filenames: %s", dict(sorted(config.cc_model_filenames.items())))
    for accelerator in config.optimization.execution_accelerators.gpu_execution_accelerator:
        LOG.info("execution accelerator %s: %s", accelerator.name, dict(accelerator.parameters))
    return path


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artefact", required=True, help="models/<dir>/1/model.onnx or model.plan")
    parser.add_argument("--max-batch", type=int, required=True)
    parser.add_argument("--queue-delay-us", type=int, required=True)
    parser.add_argument("--source-onnx", help="for a plan: the ONNX it was built from (used where the plan's "
                        "sidecar lacks its I/O or metadata)")
    parser.add_argument("--instance-kind", choices=tuple(tc.INSTANCE_KINDS), default="gpu",
                        help="Triton instance group kind (INSTANCE_KIND; cpu for a Triton without GPUs)")
    parser.add_argument("--workspace", help="TensorRT workspace (WORKSPACE, e.g. 4G) for ONNX Runtime's TensorRT "
                        "execution provider (NMS=efficient end2end ONNX)")
    parser.add_argument("--ort-trt-cache-dir", help="ORT_TRT_CACHE_DIR: engine cache of ONNX Runtime's TensorRT "
                        "execution provider, as the server sees it (one sub-folder per model)")
    parser.add_argument("--instances-per-gpu", type=int, default=1,
                        help="INSTANCES_PER_GPU: Triton instances on each GPU (instance_group count)")
    parser.add_argument("--gpus", default="", help="GPUS: the GPU ids instances run on (e.g. 0,2); empty: all")
    parser.add_argument("--keep-versions", type=int, default=1,
                        help="KEEP_VERSIONS: Triton serves this many newest version folders (version_policy latest)")
    parser.add_argument("--ort-batching", choices=ORT_BATCHING_MODES, default="dynamic",
                        help="ORT_BATCHING: how Triton batches ONNX models (auto, pad, fixed, dynamic)")
    parser.add_argument("-v", "--verbose", action="store_true")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    return run_step("write_config", lambda: write_config(args.artefact, args.max_batch, args.queue_delay_us,
                                                         args.source_onnx, args.instance_kind, args.workspace,
                                                         args.ort_trt_cache_dir, args.instances_per_gpu,
                                                         args.gpus, args.keep_versions, args.ort_batching),
                    args.verbose)


if __name__ == "__main__":
    raise SystemExit(main())
