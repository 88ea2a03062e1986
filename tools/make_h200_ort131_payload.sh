#!/usr/bin/env bash
# Pack the real tritonserver 2.51.0 (nvidia-pytriton 0.7.0) + Triton's GPU ONNX Runtime backend built
# by build_onnxruntime_gpu_backend.sh against onnxruntime-gpu 1.31.1 (CUDA 13) + that onnxruntime-gpu
# Python package + tritonclient for the lent H200 (Python 3.12, no internet; torch's venv there holds
# the CUDA 13 libraries and cuDNN 9 that ORT's CUDA provider loads, so none of them is packed).
# Output in DEST: payload.tar.xz.partNN: one tar.xz stream cut into the fewest equal pieces of at most
# PART_MAX bytes (default 58 MiB = 60817408: a part plus the project's tree stays under the device
# tool's 64 MiB carry), read there by Python's own tarfile/lzma (tools/h200_unpack.sh), so no
# zstandard wheel and no extra file is needed. xz -9 -T2 beat zstd -19 --long here and needs nothing
# installed there.
#
# Usage: make_h200_ort131_payload.sh DEST
#   env: PYTRITON_WHL  nvidia_pytriton-0.7.0 wheel          (default /work/main/.h200/nvidia_pytriton-0.7.0-*.whl)
#        ORT_GPU_WHL   onnxruntime_gpu wheel, cp312        (default /work/main/.h200/onnxruntime_gpu-1.31.1-*.whl,
#                      else /work/main/.h200/ortm-wheels/onnxruntime_gpu-1.31.1-*.whl)
#        BACKEND_DIR   the build's backends/onnxruntime    (default /work/main/.h200/backend/backends/onnxruntime)
#        CLIENT_WHEELS dir of cp312 wheels for the client  (default /work/main/.h200/client-wheels: tritonclient
#                      2.73.0, python-rapidjson, geventhttpclient, gevent, greenlet<3.4, zope.event,
#                      zope.interface, brotli, grpcio 1.85.3, protobuf 6.33.6; zstandard-* there is skipped)
#        XZ_LEVEL (default -9), PART_MAX (bytes, default 58 MiB)
#
# Layout once unpacked under P (/root/p there):
#   site/pytriton/tritonserver/{bin/tritonserver,caches}   the server (no Python backend, no stubs)
#   site/nvidia_pytriton.libs/   the server's bundled libraries that it, its cache and the ORT backend
#                                NEED (transitively; the Python-backend-only ones are left out); it
#                                bundles its CUDA 12 runtime libcudart-09529672.so.12.6.77, which the
#                                backend also uses (CUDART=server build), so no CUDA 12 wheel is packed
#   site/onnxruntime/            onnxruntime-gpu's package (capi: libonnxruntime.so.1.31.1, providers
#                                shared + cuda, the pybind module; without the TensorRT provider and the
#                                transformers/tools/quantization/datasets folders) + its dist-info
#   site/tritonclient, gevent, geventhttpclient, rapidjson, ...   the client side
#   site-pb/grpc, site-pb/google/protobuf   grpcio 1.85.3 + protobuf 6.33.6 for tritonclient 2.73
#                                (protobuf<7, grpcio>=1.81.1); h200_env.sh puts them on PYTHONPATH only
#                                when the image's own grpcio/protobuf do not satisfy that (so the image's
#                                onnx keeps its protobuf when it can)
#   backends/onnxruntime/        libtriton_onnxruntime.so + symlinks libonnxruntime.so.1,
#                                libonnxruntime_providers_{shared,cuda}.so -> site/onnxruntime/capi
#                                (one copy of the 284 MB CUDA provider for both)
#   MANIFEST.txt                 versions, sha256 of the libraries
# Getting the inputs: nvidia-pytriton 0.7.0 is tagged py3-none-manylinux_2_35_x86_64 (a download with
# --platform manylinux_2_28_x86_64 finds nothing): pip download --no-deps --only-binary=:all:
# --python-version 3.12 --platform manylinux_2_35_x86_64 nvidia-pytriton==0.7.0; the client wheels with
# --platform manylinux_2_28_x86_64 (+ _2_24, _2_17, 2014, 1, _2_5) --no-deps.
# Not packed, taken from the image's Python (torch's venv there; a bare 3.12 venv lacks them):
# numpy, flatbuffers, packaging (onnxruntime), typing_extensions (grpcio 1.85), ml_dtypes (tritonclient
# 2.73 utils; onnx brings it).
# Rebuilt 2026-12-03 from fresh downloads: again 4 parts of 58,550,255 bytes (234,201,020), same checks.
# Verified on the CPU machine (2026-12-02; 4 parts of 58.55 MB, 234.2 MB): the parts unpack with tools/h200_unpack.sh into a
# working server + backend that serves a KIND_CPU model equal to onnxruntime in Python.
set -euo pipefail
DEST=${1:?usage: make_h200_ort131_payload.sh DEST}
H=/work/main/.h200
PYTRITON_WHL=${PYTRITON_WHL:-$(ls $H/nvidia_pytriton-0.7.0-*.whl 2>/dev/null | head -1)}
ORT_GPU_WHL=${ORT_GPU_WHL:-$(ls $H/onnxruntime_gpu-1.31.1-*.whl $H/ortm-wheels/onnxruntime_gpu-1.31.1-*.whl 2>/dev/null | head -1)}
BACKEND_DIR=${BACKEND_DIR:-$H/backend/backends/onnxruntime}
CLIENT_WHEELS=${CLIENT_WHEELS:-$H/client-wheels}
XZ_LEVEL=${XZ_LEVEL:--9}
PART_MAX=${PART_MAX:-$((58 * 1024 * 1024))}
PY=${PY:-python3}
for f in "$PYTRITON_WHL" "$ORT_GPU_WHL" "$BACKEND_DIR/libtriton_onnxruntime.so"; do
  [ -f "$f" ] || { echo "error: not found: $f" >&2; exit 1; }
