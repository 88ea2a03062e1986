#!/usr/bin/env bash
# One device run on the lent H200: unpack the carried payload, start the real tritonserver 2.51.0
# (nvidia-pytriton 0.7.0) with the GPU ONNX Runtime and DALI backends built by
# build_onnxruntime_gpu_backend.sh / build_dali_backend.sh, load the model repository one model at a
# time (explicit mode), send real images through every track, and measure (bench_gpu_serving.py).
# Everything it learns goes to $OUT (the device tool brings it back).
#
# Payload (made on the CPU machine by make_h200_payload.sh): a zstd tar stream split in parts, in
# STASH (default /root/stash), plus the zstandard wheel to read it (python3 there has no zstd module).
# Layout once unpacked under P: site/ (wheels unpacked for Python 3.12: nvidia-pytriton, tritonclient,
# DALI 1.53 cuda120 + nvImageCodec/nvJPEG/nvCOMP cu12, cuBLAS/cuFFT/cuRAND/cudart 12), backends/,
# models/, repo/ (scripts + export/yolo_triton), images/.
# cuDNN 9 is the machine's own (PyTorch's nvidia-cudnn-cu13; its libraries need no CUDA runtime and
# find cuBLASLt 13 beside it); everything else CUDA comes from CUDA 12 wheels.
set -uo pipefail
STASH=${STASH:-/root/stash}
P=${P:-/tmp/p}
OUT=${OUT:?OUT must be set (the device tool sets it)}
CONCURRENCY=${CONCURRENCY:-1 2 4 8 16 32 64}
SECONDS_PER_POINT=${SECONDS_PER_POINT:-5}
AUX=${AUX:-$OUT}          # where the small text results go ($OUT brings back at most 8 files)
DO_DETECT=${DO_DETECT:-1} # detections of every track on the real images (detect.json)
DO_RAW=${DO_RAW:-1}       # raw output0 / DALI letterbox tensors ($OUT/raw/*.npz)
# ONNX Runtime's cudnn_conv_algo_search for the ONNX models (model config parameter read by the
# backend): unset = make's configs as written (ONNX Runtime default EXHAUSTIVE); 1 = HEURISTIC
CUDNN_ALGO_SEARCH=${CUDNN_ALGO_SEARCH:-}
mkdir -p "$AUX"
log() { echo "[h200_run $(date +%T)] $*"; }

log "machine"
{ nvidia-smi; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; uname -r; nproc;
  python3 -V; python3 -c 'import numpy, cv2; print("numpy", numpy.__version__, "cv2", cv2.__version__)'; } \
  > "$AUX/machine.txt" 2>&1
head -20 "$AUX/machine.txt"

# ---- unpack ----
if [ ! -d "$P/site" ]; then
  log "unpack"
  python3 -m pip install -q --no-index --no-deps --target /tmp/zstd "$STASH"/zstandard-*.whl || exit 1
  PYTHONPATH=/tmp/zstd python3 - "$STASH" "$P" <<'EOF' || exit 1
import glob, os, sys, tarfile, zstandard
stash, dest = sys.argv[1], sys.argv[2]
parts = sorted(glob.glob(os.path.join(stash, "payload.tar.zst.part*")))
print("parts", len(parts), "bytes", sum(os.path.getsize(p) for p in parts))
class Cat:
    def __init__(self, files): self.files, self.f = list(files), None
    def read(self, n=-1):
        while True:
            if self.f is None:
                if not self.files: return b""
                self.f = open(self.files.pop(0), "rb")
            b = self.f.read(n)
            if b: return b
            self.f.close(); self.f = None
reader = zstandard.ZstdDecompressor(max_window_size=1 << 31).stream_reader(Cat(parts))
os.makedirs(dest, exist_ok=True)
with tarfile.open(fileobj=reader, mode="r|") as tar:
    tar.extractall(dest)
