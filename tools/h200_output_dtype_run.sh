#!/usr/bin/env bash
# OUTPUT_DTYPE=float16 on the lent H200 (issue "GPU serving that holds under load", item 3's FP16 output0):
# make's own Track A configs of one untrained yolo11s (FP16, IMGSZ 640, INSTANCE_KIND=gpu, ORT_BATCHING=auto
# = pad 16), served by the real tritonserver 2.51 + ONNX Runtime 1.31.1 CUDA EP (the payload of
# make_h200_ort131_payload.sh), measured with `make bench-serving`, gRPC, 8 client processes:
#   yolo11s_untrained   INPUT_DTYPE=float32 (the default) OUTPUT_DTYPE=float32 (the default before auto)
#   yolo11s_f16o        OUTPUT_DTYPE=float16
#   yolo11s_u8          INPUT_DTYPE=uint8
#   yolo11s_u8f16o      INPUT_DTYPE=uint8 OUTPUT_DTYPE=float16
# each without and with system shared memory (BENCH_SHARED_MEMORY=system), then the raw output0 of every
# model for the same images (the FP16 ones must be the float32 ones rounded) into agreement.json.
# `build` (on the CPU machine, from this checkout's .venv): `make scratch MODEL=yolo11s` once, the four models above
# (the float32 one with OUTPUT_DTYPE=float32: the default is auto = float16 at PRECISION=fp16), then repo/ and
# bundle/images/ (ultralytics' sample JPEGs) as WORK/models.tar.xz.part* (58 MiB each) for the carry.
# The device calls then carry ../sparts/payload.tar.xz.part00..03 and models.tar.xz.part* one per call into
# STASH (/root/stash), run `unpack` with the last one, then `bench` (about 4 min; 10 min a call at most).
# Usage: h200_output_dtype_run.sh build|unpack|bench   (build: WORK, default .h200/od; the others: OUT)
set -uo pipefail
PHASE=${1:?usage: h200_output_dtype_run.sh build|unpack|bench}
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
if [ "$PHASE" = build ]; then
  set -e
  WORK=$(mkdir -p "${WORK:-$repo/.h200/od}" && cd "${WORK:-$repo/.h200/od}" && pwd)
  W=$WORK/w R=$WORK/repo
  mkdir -p "$W" "$R" "$WORK/bundle/images"
  S=(-C "$repo" PYTHON="$repo/.venv/bin/python" WEIGHTS_DIR="$W" MODELS_DIR="$R" BUILD_DIR="$WORK/build"
     INSTANCE_KIND=gpu PRECISION=fp16 IMGSZ=640)
  [ -f "$W/yolo11s_untrained.pt" ] || make "${S[@]}" scratch MODEL=yolo11s
  for n in yolo11s_f16o yolo11s_u8 yolo11s_u8f16o; do ln -sf yolo11s_untrained.pt "$W/$n.pt"; done
  make "${S[@]}" OUTPUT_DTYPE=float32 "$R/yolo11s_untrained/config.pbtxt"
  make "${S[@]}" OUTPUT_DTYPE=float16 "$R/yolo11s_f16o/config.pbtxt"
  make "${S[@]}" INPUT_DTYPE=uint8 OUTPUT_DTYPE=float32 "$R/yolo11s_u8/config.pbtxt"
  make "${S[@]}" INPUT_DTYPE=uint8 OUTPUT_DTYPE=float16 "$R/yolo11s_u8f16o/config.pbtxt"
  cp "$("$repo/.venv/bin/python" -c 'from ultralytics.utils import ASSETS; print(ASSETS)')"/*.jpg "$WORK/bundle/images/"
  cd "$WORK" && rm -f models.tar.xz* && tar -cf - repo bundle | xz -T2 -3 > models.tar.xz
  split -b 58m -d models.tar.xz models.tar.xz.part && rm models.tar.xz && ls -la "$WORK"/models.tar.xz.part*
  exit 0
fi
OUT=${OUT:?}
STASH=${STASH:-/root/stash}
DATA=${DATA:-/root/od}
export P=${P:-/root/p}
log() { echo "[h200_output_dtype $(date +%T)] $*"; }
if [ "$PHASE" = unpack ]; then
  mkdir -p "$DATA" && cat "$STASH"/models.tar.xz.part* | python3 -c '
import sys, tarfile
with tarfile.open(fileobj=sys.stdin.buffer, mode="r|xz") as tar:
    tar.extractall(sys.argv[1])' "$DATA" || exit 1
  ls "$DATA/repo" "$DATA/bundle/images"
  bash "$here/h200_unpack.sh" "$STASH" "$P"
  exit $?
fi
# shellcheck source=h200_env.sh
source "$here/h200_env.sh"
cd "$repo" || exit 1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
R=$DATA/repo
if python3 -c 'import urllib.request as u; u.urlopen("http://127.0.0.1:8000/v2/health/ready", timeout=2)' 2>/dev/null; then
  log "the server of an earlier call is ready"
else
  log "start the real tritonserver on the repository"
  bash "$here/h200_start_triton.sh" "$R" /root/triton || { tail -30 /root/triton/server.log; exit 1; }
fi
CONC=${CONC:-1 4 16 64}
for model in ${MODELS:-yolo11s_untrained yolo11s_f16o yolo11s_u8 yolo11s_u8f16o}; do
  for shm in ${SHM:-none system}; do
    log "bench-serving $model shm=$shm"
    make --no-print-directory bench-serving PYTHON=python3 MODEL="$model" BENCH_TRACKS=A \
      TRITON_URL=127.0.0.1:8001 BENCH_PROTOCOL=grpc BENCH_PROCESSES=8 BENCH_SECONDS="${SECONDS_PER_CELL:-4}" \
      BENCH_WARMUP=1 IMAGES="$DATA/bundle/images" BENCH_CONCURRENCY="$CONC" BENCH_SHARED_MEMORY="$shm" \
      BENCH_NOTE="H200, $model, shared memory $shm" BENCH_OUT="$OUT/bench_${model}_$shm" 2>&1 \
      | grep -vE '^\s*$|it/s|%\|' | tail -8
  done
done
log "raw output0 of every model for the same images"
python3 - "$OUT/agreement.json" "$DATA/bundle/images" <<'PY'
import json, sys
from pathlib import Path
import cv2, numpy as np
import tritonclient.grpc as grpcclient
from yolo_triton import client as yc
from yolo_triton import postprocess as pp
client = grpcclient.InferenceServerClient("127.0.0.1:8001")
images = [cv2.imread(str(p)) for p in sorted(Path(sys.argv[2]).glob("*.jpg"))]
pixels, _ = pp.letterbox_batch(images, 640, dtype="uint8")
out = {}
for name in ("yolo11s_untrained", "yolo11s_f16o", "yolo11s_u8", "yolo11s_u8f16o"):
    served = yc.describe_model(client, name)
    out[name] = yc._request(client, served, pp.to_model_input(pixels, served.input_dtype), ["output0"])["output0"]
ref = out["yolo11s_untrained"]
report = {"images": len(images), "distinct_scores": int(np.unique(ref[:, 4:]).size)}
for name, value in out.items():
    d = np.abs(value - ref)
    report[name] = {"equal_to_float32_rounded_to_fp16": bool(np.array_equal(value, ref.astype(np.float16).astype(np.float32))),
                    "equal": bool(np.array_equal(value, ref)), "max_box_diff_px": float(d[:, :4].max()),
                    "max_score_diff": float(d[:, 4:].max())}
json.dump(report, open(sys.argv[1], "w"), indent=1)
print(json.dumps(report))
PY
kill "$(cat /root/triton/server.pid)" 2>/dev/null
cd "$OUT" && tar -czf bench.tar.gz bench_* && rm -rf bench_*
log "done"
