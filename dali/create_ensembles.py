#!/usr/bin/env python3
"""Track D step: write ``<models>/yolov11_<size>_ensemble/config.pbtxt`` (bytes -> DALI -> end2end detector).

Reads ``preprocess_letterbox_<IMGSZ>/config.pbtxt`` and the detector step's config (build them first)
and chains them; names, dtypes and dims come from those files. The detector step (``--detector``,
ENSEMBLE_DETECTOR): ``trt_end2end`` = ``yolov11_<size>_trt_end2end``, the TensorRT plan (default);
``end2end`` = ``yolov11_<size>_end2end``, the end2end ONNX through ONNX Runtime (no TensorRT needed).

    python dali/create_ensembles.py --models small
    python dali/create_ensembles.py --models all            # the SIZES of export/defaults.mk
    python dali/create_ensembles.py --names my_detector     # any model with a <name>_trt_end2end
    python dali/create_ensembles.py --names my_detector --detector end2end   # ... or a <name>_end2end
"""
from __future__ import annotations

import argparse
from pathlib import Path

from yolo_triton import settings
from yolo_triton.cli import run_step
from yolo_triton.ensemble import DETECTORS, write_ensemble

ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv=None) -> argparse.Namespace:
    sizes = settings.size_names()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=[*sizes, "all"], default=None,
                        help="model sizes (default: small unless --names is given)")
    parser.add_argument("--names", nargs="+", default=[], help="model names, e.g. yolov11_small or a custom stem")
    parser.add_argument("--imgsz", type=int, default=int(settings.defaults()["IMGSZ"]))
    parser.add_argument("--detector", choices=tuple(DETECTORS), default=settings.ensemble_detector(),
                        help="the detector step (ENSEMBLE_DETECTOR): trt_end2end = <name>_trt_end2end, the TensorRT "
                             "plan; end2end = <name>_end2end, the ONNX through ONNX Runtime (default %(default)s)")
    parser.add_argument("--model-dir", type=Path, default=ROOT / settings.directory("MODELS_DIR"),
                        help="model repository (default %(default)s)")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    models = args.models if args.models is not None else ([] if args.names else ["small"])
    if "all" in models:
        models = sizes
    args.all_names = [settings.model_name_for_size(s) for s in models] + args.names
    return args


def main(argv=None) -> int:
    args = parse_args(argv)

    def body() -> None:
        for name in args.all_names:
            write_ensemble(args.model_dir, name, args.imgsz, args.detector)

    return run_step("create_ensembles", body, args.verbose)


if __name__ == "__main__":
    raise SystemExit(main())
