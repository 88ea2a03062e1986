#!/usr/bin/env python3
"""Model versions: add one (with its sidecar), list them, promote one or roll back in the running Triton.

A thin command line over :mod:`yolo_triton.versions` (the design is described there):

    python scripts/versions.py add --model NAME --version N --source staged/model.onnx --checkpoint new.pt \
        [--setting KEY=VALUE ...] [--validate [--images DIR]]          # make version MODEL=NAME VERSION=next
    python scripts/versions.py list --model NAME [--url 127.0.0.1:8000]   # make versions MODEL=NAME
    python scripts/versions.py promote --model NAME --version N [--keep K] [--url host:port] [--force]
    python scripts/versions.py rollback --model NAME [--url host:port] [--force]

Exit 0 ok, 1 the step failed or was refused (one line says why), 2 usage.
"""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from yolo_triton import triton_config as tc
from yolo_triton import versions as vs
from yolo_triton.cli import run_step
from yolo_triton.errors import StepError
from yolo_triton.settings import CONFIG_FILE, defaults, directory

LOG = logging.getLogger("versions")


def parse_args(argv=None) -> argparse.Namespace:
    d = defaults()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p, server: bool):
        p.add_argument("--models-dir", type=Path, default=directory("MODELS_DIR"))
        p.add_argument("--model", required=True, help="model folder name, e.g. yolov11_small")
        if server:
            p.add_argument("--url", default="127.0.0.1:8000", help="the running Triton's HTTP host:port (TRITON_HTTP)")
            p.add_argument("--offline", action="store_true",
                           help="only rewrite config.pbtxt (no Triton running; it is read at the next start)")
            p.add_argument("--force", action="store_true", help="FORCE=1: serve a refused version anyway")

    add = sub.add_parser("add", help="put an exported artefact in models/<name>/<N>/ with version.json")
    common(add, server=False)
    add.add_argument("--version", required=True, help="N (a number)")
    add.add_argument("--source", type=Path, required=True, help="the exported artefact (model.onnx)")
    add.add_argument("--checkpoint", type=Path, required=True, help="the .pt it was exported from")
    add.add_argument("--setting", action="append", default=[], metavar="KEY=VALUE",
                     help="a setting it was built with (repeat); all go into version.json")
    add.add_argument("--validate", action="store_true", help="run make validate's check and record the result")
    add.add_argument("--images", type=Path, default=None, help="validation images (default: ultralytics samples)")
    add.add_argument("--conf", type=float, default=float(d["CONF"]))
    add.add_argument("--iou", type=float, default=float(d["IOU"]))
    add.add_argument("--topk", type=int, default=int(d["TOPK"]))
    add.add_argument("--agnostic", type=int, choices=(0, 1), default=int(d["AGNOSTIC"]))
    add.add_argument("--box-tol", type=float, default=None)
    add.add_argument("--score-tol", type=float, default=None)
    add.add_argument("--report", type=Path, default=None, help="full validation report (JSON)")

    listing = sub.add_parser("list", help="versions, their sidecars and what is served")
    common(listing, server=False)
    listing.add_argument("--url", default=None, help="also ask this Triton (host:port) what it serves")

    promote = sub.add_parser("promote", help="serve version N as the newest (or 'latest') and load it")
    common(promote, server=True)
    promote.add_argument("--version", required=True, help="N, or 'latest' for version_policy latest (KEEP_VERSIONS)")
    promote.add_argument("--keep", type=int, default=int(d.get("KEEP_VERSIONS", "1")),
                         help="KEEP_VERSIONS: serve N and the next older versions, this many in all")

    rollback = sub.add_parser("rollback", help="undo the last promote/rollback (rollout.json)")
    common(rollback, server=True)
    args = parser.parse_args(argv)
    if getattr(args, "keep", 1) < 1:
        parser.error(f"--keep must be >= 1, got {args.keep}")
    return args


def parse_settings(items: list[str]) -> dict[str, str]:
    settings = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise StepError(f"--setting {item!r} is not KEY=VALUE")
        settings[key] = value
    return settings


def do_add(args) -> None:
    from yolo_triton.validate import Settings

    validate_settings = Settings(args.conf, args.iou, args.topk, bool(args.agnostic), args.box_tol,
                                 args.score_tol) if args.validate else None
    vs.add_version(args.models_dir, args.model, vs.parse_version(args.version), args.source, args.checkpoint,
                   parse_settings(args.setting), validate_settings, args.images, args.report)


def describe(models_dir: Path, name: str, url: str | None) -> str:
    model_dir = models_dir / name
    present = vs.version_numbers(model_dir)
    if not present:
        raise StepError(f"no versions under {model_dir}")
    policy = tc.version_policy(tc.parse_config(model_dir / CONFIG_FILE)) if (model_dir / CONFIG_FILE).is_file() \
        else {"latest": 1}
    served = vs.served_versions(policy, present)
    ready = vs.Triton(url).ready_versions(name) if url else None
    lines = [f"{name}: version_policy {json.dumps(policy)}; the repository serves {served}, newest "
             f"{vs.newest_served(policy, present)}" + ("" if ready is None else f"; Triton serves {ready} now"),
             f"{'version':>7}  {'validation':<10} {'checkpoint sha256':<17} {'built':<25} checkpoint"]
    for version in present:
        record = vs.read_sidecar(model_dir / str(version)) or {}
        validation = record.get("validation") or {}
        status = "-" if not record else ("not run" if not validation.get("run") else
                                         ("passed" if validation.get("passed") else "FAILED"))
        lines.append(f"{version:>7}  {status:<10} {record.get('checkpoint_sha256', '-')[:16]:<17} "
                     f"{record.get('built', '-'):<25} {record.get('checkpoint', '-')}"
                     + ("   <- served" if version in served else ""))
    return "\n".join(lines)


def run(args) -> None:
    if args.command == "add":
        do_add(args)
        return
    if args.command == "list":
        print(describe(args.models_dir, args.model, args.url))
        return
    triton = None if args.offline else vs.Triton(args.url)
    if args.command == "promote":
        outcome = vs.promote(args.models_dir, args.model, args.version, args.keep, triton, args.force)
    else:
        outcome = vs.rollback(args.models_dir, args.model, triton, args.force)
    where = "config.pbtxt only (offline)" if triton is None else f"Triton serves versions {outcome.ready}"
    print(f"{args.command} {args.model}: version_policy {json.dumps(outcome.policy)}; {where}; "
          f"a request without a version gets version {outcome.newest}")


def main(argv=None) -> int:
    args = parse_args(argv)
    return run_step("versions", lambda: run(args), args.verbose)


if __name__ == "__main__":
    raise SystemExit(main())
