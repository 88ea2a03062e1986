#!/usr/bin/env bash
# Track D on the lent H200 (issue 19, "GPU serving that holds under load": Track D >= 1,000 img/s), with
# make's own configs: DALI decode + letterbox on the GPU, then the end2end ONNX detector through ONNX
# Runtime (ENSEMBLE_DETECTOR=end2end: the H200 has no TensorRT). Two phases, one device call each:
#
#   unpack  the ONNX Runtime payload (make_h200_ort131_payload.sh: payload.tar.xz.part*) and the Track D
#           payload (make_h200_dali_payload.sh: dali.tar.xz.part*), both in STASH, into P; the checks
#           (libraries resolve, nvidia.dali imports in the python3 the DALI backend will call); the real
#           tritonserver started in its own session on P/trackd/repo (it keeps running for `bench` while
#           the machine stays warm); every model READY (the DALI model autoserialized from 1/dali.py by
#           the backend, on the GPU); detections of the real images through the ensemble and the end2end
#           model (scripts/triton_client.py). -> $OUT/trackd_unpack.tar.gz
#   bench   `make bench-serving` (gRPC, 8 client processes, one image per request, SECONDS_PER_CELL s a
#           cell, real JPEGs) of Track D and of the end2end detector alone, for each model name, at
#           CONC; the server's statistics (per cell in the JSON: the ensemble and each step; at the end
#           /v2/models/stats), nvidia-smi dmon; the server stopped. -> $OUT/trackd_bench.tar.gz
#
# The repository (P/trackd/repo, written by `make` on the CPU machine with INSTANCE_KIND=gpu PRECISION=fp16
# IMGSZ=640 ENSEMBLE_DETECTOR=end2end INPUT_DTYPE=uint8 NMS=ultralytics ORT_BATCHING=pad (ORT_PAD_BATCH 16)
# for the UNTRAINED yolo11s of `make scratch MODEL=yolo11s`, checkpoint linked under each name;
# MODELS env to change the list):
#   yolo11s_d1_{end2end,ensemble}   INSTANCES_PER_GPU=1 (the default)
#   yolo11s_d3_{end2end,ensemble}   INSTANCES_PER_GPU=3
#   preprocess_letterbox_640        the DALI model both ensembles share (max_batch_size 32, DALI_THREADS 4)
#
# Usage: h200_trackd_run.sh unpack|bench   (env: OUT, set by the device tool; STASH /root/stash; P /root/p;
#        W /root/trackd (server log, results); CONC '1 2 4 8 16 32 64'; SECONDS_PER_CELL 4;
#        MODELS 'yolo11s_d1 yolo11s_d3'; TRACKS 'D end2end'; READY_TIMEOUT 300; BUDGET_S 500: no bench
#        starts after that many seconds of the phase, so the call ends inside the device tool's 10 minutes;
#        the tar is rewritten after every bench, so a call stopped at its limit still returns what ran)
# Exit status: 0 done; 1 a step failed (its log is in the tar and the output).
#
# Device calls, from the project's checkout (the parts are ignored files there; one 58 MB part a call,
# back to back: the machine is given back after 30 s idle):
#   1-4  carry .h200/parts/payload.tar.xz.part0N:  mkdir -p /root/stash && cp .h200/parts/payload.tar.xz.part0N /root/stash/
#   5-7  carry .h200/dparts/dali.tar.xz.part0N:    mkdir -p /root/stash && cp .h200/dparts/dali.tar.xz.part0N /root/stash/
#   8    carry .h200/dparts/dali.tar.xz.part03:    the same cp, then: bash tools/h200_trackd_run.sh unpack
#   9    no carry:                                 bash tools/h200_trackd_run.sh bench
# Verified on the CPU machine (no GPU): both payloads unpack; the real server loads the DALI backend;
# with the configs switched to KIND_CPU and the pipeline to CPU operators, the backend autoserializes
# 1/dali.py through python3 (numpy 2.4) and the ensemble answers through the payload's ONNX Runtime backend.
set -uo pipefail
usage() { echo "usage: h200_trackd_run.sh unpack|bench   (OUT must be set)" >&2; }
PHASE=${1:-}
case "$PHASE" in unpack|bench) ;; *) usage; exit 2;; esac
OUT=${OUT:?OUT must be set (the device tool sets it)}
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
STASH=${STASH:-/root/stash}
export P=${P:-/root/p}
W=${W:-/root/trackd}
R=$P/trackd/repo
IMAGES_DIR=$P/trackd/images
MODELS=${MODELS:-yolo11s_d1 yolo11s_d3}
TRACKS=${TRACKS:-D end2end}
CONC=${CONC:-1 2 4 8 16 32 64}
log() { echo "[h200_trackd $(date +%T)] $*"; }

