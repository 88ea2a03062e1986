#!/usr/bin/env bash
# Download the seed's pretrained checkpoints (yolo11n/s/m.pt, ultralytics assets v8.3.0) into a
# weights folder. Names come from an allow-list with pinned SHA-256; a file whose checksum already
# matches is skipped; a download goes to a temporary file beside the target, is verified, then renamed.
set -euo pipefail

readonly BASE_URL="https://github.com/ultralytics/assets/releases/download/v8.3.0"
declare -A SHA256=(
  [yolo11n]="0ebbc80d4a7680d14987a577cd21342b65ecfd94632bd9a8da63ae6417644ee1"
  [yolo11s]="85a76fe86dd8afe384648546b56a7a78580c7cb7b404fc595f97969322d502d5"
  [yolo11m]="d5ffc1a674953a08e11a8d21e022781b1b23a19b730afc309290bd9fb5305b95"
)

usage() {
  echo "usage: $0 [--dir DIR] NAME... (NAME in: ${!SHA256[*]}; DIR default pytorch_models)" >&2
}

sha256_of() {
  sha256sum "$1" | cut -d' ' -f1
}

fetch_one() {
  local name="$1" dir="$2"
  local target="${dir}/${name}.pt" url="${BASE_URL}/${name}.pt" expected="${SHA256[${name}]}"
  if [[ -f "${target}" && "$(sha256_of "${target}")" == "${expected}" ]]; then
    echo "${target}: present, checksum ok"
    return 0
  fi
  local tmp
  tmp="$(mktemp "${target}.XXXXXX.tmp")"
  trap 'rm -f "${tmp}"' RETURN
  if ! curl -fsSL --retry 2 --connect-timeout 20 -o "${tmp}" "${url}"; then
    echo "error: could not download ${url}. Either copy your own checkpoint to ${target}" \
      "(any ultralytics detect .pt works), or run 'make scratch MODEL=${name}' for an UNTRAINED test checkpoint." >&2
    return 1
  fi
  local actual
  actual="$(sha256_of "${tmp}")"
  if [[ "${actual}" != "${expected}" ]]; then
    echo "error: ${url} has SHA-256 ${actual}, expected ${expected}; nothing was written to ${target}" >&2
    return 1
  fi
  mv -f "${tmp}" "${target}"
  echo "${target}: downloaded, checksum ok"
}

main() {
  local dir="pytorch_models"
  local names=()
  while (($#)); do
    case "$1" in
      --dir) dir="$2"; shift 2 ;;
      -h|--help) usage; return 0 ;;
      *) names+=("$1"); shift ;;
    esac
  done
  if ((${#names[@]} == 0)); then
    usage
    return 2
  fi
  local name
  for name in "${names[@]}"; do
    if [[ -z "${SHA256[${name}]+set}" ]]; then
      echo "error: '${name}' is not an allowed name (${!SHA256[*]}); put other checkpoints in ${dir}/ yourself" >&2
      return 2
    fi
  done
  mkdir -p "${dir}"
  for name in "${names[@]}"; do
    fetch_one "${name}" "${dir}"
  done
}

main "$@"
