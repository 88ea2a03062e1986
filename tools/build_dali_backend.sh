#!/usr/bin/env bash
# Build Triton's DALI backend (triton-inference-server/dali_backend) with TRITON_ENABLE_GPU=ON for
# the tritonserver 2.51.0 (r24.10) that PyPI's nvidia-pytriton 0.7.0 ships, against a DALI wheel
# from PyPI, on a machine without a GPU (CUDA pieces from PyPI wheels: cuda_toolkit_from_wheels.sh).
#
# Versions this was written and run with (2026-12-01):
#   dali_backend r26.02 = 375841c0903ff6232651063c3ce72246b585ad3d (its DALI_VERSION file: 1.53.0).
#     r24.10 pairs with DALI 1.42.0, whose cuda120 wheel PyPI no longer holds (only a stub that
#     downloads from NVIDIA's own index); the PyPI cuda120 wheels are 1.34, 1.35, 1.53 and 2.x, and
#     r26.02 is the newest branch whose DALI_VERSION is a 1.x (r26.03+ pair with DALI 2.x; not tried).
#     dali_backend pins backend API tag r21.05 on
#     purpose ("as-old-as-possible"); here it is built against the server's own r24.10 backend, core
#     and common (TRITONBACKEND API 1.19).
#   triton-inference-server/backend r24.10 = ac03a5d97403dec841ad46d0439e93db12c9268f,
#     core r24.10 = bfec7c61dc0939433f64f14e89b1973073eac8ba, common r24.10 = 578491fc3944f77d16a6a38e3d7691c485c47ba0
#   nvidia-dali-cuda120 1.53.0 (py3-none-manylinux_2_28_x86_64 wheel)
#   CUDA wheels (incl. nvidia-nvtx-cu12 12.6.77): see cuda_toolkit_from_wheels.sh; cmake 3.25.1, g++ 12.2.0, patchelf
# Build-time edits (in the extracted copy only): the backend repo's CUDA arch list is cut to 90; the
# dali_backend unit tests' Catch2 submodule (not in a git archive) is replaced by an empty INTERFACE
# target, since only the backend library is built.
# CUDART=server (default) re-points the library's NEEDED libcudart.so.12 at the server's own bundled
# libcudart-<hash>.so.12.6.77 (as build_onnxruntime_gpu_backend.sh does), so the process holds one CUDA 12
# runtime and no CUDA 12 wheel is needed at run time (DALI itself links its CUDA runtime statically);
# CUDART=wheel keeps libcudart.so.12 (then ship nvidia-cuda-runtime-cu12's).
# Result: $OUT/backends/dali/libtriton_dali.so (NEEDs libdali*.so: put DALI's nvidia/dali directory on
# LD_LIBRARY_PATH; its autoserialization runs `python3 -c ...`, so nvidia.dali must import there).
set -euo pipefail

DALIBE_GIT=${DALIBE_GIT:?git dir of triton-inference-server/dali_backend}
DALIBE_REF=${DALIBE_REF:-r26.02}
BACKEND_GIT=${BACKEND_GIT:?git dir of triton-inference-server/backend}
CORE_GIT=${CORE_GIT:?git dir of triton-inference-server/core}
COMMON_GIT=${COMMON_GIT:?git dir of triton-inference-server/common}
TRITON_REF=${TRITON_REF:-r24.10}
DALI_WHL=${DALI_WHL:?path of the nvidia_dali_cuda120-1.53.0 wheel}
PYTHON=${PYTHON:?a python3 for the DALI wheel}
DALI_PYDEPS=${DALI_PYDEPS:-}  # extra PYTHONPATH dir with DALI 1.53 python deps the PYTHON lacks (dm-tree)
PYTRITON_LIBS=${PYTRITON_LIBS:?site-packages/nvidia_pytriton.libs of nvidia-pytriton 0.7.0}
# CUDA_RT_WHL, CUDA_NVCC13_WHL, NVVM13_WHL, CRT13_WHL, CUDA_RT13_WHL, NVTX_WHL: see cuda_toolkit_from_wheels.sh
GTEST_SRC=${GTEST_SRC:-/usr/src/googletest}  # common declares its unit tests (not built) with GTest

