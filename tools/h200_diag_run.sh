#!/usr/bin/env bash
# Second-stage device run (after h200_serving_run.sh found merged batches slow): for each ONNX Runtime
# cudnn_conv_algo_search value in ALGOS, restart the server on the Track A model alone and record
# Triton's per-batch-size timing breakdown (scripts/gpu_serving_diag.py); then serve everything with
# the value that ran 8 concurrent clients fastest, warm up and bench (results in $OUT).
set -uo pipefail
STASH=${STASH:-/root/stash}
P=${P:-/tmp/p}
OUT=${OUT:?}
ALGOS=${ALGOS:-1 2}
BENCH_BUDGET_S=${BENCH_BUDGET_S:-200}
log() { echo "[h200_diag $(date +%T)] $*"; }
# unpack (as h200_serving_run.sh) when this is a fresh machine
if [ ! -d "$P/site" ]; then
  python3 -m pip install -q --no-index --no-deps --target /tmp/zstd "$STASH"/zstandard-*.whl || exit 1
  sed -n '/^import glob, os, sys, tarfile, zstandard$/,/^    tar.extractall(dest)$/p' "$STASH/h200_serving_run.sh" > /tmp/unpack.py
  PYTHONPATH=/tmp/zstd python3 /tmp/unpack.py "$STASH" "$P" || exit 1
fi
for f in bench_gpu_serving.py gpu_serving_diag.py; do [ -f "$STASH/$f" ] && cp "$STASH/$f" "$P/repo/scripts/"; done
TORCH_SP=$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
NV=$P/site/nvidia
export LD_LIBRARY_PATH="$NV/cuda_runtime/lib:$NV/cublas/lib:$NV/cufft/lib:$NV/curand/lib:$NV/dali:$NV/nvimgcodec:$NV/nvjpeg/lib:$NV/libnvcomp/lib64:$TORCH_SP/nvidia/cudnn/lib:$TORCH_SP/nvidia/cu13/lib:$P/site/nvidia_pytriton.libs"
export PYTHONPATH=$P/site:$PWD/export  # yolo_triton (not pip-installed there)
TS=$P/site/pytriton/tritonserver
M=$P/models
mkdir -p "$M/yolo11s_untrained_trt_end2end/1" "$M/yolo11s_untrained_ensemble/1"
[ -f "$M/yolo11s_untrained_trt_end2end/1/model.onnx" ] || cp "$M/yolo11s_untrained_end2end/1/model.onnx" "$M/yolo11s_untrained_trt_end2end/1/"
ORT_MODELS=(yolo11s_untrained yolo11s_untrained_end2end yolo11s_untrained_trt_end2end yolo11s_untrained_fp32)
set_algo() {
  for m in "${ORT_MODELS[@]}"; do
    f=$M/$m/config.pbtxt
    [ -f "$f" ] || continue
    python3 - "$f" "$1" <<'PY'
import re, sys
path, value = sys.argv[1], sys.argv[2]
text = open(path).read()
text = re.sub(r'parameters \{\s*key: "cudnn_conv_algo_search"\s*value \{\s*string_value: "[^"]*"\s*\}\s*\}\s*', "", text)
text += 'parameters {\n  key: "cudnn_conv_algo_search"\n  value {\n    string_value: "%s"\n  }\n}\n' % value
open(path, "w").write(text)
PY
  done
}
start_server() {
  "$TS/bin/tritonserver" --model-repository="$M" --backend-directory="$P/backends" --model-control-mode=explicit \
    --http-address=127.0.0.1 --grpc-address=127.0.0.1 --http-port=8000 --grpc-port=8001 --metrics-port=8002 \
    >> "$OUT/server.log" 2>&1 &
  SERVER=$!
  for _ in $(seq 60); do
    python3 -c 'import urllib.request; urllib.request.urlopen("http://127.0.0.1:8000/v2/health/live")' 2>/dev/null && return 0
    sleep 1
  done
  return 1
}
stop_server() { kill "$SERVER"; wait "$SERVER" 2>/dev/null; }
cd "$P/repo" || exit 1
best=""; best_n=-1
for a in $ALGOS; do
  log "cudnn_conv_algo_search=$a: diag"
  set_algo "$a"
  start_server || { log "server did not start"; tail -20 "$OUT/server.log"; exit 1; }
  python3 scripts/bench_gpu_serving.py load --models yolo11s_untrained --json /tmp/load.json 2>&1 | tail -1
  timeout 120 python3 scripts/gpu_serving_diag.py --model yolo11s_untrained --image "$P/images/zidane.jpg" \
    --json "$OUT/diag_algo$a.json" 2>&1 | tail -8
  n=$(python3 -c "import json; print(json.load(open('$OUT/diag_algo$a.json'))['concurrent']['8']['requests'])" 2>/dev/null || echo 0)
  log "algo $a: $n requests at 8 concurrent clients in 4 s"
  [ "$n" -gt "$best_n" ] && { best=$a; best_n=$n; }
  stop_server
done
log "bench with cudnn_conv_algo_search=$best"
set_algo "$best"
start_server || exit 1
python3 scripts/bench_gpu_serving.py load --models yolo11s_untrained yolo11s_untrained_end2end yolov11_preprocess_640 \
  yolo11s_untrained_trt_end2end yolo11s_untrained_ensemble --json /tmp/load.json 2>&1 | grep load
timeout 100 python3 scripts/bench_gpu_serving.py warmup --models yolo11s_untrained yolo11s_untrained_end2end \
  yolo11s_untrained_trt_end2end --images "$P/images/zidane.jpg" --json "$OUT/warmup.json" 2>&1 | tail -3
nvidia-smi dmon -s um -d 1 > "$OUT/dmon.txt" 2>&1 &
DMON=$!
timeout "$BENCH_BUDGET_S" python3 scripts/bench_gpu_serving.py bench --track track_a=yolo11s_untrained \
  --track end2end_onnx_nms=yolo11s_untrained_end2end --track track_d=yolo11s_untrained_ensemble \
  --images "$P/images" --concurrency 1 2 4 8 16 32 64 --seconds 3 --json "$OUT/bench.json" 2>&1 | grep -E "bench|rror" | tail -25
kill "$DMON" 2>/dev/null
stop_server
log "done"
