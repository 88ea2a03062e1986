#!/usr/bin/env bash
# Build Triton's ONNX Runtime backend with TRITON_ENABLE_GPU=ON for the tritonserver 2.51.0 (r24.10)
# that PyPI's nvidia-pytriton 0.7.0 ships, against the prebuilt ONNX Runtime of a PyPI
# onnxruntime-gpu wheel (any version; its CUDA provider may be a CUDA 12 or a CUDA 13 build). CUDA
# headers, libcudart and a CUDA compiler come from PyPI wheels, so this runs on a machine without a GPU
# or a CUDA install.
#
# ONNX Runtime's exported symbols are versioned (VERS_<x.y.z>): the backend only loads with the very
# libonnxruntime.so.1 it was linked against, so ORT_GPU_WHL decides the run-time ORT. The C API
# header (ORT_HDR_*) may be older than that library: OrtApi only grows, GetApi(N) of a newer ORT
# answers for any N <= its own API version (the script refuses a header NEWER than the library).
#
# The backend itself always uses the server's CUDA 12 runtime (tritonserver 2.51 is a CUDA 12 build);
# ORT's CUDA provider uses the CUDA major of its wheel (ORT_CUDA_MAJOR, read from its NEEDED). The
# two runtimes share the driver's primary context, so streams and device pointers pass between them.
# CUDART=server (default) re-points the backend's NEEDED libcudart.so.12 at the server's own bundled
# libcudart-<hash>.so.12.6.77 (same 12.6.77 runtime, version node libcudart.so.12), so the process
# holds one CUDA 12 runtime and no CUDA 12 wheel is needed at run time; CUDART=wheel keeps
# libcudart.so.12 (then ship nvidia-cuda-runtime-cu12's).
#
# Sources (branch r24.10, at these commits in both runs below):
#   triton-inference-server/onnxruntime_backend r24.10 = 17e5cb23a6fbeb37282eb7079dd0b580cd79530d
#   triton-inference-server/backend r24.10 = ac03a5d97403dec841ad46d0439e93db12c9268f,
#     core r24.10 = bfec7c61dc0939433f64f14e89b1973073eac8ba, common r24.10 = 578491fc3944f77d16a6a38e3d7691c485c47ba0
# Toolchain: cmake 3.25.1, g++ 12.2.0 (Debian 12), patchelf, rapidjson-dev, googletest; CUDA "toolkit"
#   from wheels (cuda_toolkit_from_wheels.sh): nvidia-cuda-runtime-cu12 12.6.77 (headers + libcudart.so.12),
#   nvidia-nvtx-cu12 12.6.77, nvidia-cuda-nvcc / nvidia-nvvm / nvidia-cuda-crt 13.0.88 (compile kernel.cu
#   for sm_90), nvidia-cuda-runtime 13.0.96 (static libs for CMake's compiler check only)
#
# Runs:
#   2026-12-01  onnxruntime-gpu 1.24.1 (CUDA 12: provider NEEDs libcudart.so.12, libcublas(Lt).so.12,
#     libcufft.so.11, libcurand.so.10; cuDNN 9), headers yalue/onnxruntime_go 9d326ee6516e (API 24,
#     verbatim upstream onnxruntime_c_api.h / onnxruntime_ep_c_api.h); CUDART=wheel. Served on the H200.
#   2026-12-02  onnxruntime-gpu 1.31.1 (cp312 manylinux_2_28; CUDA 13: libonnxruntime_providers_cuda.so
#     NEEDs libcublasLt.so.13, libcublas.so.13, libcurand.so.10, libcudart.so.13, libcuda.so.1 and
#     dlopens libcudnn.so.9, libcufft.so.12, libnvrtc.so.13), headers yalue/onnxruntime_go
#     b4e0f0b495a4 ("upgrade to ORT 1.29.0", API 29: no verbatim 1.31 header could be fetched here,
#     microsoft/onnxruntime is too large for the fetch tool); the backend requires VERS_1.31.1
#     (checked below); CUDART=server. Verified on the CPU machine: builds, loads in the real
#     tritonserver 2.51.0, serves a KIND_CPU model equal to onnxruntime in Python. Only the H200 can
#     show the CUDA provider (KIND_GPU) working.
# Result: $OUT/backends/onnxruntime/{libtriton_onnxruntime.so, libonnxruntime.so.1,
#   libonnxruntime_providers_shared.so, libonnxruntime_providers_cuda.so}
# At run time ORT's CUDA provider needs the CUDA libraries of its CUDA major and a cuDNN 9 on
# LD_LIBRARY_PATH (the backend's RUNPATH is $ORIGIN; ORT loads its providers from its own dir).
set -euo pipefail

