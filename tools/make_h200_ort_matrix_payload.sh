#!/usr/bin/env bash
# Pack onnxruntime-gpu 1.19.2 (CUDA 12 build, what Triton r24.10 ships) and 1.31.1 (CUDA 13), the CUDA 12
# libraries 1.19.2 loads, and several cuDNN 9 builds for the lent H200 (Python 3.12, no internet), so that
# tools/h200_ort_matrix_run.sh can run scripts/bench_ort_shape_switch.py for every ONNX Runtime x cuDNN
# pair (issue 19, "the cause, measured"). The H200's torch venv already holds CUDA 13 and cuDNN 9.19
# (<torch site-packages>/nvidia/{cu13/lib,cudnn/lib}): those are not packed.
#
# Components, one tar.xz stream each, in this order (the upload order: the first pairs can run while the
# rest is still being copied):
#   ort-1.31.1/onnxruntime    onnxruntime-gpu 1.31.1 (without the TensorRT provider and the transformers,
#   ort-1.19.2/onnxruntime    tools, quantization, datasets folders) + its dist-info; PYTHONPATH=ort-X
#   cu12/lib                  what 1.19.2's CUDA provider NEEDs (libcudart.so.12, libcublas(Lt).so.12,
#                             libcurand.so.10, libcufft.so.11) + libnvrtc.so.12 and its builtins, which
#                             cuDNN's runtime-compiled engines dlopen; CUDA 12.6 builds
#   cudnn-cu13-V/lib,         libcudnn*.so.9 of nvidia-cudnn-cu13 / -cu12 V without libcudnn_adv (RNN and
#   cudnn-cu12-V/lib          attention: no ONNX Runtime library NEEDs it and the shim dlopens it only for
#                             those calls; a graph of convolutions never asks for it)
# The streams are concatenated (a valid .xz file: `cat parts | xz -dc | tar -xi` unpacks everything) and
# cut into parts of at most PART_MAX bytes, DEST/ortm.tar.xz.partNN; DEST/ortm.index.tsv gives each
# component's offset, size and sha256 in that byte stream, so the H200 unpacks each one (in parallel) as
# soon as its bytes have arrived. DEST/ortm.MANIFEST.txt: wheels and sha256 of every library.
# Nothing is stripped: every library is the wheel's own file.
# Made 2026-12-03 with the defaults (xz -6 -T2, about 25 min on the shared 2 cores): 32 parts, 1.92 GB
# (ort-1.31.1 204 MB, cudnn-cu13-9.12 207 MB, ort-1.19.2 84 MB, cu12 476 MB, cudnn-cu12 9.19 318 MB,
# 9.1 326 MB, 9.12 301 MB); tools/h200_ort_matrix_run.sh unpack + check verified them on the CPU machine.
#
# Usage: make_h200_ort_matrix_payload.sh DEST
#   env: WHEELS      where the wheels are downloaded (default /work/main/.h200/ortm-wheels)
#        CUDNN_CU13  nvidia-cudnn-cu13 versions (default 9.12.0.46: the earliest on PyPI)
#        CUDNN_CU12  nvidia-cudnn-cu12 versions (default 9.19.0.56 9.1.0.70 9.12.0.46)
#        XZ_LEVEL (default -6), PART_MAX (bytes, default 58 MiB), PY (default python3)
set -euo pipefail

usage() { echo "usage: make_h200_ort_matrix_payload.sh DEST" >&2; }

ORT_VERSIONS=(1.31.1 1.19.2)
CUDA12=(nvidia-cuda-runtime-cu12==12.6.77 nvidia-cublas-cu12==12.6.4.1 nvidia-curand-cu12==10.3.7.77
        nvidia-cufft-cu12==11.3.0.4 nvidia-cuda-nvrtc-cu12==12.6.85)
CUDA12_LIBS=(libcudart.so.12 libcublas.so.12 libcublasLt.so.12 libcurand.so.10 libcufft.so.11 libnvrtc.so.12
             'libnvrtc-builtins.so.12.*')

