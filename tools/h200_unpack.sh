#!/usr/bin/env bash
# Run on the H200 once every part of make_h200_ort131_payload.sh has arrived in STASH: reassemble the
# split tar.xz stream (Python's own tarfile + lzma: no zstandard, no xz binary needed), unpack it into
# P, check the backend's layout, and report what the dynamic loader and onnxruntime find.
# Usage: h200_unpack.sh [STASH [P]]   (defaults /root/stash, /root/p); then `source tools/h200_env.sh`.
# Re-running unpacks again only when P/MANIFEST.txt is missing (FORCE=1 always).
# Verified on the CPU machine: unpacks the parts and the server serves with it (no CUDA there, so the
# CUDA lines below say "missing" there). What only the H200 can show: the cu13/cudnn libraries
# resolving and CUDAExecutionProvider creating a session on the GPU (the smoke test at the end).
set -uo pipefail
STASH=${1:-${STASH:-/root/stash}}
export P=${2:-${P:-/root/p}}
here=$(cd "$(dirname "$0")" && pwd)
log() { echo "[h200_unpack $(date +%T)] $*"; }

if [ "${FORCE:-0}" = 1 ] || [ ! -f "$P/MANIFEST.txt" ]; then
  log "unpack $STASH/payload.tar.xz.part* -> $P"
  case "$P" in /|/root|/tmp|"") log "error: refusing P=$P"; exit 1;; esac
  rm -rf "$P"
  python3 - "$STASH" "$P" <<'EOF' || exit 1
import glob, os, sys, tarfile
stash, dest = sys.argv[1], sys.argv[2]
parts = sorted(glob.glob(os.path.join(stash, "payload.tar.xz.part*")))
if not parts:
    sys.exit(f"no payload.tar.xz.part* in {stash}")
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
os.makedirs(dest, exist_ok=True)
with tarfile.open(fileobj=Cat(parts), mode="r|xz") as tar:
    kw = {"filter": "fully_trusted"} if hasattr(tarfile, "fully_trusted_filter") else {}
    tar.extractall(dest, **kw)  # our own payload; symlinks inside it are relative
EOF
  log "unpacked"
else
  log "$P already unpacked (FORCE=1 to redo)"
fi
du -sh "$P"/site "$P"/site-pb "$P"/backends 2>/dev/null
head -3 "$P/MANIFEST.txt"

# layout the server expects: --backend-directory=$P/backends holding onnxruntime/
B=$P/backends/onnxruntime
for f in libtriton_onnxruntime.so libonnxruntime.so.1 libonnxruntime_providers_shared.so libonnxruntime_providers_cuda.so; do
  [ -e "$B/$f" ] || { log "error: $B/$f missing (or a dangling symlink)"; exit 1; }
done
ls -l "$B"

# shellcheck source=h200_env.sh
source "$here/h200_env.sh"
log "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
log "PYTHONPATH=$PYTHONPATH"
for lib in libcudart.so.13 libcublas.so.13 libcublasLt.so.13 libcurand.so.10 libcufft.so.12 libnvrtc.so.13; do
  [ -e "$CU13_LIB/$lib" ] && echo "  found   $CU13_LIB/$lib" || echo "  MISSING $CU13_LIB/$lib"
done
[ -e "$CUDNN_LIB/libcudnn.so.9" ] && echo "  found   $CUDNN_LIB/libcudnn.so.9" || echo "  MISSING $CUDNN_LIB/libcudnn.so.9"
for so in "$B/libtriton_onnxruntime.so" "$B/libonnxruntime_providers_cuda.so"; do
  echo "== ldd $(basename "$so")"
  ldd "$so" | grep -vE 'linux-vdso|libc\.so|libm\.so|libdl\.so|librt\.so|libpthread|libgcc_s|libstdc|ld-linux'
done
ts_help=$("$TRITONSERVER" --help 2>&1)   # exits 1 after printing its usage
grep -q '^Usage: tritonserver' <<<"$ts_help" && log "tritonserver runs" || { log "error: tritonserver does not run:"; tail -3 <<<"$ts_help"; }

log "onnxruntime in Python"
python3 - <<'EOF'
import onnxruntime as ort
print("onnxruntime", ort.__version__, ort.__file__)
print("available providers:", ort.get_available_providers())
# smoke test: a 1-node graph (Relu, opset 17, made with onnx.helper; inline so that no onnx module is
# needed) on CUDAExecutionProvider (only meaningful where a GPU is)
try:
    import base64, numpy as np
    m = base64.b64decode("CAg6OwoMCgF4EgF5IgRSZWx1EgFnWhMKAXgSDgoMCAESCAoCCAIKAggDYhMKAXkSDgoMCAESCAoCCAIKAggDQgQKABAR")
    s = ort.InferenceSession(m, providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
    x = np.array([[-1, 2, -3], [4, -5, 6]], np.float32)
    y = s.run(None, {"x": x})[0]
    print("session providers:", s.get_providers(), "relu ok:", bool((y == np.maximum(x, 0)).all()))
except Exception as e:  # no GPU, ...
    print("CUDA smoke test failed:", type(e).__name__, e)
EOF
python3 -c 'import tritonclient.grpc, tritonclient.http, grpc, google.protobuf; print("tritonclient ok; grpc", grpc.__version__, grpc.__file__, "protobuf", google.protobuf.__version__, google.protobuf.__file__)'
