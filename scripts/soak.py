#!/usr/bin/env python3
"""A bounded soak with faults injected (``make soak``): load on several tracks, every answer checked.

A thin command line over :mod:`yolo_triton.soak` (what runs, what is checked, the schedule of faults).
By default it builds nothing itself (``make soak`` builds the models first) and serves them here: the
tracks of ``--model`` in ``--models-dir`` are copied into a temporary repository (Track D through the
CPU stand-ins of ``scripts/bench_serving_local.py``), version 2 of the Track A model is added (a
re-export of the same checkpoint), and the real ``tritonserver`` (yolo_triton.triton_server) is started
on it with docker-compose.yml's flags on free 127.0.0.1 ports, and stopped at the end (also on Ctrl-C).

``--url host:port`` (``make soak TRITON_URL=...``) soaks a running server instead: load, the answer
checks and malformed requests only; the faults that need the repository or the process (reload,
promote/rollback, broken model, restart) are reported as skipped.

    python scripts/soak.py --models-dir results/soak/models --model yolo11n_untrained --seconds 120
    python scripts/soak.py --url 127.0.0.1:8001 --http-url 127.0.0.1:8000 --model yolov11_small --seconds 60

Exit 0 passed (no wrong answer, no unexpected error, every fault done and recovered, RSS within its
bound), 1 failed or an error (one line), 2 usage, 3 no tritonserver / ONNX Runtime backend here,
130 interrupted.
"""
from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path

from yolo_triton import client as yc
from yolo_triton import soak
from yolo_triton import triton_server as ts
from yolo_triton.cli import sigterm_as_interrupt
from yolo_triton.errors import StepError

import bench_serving_local as local  # scripts/bench_serving_local.py: the repository with Track D stand-ins

LOG = logging.getLogger("soak")
NO_SERVER = ts.NO_SERVER_EXIT  # no tritonserver / backend here: 'not served here'


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="base name of the tracks (<m>, <m>_end2end, <m>_ensemble)")
    parser.add_argument("--models-dir", type=Path, help="the repository make wrote (serve it here)")
    parser.add_argument("--checkpoint", type=Path, help="the checkpoint of --model (recorded in version 2's "
                        "sidecar; default <weights-dir>/<model>.pt)")
    parser.add_argument("--weights-dir", type=Path, default=Path("pytorch_models"))
    parser.add_argument("--url", help="soak a RUNNING server at host:port (the clients' protocol) instead")
    parser.add_argument("--http-url", help="its HTTP host:port (readiness, model control; default: --url's host:8000)")
    parser.add_argument("--protocol", choices=yc.PROTOCOLS, default="grpc")
    parser.add_argument("--tracks", nargs="+", choices=tuple(soak.TRACK_SUFFIXES), default=list(soak.TRACK_SUFFIXES))
    parser.add_argument("--no-trackd", action="store_true", help="serve no Track D stand-in (local server)")
    parser.add_argument("--seconds", type=float, default=soak.DEFAULT_SECONDS,
                        help="length of the run (default %(default)s)")
    parser.add_argument("--clients", type=int, default=soak.DEFAULT_CLIENTS,
                        help="concurrent client threads (default %(default)s)")
    parser.add_argument("--images", nargs="+", help="image files/directories (default: ultralytics' samples)")
    parser.add_argument("--rss-growth", type=float, default=soak.RSS_GROWTH_FRACTION, metavar="F",
                        help="RSS bound: end <= start x (1 + F) + --rss-growth-mib (default %(default)s)")
    parser.add_argument("--rss-growth-mib", type=float, default=soak.RSS_GROWTH_MIB)
    parser.add_argument("--out", type=Path, default=Path("results/soak"), help="writes OUT.json and OUT.png")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    if args.url is None and args.models_dir is None:
        parser.error("give --models-dir (serve here) or --url (a running server)")
    if args.seconds <= 0 or args.clients < 1:
        parser.error(f"need --seconds > 0 and --clients >= 1 (got {args.seconds}, {args.clients})")
    return args


def settings(args) -> soak.SoakSettings:
    return soak.SoakSettings(seconds=args.seconds, clients=args.clients, protocol=args.protocol,
                             rss_growth_fraction=args.rss_growth, rss_growth_mib=args.rss_growth_mib)


def finish(report: dict, out: Path) -> int:
    json_path, png_path = soak.write_report(report, out)
    print(soak.format_summary(report))
    LOG.info("wrote %s and %s", json_path, png_path)
    return 0 if report["passed"] else 1


def run_remote(args, images: list[Path]) -> int:
    http_url = args.http_url or f"{args.url.rsplit(':', 1)[0]}:8000"
    tracks = soak.served_tracks(http_url, args.model, tuple(args.tracks))
    target = soak.Target(http_url, args.url, tracks)
    return finish(soak.Soak(target, settings(args), images).run(), args.out)


def run_local(args, images: list[Path]) -> int:
    if ts.find_onnxruntime_backend() is None:
        LOG.error("error: no Triton ONNX Runtime backend found (set %s): nothing can be served here",
                  ts.ORT_BACKEND_ENV)
        return NO_SERVER
    checkpoint = args.checkpoint or args.weights_dir / f"{args.model}.pt"
    with tempfile.TemporaryDirectory(prefix="yolo-triton-soak-") as work:
        repo = Path(work) / "models"
        models = local.prepare_repository(args.models_dir.resolve(), args.model, repo,
                                          "D" in args.tracks and not args.no_trackd)
        soak.add_second_version(repo, args.model, checkpoint.resolve())
        LOG.info("repository %s: %s (+ version 2 of %s)", repo, ", ".join(models), args.model)
        server = ts.start_server(repo, Path(work) / "server")
        target = None
        try:
            failed = {m: s.get("reason", "") for m, s in server.model_states().items() if s.get("state") != "READY"}
            if failed:
                LOG.error("error: not READY: %s (log: %s)", "; ".join(f"{m} {r}" for m, r in failed.items()),
                          server.log_path)
                return 1
            tracks = soak.served_tracks(server.http_url, args.model, tuple(args.tracks))
            target = soak.Target(server.http_url, server.url(args.protocol), tracks, repo, server,
                                 version_model=args.model, reload_model=f"{args.model}_end2end"
                                 if "end2end" in tracks else args.model, checkpoint=checkpoint)
            report = soak.Soak(target, settings(args), images).run()
            log = args.out.with_suffix(".server.log")
            log.parent.mkdir(parents=True, exist_ok=True)
            log.write_text(target.server.log())
            report["server_log"] = str(log)
            return finish(report, args.out)
        finally:
            (target.server if target is not None else server).stop()  # the restarted one, if any


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="[soak] %(message)s",
                        stream=sys.stderr)
    sigterm_as_interrupt()
    def run():
        images = yc.image_paths(args.images or [yc.sample_images_dir()])
        return run_remote(args, images) if args.url else run_local(args, images)

    return ts.local_server_exit(run, LOG, (soak.SoakError, yc.ClientError, StepError, local.LocalError))


if __name__ == "__main__":
    raise SystemExit(main())