done
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
p=$work/p s=$work/p/site
mkdir -p "$s" "$p/backends/onnxruntime" "$DEST"

# 1. the server: pytriton's tritonserver and the libraries it needs
unzip -q "$PYTRITON_WHL" 'pytriton/tritonserver/*' 'nvidia_pytriton.libs/*' -d "$work/pyt"
mkdir -p "$s/pytriton/tritonserver"
cp -r "$work/pyt/pytriton/tritonserver/bin" "$work/pyt/pytriton/tritonserver/caches" "$s/pytriton/tritonserver/"
libs=$work/pyt/nvidia_pytriton.libs
mkdir -p "$s/nvidia_pytriton.libs"
"$PY" - "$libs" "$s/nvidia_pytriton.libs" "$s/pytriton/tritonserver/bin/tritonserver" \
  "$s/pytriton/tritonserver/caches/local/libtritoncache_local.so" "$BACKEND_DIR/libtriton_onnxruntime.so" <<'EOF'
import os, re, shutil, subprocess, sys
src, dst, roots = sys.argv[1], sys.argv[2], sys.argv[3:]
seen, todo = set(), list(roots)
while todo:
    out = subprocess.run(["readelf", "-d", todo.pop()], capture_output=True, text=True, check=True).stdout
    for n in re.findall(r"NEEDED.*\[(.*)\]", out):
        if n not in seen and os.path.exists(os.path.join(src, n)):
            seen.add(n); todo.append(os.path.join(src, n))
for n in sorted(seen):
    shutil.copy2(os.path.join(src, n), dst)
print("server libraries kept:", len(seen), "left out:", sorted(set(os.listdir(src)) - seen))
EOF
chmod +x "$s/pytriton/tritonserver/bin/tritonserver"