unpack_dali() {  # the dali.tar.xz.part* stream into P (Python's tarfile + lzma: nothing to install)
  if [ "${FORCE:-0}" != 1 ] && [ -f "$P/MANIFEST-dali.txt" ]; then
    log "$P already holds the Track D payload (FORCE=1 to redo)"
    return 0
  fi
  log "unpack $STASH/dali.tar.xz.part* -> $P"
  python3 - "$STASH" "$P" <<'EOF'
import glob, os, sys, tarfile
stash, dest = sys.argv[1], sys.argv[2]
parts = sorted(glob.glob(os.path.join(stash, "dali.tar.xz.part*")))
if not parts:
    sys.exit(f"no dali.tar.xz.part* in {stash}")
print("parts", len(parts), [os.path.basename(p) for p in parts], "bytes", sum(os.path.getsize(p) for p in parts))
class Cat:  # the parts, read as one stream
    def __init__(self, files): self.files, self.f = list(files), None
    def read(self, n=-1):
        while True:
            if self.f is None:
                if not self.files: return b""
                self.f = open(self.files.pop(0), "rb")
            b = self.f.read(n)
            if b: return b
            self.f.close(); self.f = None
with tarfile.open(fileobj=Cat(parts), mode="r|xz") as tar:
    kw = {"filter": "fully_trusted"} if hasattr(tarfile, "fully_trusted_filter") else {}
    tar.extractall(dest, **kw)  # our own payload
EOF
}

dali_env() {  # after h200_env.sh: DALI's libraries for the backend, its Python for the autoserialization
  local nv=$P/dali-site/nvidia
  export LD_LIBRARY_PATH="$nv/dali:$nv/nvimgcodec:$nv/nvjpeg/lib:$LD_LIBRARY_PATH"
  export PYTHONPATH="$PYTHONPATH:$P/dali-site"
}

pack() {  # pack W into $OUT/NAME (one file: the device tool returns at most 8)
  tar -C "$(dirname "$W")" -czf "$OUT/$1" "$(basename "$W")" && ls -l "$OUT/$1"
}

server_ready() {
  python3 -c 'import urllib.request as u; u.urlopen("http://127.0.0.1:8000/v2/health/ready", timeout=2)' 2>/dev/null
}

start_server() {
  log "start the real tritonserver on $R (ONNX Runtime + DALI backends)"
  READY_TIMEOUT=${READY_TIMEOUT:-300} bash "$here/h200_start_triton.sh" "$R" "$W/server"
  local rc=$?
  grep -iE "dali|autoserial|serializ" "$W/server/server.log" | head -20
  return $rc
}

mkdir -p "$W" "$OUT"
if [ "$PHASE" = unpack ]; then
  { nvidia-smi; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; nproc; python3 -V
    python3 -c 'import numpy; print("numpy", numpy.__version__)'; } > "$W/machine.txt" 2>&1
  bash "$here/h200_unpack.sh" "$STASH" "$P" > "$W/unpack_ort.txt" 2>&1  # its status is its last check's
  tail -5 "$W/unpack_ort.txt"
  if [ ! -f "$P/MANIFEST.txt" ] || [ ! -e "$P/backends/onnxruntime/libtriton_onnxruntime.so" ]; then
    log "error: the ONNX Runtime payload did not unpack (unpack_ort.txt)"; pack trackd_unpack.tar.gz; exit 1
  fi
  unpack_dali || { log "error: the Track D payload did not unpack"; pack trackd_unpack.tar.gz; exit 1; }
  head -12 "$P/MANIFEST-dali.txt"
