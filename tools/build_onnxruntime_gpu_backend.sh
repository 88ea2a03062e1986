#!/usr/bin/env bash
# Build Triton's ONNX Runtime backend with TRITON_ENABLE_GPU=ON for the tritonserver 2.51.0 (r24.10)
# that PyPI's nvidia-pytriton 0.7.0 ships, against the prebuilt ONNX Runtime of a PyPI
# onnxruntime-gpu wheel (CUDA 12). CUDA headers, libcudart and a CUDA compiler come from PyPI wheels, so this
# runs on a machine without a GPU or a CUDA install.
#
# Versions this was written and run with (2026-12-01):
#   triton-inference-server/onnxruntime_backend r24.10 = 17e5cb23a6fbeb37282eb7079dd0b580cd79530d
#   triton-inference-server/backend r24.10 = ac03a5d97403dec841ad46d0439e93db12c9268f,
#     core r24.10 = bfec7c61dc0939433f64f14e89b1973073eac8ba, common r24.10 = 578491fc3944f77d16a6a38e3d7691c485c47ba0
#   ONNX Runtime C API headers: yalue/onnxruntime_go 9d326ee6516e ("upgrade to onnxruntime v1.24.1",
#     ORT_API_VERSION 24), verbatim upstream onnxruntime_c_api.h / onnxruntime_ep_c_api.h
#   onnxruntime-gpu 1.24.1 (cp312 manylinux_2_28 wheel; its CUDA provider NEEDs libcudart.so.12,
#     libcublas(Lt).so.12, libcufft.so.11, libcurand.so.10, libcudnn.so.9)
#   nvidia-cuda-runtime-cu12 12.6.77 (headers + libcudart.so.12; the server bundles libcudart 12.6.77 too)
#   nvidia-cuda-nvcc 13.0.88, nvidia-nvvm 13.0.88, nvidia-cuda-crt 13.0.88 (the compiler for kernel.cu, step 2),
#   nvidia-cuda-runtime 13.0.96 (only its static libs, for CMake's compiler check)
#   cmake 3.25.1, g++ 12.2.0 (Debian 12), patchelf, rapidjson-dev, googletest
# Result: $OUT/backends/onnxruntime/{libtriton_onnxruntime.so, libonnxruntime.so.1,
#   libonnxruntime_providers_shared.so, libonnxruntime_providers_cuda.so}
# At run time the CUDA provider needs the CUDA 12 cuBLAS/cuFFT/cuRAND/cudart and a cuDNN 9 on
# LD_LIBRARY_PATH (the backend's RUNPATH is $ORIGIN, ONNX Runtime loads its providers from its own dir).
set -euo pipefail

ORTBE_GIT=${ORTBE_GIT:?git dir of triton-inference-server/onnxruntime_backend}
BACKEND_GIT=${BACKEND_GIT:?git dir of triton-inference-server/backend}
CORE_GIT=${CORE_GIT:?git dir of triton-inference-server/core}
COMMON_GIT=${COMMON_GIT:?git dir of triton-inference-server/common}
TRITON_REF=${TRITON_REF:-r24.10}
ORT_HDR_GIT=${ORT_HDR_GIT:?git dir holding onnxruntime_c_api.h at ORT_HDR_REF (yalue/onnxruntime_go)}
ORT_HDR_REF=${ORT_HDR_REF:-9d326ee6516eec4cbf7dbf5d442e16e67e77d929}
ORT_GPU_WHL=${ORT_GPU_WHL:?path of the onnxruntime_gpu-1.24.1 wheel}
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
for h in onnxruntime_c_api.h onnxruntime_ep_c_api.h; do
  git --git-dir="$ORT_HDR_GIT" show "$ORT_HDR_REF:$h" > "$ORT/include/$h"
done
grep -m1 '#define ORT_API_VERSION' "$ORT/include/onnxruntime_c_api.h"
unzip -q -o -j "$ORT_GPU_WHL" 'onnxruntime/capi/libonnxruntime.so.1.*' \
  'onnxruntime/capi/libonnxruntime_providers_shared.so' 'onnxruntime/capi/libonnxruntime_providers_cuda.so' -d "$ORT/lib"
ort_so=$(basename "$(ls "$ORT"/lib/libonnxruntime.so.1.*)")
ln -sf "$ort_so" "$ORT/lib/libonnxruntime.so.1"
ln -sf "$ort_so" "$ORT/lib/libonnxruntime.so"

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
t1=$(date +%s)
ls -la "$OUT/backends/onnxruntime"
readelf -d "$OUT/backends/onnxruntime/libtriton_onnxruntime.so" | grep -E 'NEEDED|RUNPATH|RPATH'
if readelf -d "$OUT/backends/onnxruntime/libtriton_onnxruntime.so" | grep -q 'libcudart.so.13'; then
  echo "error: the backend NEEDs libcudart.so.13; it must link the CUDA 12 runtime" >&2; exit 1
fi
readelf -d "$OUT/backends/onnxruntime/libtriton_onnxruntime.so" | grep -q 'libcudart.so.12' \
  || { echo "error: the backend does not NEED libcudart.so.12" >&2; exit 1; }
echo "BUILD_SECONDS=$((t1 - t0))"
