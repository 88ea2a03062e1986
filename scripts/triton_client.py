#!/usr/bin/env python3
"""Triton smoke client: send real images to any track's model and print (draw, write as JSON) the results.

A thin command line over :mod:`yolo_triton.client`, which reads the model's configuration from the
server and works out the track from it (Track A/B ``output0``: letterbox and NMS here; end2end: NMS on
the server; Track D ensembles: the encoded file is sent as is). Boxes are mapped back to the original
image. Class names come from ``labels.txt`` in the model's directory of ``--model-repository``.

    python scripts/triton_client.py --model yolov11_small_trt_end2end --images img.jpg --draw out.png
    python scripts/triton_client.py --protocol grpc --model yolov11_small --images photos/
    python scripts/triton_client.py --model yolov11_small --shared-memory system   # on the server's machine

``--shared-memory system`` (or ``cuda``) passes the tensors through shared memory regions instead of the
request and response: only for a client on the server's machine (see yolo_triton.client.SharedMemory).
The regions are unregistered and removed on exit, also after an error, Ctrl-C or SIGTERM.

A request that meets a connection error or UNAVAILABLE (a server restarting) is sent again once the
server answers ready (``--retries``, ``--retry-budget``, backoff with jitter: yolo_triton.client.RetryPolicy);
a 4xx / INVALID_ARG answer, a restricted API or a ``--timeout`` is never retried. A server still down past
the budget is one line and exit 1.

Exit 0 ok, 1 the request failed, 2 usage, 130 interrupted.
"""
from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path

from yolo_triton import postprocess as pp
from yolo_triton.client import (
    KIND_ENCODED,
    LABELS_FILENAME,
    PROTOCOLS,
    SHARED_MEMORY_MODES,
    ClientError,
    ResilientClient,
    SharedMemory,
    add_retry_arguments,
    check_cuda_shared_memory,
    default_mode,
    default_url,
    describe_model,
    draw,
    draw_paths,
    explain_failure,
    image_paths,
    infer,
    load_labels,
    load_model,
    read_image,
    retry_policy,
    sample_images_dir,
    to_json,
    write_json,
    write_png,
)
from yolo_triton.task_base import Classification
from yolo_triton.settings import defaults, directory

LOG = logging.getLogger("triton_client")


def parse_args(argv=None) -> argparse.Namespace:
    settings = defaults()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="served model name, e.g. yolov11_small_trt_end2end")
    parser.add_argument("--model-version", default="", metavar="N",
                        help="send the requests to version N of the model (A/B; default: the newest served)")
    parser.add_argument("--images", nargs="+", help="image files and/or directories (default: ultralytics' samples)")
    parser.add_argument("--protocol", choices=PROTOCOLS, default="http")
    parser.add_argument("--url", help="host:port (default 127.0.0.1:8000 for http, 127.0.0.1:8001 for grpc)")
    parser.add_argument("--draw", type=Path, metavar="OUT.png",
                        help="write the image(s) with the results drawn (boxes; masks, keypoints, rotated boxes, top-5)")
    parser.add_argument("--json", type=Path, metavar="OUT.json",
                        help="write the results as JSON: per image path, its detections {class_id, label, score, box} "
                             "(+ mask as COCO uncompressed RLE, keypoints, obb by task) or {top5: [...]} (classify)")
    parser.add_argument("--conf", type=float, default=float(settings["CONF"]), help="Tracks A/B only")
    parser.add_argument("--iou", type=float, default=float(settings["IOU"]), help="Tracks A/B only")
    parser.add_argument("--topk", type=int, default=int(settings["TOPK"]), help="Tracks A/B only")
    parser.add_argument("--nms-mode", choices=pp.MODES, default=default_mode(), help="Tracks A/B client NMS")
    parser.add_argument("--imgsz", type=int, help="network input size of an encoded-image model, when the "
                        "server does not show it (an ensemble's detector step does)")
    parser.add_argument("--model-repository", default=str(directory("MODELS_DIR")),
                        help="where labels.txt is looked up (the directory the server serves)")
    parser.add_argument("--shared-memory", choices=SHARED_MEMORY_MODES, default="none",
                        help="pass tensors through shared memory: system (/dev/shm, the server on this machine) or "
                             "cuda (GPU memory, the server on this machine's GPU); default %(default)s")
    parser.add_argument("--cuda-device", type=int, default=0, metavar="N",
                        help="GPU of the CUDA shared memory regions (the server's GPU; default %(default)s)")
    parser.add_argument("--max-pixels", type=int, default=int(settings["MAX_PIXELS"]), metavar="N",
                        help="refuse an image whose header claims more pixels, before decoding it (MAX_PIXELS, "
                             "default %(default)s); shared memory and --load send $TRITON_ADMIN_KEY when set")
    parser.add_argument("--load", action="store_true",
                        help="ask the server to (re)load the model first (explicit model control)")
    parser.add_argument("-v", "--verbose", action="store_true")
    add_retry_arguments(parser)
    args = parser.parse_args(argv)
    try:
        args.policy = retry_policy(args)
    except ValueError as err:
        parser.error(str(err))
    if not 0.0 <= args.conf <= 1.0 or not 0.0 < args.iou <= 1.0 or args.topk <= 0:
        parser.error(f"need 0 <= --conf <= 1, 0 < --iou <= 1, --topk > 0 (got {args.conf}, {args.iou}, {args.topk})")
    return args


