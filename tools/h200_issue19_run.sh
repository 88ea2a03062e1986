#!/usr/bin/env bash
# GPU serving under load, on the lent H200 (issue "GPU serving that holds under load"). Two phases, one
# device call each (10 min limit a call); the payload of make_h200_ort131_payload.sh (the real
# tritonserver 2.51, Triton's ONNX Runtime backend built against onnxruntime-gpu 1.31.1 CUDA 13,
# tritonclient) unpacked by h200_unpack.sh, and the carried .h200 folder of this checkout:
# and models.tar.gz.part* (tar of this checkout's .h200/repo and .h200/bundle) in STASH, unpacked into DATA:
#   repo          one model repository written by `make` here with INSTANCE_KIND=gpu (FP16, IMGSZ 640,
#                 untrained yolo11s from `make scratch MODEL=yolo11s`, checkpoint linked under each name):
#                   yolo11s_untrained[_end2end]  defaults: ORT_BATCHING=auto (= pad, ORT_PAD_BATCH=16), NMS=onnx
#                   yolo11s_dynamic[_end2end]    ORT_BATCHING=dynamic (max_batch_size 32: the old default)
#                   yolo11s_fixed[_end2end]      ORT_BATCHING=fixed INSTANCES_PER_GPU=4
#                   yolo11s_ul_end2end           NMS=ultralytics (pad 16)
#                   yolo11s_u8[_end2end]         INPUT_DTYPE=uint8 NMS=ultralytics (pad 16)
#   bundle        model_fp16.torchscript + images_uint8.npy (bench_ort_shape_switch.py --prepare), images/
# Usage: h200_issue19_run.sh unpack|repro|serve1|serve2   (OUT: results folder; the server started by serve1
# keeps running, in its own session, for serve2 while the machine stays warm)
set -uo pipefail
PHASE=${1:?usage: h200_issue19_run.sh unpack|repro|serve1|serve2}
OUT=${OUT:?}
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
STASH=${STASH:-/root/stash}
DATA=${DATA:-/root/h200}
R=$DATA/repo
B=$DATA/bundle
export P=${P:-/root/p}
if [ "$PHASE" = unpack ]; then
  mkdir -p "$DATA" && cat "$STASH"/models.tar.gz.part* | tar -xz -C "$DATA" || exit 1
  ls "$R" "$B"
  bash "$here/h200_unpack.sh" "$STASH" "$P"
  exit $?
fi
# shellcheck source=h200_env.sh
source "$here/h200_env.sh"
cd "$repo" || exit 1
log() { echo "[h200_issue19 $(date +%T)] $*"; }
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader

if [ "$PHASE" = repro ]; then
  log "ONNX Runtime batch-size switches outside Triton (+ PyTorch anchor)"
  python3 scripts/bench_ort_shape_switch.py --images "$B/images_uint8.npy" --torchscript "$B/model_fp16.torchscript" \
    --model plain="$R/yolo11s_dynamic/1/model.onnx" --model pad16="$R/yolo11s_untrained/1/model.onnx" \
    --model u8pad16="$R/yolo11s_u8/1/model.onnx" --algos EXHAUSTIVE HEURISTIC --budget-s "${BUDGET_S:-75}" \
    --json "$OUT/ort_shape_switch.json"
  log "end2end graphs under ONNX Runtime's profiler (CUDA EP)"
  for g in untrained_end2end ul_end2end; do
    python3 scripts/profile_end2end_ort.py "$R/yolo11s_$g/1/model.onnx" --provider CUDA --batch 1 16 \
      --iterations 30 --warmup 5 --out "$OUT/profile_$g.json" 2>&1 | tail -4
  done
  exit 0
fi

if python3 -c 'import urllib.request as u; u.urlopen("http://127.0.0.1:8000/v2/health/ready", timeout=2)' 2>/dev/null; then
  log "the server of an earlier phase is ready"
else
  log "start the real tritonserver on the repository"
  bash "$here/h200_start_triton.sh" "$R" /root/triton || { tail -30 /root/triton/server.log; exit 1; }
fi
cp /root/triton/server.log "$OUT/server_$PHASE.log" 2>/dev/null
nvidia-smi dmon -s u -d 1 > "$OUT/dmon.txt" 2>&1 &
DMON=$!
CONC=${CONC:-1 2 4 8 16 32 64}
bench() {  # bench LABEL MODEL TRACKS [make settings...]
  local label=$1 model=$2 tracks=$3; shift 3
  log "bench-serving $label ($model: $tracks) $*"
  make --no-print-directory bench-serving PYTHON=python3 MODEL="$model" BENCH_TRACKS="$tracks" \
    TRITON_URL=127.0.0.1:8001 BENCH_PROTOCOL=grpc BENCH_PROCESSES=8 BENCH_SECONDS="${SECONDS_PER_CELL:-4}" \
    BENCH_WARMUP=1 IMAGES="$B/images" BENCH_NOTE="H200, $label" BENCH_OUT="$OUT/bench_$label" "$@" 2>&1 \
    | grep -vE '^\s*$|it/s|%\|' | tail -25
}
if [ "$PHASE" = serve1 ]; then
  bench default yolo11s_untrained "A end2end" BENCH_CONCURRENCY="$CONC"
  bench ul yolo11s_ul "end2end" BENCH_CONCURRENCY="$CONC"
  bench shm yolo11s_untrained "A end2end" BENCH_CONCURRENCY="$CONC" BENCH_SHARED_MEMORY=system
  bench fixed yolo11s_fixed "A" BENCH_CONCURRENCY="1 4 16 64"
  bench dynamic yolo11s_dynamic "A" BENCH_CONCURRENCY="1 2 4 8" BENCH_SECONDS=3
else
  bench u8 yolo11s_u8 "A end2end" BENCH_CONCURRENCY="$CONC"
  bench u8shm yolo11s_u8 "A end2end" BENCH_CONCURRENCY="$CONC" BENCH_SHARED_MEMORY=system
  # again: a device call returns at most 8 files, and serve1 wrote more
  bench ul yolo11s_ul "end2end" BENCH_CONCURRENCY="$CONC"
  bench shm yolo11s_untrained "A end2end" BENCH_CONCURRENCY="$CONC" BENCH_SHARED_MEMORY=system
  kill "$(cat /root/triton/server.pid)" 2>/dev/null
fi
kill "$DMON" 2>/dev/null
log "done"
