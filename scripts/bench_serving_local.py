#!/usr/bin/env python3
"""The serving benchmark end to end on THIS machine: start a real Triton on a repository, measure, stop.

Copies the tracks of ``--model`` from ``--models-dir`` (a repository ``make`` wrote, e.g. with
``INSTANCE_KIND=cpu NMS=onnx``) into a temporary repository, starts the ``tritonserver`` that
nvidia-pytriton ships (with Triton's ONNX Runtime backend, see yolo_triton.triton_server) on it with
docker-compose.yml's flags on free 127.0.0.1 ports, runs ``yolo_triton.bench_serving`` against it, and
stops the server (also on Ctrl-C). Used by ``make bench-serving-local``.

``--trackd-standin`` adds Track D where there is no GPU: the DALI step is served by a STAND-IN, a
Python-backend model running the project's own DALI pipeline with CPU operators
(tests/doubles/triton_python_standins/dali_pipeline_cpu_standin), and the TensorRT step's NAME
(``<model>_trt_end2end``) by the ``<model>_end2end`` ONNX (NMS=onnx or free) through ONNX Runtime, with the
config write_config.py generates for that file; the ensemble is the generated one. Those figures say how
the ensemble's scheduling behaves on this server, not what DALI or TensorRT cost on a GPU.

    python scripts/bench_serving_local.py --models-dir results/bench_local/models --model yolo11n_untrained \\
        --trackd-standin -- --tracks A end2end D --concurrency 1 2 4 --seconds 10 --out results/bench_serving

Exit 0 done, 1 an error (one line; a server that crashed or was not live in time too), 3 no tritonserver or
no ONNX Runtime backend here, 130 interrupted.
"""
from __future__ import annotations

import argparse
import logging
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from yolo_triton import bench_serving as bs
from yolo_triton import ensemble as ens
from yolo_triton import triton_config as tc
from yolo_triton import triton_server as ts
from yolo_triton.cli import sigterm_as_interrupt

LOG = logging.getLogger("bench_serving_local")
ROOT = Path(__file__).resolve().parents[1]
STANDIN = ROOT / "tests" / "doubles" / "triton_python_standins" / "dali_pipeline_cpu_standin" / "model.py"
NO_SERVER = ts.NO_SERVER_EXIT  # no tritonserver / backend here: 'not served here'


class LocalError(Exception):
    """A one-line failure of preparing or serving the repository."""


def copy_tracks(models_dir: Path, name: str, dest: Path) -> list[str]:
    """Copy ``name``'s track folders (those present) into the repository ``dest``; their names."""
    copied = []
    for _, suffix, _, _ in bs.TRACKS:
        source = models_dir / f"{name}{suffix}"
        if (source / "config.pbtxt").is_file():
            shutil.copytree(source, dest / source.name, symlinks=False)
            copied.append(source.name)
    if not copied:
        raise LocalError(f"no track of '{name}' in {models_dir} (build one: make MODELS_DIR={models_dir} "
                         f"INSTANCE_KIND=cpu NMS=onnx {models_dir}/{name}/config.pbtxt)")
    return copied