ORTBE_GIT=${ORTBE_GIT:?git dir of triton-inference-server/onnxruntime_backend}
BACKEND_GIT=${BACKEND_GIT:?git dir of triton-inference-server/backend}
CORE_GIT=${CORE_GIT:?git dir of triton-inference-server/core}
COMMON_GIT=${COMMON_GIT:?git dir of triton-inference-server/common}
TRITON_REF=${TRITON_REF:-r24.10}
# C API headers: ORT_HDR_DIR (a folder holding onnxruntime_c_api.h and the headers it includes), or
# ORT_HDR_GIT + ORT_HDR_REF (a git dir whose top level holds them, e.g. yalue/onnxruntime_go)
ORT_HDR_DIR=${ORT_HDR_DIR:-}
ORT_HDR_GIT=${ORT_HDR_GIT:-}
ORT_HDR_REF=${ORT_HDR_REF:-b4e0f0b495a4ad1eb8a2f61c0286b6e670771525}
ORT_GPU_WHL=${ORT_GPU_WHL:?path of the onnxruntime_gpu wheel (cp312 manylinux)}
CUDART=${CUDART:-server}   # server | wheel (see the header)
# CUDA_RT_WHL, CUDA_NVCC13_WHL, NVVM13_WHL, CRT13_WHL, CUDA_RT13_WHL, NVTX_WHL: see cuda_toolkit_from_wheels.sh
PYTRITON_LIBS=${PYTRITON_LIBS:?site-packages/nvidia_pytriton.libs of nvidia-pytriton 0.7.0}
GTEST_SRC=${GTEST_SRC:-/usr/src/googletest}

WORK=${WORK:-$(mktemp -d)}
OUT=${OUT:-$WORK/out}
JOBS=${JOBS:-2}
SRC=$WORK/src
ORT=$WORK/ort
CUDA=$WORK/cuda
BUILD=$WORK/build

for tool in cmake g++ make git patchelf unzip; do
  command -v "$tool" >/dev/null || { echo "error: $tool not found (apt-get install -y cmake g++ make git patchelf unzip rapidjson-dev googletest)" >&2; exit 1; }
done
[ -f "$ORT_GPU_WHL" ] || { echo "error: wheel not found: $ORT_GPU_WHL" >&2; exit 1; }

t0=$(date +%s)
rm -rf "$SRC" "$ORT" "$BUILD"
mkdir -p "$SRC" "$ORT/include" "$ORT/lib" "$BUILD"