fi
# shellcheck source=tools/h200_env.sh source-path=SCRIPTDIR
source "$here/h200_env.sh"
dali_env
cd "$repo" || exit 1

if [ "$PHASE" = unpack ]; then
  { echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"; echo "PYTHONPATH=$PYTHONPATH"
    for so in "$P/backends/dali/libtriton_dali.so" "$P/dali-site/nvidia/dali/libdali.so"; do
      echo "== ldd $so"; ldd "$so" | grep -E "not found|cuda|dali|triton|nvimgcodec"; done
    python3 -c 'import nvidia.dali as d, numpy; print("DALI", d.__version__, d.__file__, "numpy", numpy.__version__)'
    python3 -c 'import nvidia.dali.plugin.triton, nvidia.dali.fn as fn; print("autoserialize ok")'
  } > "$W/dali_check.txt" 2>&1
  cat "$W/dali_check.txt"
  grep -q "not found" "$W/dali_check.txt" && log "warning: a library does not resolve (above)"
  if ! start_server; then
    log "error: not every model is READY (states above; log in the tar)"
    pack trackd_unpack.tar.gz
    exit 1
  fi
  for m in $MODELS; do
    for model in "${m}_ensemble" "${m}_end2end"; do
      log "detections of $model"
      python3 scripts/triton_client.py --model "$model" --protocol grpc --url 127.0.0.1:8001 --images "$IMAGES_DIR" \
        --model-repository "$R" > "$W/detect_$model.txt" 2>&1
      echo "rc=$?" >> "$W/detect_$model.txt"
      head -8 "$W/detect_$model.txt"
    done
  done
  pack trackd_unpack.tar.gz
  log "done (the server keeps running for the bench phase)"
  exit 0
fi

# ---- bench ----
if server_ready; then
  log "the server of the unpack phase is ready"
elif ! start_server; then
  pack trackd_bench.tar.gz
  exit 1
fi
cp "$W/server/server.log" "$W/server_before_bench.log" 2>/dev/null
nvidia-smi dmon -s u -d 1 > "$W/dmon.txt" 2>&1 &
DMON=$!
status=0
for m in $MODELS; do
  for t in $TRACKS; do
    if [ "$SECONDS" -gt "${BUDGET_S:-500}" ]; then
      log "skipped $m $t: ${SECONDS} s into the phase (BUDGET_S ${BUDGET_S:-500})"; status=1; continue
    fi
    log "make bench-serving MODEL=$m BENCH_TRACKS=$t BENCH_CONCURRENCY='$CONC'"
    make --no-print-directory bench-serving PYTHON=python3 MODEL="$m" BENCH_TRACKS="$t" TRITON_URL=127.0.0.1:8001 \
      BENCH_PROTOCOL=grpc BENCH_PROCESSES=8 BENCH_SECONDS="${SECONDS_PER_CELL:-4}" BENCH_WARMUP=1 \
      BENCH_CONCURRENCY="$CONC" IMAGES="$IMAGES_DIR" BENCH_NOTE="H200, Track D run, $m $t" \
      BENCH_OUT="$W/bench_${m}_$t" > "$W/bench_${m}_$t.log" 2>&1 || status=1
    grep -vE '^\s*$|it/s|%\|' "$W/bench_${m}_$t.log" | tail -14
    pack trackd_bench.tar.gz > /dev/null
  done
done
python3 -c 'import urllib.request as u; print(u.urlopen("http://127.0.0.1:8000/v2/models/stats", timeout=10).read().decode())' \
  > "$W/stats_end.json" 2>&1
kill "$DMON" 2>/dev/null
cp "$W/server/server.log" "$W/server_after_bench.log" 2>/dev/null
[ -f "$W/server/server.pid" ] && kill "$(cat "$W/server/server.pid")" 2>/dev/null
pack trackd_bench.tar.gz
log "done (status $status)"
exit $status