WORK=${WORK:-$(mktemp -d)}
OUT=${OUT:-$WORK/out}
JOBS=${JOBS:-2}
CUDART=${CUDART:-server}   # server | wheel (see the header)
case "$CUDART" in server|wheel) ;; *) echo "error: CUDART=$CUDART is not server or wheel" >&2; exit 2;; esac
SRC=$WORK/src
CUDA=$WORK/cuda
DALI_SITE=$WORK/dali_site
BUILD=$WORK/build

for tool in cmake g++ make git patchelf unzip; do
  command -v "$tool" >/dev/null || { echo "error: $tool not found" >&2; exit 1; }
done
[ -f "$DALI_WHL" ] || { echo "error: wheel not found: $DALI_WHL" >&2; exit 1; }

t0=$(date +%s)
rm -rf "$SRC" "$DALI_SITE" "$BUILD"
mkdir -p "$SRC" "$DALI_SITE" "$BUILD"

# 1. sources
for pair in "dali_backend:$DALIBE_GIT:$DALIBE_REF" "backend:$BACKEND_GIT:$TRITON_REF" \
            "core:$CORE_GIT:$TRITON_REF" "common:$COMMON_GIT:$TRITON_REF"; do
  IFS=: read -r name gd ref <<< "$pair"
  mkdir -p "$SRC/$name"
  paths=()  # dali_backend: only the build inputs (the snapshot lacks some large example files)
  [ "$name" = dali_backend ] && paths=(CMakeLists.txt cmake src DALI_VERSION LICENSE.md)
  git --git-dir="$gd" archive "$ref" -- "${paths[@]}" | tar -x -C "$SRC/$name"
  echo "$name $ref $(git --git-dir="$gd" rev-parse "$ref")" >> "$SRC/COMMITS"
done
cat "$SRC/COMMITS"
mkdir -p "$SRC/dali_backend/extern/Catch2"
printf 'add_library(Catch2 INTERFACE)\nadd_library(Catch2::Catch2 ALIAS Catch2)\n' \
  > "$SRC/dali_backend/extern/Catch2/CMakeLists.txt"

# 2. CUDA toolkit from wheels; arch list of the backend repo cut to 90
bash "$(dirname "$0")/cuda_toolkit_from_wheels.sh" "$CUDA"
sed -i 's/CUDA_ARCHITECTURES "53;60-real;62-real;70-real;72-real;75-real;80-real;86-real;89-real;90-real"/CUDA_ARCHITECTURES "90-real"/' \
  "$SRC/backend/CMakeLists.txt"
grep -q 'CUDA_ARCHITECTURES "90-real"' "$SRC/backend/CMakeLists.txt" || { echo "error: could not set the CUDA arch list in backend/CMakeLists.txt" >&2; exit 1; }

# 3. DALI: the wheel unpacked; dali_backend's cmake asks `python3 -c "import nvidia.dali ..."` for the
#    include and library dirs, so python3 on PATH is $PYTHON with the unpacked wheel first on PYTHONPATH
unzip -q -o "$DALI_WHL" -d "$DALI_SITE"
[ -f "$DALI_SITE/nvidia/__init__.py" ] || touch "$DALI_SITE/nvidia/__init__.py"
mkdir -p "$WORK/bin"
ln -sf "$(command -v "$PYTHON")" "$WORK/bin/python3"
export PATH="$WORK/bin:$PATH" PYTHONPATH="$DALI_SITE${DALI_PYDEPS:+:$DALI_PYDEPS}"
python3 -c "import nvidia.dali as d; print('DALI', d.__version__, d.__file__)"