# 2. onnxruntime-gpu's Python package, trimmed
"$PY" -m pip install -q --no-deps --no-index --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --target "$s" "$ORT_GPU_WHL"
rm -rf "$s"/onnxruntime/{transformers,tools,quantization,datasets} "$s"/onnxruntime/capi/libonnxruntime_providers_tensorrt.so "$s/bin"
ort_so=$(cd "$s/onnxruntime/capi" && ls libonnxruntime.so.1.*)

# 3. the backend: the built library, ORT through symlinks into the package
cp "$BACKEND_DIR/libtriton_onnxruntime.so" "$p/backends/onnxruntime/"
ln -s "../../site/onnxruntime/capi/$ort_so" "$p/backends/onnxruntime/libonnxruntime.so.1"
for l in libonnxruntime_providers_shared.so libonnxruntime_providers_cuda.so; do
  ln -s "../../site/onnxruntime/capi/$l" "$p/backends/onnxruntime/$l"
done
# the backend must have been linked against exactly this ORT (versioned symbols)
need=$(readelf -V "$BACKEND_DIR/libtriton_onnxruntime.so" | sed -n 's/.*Name: \(VERS_[0-9.]*\).*/\1/p' | head -1)
[ "$need" = "VERS_${ort_so#libonnxruntime.so.}" ] || { echo "error: backend needs $need, package has $ort_so" >&2; exit 1; }

# 4. the client side (grpcio + protobuf in their own folder, see the layout above)
mapfile -t cw < <(find -L "$CLIENT_WHEELS" -maxdepth 1 -name '*.whl' ! -name 'zstandard-*' ! -name 'grpcio-*' ! -name 'protobuf-*' | sort)
mapfile -t pbw < <(find -L "$CLIENT_WHEELS" -maxdepth 1 \( -name 'grpcio-*.whl' -o -name 'protobuf-*.whl' \) | sort)
pip_target() {  # DIR WHEEL...
  local dir=$1; shift
  "$PY" -m pip install -q --no-deps --no-index --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform manylinux_2_5_x86_64 \
    --target "$dir" "$@"
}
pip_target "$s" "${cw[@]}"
pip_target "$p/site-pb" "${pbw[@]}"
rm -rf "$s/bin" "$p/site-pb/bin"
find "$p" -name __pycache__ -prune -exec rm -rf {} +
# static symbol tables (.symtab/.strtab; the dynamic ones stay) of the files that carry them: ~27 MB,
# the difference between 5 and 4 parts. Checked on the CPU machine: the stripped server serves and
# the stripped extension modules import.
for f in "$s/pytriton/tritonserver/bin/tritonserver" "$s"/nvidia_pytriton.libs/libtritonserver-*.so \
         "$s"/_brotli.cpython-312-*.so "$s"/greenlet/_greenlet.cpython-312-*.so "$s"/rapidjson.cpython-312-*.so; do
  [ -f "$f" ] && strip --strip-unneeded "$f"
done

# 5. manifest, pack, split
{ echo "made $(date -u +%FT%TZ) by make_h200_ort131_payload.sh"
  for w in "$PYTRITON_WHL" "$ORT_GPU_WHL" "${cw[@]}" "${pbw[@]}"; do echo "wheel $(basename "$w")"; done
  (cd "$p" && find . -name '*.so*' -type f -exec sha256sum {} + | sort -k2)
} > "$p/MANIFEST.txt"
du -sh "$s"/* "$p/site-pb" "$p/backends" | sort -h | tail -12
rm -f "$DEST"/payload.tar.xz.part*
tar -C "$p" --owner=0 --group=0 -cf - . | xz -T2 "$XZ_LEVEL" > "$work/payload.tar.xz"
size=$(stat -c %s "$work/payload.tar.xz")
n=$(( (size + PART_MAX - 1) / PART_MAX ))
split -n "$n" -d -a 2 "$work/payload.tar.xz" "$DEST/payload.tar.xz.part"
ls -l "$DEST"/payload.tar.xz.part*
echo "parts: $(ls "$DEST"/payload.tar.xz.part* | wc -l), total bytes: $(cat "$DEST"/payload.tar.xz.part* | wc -c)"