def run(args: argparse.Namespace) -> int:
    if args.shared_memory == "cuda":
        check_cuda_shared_memory(args.cuda_device)  # before anything is sent
    paths = image_paths(args.images or [sample_images_dir()])
    images = [read_image(path, args.max_pixels) for path in paths]
    client = ResilientClient(args.url or default_url(args.protocol), args.protocol, args.policy)
    try:
        if args.load:
            load_model(client, args.model)
        served = describe_model(client, args.model, args.imgsz, args.model_version)
        LOG.info("model %s%s: %s track, input %s %s size %s, max batch %d, outputs %s", served.name,
                 f" version {served.version}" if served.version else "", served.kind,
                 served.input_name, served.input_dtype, served.imgsz, served.max_batch, list(served.outputs))
        encoded = [path.read_bytes() for path in paths] if served.kind == KIND_ENCODED else None
        regions = None
        if args.shared_memory != "none":
            regions = SharedMemory(client, served, args.shared_memory, args.cuda_device, batch=len(images))
        try:
            if regions is not None:
                regions.open()
                LOG.info("tensors through %s shared memory: %s", args.shared_memory,
                         ", ".join(f"{r.name} ({r.size} B)" for r in regions.regions()))
            results = infer(client, served, images, args.conf, args.iou, args.topk, args.nms_mode, encoded=encoded,
                            shared_memory=regions)
        finally:
            if regions is not None:
                regions.close()  # unregistered and removed, whatever happened
    finally:
        client.close()
    names = load_labels(args.model_repository, served)
    if names is None:
        LOG.info("no %s under %s/%s: printing class ids", LABELS_FILENAME, args.model_repository, served.name)
    for path, result in zip(paths, results):
        print(describe_result(path, result, names))
    if args.json:
        write_json(args.json, to_json(paths, results, names, served.task))
        LOG.info("wrote %s", args.json)
    if args.draw:
        for out, image, result in zip(draw_paths(args.draw, paths), images, results):
            write_png(out, draw(image, result, names, served.task))
            LOG.info("wrote %s", out)
    return 0


def describe_result(path: Path, result, names) -> str:
    """``path: N detections`` and a line per detection, or ``path: top-5`` and a line per class."""
    if isinstance(result, Classification):
        ids, probs = result.top(5)
        return "\n".join([f"{path}: top-5"] + [f"{names[i] if names and i < len(names) else i} {p:.4f}"
                                               for i, p in zip(ids.tolist(), probs.tolist())])
    text = f"{path}: {len(result)} detections"
    return f"{text}\n{result.format(names)}" if len(result) else text


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="[triton_client] %(message)s",
                        stream=sys.stderr)

    def terminated(signum, frame):  # docker stop, kill: leave as for Ctrl-C (shared memory regions removed)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, terminated) if threading.current_thread() is threading.main_thread() \
        else None
    try:
        return run(args)
    except KeyboardInterrupt:
        print("[triton_client] interrupted", file=sys.stderr)
        return 130
    except ClientError as err:
        print(f"[triton_client] error: {err}", file=sys.stderr)
        return 1
    except Exception as err:  # the connection or the server's answer: one line; anything else is a bug
        message = explain_failure(err, args.url or default_url(args.protocol), args.model)
        if message is None:
            raise
        print(f"[triton_client] error: {message}", file=sys.stderr)
        return 1
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    raise SystemExit(main())
