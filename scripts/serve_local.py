#!/usr/bin/env python3
"""Serve a model repository with a real Triton on this machine and run the client on it.

Starts the ``tritonserver`` that nvidia-pytriton ships (with Triton's ONNX Runtime backend when one is
found: ``$YOLO_TRITON_ORT_BACKEND`` or ``../shared/triton/backends/onnxruntime``) on the repository,
with docker-compose.yml's flags, on free 127.0.0.1 ports; reports each model's state; sends the sample
images (or ``--images``) to each ``--model`` through scripts/triton_client.py (HTTP) and draws PNGs;
stops the server. Used by ``make demo``.

    python scripts/serve_local.py --models-dir demo/models --model yolo11n yolo11n_end2end --draw-dir results/demo

Exit 0 ok; 1 a model failed, the client failed, or the server crashed or was not live within
--start-timeout; 3 only where no Triton can run here: no tritonserver or no ONNX Runtime backend (one line).
"""
from __future__ import annotations

import argparse
import logging
import subprocess
import sys
import tempfile
from pathlib import Path

from yolo_triton import triton_server as ts
from yolo_triton.cli import sigterm_as_interrupt

LOG = logging.getLogger("serve_local")
CLIENT = Path(__file__).resolve().parent / "triton_client.py"
NO_SERVER = ts.NO_SERVER_EXIT  # no tritonserver / backend here: 'not served here'


def serve_and_query(models_dir: Path, models: list[str], draw_dir: Path, images: list[str],
                    start_timeout: float = 180.0) -> int:
    if ts.find_onnxruntime_backend() is None:
        LOG.error("no Triton ONNX Runtime backend found (set %s to a folder holding %s): not serving",
                  ts.ORT_BACKEND_ENV, ts.ORT_BACKEND_LIB)
        return NO_SERVER
    with tempfile.TemporaryDirectory(prefix="yolo-triton-serve-") as work:
        with ts.start_server(models_dir.resolve(), Path(work), timeout=start_timeout) as server:
            states = server.model_states()
            for name, state in sorted(states.items()):
                LOG.info("%-40s %s %s", name, state.get("state"), state.get("reason", ""))
            LOG.info("server ready (strict readiness): %s", server.ready())
            failed = [m for m in models if states.get(m, {}).get("state") != "READY"]
            if failed:
                LOG.error("not READY: %s (log: %s)", ", ".join(failed), server.log_path)
                return 1
            for model in models:
                argv = [sys.executable, str(CLIENT), "--url", server.http_url, "--model", model,
                        "--model-repository", str(models_dir), "--draw", str(draw_dir / f"{model}.png")]
                if images:
                    argv += ["--images", *images]
                if subprocess.run(argv).returncode != 0:
                    return 1
    return 0


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models-dir", type=Path, required=True, help="the model repository to serve")
    parser.add_argument("--model", nargs="+", required=True, help="models to send the images to")
    parser.add_argument("--draw-dir", type=Path, default=Path("results/demo"))
    parser.add_argument("--images", nargs="*", default=[], help="files or folders (default: ultralytics' samples)")
    parser.add_argument("--start-timeout", type=float, default=180.0,
                        help="seconds for the server to be live with every model loaded (else exit 1)")
    parser.add_argument("-v", "--verbose", action="store_true")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="[serve_local] %(message)s",
                        stream=sys.stderr)
    sigterm_as_interrupt()  # the server runs in its own session: stop it (and remove the temp folder) on SIGTERM
    return ts.local_server_exit(lambda: serve_and_query(args.models_dir, args.model, args.draw_dir, args.images,
                                                        args.start_timeout), LOG)


if __name__ == "__main__":
    raise SystemExit(main())
