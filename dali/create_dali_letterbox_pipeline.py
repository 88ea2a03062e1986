#!/usr/bin/env python3
"""Track D step: write the DALI letterbox model ``<models>/preprocess_letterbox_<IMGSZ>/``.

Writes ``1/dali.py`` (the pipeline definition of ``export/yolo_triton/dali_pipeline.py`` plus an
``@autoserialize`` entry point; Triton's own DALI builds it on its GPU at load time) and
``config.pbtxt`` (``backend: "dali"``, through Triton's ModelConfig schema). Defaults come from
``export/defaults.mk``: IMGSZ, QUEUE_DELAY_US and, for ``--max-batch``, the largest MAX_BATCH_<size>
(the ensembles' max batch is the smallest of their steps', so this model must not be the limit).

    python dali/create_dali_letterbox_pipeline.py                       # defaults
    python dali/create_dali_letterbox_pipeline.py --imgsz 960 --max-batch 128 64 32
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from yolo_triton import settings
from yolo_triton.cli import run_step
from yolo_triton.ensemble import write_preprocess_model

ROOT = Path(__file__).resolve().parents[1]


LOG = logging.getLogger("create_dali_letterbox_pipeline")


def parse_args(argv=None) -> argparse.Namespace:
    d = settings.defaults()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--imgsz", type=int, default=int(d["IMGSZ"]), help="square network input (default %(default)s)")
    parser.add_argument("--max-batch", type=int, nargs="+",
                        default=[settings.max_batch_for_size(s) for s in settings.size_names()],
                        help="max_batch_size; several values: their maximum (default: the MAX_BATCH_<size> values)")
    parser.add_argument("--queue-delay-us", type=int, default=int(d["QUEUE_DELAY_US"]))
    parser.add_argument("--num-threads", type=int, default=settings.dali_threads(),
                        help="DALI CPU worker threads (DALI_THREADS, default %(default)s)")
    parser.add_argument("--model-dir", type=Path, default=ROOT / settings.directory("MODELS_DIR"),
                        help="model repository (default %(default)s)")
    parser.add_argument("--input-dtype", choices=("float32", "uint8"), default=d.get("INPUT_DTYPE", "float32"),
                        help="the detectors' image input (INPUT_DTYPE): float32 = images / 255 here, uint8 = the "
                             "letterboxed pixels (the detector divides); default %(default)s")
    parser.add_argument("--device", choices=("gpu", "cpu"), default="gpu",
                        help="operators of the generated pipeline; cpu only for tests on machines without a GPU")
    parser.add_argument("-v", "--verbose", action="store_true")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    return run_step("create_dali_letterbox_pipeline",
                    lambda: write_preprocess_model(args.model_dir, args.imgsz, max(args.max_batch),
                                                   args.queue_delay_us, args.device, args.num_threads,
                                                   args.input_dtype), args.verbose)


if __name__ == "__main__":
    raise SystemExit(main())
