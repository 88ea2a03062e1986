#!/usr/bin/env bash
# Rewrite a model repository's ONNX Runtime detector configs for fixed-shape serving: max_batch_size 1
# (so every execution has the same input shape), no preferred batch sizes, COUNT instances, and
# cudnn_conv_algo_search HEURISTIC; the ensemble gets max_batch_size 1 (not above its steps').
# Usage: fixed_shape_configs.sh MODELS_DIR COUNT
set -euo pipefail
M=${1:?usage: fixed_shape_configs.sh MODELS_DIR COUNT}
COUNT=${2:?usage: fixed_shape_configs.sh MODELS_DIR COUNT}
python3 - "$M" "$COUNT" <<'PY'
import re, sys
from pathlib import Path
repo, count = Path(sys.argv[1]), int(sys.argv[2])
for name in ("yolo11s_untrained", "yolo11s_untrained_end2end", "yolo11s_untrained_trt_end2end"):
    p = repo / name / "config.pbtxt"
    t = p.read_text()
    t = re.sub(r"max_batch_size: \d+", "max_batch_size: 1", t)
    t = re.sub(r"\s*preferred_batch_size: \d+", "", t)
    t = re.sub(r"count: \d+", f"count: {count}", t)
    if "cudnn_conv_algo_search" not in t:
        t += 'parameters {\n  key: "cudnn_conv_algo_search"\n  value {\n    string_value: "1"\n  }\n}\n'
    p.write_text(t)
p = repo / "yolo11s_untrained_ensemble" / "config.pbtxt"
p.write_text(re.sub(r"max_batch_size: \d+", "max_batch_size: 1", p.read_text()))
print("fixed-shape configs written: max_batch_size 1,", count, "instances")
PY
