#!/usr/bin/env python3
"""Serving benchmark of a model's tracks on a running Triton, through the client users call.

The logic is ``yolo_triton.bench_serving`` (see its docstring); this is its command line, run by
``make bench-serving``. Writes <out>.json, <out>.md and <out>.png; prints the Markdown table.

    python scripts/bench_serving.py --url 127.0.0.1:8001 --protocol grpc --model yolov11_small \\
        --concurrency 1 4 16 64 --batch 1 --seconds 10 --processes 8 --out results/bench_serving
    python scripts/bench_serving.py --model yolov11_small --tracks A D --requests 200
    python scripts/bench_serving.py --track mine=my_detector_end2end --concurrency 1 2

Exit 0 done; 1 one line on stderr (no server at the URL, a model not served, a failed request);
130 interrupted (Ctrl-C or SIGTERM: every client stopped, the cells measured so far kept in the JSON).
"""
from yolo_triton.bench_serving import main

if __name__ == "__main__":
    raise SystemExit(main())
