#!/usr/bin/env python3
"""A/B: send the same images to two versions of a served model and report what changed.

A thin command line over :mod:`yolo_triton.ab_compare`: per image and in total, detections matched
(same class, IoU >= 0.5), only in A, only in B, mean score shift (B - A) and each version's latency.
A table goes to the terminal, the full report (with every detection) to JSON.

    python scripts/compare_versions.py --model yolov11_small --versions 1,2 --images photos/ \
        [--url 127.0.0.1:8000] [--protocol http|grpc] [--json results/compare.json]

Exit 0 ok, 1 a request failed, 2 usage.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from yolo_triton import postprocess as pp
from yolo_triton.ab_compare import compare_versions, format_table
from yolo_triton.client import PROTOCOLS, ClientError, connect, default_mode, default_url, image_paths, read_image, \
    sample_images_dir
from yolo_triton.files import atomic_write_text
from yolo_triton.settings import defaults

LOG = logging.getLogger("compare_versions")


def parse_args(argv=None) -> argparse.Namespace:
    settings = defaults()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="served model name")
    parser.add_argument("--versions", required=True, help="A,B: two version numbers, e.g. 1,2")
    parser.add_argument("--images", nargs="+", help="image files and/or directories (default: ultralytics' samples)")
    parser.add_argument("--protocol", choices=PROTOCOLS, default="http")
    parser.add_argument("--url", help="host:port (default 127.0.0.1:8000 for http, 127.0.0.1:8001 for grpc)")
    parser.add_argument("--conf", type=float, default=float(settings["CONF"]), help="Tracks A/B client NMS")
    parser.add_argument("--iou", type=float, default=float(settings["IOU"]), help="Tracks A/B client NMS")
    parser.add_argument("--topk", type=int, default=int(settings["TOPK"]), help="Tracks A/B client NMS")
    parser.add_argument("--nms-mode", choices=pp.MODES, default=default_mode(), help="Tracks A/B client NMS")
    parser.add_argument("--json", type=Path, help="write the full report here")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    versions = [v.strip() for v in args.versions.split(",")]
    if len(versions) != 2 or not all(v.isdigit() and int(v) >= 1 for v in versions) or versions[0] == versions[1]:
        parser.error(f"--versions takes two different version numbers A,B (e.g. 1,2), got {args.versions!r}")
    args.version_list = versions
    return args


def run(args) -> int:
    paths = image_paths(args.images or [sample_images_dir()])
    images = [read_image(p) for p in paths]
    client = connect(args.url or default_url(args.protocol), args.protocol)
    try:
        report = compare_versions(client, args.model, args.version_list, [str(p) for p in paths], images,
                                  args.conf, args.iou, args.topk, args.nms_mode)
    finally:
        client.close()
    print(format_table(report))
    if args.json:
        atomic_write_text(args.json, json.dumps(report, indent=2) + "\n")
        LOG.info("wrote %s", args.json)
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="[compare_versions] %(message)s",
                        stream=sys.stderr)
    try:
        return run(args)
    except ClientError as err:
        print(f"[compare_versions] error: {err}", file=sys.stderr)
        return 1
    except Exception as err:  # tritonclient raises InferenceServerException, connection errors, ...
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        print(f"[compare_versions] error: {type(err).__name__}: {first} (is the server at "
              f"{args.url or default_url(args.protocol)} up, and are versions {args.versions} of '{args.model}' "
              "served? make versions MODEL=...)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
