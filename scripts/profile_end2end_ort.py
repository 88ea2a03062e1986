"""Profile an ONNX graph in ONNX Runtime: time per operator type, per stage and the slowest nodes.

Runs the graph with ONNX Runtime's profiler (``SessionOptions.enable_profiling``) on the CUDA or CPU
execution provider, one session per batch size: ``--warmup`` runs (not counted), then ``--iterations``
profiled runs. Writes one summary JSON: per batch size the wall time per run (median, p90, images/s), the
kernel time per op type, per execution provider (nodes the CUDA EP left on the CPU show up there) and per
stage (``nms``: the nodes ``export/add_nms.py`` adds, ``onnx_nms/...``, ``head_to_anchor_major``,
``split_boxes_scores``; ``network``: the rest), and the top nodes by total kernel time.

Needs onnxruntime (or onnxruntime-gpu), numpy and onnx only (no ultralytics, no yolo_triton), so it runs
on a bare GPU machine. ``torch`` is imported first when it is installed: onnxruntime-gpu finds the CUDA
libraries that PyTorch's wheels bring through it.

Input: random uniform [0, 1) by default, or ``--input x.npy`` (``[N, 3, H, W]`` float32, e.g. letterboxed
images; repeated or cut to each batch size). Example (NMS=onnx vs NMS=ultralytics on a GPU)::

    python scripts/profile_end2end_ort.py models/yolo11s_untrained_end2end/1/model.onnx --provider CUDA \\
        --batch 1 8 --iterations 50 --out benchmarks/profile_end2end_cuda.json
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

if importlib.util.find_spec("torch") is not None:  # before onnxruntime: CUDA libraries through PyTorch's wheels
    import torch  # noqa: F401

import numpy as np
import onnxruntime as ort

LOG = logging.getLogger("profile_end2end_ort")
PROVIDERS = {"CUDA": "CUDAExecutionProvider", "CPU": "CPUExecutionProvider"}
NMS_NODE_PREFIXES = ("onnx_nms/", "head_to_anchor_major", "split_boxes_scores", "efficient_nms")


def stage_of(node_name: str) -> str:
    return "nms" if node_name.startswith(NMS_NODE_PREFIXES) else "network"


def make_session(path: Path, provider: str, threads: int, profile_prefix: str, cudnn_algo: str) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.enable_profiling = True
    options.profile_file_prefix = profile_prefix
    if threads:
        options.intra_op_num_threads = threads
    if provider == "CUDA":
        providers = [("CUDAExecutionProvider", {"cudnn_conv_algo_search": cudnn_algo}), "CPUExecutionProvider"]
    else:
        providers = ["CPUExecutionProvider"]
    session = ort.InferenceSession(str(path), options, providers=providers)
    if PROVIDERS[provider] not in session.get_providers():
        raise SystemExit(f"{PROVIDERS[provider]} is not available here (onnxruntime {ort.__version__}, "
                         f"available: {ort.get_available_providers()})")
    return session


def feeds_for(session: ort.InferenceSession, batch: int, data: np.ndarray | None, rng) -> dict:
    feeds = {}
    for spec in session.get_inputs():
        shape = [batch if i == 0 and not isinstance(d, int) else d for i, d in enumerate(spec.shape)]
        if any(not isinstance(d, int) for d in shape):
            raise SystemExit(f"input {spec.name} has a symbolic dimension past the batch: {spec.shape}")
        dtype = np.float16 if "float16" in spec.type else np.float32
        if data is not None:
            reps = -(-batch // len(data))
            value = np.concatenate([data] * reps)[:batch].astype(dtype)
            if list(value.shape) != shape:
                raise SystemExit(f"--input has shape {list(data.shape)}, input {spec.name} needs {shape}")
        else:
            value = rng.random(shape, dtype=np.float32).astype(dtype)
        feeds[spec.name] = value
    return feeds


def summarise(events: list[dict], skip_before_us: float, iterations: int, top: int) -> dict:
    """Kernel time per op type / provider / stage and the top nodes, per profiled run (microseconds)."""
    by_op, by_provider, by_stage = defaultdict(float), defaultdict(float), defaultdict(float)
    nodes: dict[str, dict] = {}
    for event in events:
        if event.get("cat") != "Node" or not event["name"].endswith("_kernel_time") or event["ts"] < skip_before_us:
            continue
        args = event.get("args", {})
        name = event["name"][: -len("_kernel_time")]
        op, provider, dur = args.get("op_name", "?"), args.get("provider", "?"), float(event["dur"])
        by_op[op] += dur
        by_provider[provider] += dur
        by_stage[stage_of(name)] += dur
        node = nodes.setdefault(name, {"node": name, "op": op, "provider": provider, "us": 0.0})
        node["us"] += dur

    def per_run(table: dict) -> dict:
        return {k: round(v / iterations, 1) for k, v in sorted(table.items(), key=lambda kv: -kv[1])}

    top_nodes = sorted(nodes.values(), key=lambda n: -n["us"])[:top]
    for node in top_nodes:
        node["us"] = round(node["us"] / iterations, 1)
    return {"kernel_us_per_run_by_op": per_run(by_op), "kernel_us_per_run_by_provider": per_run(by_provider),
            "kernel_us_per_run_by_stage": per_run(by_stage), "top_nodes_us_per_run": top_nodes}


def profile_batch(path: Path, provider: str, batch: int, args, data: np.ndarray | None) -> dict:
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        session = make_session(path, provider, args.threads, os.path.join(tmp, "ort"), args.cudnn_algo)
        feeds = feeds_for(session, batch, data, rng)
        for _ in range(args.warmup):
            session.run(None, feeds)
        wall = []
        for _ in range(args.iterations):
            t0 = time.perf_counter()
            session.run(None, feeds)
            wall.append(time.perf_counter() - t0)
        profile = session.end_profiling()
        events = json.loads(Path(profile).read_text())
    # The profile holds the warm-up runs too: count from the start of the first profiled run.
    runs = sorted(e["ts"] for e in events if e.get("cat") == "Session" and e.get("name") == "model_run")
    if len(runs) != args.warmup + args.iterations:
        raise SystemExit(f"expected {args.warmup + args.iterations} model_run events, found {len(runs)}")
    first_profiled_us = runs[args.warmup]
    wall_ms = sorted(w * 1e3 for w in wall)
    result = {"batch": batch, "iterations": args.iterations, "warmup": args.warmup,
              "wall_ms_median": round(statistics.median(wall_ms), 3),
              "wall_ms_p90": round(wall_ms[int(0.9 * (len(wall_ms) - 1))], 3),
              "images_per_s": round(batch / (statistics.median(wall_ms) / 1e3), 1)}
    result.update(summarise(events, first_profiled_us, args.iterations, args.top))
    return result


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("onnx", type=Path, help="the ONNX graph (e.g. an end2end model.onnx)")
    parser.add_argument("--provider", choices=sorted(PROVIDERS), default="CUDA")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8], help="batch sizes, one session each")
    parser.add_argument("--iterations", type=int, default=50, help="profiled runs per batch size")
    parser.add_argument("--warmup", type=int, default=10, help="runs before profiling counts")
    parser.add_argument("--threads", type=int, default=0, help="intra-op threads (0: onnxruntime's default)")
    parser.add_argument("--cudnn-algo", default="HEURISTIC", choices=["EXHAUSTIVE", "HEURISTIC", "DEFAULT"],
                        help="CUDA EP cudnn_conv_algo_search (HEURISTIC: as the H200 fixed-shape configs)")
    parser.add_argument("--input", type=Path, help=".npy input [N, 3, H, W] (default: random)")
    parser.add_argument("--top", type=int, default=25, help="how many nodes to list")
    parser.add_argument("--out", type=Path, required=True, help="summary JSON to write")
    parser.add_argument("-v", "--verbose", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="[profile] %(message)s")
    if not args.onnx.is_file():
        LOG.error("%s does not exist", args.onnx)
        return 2
    if args.iterations < 1 or any(b < 1 for b in args.batch):
        LOG.error("--iterations and --batch must be positive")
        return 2
    data = np.load(args.input) if args.input else None
    import onnx

    model = onnx.load(str(args.onnx), load_external_data=False)
    meta = {p.key: p.value for p in model.metadata_props}
    summary = {"onnx": str(args.onnx), "provider": args.provider, "onnxruntime": ort.__version__,
               "numpy": np.__version__, "python": sys.version.split()[0], "threads": args.threads,
               "cudnn_conv_algo_search": args.cudnn_algo if args.provider == "CUDA" else None,
               "input": str(args.input) if args.input else "random uniform [0, 1)",
               "nms": {k: meta[k] for k in ("nms", "conf", "iou", "topk", "agnostic") if k in meta},
               "nodes": len(model.graph.node), "runs": []}
    for batch in args.batch:
        result = profile_batch(args.onnx, args.provider, batch, args, data)
        summary["runs"].append(result)
        stages = result["kernel_us_per_run_by_stage"]
        LOG.info("batch %d: %.2f ms/run (%.1f img/s); kernel us/run: nms %.0f, network %.0f; top ops %s", batch,
                 result["wall_ms_median"], result["images_per_s"], stages.get("nms", 0), stages.get("network", 0),
                 list(result["kernel_us_per_run_by_op"].items())[:5])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(args.out.suffix + ".tmp")
    tmp.write_text(json.dumps(summary, indent=1) + "\n")
    tmp.replace(args.out)
    LOG.info("wrote %s", args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
