#!/usr/bin/env bash
# Pack Track D for the lent H200 (Python 3.12, no internet, no TensorRT), to go beside the ONNX Runtime
# payload of make_h200_ort131_payload.sh (the real tritonserver 2.51.0, Triton's ONNX Runtime backend
# against onnxruntime-gpu 1.31.1, tritonclient; unpacked by h200_unpack.sh into P):
#   * DALI 1.53.0 (nvidia-dali-cuda120) + nvImageCodec 0.7 + nvJPEG (cu12) + the Python packages
#     nvidia.dali imports that the H200's image lacks (dm-tree, makefun, nvtx, astunparse, gast), for
#     the autoserialization of 1/dali.py that the DALI backend runs at load time (`python3 -c ...`,
#     the python3 on PATH, on the GPU); DALI links its CUDA runtime statically and nvJPEG needs none
#   * Triton's DALI backend built by build_dali_backend.sh (dali_backend r26.02 against DALI 1.53.0,
#     CUDART=server: it NEEDs the server's own libcudart-<hash>.so.12 and libtritonserver-<hash>.so)
#   * a model repository that `make` wrote (only the model folders that have a config.pbtxt) and images
# Output in DEST: dali.tar.xz.partNN, one tar.xz stream cut into the fewest equal pieces of at most
# PART_MAX bytes (default 58 MiB: a part plus the project's tree stays under the device tool's 64 MiB
# carry), read there by Python's own tarfile/lzma (tools/h200_trackd_run.sh unpack).
#
# Usage: make_h200_dali_payload.sh DEST
#   env: DALI_WHEELS  dir of cp312 wheels: nvidia_dali_cuda120-1.53.0, nvidia_nvimgcodec_cu12-0.7.*,
#                     nvidia_nvjpeg_cu12-*, dm_tree (cp312), makefun, nvtx (cp312), astunparse, gast
#                     (default /work/main/.h200/dali/wheels)
#        DALI_BACKEND the build's backends/dali            (default /work/main/.h200/dali/backends/dali)
#        MODELS       the model repository make wrote       (default /work/main/.h200/trackd/repo)
#        IMAGES       dir of real images for the benchmark  (default /work/main/.h200/bundle/images)
#        XZ_LEVEL (default -9), PART_MAX (bytes, default 58 MiB), DRY_RUN=1 (pack, list, no parts written)
#
# Layout once unpacked under P (/root/p there, beside the ONNX Runtime payload):
#   dali-site/nvidia/dali, nvimgcodec (libnvimgcodec + the JPEG/BMP/PNM/OpenCV extensions), nvjpeg/lib
#   dali-site/nvidia/__init__.py   pkgutil.extend_path: `nvidia` stays one package with the image's own
#                                  nvidia/* (cuDNN, CUDA 13 wheels of its PyTorch)
#   dali-site/tree, makefun, nvtx, astunparse, gast
#   backends/dali/libtriton_dali.so   beside the ONNX Runtime payload's backends/onnxruntime
#   trackd/repo/<model>/...           the repository; trackd/images/*.jpg
#   MANIFEST-dali.txt                 wheels, sha256 of the libraries and model files
set -euo pipefail
usage() { echo "usage: make_h200_dali_payload.sh DEST   (env: DALI_WHEELS DALI_BACKEND MODELS IMAGES XZ_LEVEL PART_MAX DRY_RUN)" >&2; }