# 4. configure and build the backend library only
cmake -S "$SRC/dali_backend" -B "$BUILD" \
  -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_CXX_FLAGS="-ffile-prefix-map=$SRC=src -ffile-prefix-map=$BUILD=build -ffile-prefix-map=$CUDA=cuda" \
  -DTRITON_ENABLE_GPU=ON \
  -DTRITON_DALI_SKIP_DOWNLOAD=ON \
  -DCUDAToolkit_ROOT="$CUDA" \
  -DCMAKE_CUDA_COMPILER="$CUDA/bin/nvcc" \
  -DCMAKE_CUDA_RUNTIME_LIBRARY=Shared \
  -DCMAKE_CUDA_ARCHITECTURES=90-real \
  -DTRITON_BACKEND_API_VERSION="$TRITON_REF" \
  -DTRITON_BACKEND_REPO_TAG="$TRITON_REF" -DTRITON_CORE_REPO_TAG="$TRITON_REF" -DTRITON_COMMON_REPO_TAG="$TRITON_REF" \
  -DFETCHCONTENT_FULLY_DISCONNECTED=ON \
  -DFETCHCONTENT_SOURCE_DIR_REPO-COMMON="$SRC/common" \
  -DFETCHCONTENT_SOURCE_DIR_REPO-CORE="$SRC/core" \
  -DFETCHCONTENT_SOURCE_DIR_REPO-BACKEND="$SRC/backend" \
  -DFETCHCONTENT_SOURCE_DIR_GOOGLETEST="$GTEST_SRC"
make -C "$BUILD" -j"$JOBS" triton-dali-backend

# 5. deliver; RUNPATH (the build machine's DALI dir) removed, NEEDED libtritonserver.so re-pointed
#    at the PyPI server's renamed core library
mkdir -p "$OUT/backends/dali"
so=$(find "$BUILD" -name libtriton_dali.so | head -1)
cp "$so" "$OUT/backends/dali/libtriton_dali.so"
patchelf --remove-rpath "$OUT/backends/dali/libtriton_dali.so"
core_lib=$(find "$PYTRITON_LIBS" -maxdepth 1 -name 'libtritonserver-*.so' | head -1)
[ -n "$core_lib" ] || { echo "error: no libtritonserver-*.so in $PYTRITON_LIBS" >&2; exit 1; }
soname=$(patchelf --print-soname "$core_lib")
if readelf -d "$OUT/backends/dali/libtriton_dali.so" | grep -q '\[libtritonserver.so\]'; then
  patchelf --replace-needed libtritonserver.so "$soname" "$OUT/backends/dali/libtriton_dali.so"
  echo "patched NEEDED libtritonserver.so -> $soname"
fi
if [ "$CUDART" = server ]; then
  cudart_lib=$(find "$PYTRITON_LIBS" -maxdepth 1 -name 'libcudart-*.so.12*' | head -1)
  [ -n "$cudart_lib" ] || { echo "error: no libcudart-*.so.12* in $PYTRITON_LIBS" >&2; exit 1; }
  cudart_soname=$(patchelf --print-soname "$cudart_lib")
  if readelf -d "$OUT/backends/dali/libtriton_dali.so" | grep -q '\[libcudart.so.12\]'; then
    patchelf --replace-needed libcudart.so.12 "$cudart_soname" "$OUT/backends/dali/libtriton_dali.so"
    echo "patched NEEDED libcudart.so.12 -> $cudart_soname (the server's)"
  fi
fi
t1=$(date +%s)
ls -la "$OUT/backends/dali"
dyn=$(readelf -d "$OUT/backends/dali/libtriton_dali.so")
grep -E 'NEEDED|RUNPATH|RPATH' <<<"$dyn"
if grep -q 'libcudart.so.13' <<<"$dyn"; then
  echo "error: the backend NEEDs libcudart.so.13; it must link the CUDA 12 runtime" >&2; exit 1
fi
grep -qE 'libcudart(-[0-9a-f]+)?\.so\.12' <<<"$dyn" \
  || { echo "error: the backend does not NEED a CUDA 12 libcudart" >&2; exit 1; }
echo "BUILD_SECONDS=$((t1 - t0))"