EOF
fi
du -sh "$P"/* 2>/dev/null
# newer copies of the project's scripts carried beside the parts replace the packed ones
for f in bench_gpu_serving.py triton_client.py; do
  [ -f "$STASH/$f" ] && cp "$STASH/$f" "$P/repo/scripts/$f" && log "using the carried $f"
done

# ---- environment ----
TORCH_SP=$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
CUDNN_LIB=$TORCH_SP/nvidia/cudnn/lib
CU13_LIB=$TORCH_SP/nvidia/cu13/lib
SITE=$P/site
NV=$SITE/nvidia
export LD_LIBRARY_PATH="$NV/cuda_runtime/lib:$NV/cublas/lib:$NV/cufft/lib:$NV/curand/lib:$NV/dali:$NV/nvimgcodec:$NV/nvjpeg/lib:$NV/libnvcomp/lib64:$CUDNN_LIB:$CU13_LIB:$SITE/nvidia_pytriton.libs"
export PYTHONPATH=$SITE:$PWD/export  # yolo_triton (not pip-installed there)
TS=$SITE/pytriton/tritonserver
{ echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"; find "$CUDNN_LIB" "$CU13_LIB" -maxdepth 1 -name 'lib*' 2>&1 | head -40;
  for so in "$P/backends/onnxruntime/libonnxruntime_providers_cuda.so" "$P/backends/onnxruntime/libtriton_onnxruntime.so" \
            "$P/backends/dali/libtriton_dali.so"; do echo "== ldd $so"; ldd "$so" | grep -E "not found|cuda|cublas|cudnn|cufft|curand|dali|triton"; done
  python3 -c 'import nvidia.dali as d; print("DALI", d.__version__)'
  python3 -c 'import tritonclient.grpc, grpc, google.protobuf; print("tritonclient ok, grpc", grpc.__version__, "protobuf", google.protobuf.__version__)'
} > "$AUX/env.txt" 2>&1
tail -12 "$AUX/env.txt"

# ---- model repository: the NMS=onnx end2end graph also served under the plan's name ----
M=$P/models
mkdir -p "$M/yolo11s_untrained_trt_end2end/1"
[ -f "$M/yolo11s_untrained_trt_end2end/1/model.onnx" ] || cp "$M/yolo11s_untrained_end2end/1/model.onnx" "$M/yolo11s_untrained_trt_end2end/1/"
mkdir -p "$M/yolo11s_untrained_ensemble/1"
ORT_MODELS=(yolo11s_untrained yolo11s_untrained_end2end yolo11s_untrained_trt_end2end yolo11s_untrained_fp32)
if [ -n "$CUDNN_ALGO_SEARCH" ]; then
  for m in "${ORT_MODELS[@]}"; do
    [ -f "$M/$m/config.pbtxt" ] || continue
    grep -q cudnn_conv_algo_search "$M/$m/config.pbtxt" || printf \
      'parameters {\n  key: "cudnn_conv_algo_search"\n  value {\n    string_value: "%s"\n  }\n}\n' \
      "$CUDNN_ALGO_SEARCH" >> "$M/$m/config.pbtxt"
  done
  log "cudnn_conv_algo_search=$CUDNN_ALGO_SEARCH added to the ONNX models' configs"
fi

# ---- server ----
log "start tritonserver"
"$TS/bin/tritonserver" --model-repository="$M" --backend-directory="$P/backends" --model-control-mode=explicit \
  --http-address=127.0.0.1 --grpc-address=127.0.0.1 --http-port=8000 --grpc-port=8001 --metrics-port=8002 \
  > "$OUT/server.log" 2>&1 &
SERVER=$!
for _ in $(seq 60); do
  python3 -c 'import urllib.request; urllib.request.urlopen("http://127.0.0.1:8000/v2/health/live")' 2>/dev/null && break
  kill -0 "$SERVER" 2>/dev/null || { log "server died"; tail -30 "$OUT/server.log"; exit 1; }
  sleep 1
done
log "server live"

cd "$P/repo" || exit 1
MODELS=(yolo11s_untrained yolo11s_untrained_end2end yolov11_preprocess_640 yolo11s_untrained_trt_end2end yolo11s_untrained_ensemble)
EXTRA=()
[ -d "$M/yolo11s_untrained_fp32" ] && EXTRA=(yolo11s_untrained_fp32)
python3 scripts/bench_gpu_serving.py load --models "${MODELS[@]}" "${EXTRA[@]}" --json "$AUX/load.json"
cat "$AUX/load.json"
grep -E "TRITONBACKEND_ModelInstanceInitialize|GPU device|CUDA|cuda|error|Error" "$OUT/server.log" | head -40

READY=$(python3 -c "import json; d=json.load(open('$AUX/load.json')); print(' '.join(k for k,v in d.items() if not k.startswith('_') and v.get('ready') and k != 'yolov11_preprocess_640'))")
if [ "$DO_DETECT" = 1 ]; then
  log "detect"
  # shellcheck disable=SC2086
  python3 scripts/bench_gpu_serving.py detect --models $READY --images "$P/images" --json "$AUX/detect.json" 2>&1 | tail -8
fi
if [ "$DO_RAW" = 1 ]; then
  log "raw tensors"
  python3 scripts/bench_gpu_serving.py raw --models yolo11s_untrained "${EXTRA[@]}" --preprocess yolov11_preprocess_640 \
    --images "$P/images" --npz "$OUT/raw" 2>&1 | tail -4
fi
log "warmup (every batch size once per ONNX model)"
WARM=()
for m in yolo11s_untrained yolo11s_untrained_end2end yolo11s_untrained_trt_end2end; do
  case " $READY " in *" $m "*) WARM+=("$m");; esac
done
python3 scripts/bench_gpu_serving.py warmup --models "${WARM[@]}" --images "$P/images/zidane.jpg" --json "$OUT/warmup.json" 2>&1 | tail -4

log "bench"
nvidia-smi dmon -s um -d 1 > "$OUT/dmon.txt" 2>&1 &
DMON=$!
TRACKS=()
for pair in track_a=yolo11s_untrained end2end_onnx_nms=yolo11s_untrained_end2end track_d=yolo11s_untrained_ensemble; do
  case " $READY " in *" ${pair#*=} "*) TRACKS+=(--track "$pair");; esac
done
# shellcheck disable=SC2086
python3 scripts/bench_gpu_serving.py bench "${TRACKS[@]}" --images "$P/images" --concurrency $CONCURRENCY \
  --seconds "$SECONDS_PER_POINT" --json "$OUT/bench.json" 2>&1 | grep -E "bench|Error|error" | tail -40
kill "$DMON" 2>/dev/null
nvidia-smi --query-compute-apps=pid,process_name,used_memory --format=csv 2>&1
kill "$SERVER"
wait "$SERVER" 2>/dev/null
log "done"
