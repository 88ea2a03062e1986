#!/usr/bin/env bash
# Pack what tools/h200_serving_run.sh needs on the lent H200 (Python 3.12, no internet, no CUDA 12):
# a zstd tar stream of site/ (wheels unpacked for cp312), backends/, models/, repo/, images/, split
# into parts of at most PART_MB for the device tool's 64 MiB carry limit, plus the zstandard wheel.
# Usage: make_h200_payload.sh DEST   (env: WHEELS, BACKENDS, MODELS, IMAGES, REPO; see below)
set -euo pipefail
DEST=${1:?usage: make_h200_payload.sh DEST}
WHEELS=${WHEELS:?dir with the cp312 wheels (pytriton, tritonclient, DALI, CUDA 12 libs, ... see README)}
BACKENDS=${BACKENDS:?dir with onnxruntime/ and dali/ backend builds}
MODELS=${MODELS:?model repository to serve}
IMAGES=${IMAGES:?dir of real images}
REPO=${REPO:?project checkout (scripts/ and export/ are packed)}
ZSTD_WHL=${ZSTD_WHL:?the zstandard cp312 wheel (to read the stream there)}
PART_MB=${PART_MB:-60}
PY=${PY:-python3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
p=$work/p
mkdir -p "$p/site" "$p/repo" "$DEST"

# site/: every wheel but zstandard, unpacked for CPython 3.12 manylinux x86-64
mapfile -t wheels < <(find -L "$WHEELS" -maxdepth 1 -name '*.whl' ! -name 'zstandard-*' | sort)
"$PY" -m pip install -q --no-deps --no-index --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_35_x86_64 --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
  --platform manylinux_2_5_x86_64 --target "$p/site" "${wheels[@]}"
# not needed there: other Pythons' extension modules, headers, cuBLAS-XT/FFTW wrappers, codecs other
# than JPEG, Python-backend stubs of other Pythons
s=$p/site
rm -f "$s"/nvidia/nvimgcodec/nvimgcodec_impl.cpython-{39,310,311,313,313t,314,314t}-x86_64-linux-gnu.so
rm -f "$s"/nvidia/nvimgcodec/extensions/lib{nvjpeg2k,nvtiff,tiff}_ext.so*
rm -f "$s"/nvidia/dali/{backend_impl,python_function_plugin}.cpython-{39,310,311,313}-x86_64-linux-gnu.so
rm -rf "$s"/nvidia/dali/include "$s"/nvidia/cublas/include "$s"/nvidia/cublas/lib/libnvblas* \
  "$s"/nvidia/cufft/include "$s"/nvidia/cufft/lib/libcufftw* "$s"/nvidia/curand/include "$s"/nvidia/cuda_runtime/include
find "$s/pytriton/tritonserver/python_backend_stubs" -mindepth 1 -maxdepth 1 ! -name 3.12 -exec rm -rf {} +

cp -r "$BACKENDS" "$p/backends"
cp -rL "$MODELS" "$p/models"
rm -f "$p/models/yolo11s_untrained_trt_end2end/1/model.onnx"   # a copy of the end2end graph, made there
cp -rL "$IMAGES" "$p/images"
cp -r "$REPO/scripts" "$REPO/export" "$p/repo/"
find "$p" -name __pycache__ -prune -exec rm -rf {} +
du -sh "$p"/*

rm -f "$DEST"/payload.tar.zst.part*
tar -C "$p" -cf - . | zstd -q -T0 -12 --long=27 | split -b "${PART_MB}M" -d -a 2 - "$DEST/payload.tar.zst.part"
cp "$ZSTD_WHL" "$DEST/"
ls -la "$DEST"