fetch() {  # fetch NAME==VERSION: the wheel's path (downloaded into WHEELS when missing)
  local name=${1%%==*} version=${1##*==} found
  found=$(find "${WHEELS}" -maxdepth 1 -name "${name//-/_}-${version}-*.whl" | head -1)
  if [[ -z "${found}" ]]; then
    "${PY}" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
      --platform manylinux2014_x86_64 --platform manylinux_2_12_x86_64 --platform manylinux2010_x86_64 \
      -d "${WHEELS}" "$1" >&2 || { echo "error: pip download $1 failed" >&2; return 1; }
    found=$(find "${WHEELS}" -maxdepth 1 -name "${name//-/_}-${version}-*.whl" | head -1)
  fi
  [[ -n "${found}" ]] || { echo "error: no wheel for $1 in ${WHEELS}" >&2; return 1; }
  echo "${found}" >> "${work}/wheels.txt"
  echo "${found}"
}

main() {
  [[ $# -eq 1 ]] || { usage; exit 2; }
  DEST=$1
  WHEELS=${WHEELS:-/work/main/.h200/ortm-wheels}
  read -r -a cu13 <<< "${CUDNN_CU13:-9.12.0.46}"
  read -r -a cu12 <<< "${CUDNN_CU12:-9.19.0.56 9.1.0.70 9.12.0.46}"
  XZ_LEVEL=${XZ_LEVEL:--6}
  PART_MAX=${PART_MAX:-$((58 * 1024 * 1024))}
  PY=${PY:-python3}
  mkdir -p "${DEST}" "${WHEELS}"
  work=$(mktemp -d)
  trap 'rm -rf "${work}"' EXIT
  local comps=() v w lib c

  cudnn_component() {  # CUDA_MAJOR VERSION: cuDNN's libraries from its wheel (no adv: ORT does not NEED it)
    local w dir="${work}/cudnn-$1-$2"
    w=$(fetch "nvidia-cudnn-$1==$2")
    mkdir -p "${dir}/lib"
    unzip -q -j "${w}" 'nvidia/cudnn/lib/libcudnn*.so.9' -x '*libcudnn_adv*' -d "${dir}/lib"
    comps+=("cudnn-$1-$2")
  }
  for v in "${ORT_VERSIONS[@]}"; do
    w=$(fetch "onnxruntime-gpu==${v}")
    "${PY}" -m pip install -q --no-deps --no-index --no-compile --only-binary=:all: --python-version 3.12 \
      --implementation cp --platform manylinux_2_28_x86_64 --target "${work}/ort-${v}" "${w}"
    rm -rf "${work}/ort-${v}"/onnxruntime/{transformers,tools,quantization,datasets} "${work}/ort-${v}/bin" \
      "${work}/ort-${v}/onnxruntime/capi/libonnxruntime_providers_tensorrt.so"
    comps+=("ort-${v}")
    if [[ "${v}" == 1.31.1 ]]; then  # the CUDA 13 pairs first: their cuDNN 9.19 is already on the H200
      for c in "${cu13[@]}"; do cudnn_component cu13 "${c}"; done
    fi
  done
  mkdir -p "${work}/cu12/lib"
  for w in "${CUDA12[@]}"; do
    w=$(fetch "${w}")
    for lib in "${CUDA12_LIBS[@]}"; do
      unzip -q -j -o "${w}" "nvidia/*/lib/${lib}" -d "${work}/cu12/lib" 2>/dev/null || true
    done
  done
  for lib in "${CUDA12_LIBS[@]}"; do
    compgen -G "${work}/cu12/lib/${lib}" > /dev/null || { echo "error: ${lib} not in the CUDA 12 wheels" >&2; exit 1; }
  done
  comps+=(cu12)
  for v in "${cu12[@]}"; do cudnn_component cu12 "${v}"; done
  find "${work}" -name __pycache__ -prune -exec rm -rf {} +

  { echo "made $(date -u +%FT%TZ) by make_h200_ort_matrix_payload.sh"
    sed 's|.*/|wheel |' "${work}/wheels.txt" | sort -u
    (cd "${work}" && find "${comps[@]}" -name '*.so*' -type f -exec sha256sum {} + | sort -k2)
  } > "${DEST}/ortm.MANIFEST.txt"
  rm -f "${DEST}"/ortm.tar.xz.part* "${DEST}/ortm.index.tsv"
  local offset=0 size
  : > "${work}/stream"
  for c in "${comps[@]}"; do
    tar -C "${work}" --owner=0 --group=0 -cf - "${c}" | xz -T2 "${XZ_LEVEL}" > "${work}/${c}.tar.xz"
    size=$(stat -c %s "${work}/${c}.tar.xz")
    printf '%s\t%s\t%s\t%s\t%s\n' "${c}" "${offset}" "${size}" "$(sha256sum < "${work}/${c}.tar.xz" | cut -d' ' -f1)" \
      "$(du -sb "${work}/${c}" | cut -f1)" >> "${DEST}/ortm.index.tsv"
    cat "${work}/${c}.tar.xz" >> "${work}/stream"
    rm "${work}/${c}.tar.xz" && rm -rf "${work:?}/${c}"
    offset=$((offset + size))
    echo "packed ${c}: ${size} bytes" >&2
  done
  split -b "${PART_MAX}" -d -a 2 "${work}/stream" "${DEST}/ortm.tar.xz.part"
  column -t "${DEST}/ortm.index.tsv"
  echo "parts: $(find "${DEST}" -name 'ortm.tar.xz.part*' | wc -l), total bytes: ${offset}"
}

main "$@"
