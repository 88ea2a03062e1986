"""Build a TensorRT plan from an ONNX detector (Track B: plain; Track C: with EfficientNMS_TRT).

    python export/build_engine.py --onnx models/yolov11_nano/1/model.onnx \
        --plan models/yolov11_nano_trt/1/model.plan --max-batch 128 --imgsz 640 \
        --workspace 4G --opt-level 3 --cache-dir trt_cache --builder auto [--trtexec PATH] [-v]

Uses ``trtexec`` when found (``--trtexec``, else PATH, else /usr/src/tensorrt/bin/trtexec), else the
TensorRT Python API; TensorRT 10.x and 11.x, detected at run time. The network is strongly typed,
so precision is whatever the ONNX graph holds (AutoCast FP16, Q/DQ INT8 or FP32). One optimization
profile: batch 1 / MAX_BATCH//2 / MAX_BATCH at IMGSZ. The timing cache is one file per GPU model,
compute capability and TensorRT version in ``--cache-dir``. The plan is written atomically, with a
``model.plan.json`` sidecar (TensorRT version, GPU, ONNX SHA-256, profile, precision, builder).

    python export/build_engine.py --check-plans models/*/1/model.plan [--remove-stale]

reports plans built on another GPU model or TensorRT version (exit 1), or deletes them so that the
next ``make`` rebuilds exactly those.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from yolo_triton.engine import (
    BuildRequest,
    GpuInfo,
    has_efficient_nms,
    image_input,
    make_profile,
    onnx_precision,
    onnx_summary,
    parse_workspace,
    plan_is_stale,
    query_gpu,
    sha256_file,
    sidecar_path,
    sidecar_record,
    timing_cache_path,
    write_sidecar,
)
from yolo_triton.engine_build import BUILDER_CHOICES, build_plan, select_builder
from yolo_triton.errors import StepError
from yolo_triton.settings import defaults

log = logging.getLogger("build_engine")
UNKNOWN_GPU = GpuInfo("unknown-gpu", "unknown")


def build(args: argparse.Namespace) -> Path:
    """Build ``args.plan`` from ``args.onnx``; returns the plan path."""
    onnx_path, plan_path = Path(args.onnx), Path(args.plan)
    if not onnx_path.is_file():
        raise StepError(f"{onnx_path} does not exist; build it first (make onnx)")
    model, inputs, outputs = onnx_summary(onnx_path)
    spec = image_input(inputs)
    profile = make_profile(spec, args.max_batch, args.imgsz)
    precision = onnx_precision(model)
    track = "C (EfficientNMS_TRT in graph)" if has_efficient_nms(model) else "B (plain detector)"
    del model
    log.info("onnx: %s, track %s, precision from graph: %s", onnx_path, track, precision)
    for tensor in inputs + outputs:
        log.info("  %-6s %-18s %-8s %s", "input" if tensor in inputs else "output", tensor.name,
                 tensor.dtype, tensor.shape)
    log.info("profile %s: min %s opt %s max %s", profile.input_name, profile.min, profile.opt, profile.max)

    builder = select_builder(args.builder, args.trtexec or None)
    gpu = query_gpu() or UNKNOWN_GPU
    if gpu is UNKNOWN_GPU:
        log.warning("cannot read the GPU name (nvidia-smi and torch.cuda failed); timing cache and "
                    "sidecar say 'unknown-gpu'")
    log.info("builder: %s, TensorRT %s, GPU %s (sm %s)", builder.name, builder.trt_version,
             gpu.name, gpu.compute_capability)
    request = BuildRequest(
        onnx=onnx_path, plan=plan_path, profile=profile, workspace=args.workspace.strip().upper(),
        workspace_bytes=parse_workspace(args.workspace), opt_level=args.opt_level,
        timing_cache=timing_cache_path(Path(args.cache_dir), gpu, builder.trt_version),
        verbose=args.verbose)
    onnx_sha = sha256_file(onnx_path)
    start = time.monotonic()
    # A failed build leaves the old plan AND its sidecar as they were (check-plans still knows that plan);
    # after a success the new sidecar replaces the old one (until then plan_bytes no longer matches).
    result = build_plan(request, builder)
    size = plan_path.stat().st_size
    write_sidecar(plan_path, sidecar_record(request, result, gpu, precision, onnx_sha, size))
    log.info("built %s in %.1f s: %.1f MiB (%s, TensorRT %s, %s)", plan_path, time.monotonic() - start,
             size / (1 << 20), result.builder, result.trt_version, precision)
    return plan_path


def check_plans(args: argparse.Namespace) -> int:
    """Report (and with --remove-stale delete) plans foreign to this GPU model / TensorRT version."""
    if not args.check_plans:
        log.info("no plans to check")
        return 0
    builder = select_builder(args.builder, args.trtexec or None)
    gpu = query_gpu() or UNKNOWN_GPU
    log.info("this machine: %s (sm %s), TensorRT %s", gpu.name, gpu.compute_capability, builder.trt_version)
    stale = 0
    for plan in map(Path, args.check_plans):
        reason = plan_is_stale(plan, gpu.name, builder.trt_version)
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
    try:
        if args.check_plans is not None:
            return check_plans(args)
        build(args)
    except StepError as err:
        log.error("%s", err)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