main() {
  local dest=${1:-}
  [ -n "$dest" ] || { usage; exit 2; }
  local h=/work/main/.h200
  local wheels=${DALI_WHEELS:-$h/dali/wheels} backend=${DALI_BACKEND:-$h/dali/backends/dali}
  local models=${MODELS:-$h/trackd/repo} images=${IMAGES:-$h/bundle/images}
  local xz_level=${XZ_LEVEL:--9} part_max=${PART_MAX:-$((58 * 1024 * 1024))} py=${PY:-python3}
  local f
  for f in "$backend/libtriton_dali.so" "$models" "$images"; do
    [ -e "$f" ] || { echo "error: not found: $f" >&2; exit 1; }
  done
  local -a whl=()
  local pattern
  for pattern in 'nvidia_dali_cuda120-1.53.0-*.whl' 'nvidia_nvimgcodec_cu12-0.7.*.whl' 'nvidia_nvjpeg_cu12-*.whl' \
                 'dm_tree-*-cp312-*.whl' 'makefun-*.whl' 'nvtx-*-cp312-*.whl' 'astunparse-*.whl' 'gast-*.whl'; do
    mapfile -t found < <(find -L "$wheels" -maxdepth 1 -name "$pattern" | sort)
    [ "${#found[@]}" = 1 ] || { echo "error: expected one $pattern in $wheels, found ${#found[@]}" >&2; exit 1; }
    whl+=("${found[0]}")
  done

  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  local p=$work/p s=$work/p/dali-site
  mkdir -p "$s" "$p/backends/dali" "$p/trackd"

  # 1. DALI and its Python packages, for CPython 3.12 x86-64, trimmed to what the server and the
  #    autoserialization load: no other Pythons' modules, headers, type stubs, nvImageCodec's Python
  #    module or the extensions whose codec libraries (nvJPEG2000, nvTIFF, libtiff) are not packed
  "$py" -m pip install -q --no-deps --no-index --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --target "$s" "${whl[@]}"
  rm -rf "${s:?}/bin" "$s"/nvidia/dali/include "$s"/nvidia/dali/test "$s"/nvidia/nvimgcodec/include
  find "$s/nvidia/dali" -maxdepth 1 \( -name 'backend_impl.cpython-*.so' -o -name 'python_function_plugin.cpython-*.so' \) \
    ! -name '*cpython-312-*' -delete
  find "$s/nvidia" -name '*.pyi' -delete
  rm -f "$s"/nvidia/nvimgcodec/nvimgcodec_impl.cpython-*.so
  rm -f "$s"/nvidia/nvimgcodec/extensions/lib{nvjpeg2k,nvtiff,tiff}_ext.so*
  for f in "$s/nvidia/dali/backend_impl.cpython-312-x86_64-linux-gnu.so" "$s/nvidia/dali/libdali_operators.so" \
           "$s/nvidia/nvimgcodec/libnvimgcodec.so.0" "$s/nvidia/nvjpeg/lib/libnvjpeg.so.12" \
           "$s/nvidia/nvimgcodec/extensions/libnvjpeg_ext.so.0.7.0"; do
    [ -f "$f" ] || { echo "error: $f missing after the install" >&2; exit 1; }
  done
  cat > "$s/nvidia/__init__.py" <<'EOF'
# one `nvidia` package across sys.path: this folder (DALI, nvImageCodec, nvJPEG) and the image's own
__path__ = __import__("pkgutil").extend_path(__path__, __name__)
EOF

  # 2. the backend: the server's renamed libraries, never a second CUDA runtime
  cp "$backend/libtriton_dali.so" "$p/backends/dali/"
  local dyn
  dyn=$(readelf -d "$p/backends/dali/libtriton_dali.so")
  grep -qE 'NEEDED.*\[libcudart-[0-9a-f]+\.so\.12' <<<"$dyn" \
    || { echo "error: libtriton_dali.so does not NEED the server's libcudart-<hash>.so.12 (build with CUDART=server)" >&2; exit 1; }
  grep -qE 'NEEDED.*\[libtritonserver-[0-9a-f]+\.so\]' <<<"$dyn" \
    || { echo "error: libtriton_dali.so does not NEED the server's libtritonserver-<hash>.so" >&2; exit 1; }

  # 3. the repository: the model folders with a config.pbtxt (a folder without one, e.g. the Track A graph
  #    make built on the way to the end2end one, would be auto-configured and loaded by the server)
  mkdir -p "$p/trackd/repo" "$p/trackd/images"
  local d
  for d in "$models"/*/; do
    [ -f "$d/config.pbtxt" ] && cp -rL "$d" "$p/trackd/repo/"
  done
  compgen -G "$p/trackd/repo/*/config.pbtxt" > /dev/null \
    || { echo "error: no model folder with a config.pbtxt in $models" >&2; exit 1; }
  cp -L "$images"/*.jpg "$p/trackd/images/"
  find "$p" -name __pycache__ -prune -exec rm -rf {} +

  # 4. manifest, pack, split
  { echo "made $(date -u +%FT%TZ) by make_h200_dali_payload.sh"
    for f in "${whl[@]}"; do echo "wheel $(basename "$f")"; done
    echo "backend $(sha256sum "$backend/libtriton_dali.so" | cut -d' ' -f1)"
    (cd "$p" && find trackd backends -type f -exec sha256sum {} + | sort -k2)
  } > "$p/MANIFEST-dali.txt"
  du -sh "$s"/nvidia/* "$p/backends" "$p/trackd"/* | sort -h
  ls "$p/trackd/repo"
  if [ "${DRY_RUN:-0}" = 1 ]; then
    echo "DRY_RUN=1: $(du -sb "$p" | cut -f1) bytes unpacked; no parts written"
    return 0
  fi
  mkdir -p "$dest"
  tar -C "$p" --owner=0 --group=0 -cf - . | xz -T2 "$xz_level" > "$work/dali.tar.xz"
  local size n
  size=$(stat -c %s "$work/dali.tar.xz")
  n=$(( (size + part_max - 1) / part_max ))
  rm -f "$dest"/dali.tar.xz.part*
  split -n "$n" -d -a 2 "$work/dali.tar.xz" "$dest/dali.tar.xz.part"
  ls -l "$dest"/dali.tar.xz.part*
  echo "parts: $n, total bytes: $size"
}

main "$@"