def add_trackd_standin(repo: Path, name: str) -> list[str]:
    """Track D through the CPU stand-ins (see the module's doc): ``<name>_trt_end2end`` served by the
    end2end ONNX, the generated DALI config served by the Python stand-in, the generated ensemble."""
    end2end = repo / f"{name}_end2end"
    if not (end2end / "1" / "model.onnx").is_file():
        raise LocalError(f"--trackd-standin needs {name}_end2end (an NMS=onnx or NMS=free end2end ONNX) in the "
                         "repository")
    config = tc.parse_config(end2end / "config.pbtxt")
    imgsz = int(config.input[0].dims[-1])
    max_batch = str(config.max_batch_size)
    trt = repo / f"{name}_trt_end2end"
    if trt.exists():
        shutil.rmtree(trt)
    (trt / "1").mkdir(parents=True)
    shutil.copy(end2end / "1" / "model.onnx", trt / "1" / "model.onnx")
    py = sys.executable
    delay = str(config.dynamic_batching.max_queue_delay_microseconds)
    steps = [[py, ROOT / "export" / "write_config.py", "--artefact", trt / "1" / "model.onnx", "--max-batch", max_batch,
              "--queue-delay-us", delay, "--instance-kind", "cpu"],
             [py, ROOT / "dali" / "create_dali_letterbox_pipeline.py", "--model-dir", repo, "--imgsz", str(imgsz),
              "--max-batch", max_batch, "--queue-delay-us", delay, "--device", "cpu",
              "--input-dtype", tc.numpy_dtype(config.input[0].data_type)],  # what the detector takes
             [py, ROOT / "dali" / "create_ensembles.py", "--names", name, "--imgsz", str(imgsz), "--model-dir", repo]]
    for argv in steps:
        done = subprocess.run([str(a) for a in argv], capture_output=True, text=True)
        if done.returncode != 0:
            raise LocalError(f"{Path(argv[1]).name} failed: {(done.stderr.strip().splitlines() or ['?'])[-1]}")
    dali = repo / ens.preprocess_model_name(imgsz)
    dali_config = tc.parse_config(dali / "config.pbtxt")
    dali_config.ClearField("platform")
    dali_config.backend = "python"
    for group in dali_config.instance_group:
        group.kind = tc.mc.ModelInstanceGroup.KIND_CPU
    dali_config.parameters.pop("num_threads", None)
    shutil.rmtree(dali / "1", ignore_errors=True)
    (dali / "1").mkdir(parents=True)
    shutil.copy(STANDIN, dali / "1" / "model.py")
    tc.write_model_config(dali, dali_config)
    return [trt.name, dali.name, ens.ensemble_name(name)]


def prepare_repository(models_dir: Path, name: str, dest: Path, trackd_standin: bool) -> list[str]:
    """A temporary repository ``dest`` with ``name``'s tracks (and the Track D stand-in when asked)."""
    dest.mkdir(parents=True, exist_ok=True)
    models = copy_tracks(models_dir, name, dest)
    if trackd_standin:
        models += add_trackd_standin(dest, name)
    return models


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     epilog="Arguments after -- go to the benchmark (scripts/bench_serving.py "
                                            "--help); --url and --model are set here.")
    parser.add_argument("--models-dir", type=Path, required=True, help="the repository make wrote")
    parser.add_argument("--model", required=True, help="the base name of the model's tracks")
    parser.add_argument("--trackd-standin", action="store_true",
                        help="add Track D through the CPU stand-ins (DALI step: Python backend; TensorRT step's "
                             "name: the end2end ONNX)")
    parser.add_argument("--protocol", choices=("http", "grpc"), default="grpc")
    argv = list(sys.argv[1:] if argv is None else argv)
    rest = []
    if "--" in argv:
        cut = argv.index("--")
        argv, rest = argv[:cut], argv[cut + 1:]
    args = parser.parse_args(argv)
    args.bench = rest
    return args


def run(args: argparse.Namespace) -> int:
    if ts.find_onnxruntime_backend() is None:
        LOG.error("error: no Triton ONNX Runtime backend found (set %s to a folder holding %s): not serving",
                  ts.ORT_BACKEND_ENV, ts.ORT_BACKEND_LIB)
        return NO_SERVER
    with tempfile.TemporaryDirectory(prefix="yolo-triton-bench-") as work:
        repo = Path(work) / "models"
        models = prepare_repository(args.models_dir.resolve(), args.model, repo, args.trackd_standin)
        LOG.info("repository %s: %s", repo, ", ".join(models))
        with ts.start_server(repo, Path(work) / "server") as server:
            states = server.model_states()
            failed = {m: s.get("reason", "") for m, s in states.items() if s.get("state") != "READY"}
            if failed:
                LOG.error("error: not READY: %s (log: %s)", "; ".join(f"{m} {r}" for m, r in failed.items()),
                          server.log_path)
                return 1
            LOG.info("tritonserver ready on %s (http) / %s (grpc)", server.http_url, server.grpc_url)
            return bs.main(["--url", server.url(args.protocol), "--protocol", args.protocol, "--model", args.model,
                            *args.bench])


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[bench_serving_local] %(message)s", stream=sys.stderr)
    sigterm_as_interrupt()  # the server runs in its own session: stop it (and remove the temp folder) on SIGTERM
    return ts.local_server_exit(lambda: run(args), LOG, (LocalError,))


if __name__ == "__main__":
    raise SystemExit(main())
