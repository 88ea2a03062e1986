#!/usr/bin/env bash
# Assemble a CUDA "toolkit" directory from PyPI wheels, for building Triton backends with
# TRITON_ENABLE_GPU=ON on a machine without a CUDA install (used by build_onnxruntime_gpu_backend.sh
# and build_dali_backend.sh). Usage: cuda_toolkit_from_wheels.sh DEST
#
# Triton's backend library (triton-inference-server/backend) compiles one CUDA file, src/kernel.cu
# (the batch-input gather kernel), and no PyPI CUDA 12 wheel holds an nvcc (nvidia-cuda-nvcc-cu12
# 12.4-12.9 hold only ptxas). So DEST gets:
#   bin/, nvvm/           nvcc, cudafe++, fatbinary, nvlink, ptxas, cicc of CUDA 13.0.88
#                         (nvidia-cuda-nvcc 13.0.88, nvidia-nvvm 13.0.88)
#   include/crt, include/fatbinary_section.h   CUDA 13.0.88 (nvidia-cuda-crt; must match cudafe++)
#   include/              the CUDA 12.6.77 runtime headers (nvidia-cuda-runtime-cu12 12.6.77)
#   include/nvtx3/        NVTX 3 headers (nvidia-nvtx-cu12 12.6.77; dali_backend includes them)
#   lib64/libcudart.so.12 (+ libcudart.so) CUDA 12.6.77: what everything links against; the
#                         server bundles the same libcudart 12.6.77
#   lib64/libcudart_static.a, libcudadevrt.a   CUDA 13.0.96 (nvidia-cuda-runtime 13.0.96), only for
#                         CMake's CUDA compiler check; the backends use CMAKE_CUDA_RUNTIME_LIBRARY=Shared
# kernel.cu built this way calls only __cuda* registration/launch entry points that libcudart.so.12
# exports; its code is sm_90 SASS (CUDA 13 dropped sm_53..72; the callers cut the arch list to 90).
set -euo pipefail
DEST=${1:?usage: cuda_toolkit_from_wheels.sh DEST}
CUDA_RT_WHL=${CUDA_RT_WHL:?path of the nvidia_cuda_runtime_cu12 12.6.77 wheel}
CUDA_NVCC13_WHL=${CUDA_NVCC13_WHL:?path of the nvidia_cuda_nvcc 13.0.88 wheel}
NVVM13_WHL=${NVVM13_WHL:?path of the nvidia_nvvm 13.0.88 wheel}
CRT13_WHL=${CRT13_WHL:?path of the nvidia_cuda_crt 13.0.88 wheel}
CUDA_RT13_WHL=${CUDA_RT13_WHL:?path of the nvidia_cuda_runtime 13.0.96 wheel}
NVTX_WHL=${NVTX_WHL:?path of the nvidia_nvtx_cu12 12.6.77 wheel}
for f in "$CUDA_RT_WHL" "$CUDA_NVCC13_WHL" "$NVVM13_WHL" "$CRT13_WHL" "$CUDA_RT13_WHL" "$NVTX_WHL"; do
  [ -f "$f" ] || { echo "error: wheel not found: $f" >&2; exit 1; }
done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
rm -rf "$DEST"
mkdir -p "$DEST/include" "$DEST/lib64" "$DEST/nvvm"
for w in "$CUDA_NVCC13_WHL" "$NVVM13_WHL" "$CRT13_WHL" "$CUDA_RT_WHL" "$NVTX_WHL"; do
  unzip -q -o "$w" -d "$tmp"
done
cp -r "$tmp/nvidia/cu13/bin" "$DEST/"
cp -r "$tmp/nvidia/cu13/nvvm/." "$DEST/nvvm/"
cp -r "$tmp/nvidia/cuda_runtime/include/." "$DEST/include/"
cp -r "$tmp/nvidia/cu13/include/crt" "$tmp/nvidia/cu13/include/fatbinary_section.h" "$DEST/include/"
cp -r "$tmp/nvidia/nvtx/include/nvtx3" "$DEST/include/"
cp "$tmp/nvidia/cuda_runtime/lib/libcudart.so.12" "$DEST/lib64/"
ln -sf libcudart.so.12 "$DEST/lib64/libcudart.so"
unzip -q -o -j "$CUDA_RT13_WHL" 'nvidia/cu13/lib/libcudart_static.a' 'nvidia/cu13/lib/libcudadevrt.a' -d "$DEST/lib64"
chmod +x "$DEST"/bin/* "$DEST"/nvvm/bin/*
"$DEST/bin/nvcc" --version | tail -1
grep -m1 '#define CUDART_VERSION' "$DEST/include/cuda_runtime_api.h"
