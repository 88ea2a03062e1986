#!/usr/bin/env bash
# Prepare a model repository for a clean re-export: back up every config.pbtxt into
# <parent of models>/config_backups/<timestamp>/<model>/config.pbtxt, remove the exported artefacts
# (model.onnx, model.plan, their .old copies, and the plan sidecars) from each <model>/<version>/,
# and clear the TensorRT timing caches. Directory structure, labels and anything else stay untouched.
# The backups stay OUTSIDE the model repository (the seed wrote <models>/backup_configs_<ts>/): Triton
# treats every folder of its repository as a model, and with `--load-model=*` and strict readiness one
# folder that is no model keeps the server from ever reporting ready.
set -euo pipefail

usage() {
  echo "usage: $0 [--models-dir DIR] [--cache-dir DIR] [--backup-dir DIR] [--dry-run]" >&2
  echo "       (defaults: models, trt_cache, <parent of models-dir>/config_backups/<timestamp>)" >&2
}

# run CMD...: execute, or only print it under --dry-run
run() {
  if [[ "${DRY_RUN}" == 1 ]]; then
    printf 'would run:'
    printf ' %q' "$@"
    printf '\n'
  else
    "$@"
  fi
}

main() {
  local models_dir="models" cache_dir="trt_cache" backup=""
  DRY_RUN=0
  while (($#)); do
    case "$1" in
      --models-dir) models_dir="$2"; shift 2 ;;
      --cache-dir) cache_dir="$2"; shift 2 ;;
      --backup-dir) backup="$2"; shift 2 ;;
      --dry-run) DRY_RUN=1; shift ;;
      -h|--help) usage; return 0 ;;
      *) usage; return 2 ;;
    esac
  done
  if [[ ! -d "${models_dir}" ]]; then
    echo "error: models directory '${models_dir}' not found" >&2
    return 2
  fi

  [[ -n "${backup}" ]] || backup="$(dirname "${models_dir}")/config_backups/$(date +%Y%m%d_%H%M%S)"
  local config model
  local -a configs=()
  while IFS= read -r -d '' config; do
    configs+=("${config}")
  done < <(find "${models_dir}" -mindepth 2 -maxdepth 2 -name config.pbtxt -not -path '*/backup_configs_*' -print0 | sort -z)
  for config in "${configs[@]}"; do
    model="$(basename "$(dirname "${config}")")"
    run mkdir -p "${backup}/${model}"
    run cp -p "${config}" "${backup}/${model}/config.pbtxt"
  done
  echo "backed up ${#configs[@]} config(s) to ${backup}"

  local artefact count=0
  while IFS= read -r -d '' artefact; do
    run rm -f "${artefact}"
    count=$((count + 1))
  done < <(find "${models_dir}" -mindepth 3 -maxdepth 3 -path '*/[0-9]*/*' -not -path '*/backup_configs_*' \
      \( -name 'model.onnx' -o -name 'model.plan' -o -name 'model.onnx.old' -o -name 'model.plan.old' \
         -o -name 'model.plan.json' -o -name 'model_sm*.plan' -o -name 'model_sm*.plan.json' -o -name '*.tmp' \) -print0)
  echo "removed ${count} artefact(s) under ${models_dir}"

  if [[ -d "${cache_dir}" ]]; then
    local cache
    count=0
    while IFS= read -r -d '' cache; do
      run rm -f "${cache}"
      count=$((count + 1))
    done < <(find "${cache_dir}" -maxdepth 1 -type f -name '*.cache' -print0)
    echo "cleared ${count} timing cache(s) in ${cache_dir}"
  fi
  if [[ "${backup}" == "${models_dir}"/* ]]; then
    echo "warning: ${backup} is inside ${models_dir}: Triton will try to load it as a model; move it out" >&2
  fi
  [[ "${DRY_RUN}" == 1 ]] && echo "dry run: nothing was changed"
  return 0
}

main "$@"
