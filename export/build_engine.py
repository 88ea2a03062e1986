"""Build a TensorRT plan from a model's ONNX (Track B: plain; Track C: with EfficientNMS_TRT), any task.

    python export/build_engine.py --onnx models/yolov11_nano/1/model.onnx \
        --plan models/yolov11_nano_trt/1/model.plan --max-batch 128 --imgsz 640 \
        --workspace 4G --opt-level 3 --cache-dir trt_cache --builder auto [--trtexec PATH] [-v]

Uses ``trtexec`` when found (``--trtexec``, else PATH, else /usr/src/tensorrt/bin/trtexec), else the
TensorRT Python API; TensorRT 10.x and 11.x, detected at run time. The network is strongly typed,
so precision is whatever the ONNX graph holds (AutoCast FP16, Q/DQ INT8 or FP32). One optimization
profile: batch 1 / MAX_BATCH//2 / MAX_BATCH at IMGSZ. The timing cache is one file per GPU model,
compute capability and TensorRT version in ``--cache-dir``. The plan is written atomically, with a
``model.plan.json`` sidecar (TensorRT version, GPU, ONNX SHA-256, profile, precision, builder, and what
the plan serves: every input and output with dtype and shape, and the ONNX metadata with the task and
class names; write_config.py writes the plan's config from it).

Every task's graph (detect, segment with its prototypes ``output1``, pose, obb, classify) has one image
input ``[B, 3, IMGSZ, IMGSZ]``; the profile is on it, whatever and however many outputs the graph has.

GPUs (``--gpus``, Make's ``GPUS``; default every GPU nvidia-smi lists): a build waits for a free GPU
(one build per GPU at a time, a lock per GPU in ``--lock-dir``) and is pinned to it (trtexec
``--device=N``; the Python API under ``CUDA_VISIBLE_DEVICES``). When the chosen GPUs have several
compute capabilities, one plan per capability is built, in parallel, each on a GPU of its capability:
``model.plan`` for the first GPU's, ``model_sm<XY>.plan`` for each other; every sidecar records its GPU
and the capability -> file map that write_config.py turns into ``cc_model_filenames``.
``--hw-compat ampere+`` builds one portable plan instead (Ampere and newer).

    python export/build_engine.py --check-plans models/*/1/model*.plan [--remove-stale]

reports plans built on another GPU model or TensorRT version (exit 1), or deletes them so that the
next ``make`` rebuilds exactly those.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from yolo_triton.cli import sigterm_as_interrupt
from yolo_triton.engine import (
    BuildRequest,
    read_sidecar,
    GpuInfo,
    has_efficient_nms,
    image_input,
    make_profile,
    onnx_precision,
    onnx_summary,
    parse_workspace,
    plain_onnx,
    plan_is_stale,
    query_gpu,
    sha256_file,
    sidecar_path,
    sidecar_record,
    timing_cache_path,
    write_sidecar,
)
from yolo_triton.engine_build import BUILDER_CHOICES, build_plan, select_builder
from yolo_triton.engine_fleet import (
    HW_COMPAT_LEVELS,
    Gpu,
    PlanTarget,
    cc_model_filenames,
    choose_gpus,
    gpu_lock,
    list_gpus,
    plan_targets,
    sibling_plans,
)
from yolo_triton.batch_pad import META_KEY as BATCH_PAD_KEY
from yolo_triton.errors import StepError
from yolo_triton.onnx_io import metadata
from yolo_triton.settings import defaults

log = logging.getLogger("build_engine")
UNKNOWN_GPU = GpuInfo("unknown-gpu", "unknown")


def build(args: argparse.Namespace) -> Path:
    """Build ``args.plan`` (and, for a mixed fleet, its per-capability siblings) from ``args.onnx``."""
    onnx_path, plan_path = Path(args.onnx), Path(args.plan)
    if not onnx_path.is_file():
        raise StepError(f"{onnx_path} does not exist; build it first (make onnx)")
    model, inputs, outputs = onnx_summary(onnx_path)
    served = served_metadata(model)
    spec = image_input(inputs)
    profile = make_profile(spec, args.max_batch, args.imgsz)
    precision = onnx_precision(model)
    track = "C (EfficientNMS_TRT in graph)" if has_efficient_nms(model) else "B (plain graph)"
    del model
    log.info("onnx: %s, track %s, task %s, precision from graph: %s", onnx_path, track,
             served.get("task", "unknown"), precision)
    for tensor in inputs + outputs:
        log.info("  %-6s %-18s %-8s %s", "input" if tensor in inputs else "output", tensor.name,
                 tensor.dtype, tensor.shape)
    log.info("profile %s: min %s opt %s max %s", profile.input_name, profile.min, profile.opt, profile.max)

    targets = fleet_targets(plan_path, args.gpus, args.hw_compat)
    fleet = json.loads(args.cc_model_filenames) if args.cc_model_filenames else cc_model_filenames(targets)
    if len(targets) == 1:
        build_target(args, targets[0], profile, precision, fleet, (inputs, outputs), served)
    else:
        log.info("GPUs of %d compute capabilities: one plan each (%s)", len(targets),
                 ", ".join(f"sm {t.compute_capability} -> {t.plan.name}" for t in targets))
        build_in_children(args, targets, fleet)
    if not args.cc_model_filenames:  # the top-level build: drop plans of capabilities no longer chosen
        built = {t.plan for t in targets}
        for old in sibling_plans(plan_path):
            if old not in built:
                old.unlink(missing_ok=True)
                sidecar_path(old).unlink(missing_ok=True)
                log.info("removed %s (no chosen GPU has its compute capability)", old)
    return plan_path


def fleet_targets(plan_path: Path, gpus_spec: str, hw_compat: str) -> list[PlanTarget]:
    """The plans to build and their GPUs; without nvidia-smi one plan on the default GPU."""
    gpus = list_gpus()
    if gpus:
        return plan_targets(plan_path, choose_gpus(gpus, gpus_spec), hw_compat)
    if (gpus_spec or "all") != "all":
        raise StepError(f"GPUS={gpus_spec} but nvidia-smi lists no GPU here; leave GPUS empty")
    plan_targets(plan_path, [], hw_compat)  # validates HW_COMPAT
    return [PlanTarget(plan_path, None, ())]


@contextmanager
def visible_device(gpu: Gpu | None):
    """CUDA_VISIBLE_DEVICES=<the GPU's UUID> while building (the Python API and any timing-cache merge
    create their CUDA context there); trtexec gets --device instead (engine_trtexec.device_env)."""
    if gpu is None:
        yield
        return
    keys = ("CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER")
    before = {key: os.environ.get(key) for key in keys}
    os.environ["CUDA_VISIBLE_DEVICES"] = gpu.uuid or str(gpu.index)
    os.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"  # only matters for a numeric CUDA_VISIBLE_DEVICES
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def served_metadata(model) -> dict[str, str]:
    """The ONNX metadata a plan serves with: the graph's own, less the ORT_BATCHING=pad padding that the
    plan is built without (engine.plain_onnx)."""
    return {key: value for key, value in metadata(model).items() if key != BATCH_PAD_KEY}


def build_target(args: argparse.Namespace, target: PlanTarget, profile, precision: str,
                 fleet: dict[str, str], io=None, served: dict[str, str] | None = None) -> Path:
    """Wait for a free GPU of ``target``, build its plan there, write the sidecar (with the plan's inputs,
    outputs and metadata, ``io`` and ``served``)."""
    plan_path = target.plan
    lock_dir = Path(args.lock_dir or Path(args.cache_dir) / "locks")
    default = Gpu(-1, "default", "", "")  # no nvidia-smi: one lock for "the" GPU of this machine
    with gpu_lock(target.gpus or (default,), lock_dir) as slot:
        pinned = slot if target.gpus else None
        with visible_device(pinned):
            builder = select_builder(args.builder, args.trtexec or None)
            if pinned is not None:
                gpu = GpuInfo(pinned.name, pinned.compute_capability)
                log.info("plan %s builds on GPU %d (%s, sm %s)%s", plan_path, pinned.index, pinned.name,
                         pinned.compute_capability, " as a portable ampere+ plan" if args.hw_compat != "none" else "")
            else:
                gpu = query_gpu() or UNKNOWN_GPU
                if gpu is UNKNOWN_GPU:
                    log.warning("cannot read the GPU name (nvidia-smi and torch.cuda failed); timing cache and "
                                "sidecar say 'unknown-gpu'")
                log.info("plan %s builds on the default GPU (%s, sm %s)", plan_path, gpu.name, gpu.compute_capability)
            log.info("builder: %s, TensorRT %s", builder.name, builder.trt_version)
            request = BuildRequest(
                onnx=Path(args.onnx), plan=plan_path, profile=profile, workspace=args.workspace.strip().upper(),
                workspace_bytes=parse_workspace(args.workspace), opt_level=args.opt_level,
                timing_cache=timing_cache_path(Path(args.cache_dir), gpu, builder.trt_version, args.hw_compat),
                verbose=args.verbose, gpu_index=pinned.index if pinned else None, hw_compat=args.hw_compat)
            onnx_sha = sha256_file(request.onnx)
            start = time.monotonic()
            # A failed build leaves the old plan AND its sidecar as they were (check-plans still knows that
            # plan); after a success the new sidecar replaces the old one. TensorRT gets the plain graph
            # (an ORT_BATCHING=pad wrapper would make every profile shape run the padded batch).
            with plain_onnx(request.onnx) as source:
                result = build_plan(replace(request, onnx=source), builder)
    size = plan_path.stat().st_size
    write_sidecar(plan_path, sidecar_record(request, result, gpu, precision, onnx_sha, size,
                                            pinned.uuid if pinned else None, fleet, io, served))
    log.info("built %s in %.1f s: %.1f MiB (%s, TensorRT %s, %s)", plan_path, time.monotonic() - start,
             size / (1 << 20), result.builder, result.trt_version, precision)
    return plan_path


def build_in_children(args: argparse.Namespace, targets: list[PlanTarget], fleet: dict[str, str]) -> None:
    """One child build per capability, all at once (each waits for its own GPUs' locks). A child is this
    script restricted to that capability's GPUs, so the Python API can pin each to its GPU."""
    # The plans' folder is made here, before any child: a child's failed build then removes only what it
    # wrote (atomic_path drops folders only it created), never the folder its siblings still build into.
    folder = targets[0].plan.parent
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    children = []
    for target in targets:
        argv = [sys.executable, str(Path(__file__).resolve()), "--onnx", str(args.onnx), "--plan", str(target.plan),
                "--max-batch", str(args.max_batch), "--imgsz", str(args.imgsz), "--workspace", args.workspace,
                "--opt-level", str(args.opt_level), "--cache-dir", str(args.cache_dir), "--builder", args.builder,
                "--trtexec", args.trtexec, "--gpus", ",".join(str(g.index) for g in target.gpus),
                "--hw-compat", args.hw_compat, "--cc-model-filenames", json.dumps(fleet, sort_keys=True)]
        if args.lock_dir:
            argv += ["--lock-dir", str(args.lock_dir)]
        if args.verbose:
            argv.append("-v")
        children.append((target, subprocess.Popen(argv)))
    try:
        failed = [t for t, child in children if child.wait() != 0]
    except BaseException:  # SIGTERM/Ctrl-C: a child left running could still rename a plan into models/
        for _, child in children:
            if child.poll() is None:
                child.terminate()  # the child cleans up like this process (its trtexec, its temp plan)
        for _, child in children:
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        raise
    if created and len(failed) == len(targets):
        try:
            folder.rmdir()  # every build failed: the folder made above goes again (if nothing else is in it)
        except OSError:
            pass
    if failed:
        raise StepError("plan build failed for " + ", ".join(f"sm {t.compute_capability} ({t.plan.name})"
                                                           for t in failed) + " (its error is above)")


def check_plans(args: argparse.Namespace) -> int:
    """Report (and with --remove-stale delete) plans foreign to this GPU model / TensorRT version."""
    if not args.check_plans:
        log.info("no plans to check")
        return 0
    builder = select_builder(args.builder, args.trtexec or None)
    gpus = list_gpus()
    names = [g.name for g in gpus] or [(query_gpu() or UNKNOWN_GPU).name]
    log.info("this machine: %s, TensorRT %s", ", ".join(sorted(set(names))), builder.trt_version)
    stale = 0
    for plan in map(Path, args.check_plans):
        reason = plan_is_stale(plan, names, builder.trt_version) or fleet_is_stale(plan, gpus, args.gpus, args.hw_compat)
        if reason is None:
            log.info("ok: %s", plan)
            continue
        stale += 1
        if args.remove_stale:
            plan.unlink(missing_ok=True)
            sidecar_path(plan).unlink(missing_ok=True)
            log.warning("removed %s: %s", plan, reason)
        else:
            log.warning("stale: %s: %s", plan, reason)
    if stale and not args.remove_stale:
        raise StepError(f"{stale} plan(s) were built for another GPU or TensorRT version; "
                        "run make check-plans REMOVE_STALE=1 then make trt")
    return 0


def fleet_is_stale(plan: Path, gpus: list[Gpu], gpus_spec: str, hw_compat: str) -> str | None:
    """Why the plan set of ``plan`` (a ``model.plan``) does not cover the chosen GPUs of this machine."""
    record = read_sidecar(plan)
    if not gpus or record is None or "_sm" in plan.stem:
        return None
    built_compat = record.get("hardware_compatibility_level") or "none"
    if built_compat != hw_compat:
        return f"built with HW_COMPAT={built_compat}, the setting is HW_COMPAT={hw_compat}"
    if hw_compat != "none":
        return None
    have = set(record.get("cc_model_filenames") or {}) or {record.get("compute_capability")}
    missing = [t for t in plan_targets(plan, choose_gpus(gpus, gpus_spec)) if t.compute_capability not in have]
    if missing:
        gpu = missing[0].gpus[0]
        return f"no plan for sm {missing[0].compute_capability} (GPU {gpu.index}, {gpu.name}) beside it"
    return None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--onnx", help="input ONNX (Track B plain or Track C with EfficientNMS_TRT)")
    parser.add_argument("--plan", help="output plan, e.g. models/yolov11_nano_trt/1/model.plan")
    parser.add_argument("--max-batch", type=int, help="profile max batch (MAX_BATCH)")
    parser.add_argument("--imgsz", type=int, help="square input size (IMGSZ)")
    d = defaults()
    parser.add_argument("--workspace", default=d["WORKSPACE"], help="workspace pool limit, trtexec syntax (4G, 512M)")
    parser.add_argument("--opt-level", type=int, default=int(d["OPT_LEVEL"]), help="builder optimization level 0..5")
    parser.add_argument("--cache-dir", default=d["CACHE_DIR"], help="timing cache directory")
    parser.add_argument("--builder", default=d["ENGINE_BUILDER"], choices=BUILDER_CHOICES)
    parser.add_argument("--trtexec", default="", help="trtexec path (empty: PATH, then /usr/src/tensorrt/bin)")
    parser.add_argument("--gpus", default=d.get("GPUS", ""),
                        help="GPUs to build on, nvidia-smi indices (GPUS, e.g. 0,2); empty: all")
    parser.add_argument("--hw-compat", default=d.get("HW_COMPAT", "none"), choices=HW_COMPAT_LEVELS,
                        help="HW_COMPAT: ampere+ builds one portable plan for every Ampere-or-newer GPU")
    parser.add_argument("--lock-dir", default="", help="per-GPU lock files (default <cache-dir>/locks)")
    parser.add_argument("--cc-model-filenames", default="", help=argparse.SUPPRESS)  # set for child builds
    parser.add_argument("--check-plans", nargs="*", metavar="PLAN",
                        help="only check these plans against this GPU and TensorRT version")
    parser.add_argument("--remove-stale", action="store_true", help="with --check-plans: delete stale plans")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    if args.check_plans is None:
        missing = [f"--{k.replace('_', '-')}" for k in ("onnx", "plan", "max_batch", "imgsz")
                   if getattr(args, k) is None]
        if missing:
            parser.error("missing " + ", ".join(missing))
        if args.max_batch < 1 or args.imgsz < 1:  # the ONNX's fixed size is checked against --imgsz
            parser.error(f"--max-batch {args.max_batch} and --imgsz {args.imgsz} must be >= 1")
        if not 0 <= args.opt_level <= 5:
            parser.error(f"--opt-level {args.opt_level} must be 0..5")
        try:
            parse_workspace(args.workspace)
        except ValueError as err:
            parser.error(str(err))
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    sigterm_as_interrupt()  # make cancelling a build sends SIGTERM: end child builds, remove temp files
    try:
        if args.check_plans is not None:
            return check_plans(args)
        build(args)
    except StepError as err:
        log.error("%s", err)
        return 1
    except KeyboardInterrupt:
        log.error("interrupted; no plan was written")
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
