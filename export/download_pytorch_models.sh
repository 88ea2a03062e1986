#!/usr/bin/env bash
# Download the seed's pretrained checkpoints (yolo11n/s/m.pt, ultralytics assets v8.3.0) into a
# weights folder. The allow-list with the pinned SHA-256 is download_pytorch_models.sha256 beside this
# script. A file whose checksum already matches is skipped; a file with another checksum is left as is
# (it may be yours) and reported. A download goes to a temporary file beside the target, is verified,
# made readable like any checkpoint (0644) and renamed into place; a failure leaves nothing behind.
#
# Environment:
#   YOLO_WEIGHTS_BASE_URL     where NAME.pt is fetched from (default: the v8.3.0 release below), e.g. a
#                             mirror; the pinned checksums still apply. `make WEIGHTS_BASE_URL=...` sets it.
#   YOLO_WEIGHTS_SHA256_FILE  TEST HOOK, not a setting: read the allow-list and checksums from this file
#                             (same format) instead of the pinned table, so tests/test_download.py can
#                             serve bytes that are not weights. The script says so on stderr when set.
set -euo pipefail

readonly DEFAULT_BASE_URL="https://github.com/ultralytics/assets/releases/download/v8.3.0"
declare -A SHA256=()
TMP_FILE=""

usage() {
  echo "usage: $0 [--dir DIR] [--scratch-hint CMD] NAME..." >&2
  echo "  NAME in the allow-list (download_pytorch_models.sha256); DIR default pytorch_models;" >&2
  echo "  CMD: the command the offline message suggests for an untrained checkpoint (Make passes one)" >&2
}

cleanup() {
  if [[ -n "${TMP_FILE}" ]]; then
    rm -f -- "${TMP_FILE}"
    TMP_FILE=""
  fi
}

sha256_of() {
  sha256sum "$1" | cut -d' ' -f1
}

# Fill SHA256[name] from a `sha256sum`-format file ("<sha256>  <name>.pt", # comments).
load_checksums() {
  local file="$1" line n=0
  if [[ ! -f "${file}" || ! -r "${file}" ]]; then
    echo "error: checksum table ${file} is missing or unreadable" >&2
    return 2
  fi
  while IFS= read -r line || [[ -n "${line}" ]]; do
    n=$((n + 1))
    if [[ -z "${line//[[:space:]]/}" || "${line}" == \#* ]]; then
      continue
    fi
    if [[ ! "${line}" =~ ^([0-9a-f]{64})\ [\ *]([A-Za-z0-9._-]+)\.pt$ ]]; then
      echo "error: ${file} line ${n}: expected '<sha256>  <name>.pt', got '${line}'" >&2
      return 2
    fi
    SHA256["${BASH_REMATCH[2]}"]="${BASH_REMATCH[1]}"
  done <"${file}"
  if ((${#SHA256[@]} == 0)); then
    echo "error: checksum table ${file} lists no checkpoint" >&2
    return 2
  fi
}

allowed_names() {
  printf '%s\n' "${!SHA256[@]}" | sort | paste -sd' ' -
}

# The own-name route: an untrained checkpoint is served as <name>_untrained, never as <name>.
default_scratch_hint() {
  local name="$1" dir="$2" vars=""
  if [[ "${dir}" != "pytorch_models" ]]; then
    vars="$(printf ' WEIGHTS_DIR=%q' "${dir}")"
  fi
  echo "make scratch MODEL=${name}${vars} && make models/${name}_untrained_trt_end2end/1/model.plan${vars}"
}

fetch_one() {
  local name="$1" dir="$2" base_url="$3" hint="$4"
  local target="${dir}/${name}.pt" url="${base_url}/${name}.pt" expected="${SHA256[${name}]}"
  if [[ -e "${target}" ]]; then
    local present
    present="$(sha256_of "${target}")"
    if [[ "${present}" == "${expected}" ]]; then
      echo "${target}: present, checksum ok"
      return 0
    fi
    echo "error: ${target} exists with SHA-256 ${present}, not the pinned ${expected}; it was left as is: move it away to download ${name}.pt" >&2
    return 1
  fi
  if ! TMP_FILE="$(mktemp "${target}.XXXXXX.tmp" 2>/dev/null)"; then
    TMP_FILE=""
    echo "error: cannot create a temporary file in ${dir}" >&2
    return 1
  fi
  echo "downloading ${url} -> ${target}"
  local curl_log
  if ! curl_log="$(curl -fsSL --retry 2 --connect-timeout 20 -o "${TMP_FILE}" "${url}" 2>&1)"; then
    cleanup
    echo "error: could not download ${url} (${curl_log##*$'\n'}). Either copy your own checkpoint to" \
      "${target} (any ultralytics detect .pt works), or build from an UNTRAINED test checkpoint under its" \
      "own name: ${hint:-$(default_scratch_hint "${name}" "${dir}")}" >&2
    return 1
  fi
  local actual
  actual="$(sha256_of "${TMP_FILE}")"
  if [[ "${actual}" != "${expected}" ]]; then
    cleanup
    echo "error: ${url} has SHA-256 ${actual}, expected ${expected}; nothing was written to ${target}" >&2
    return 1
  fi
  chmod 0644 "${TMP_FILE}"
  mv -f "${TMP_FILE}" "${target}"
  TMP_FILE=""
  echo "${target}: downloaded, checksum ok"
}

main() {
  trap cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  local dir="pytorch_models" hint=""
  local names=()
  while (($#)); do
    case "$1" in
      --dir | --scratch-hint)
        if (($# < 2)); then
          usage
          return 2
        fi
        if [[ "$1" == "--dir" ]]; then dir="$2"; else hint="$2"; fi
        shift 2
        ;;
      -h | --help) usage; return 0 ;;
      -*) usage; return 2 ;;
      *) names+=("$1"); shift ;;
    esac
  done
  if ((${#names[@]} == 0)); then
    usage
    return 2
  fi
  local table
  table="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/download_pytorch_models.sha256"
  if [[ -n "${YOLO_WEIGHTS_SHA256_FILE:-}" ]]; then
    table="${YOLO_WEIGHTS_SHA256_FILE}"
    echo "note: checksums from YOLO_WEIGHTS_SHA256_FILE=${table} (a test hook), not the pinned table" >&2
  fi
  load_checksums "${table}"
  local name
  for name in "${names[@]}"; do
    if [[ -z "${SHA256[${name}]+set}" ]]; then
      echo "error: '${name}' is not an allowed name ($(allowed_names)); put other checkpoints in ${dir}/ yourself" >&2
      return 2
    fi
  done
  if ! command -v curl >/dev/null; then
    echo "error: curl is not installed; install it (apt-get install curl) or copy the checkpoints to ${dir}/ yourself" >&2
    return 1
  fi
  local base_url="${YOLO_WEIGHTS_BASE_URL:-${DEFAULT_BASE_URL}}"
  mkdir -p "${dir}"
  for name in "${names[@]}"; do
    fetch_one "${name}" "${dir}" "${base_url%/}" "${hint}"
  done
}

main "$@"