# 1. sources
for pair in onnxruntime_backend:$ORTBE_GIT backend:$BACKEND_GIT core:$CORE_GIT common:$COMMON_GIT; do
  name=${pair%%:*}; gd=${pair#*:}
  mkdir -p "$SRC/$name"
  git --git-dir="$gd" archive "$TRITON_REF" | tar -x -C "$SRC/$name"
  echo "$name $(git --git-dir="$gd" rev-parse "$TRITON_REF")" >> "$SRC/COMMITS"
done
cat "$SRC/COMMITS"

# 2. a CUDA "toolkit" from PyPI wheels (cuda_toolkit_from_wheels.sh says what and why); the backend
#    repo's arch list is cut to 90 (CUDA 13's nvcc compiles kernel.cu; it dropped sm_53..72)
bash "$(dirname "$0")/cuda_toolkit_from_wheels.sh" "$CUDA"
sed -i 's/CUDA_ARCHITECTURES "53;60-real;62-real;70-real;72-real;75-real;80-real;86-real;89-real;90-real"/CUDA_ARCHITECTURES "90-real"/' \
  "$SRC/backend/CMakeLists.txt"
grep -q 'CUDA_ARCHITECTURES "90-real"' "$SRC/backend/CMakeLists.txt" || { echo "error: could not set the CUDA arch list in backend/CMakeLists.txt" >&2; exit 1; }

# 3. ONNX Runtime "install": C API headers + the GPU wheel's libraries
for h in onnxruntime_c_api.h onnxruntime_ep_c_api.h onnxruntime_error_code.h; do
  if [ -n "$ORT_HDR_DIR" ]; then
    [ -f "$ORT_HDR_DIR/$h" ] && cp "$ORT_HDR_DIR/$h" "$ORT/include/"
  else
    [ -n "$ORT_HDR_GIT" ] || { echo "error: set ORT_HDR_DIR or ORT_HDR_GIT" >&2; exit 1; }
    git --git-dir="$ORT_HDR_GIT" show "$ORT_HDR_REF:$h" > "$ORT/include/$h" 2>/dev/null || rm -f "$ORT/include/$h"
  fi
done
[ -f "$ORT/include/onnxruntime_c_api.h" ] || { echo "error: no onnxruntime_c_api.h" >&2; exit 1; }
unzip -q -o -j "$ORT_GPU_WHL" 'onnxruntime/capi/libonnxruntime.so.1.*' \
  'onnxruntime/capi/libonnxruntime_providers_shared.so' 'onnxruntime/capi/libonnxruntime_providers_cuda.so' -d "$ORT/lib"
ort_so=$(basename "$(ls "$ORT"/lib/libonnxruntime.so.1.*)")
ORT_VERSION=${ort_so#libonnxruntime.so.}
ln -sf "$ort_so" "$ORT/lib/libonnxruntime.so.1"
ln -sf "$ort_so" "$ORT/lib/libonnxruntime.so"
hdr_api=$(sed -n 's/^#define ORT_API_VERSION \([0-9]*\).*/\1/p' "$ORT/include/onnxruntime_c_api.h")
lib_api=$(echo "$ORT_VERSION" | cut -d. -f2)
echo "ONNX Runtime $ORT_VERSION (API $lib_api), C API header API $hdr_api"
[ "$hdr_api" -le "$lib_api" ] || { echo "error: header API $hdr_api is newer than the library's $lib_api" >&2; exit 1; }
ORT_CUDA_MAJOR=$(readelf -d "$ORT/lib/libonnxruntime_providers_cuda.so" | sed -n 's/.*NEEDED.*\[libcudart\.so\.\([0-9]*\)\].*/\1/p')
echo "ONNX Runtime CUDA provider: CUDA $ORT_CUDA_MAJOR; it NEEDs:"
readelf -d "$ORT/lib/libonnxruntime_providers_cuda.so" | sed -n 's/.*NEEDED.*\[\(.*\)\]/  \1/p' | grep -vE 'lib(c|m|dl|rt|pthread|gcc_s|stdc\+\+)\.so|ld-linux'

# 4. configure: GPU on, no TensorRT / OpenVINO, prebuilt ORT, FetchContent pointed at local sources
cmake -S "$SRC/onnxruntime_backend" -B "$BUILD" \
  -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_CXX_FLAGS="-ffile-prefix-map=$SRC=src -ffile-prefix-map=$ORT=ort -ffile-prefix-map=$BUILD=build -ffile-prefix-map=$CUDA=cuda" \
  -DTRITON_ENABLE_GPU=ON \
  -DCUDAToolkit_ROOT="$CUDA" \
  -DCMAKE_CUDA_COMPILER="$CUDA/bin/nvcc" \
  -DCMAKE_CUDA_RUNTIME_LIBRARY=Shared \
  -DCMAKE_CUDA_ARCHITECTURES=90-real \
  -DTRITON_ENABLE_ONNXRUNTIME_TENSORRT=OFF \
  -DTRITON_ENABLE_ONNXRUNTIME_OPENVINO=OFF \
  -DTRITON_ONNXRUNTIME_INCLUDE_PATHS="$ORT/include" \
  -DTRITON_ONNXRUNTIME_LIB_PATHS="$ORT/lib" \
  -DTRITON_BACKEND_REPO_TAG="$TRITON_REF" -DTRITON_CORE_REPO_TAG="$TRITON_REF" -DTRITON_COMMON_REPO_TAG="$TRITON_REF" \
  -DFETCHCONTENT_FULLY_DISCONNECTED=ON \
  -DFETCHCONTENT_SOURCE_DIR_REPO-COMMON="$SRC/common" \
  -DFETCHCONTENT_SOURCE_DIR_REPO-CORE="$SRC/core" \
  -DFETCHCONTENT_SOURCE_DIR_REPO-BACKEND="$SRC/backend" \
  -DFETCHCONTENT_SOURCE_DIR_GOOGLETEST="$GTEST_SRC"

# 5. build only the backend shared library
make -C "$BUILD" -j"$JOBS" triton-onnxruntime-backend

# 6. deliver: backend + the ORT libraries (RUNPATH $ORIGIN; ORT finds its providers beside itself)
mkdir -p "$OUT/backends/onnxruntime"
cp "$BUILD/libtriton_onnxruntime.so" "$OUT/backends/onnxruntime/"
cp "$ORT/lib/$ort_so" "$OUT/backends/onnxruntime/libonnxruntime.so.1"
cp "$ORT/lib/libonnxruntime_providers_shared.so" "$ORT/lib/libonnxruntime_providers_cuda.so" "$OUT/backends/onnxruntime/"

# 7. the PyPI server's core library is libtritonserver-<hash>.so (auditwheel): re-point NEEDED at it
core_lib=$(find "$PYTRITON_LIBS" -maxdepth 1 -name 'libtritonserver-*.so' | head -1)
[ -n "$core_lib" ] || { echo "error: no libtritonserver-*.so in $PYTRITON_LIBS" >&2; exit 1; }
soname=$(patchelf --print-soname "$core_lib")
patchelf --replace-needed libtritonserver.so "$soname" "$OUT/backends/onnxruntime/libtriton_onnxruntime.so"
echo "patched NEEDED libtritonserver.so -> $soname"
# 8. CUDART=server: the server's own libcudart-<hash>.so.12.x (same version node libcudart.so.12)
if [ "$CUDART" = server ]; then
  cudart_lib=$(find "$PYTRITON_LIBS" -maxdepth 1 -name 'libcudart-*.so.12*' | head -1)
  [ -n "$cudart_lib" ] || { echo "error: no libcudart-*.so.12* in $PYTRITON_LIBS" >&2; exit 1; }
  cudart_soname=$(patchelf --print-soname "$cudart_lib")
  patchelf --replace-needed libcudart.so.12 "$cudart_soname" "$OUT/backends/onnxruntime/libtriton_onnxruntime.so"
  echo "patched NEEDED libcudart.so.12 -> $cudart_soname (the server's)"
fi
t1=$(date +%s)
ls -la "$OUT/backends/onnxruntime"
# (whole outputs in variables: grep -q on a pipe would SIGPIPE readelf and trip pipefail)
dyn=$(readelf -d "$OUT/backends/onnxruntime/libtriton_onnxruntime.so")
vers=$(readelf -V "$OUT/backends/onnxruntime/libtriton_onnxruntime.so")
grep -E 'NEEDED|RUNPATH|RPATH' <<<"$dyn"
if grep -q 'libcudart.so.13' <<<"$dyn"; then
  echo "error: the backend NEEDs libcudart.so.13; it must use the server's CUDA 12 runtime" >&2; exit 1
fi
grep -qE 'libcudart(-[0-9a-f]+)?\.so\.12' <<<"$dyn" \
  || { echo "error: the backend does not NEED a CUDA 12 libcudart" >&2; exit 1; }
grep -q "VERS_$ORT_VERSION" <<<"$vers" \
  || { echo "error: the backend does not require VERS_$ORT_VERSION (linked against another ORT?)" >&2; exit 1; }
echo "the backend requires ONNX Runtime's VERS_$ORT_VERSION"
echo "BUILD_SECONDS=$((t1 - t0))"
