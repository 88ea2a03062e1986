#!/usr/bin/env bash
# The seed's quick path: build the small model's TensorRT engines (Track B and Track C) through the
# Make graph, then print the next steps for Track D (DALI preprocessing + ensemble).
set -euo pipefail

main() {
  local here
  here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
  local python="python3"
  [[ -x "${here}/../.venv/bin/python" ]] && python="${here}/../.venv/bin/python"
  "${python}" "${here}/export_models.py" --models small --formats trt trt_end2end "$@"
  cat <<'NEXT'

Next steps for Track D (GPU decode + letterbox in DALI, then the TensorRT end2end engine):
  python /app/dali/create_dali_letterbox_pipeline.py
  python /app/dali/create_ensembles.py --models small
  docker compose restart triton-api
(or, from the repository root: make trackd SIZES=small)
NEXT
}

main "$@"
