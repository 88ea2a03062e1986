#!/usr/bin/env bash
# Third device run: the same repository with fixed-shape ONNX Runtime models, to serve around ONNX
# Runtime 1.24's per-shape-change stall (README, "Real Triton on an H200"): the three ONNX models get
# max_batch_size 1 (every execution is [1,3,640,640]) and COUNT instances, the ensemble max_batch_size 1
# (an ensemble's may not exceed its steps'); cudnn_conv_algo_search HEURISTIC. Then warm every
# instance and bench the three tracks (results in $OUT). Needs the payload of make_h200_payload.sh.
set -uo pipefail
STASH=${STASH:-/root/stash}
P=${P:-/tmp/p}
OUT=${OUT:?}
COUNT=${COUNT:-4}
CONCURRENCY=${CONCURRENCY:-1 4 16 64}
log() { echo "[h200_fixed $(date +%T)] $*"; }
if [ ! -d "$P/site" ]; then
  python3 -m pip install -q --no-index --no-deps --target /tmp/zstd "$STASH"/zstandard-*.whl || exit 1
  sed -n '/^import glob, os, sys, tarfile, zstandard$/,/^    tar.extractall(dest)$/p' "$STASH/h200_serving_run.sh" > /tmp/unpack.py
  PYTHONPATH=/tmp/zstd python3 /tmp/unpack.py "$STASH" "$P" || exit 1
fi
[ -f "$STASH/bench_gpu_serving.py" ] && cp "$STASH/bench_gpu_serving.py" "$P/repo/scripts/"
TORCH_SP=$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
NV=$P/site/nvidia
export LD_LIBRARY_PATH="$NV/cuda_runtime/lib:$NV/cublas/lib:$NV/cufft/lib:$NV/curand/lib:$NV/dali:$NV/nvimgcodec:$NV/nvjpeg/lib:$NV/libnvcomp/lib64:$TORCH_SP/nvidia/cudnn/lib:$TORCH_SP/nvidia/cu13/lib:$P/site/nvidia_pytriton.libs"
export PYTHONPATH=$P/site:$PWD/export  # yolo_triton (not pip-installed there)
M=$P/models
mkdir -p "$M/yolo11s_untrained_trt_end2end/1" "$M/yolo11s_untrained_ensemble/1"
[ -f "$M/yolo11s_untrained_trt_end2end/1/model.onnx" ] || cp "$M/yolo11s_untrained_end2end/1/model.onnx" "$M/yolo11s_untrained_trt_end2end/1/"
bash "$(dirname "$0")/fixed_shape_configs.sh" "$M" "$COUNT" || exit 1
"$P/site/pytriton/tritonserver/bin/tritonserver" --model-repository="$M" --backend-directory="$P/backends" \
  --model-control-mode=explicit --http-address=127.0.0.1 --grpc-address=127.0.0.1 --http-port=8000 \
  --grpc-port=8001 --metrics-port=8002 > "$OUT/server.log" 2>&1 &
SERVER=$!
for _ in $(seq 60); do
  python3 -c 'import urllib.request; urllib.request.urlopen("http://127.0.0.1:8000/v2/health/live")' 2>/dev/null && break
  sleep 1
done
cd "$P/repo" || exit 1
python3 scripts/bench_gpu_serving.py load --models yolo11s_untrained yolo11s_untrained_end2end yolov11_preprocess_640 \
  yolo11s_untrained_trt_end2end yolo11s_untrained_ensemble --json "$OUT/load.json" 2>&1 | grep load
TRACKS=(--track track_a=yolo11s_untrained --track end2end_onnx_nms=yolo11s_untrained_end2end --track track_d=yolo11s_untrained_ensemble)
log "warm every instance (discarded)"
python3 scripts/bench_gpu_serving.py bench "${TRACKS[@]}" --images "$P/images" --concurrency 16 --seconds 2 \
  --json /tmp/warm.json 2>&1 | grep bench
log "bench"
nvidia-smi dmon -s um -d 1 > "$OUT/dmon.txt" 2>&1 &
DMON=$!
# shellcheck disable=SC2086
python3 scripts/bench_gpu_serving.py bench "${TRACKS[@]}" --images "$P/images" --concurrency $CONCURRENCY \
  --seconds 3 --json "$OUT/bench.json" 2>&1 | grep -E "bench|rror"
kill "$DMON" 2>/dev/null
kill "$SERVER"; wait "$SERVER" 2>/dev/null
log "done"
