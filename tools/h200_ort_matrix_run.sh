#!/usr/bin/env bash
# The ONNX Runtime x cuDNN matrix on the lent H200 (issue 19, "the cause, measured"): for each pair below,
# scripts/bench_ort_shape_switch.py --no-torch on make's plain and padded yolo11s graphs, with
# LD_LIBRARY_PATH naming exactly that cuDNN (and the CUDA 12 libraries for 1.19.2, torch's CUDA 13 ones for
# 1.31.1) and PYTHONPATH exactly that onnxruntime package. Each JSON records the cuDNN the process loaded.
#
# The payload of tools/make_h200_ort_matrix_payload.sh arrives in parts (one per device call) in STASH; the
# first call carries SRC (default: this script's folder) holding this script, bench_ort_shape_switch.py,
# ortm.index.tsv, plain.onnx, pad16.onnx and images_uint8.npy (scripts/bench_ort_shape_switch.py --prepare).
#   start [SRC]  copy SRC to OM, start `queue` in its own session (it outlives the call while the machine is warm)
#   queue        for each pair in order: unpack the components it needs as soon as their parts are in STASH
#                (each a separate xz stream: in parallel, sha256 checked), then run the bench (BUDGET_S a
#                model x algo, but at least MIN_SWITCHES interleaved runs); OM/queue.log;
#                OM/results/<label>.json; OM/results/DONE at the end
#   wait [S]     say that no more parts come (pairs still missing parts are skipped), wait up to S seconds
#                (default 540) for the queue, then collect
#   collect      OM/results + queue.log into OUT/ortm_results.tar.gz; the loaded cuDNN of each JSON; the summary
#   unpack       unpack every component whose parts are all in STASH (also the CPU machine's check)
#   check        per pair whose components are unpacked: onnxruntime imports under that pair's environment and
#                runs a CPU session, the cuDNN directory's libcudnn.so.9 reports its version, and what the
#                CUDA provider's NEEDED libraries resolve to (on a machine without a GPU libcuda.so.1 is missing)
# env: STASH (/root/stash), OM (/root/om), BUDGET_S (30), MIN_SWITCHES (4), ONLY (labels: run just those),
#      PY (python3: the H200's torch venv; its site-packages, TORCH_SP, holds nvidia/cu13/lib and
#      nvidia/cudnn/lib, cuDNN 9.19)
# Device calls of 2026-12-03 (benchmarks/h200_2026-12-03_ort_matrix/): `BUDGET_S=30 MIN_SWITCHES=4 bash
# .h200/ortm/h200_ort_matrix_run.sh start` carrying .h200/ortm, then one call a part, carrying
# .h200/mparts/ortm.tar.xz.partNN: `mv` it to STASH/.in, then to STASH/ortm.tar.xz.partNN (whole files only),
# then `wait`. The five pairs ran while the later parts arrived (about 4 min of runs, 8 min held in all).
# Re-run of one pair (ort1.19.2_cudnn9.19, 120 s; 3.7 min held): `ONLY=ort1.19.2_cudnn9.19 BUDGET_S=120 bash
# tools/h200_ort_matrix_run.sh start SRC` (SRC: .h200/ortm with this script and the bench copied over), then
# parts 06-21 only. `unpack` takes the part length from part00, so that start first made a sparse stand-in,
# `truncate -s 60817408 STASH/ortm.tar.xz.part00` (no component read from it; each is sha256-checked).
# Verified on the CPU machine first: the parts unpack, every pair imports its onnxruntime and runs a CPU
# session, each cuDNN directory reports its version, 1.19.2's CUDA provider resolves every NEEDED library.
set -uo pipefail

STASH=${STASH:-/root/stash}
OM=${OM:-/root/om}
BUDGET_S=${BUDGET_S:-30}
MIN_SWITCHES=${MIN_SWITCHES:-4}
PY=${PY:-python3}
# label  onnxruntime  cuDNN (a component, or torch: the venv's)  CUDA libraries (cu12, or torch: cu13)
PAIRS=(
  "ort1.31.1_cudnn9.19 1.31.1 torch torch"
  "ort1.31.1_cudnn9.12 1.31.1 cudnn-cu13-9.12.0.46 torch"
  "ort1.19.2_cudnn9.19 1.19.2 cudnn-cu12-9.19.0.56 cu12"
  "ort1.19.2_cudnn9.1 1.19.2 cudnn-cu12-9.1.0.70 cu12"
  "ort1.19.2_cudnn9.12 1.19.2 cudnn-cu12-9.12.0.46 cu12"
)

usage() { echo "usage: h200_ort_matrix_run.sh start [SRC]|queue|wait [S]|collect|unpack|check" >&2; }
log() { echo "[ortm $(date +%T)] $*"; }

torch_sp() { "${PY}" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'; }

# pair_env LABEL ORT CUDNN CUDA: sets NEED (components), CUDNN_DIR, LDP, PP
pair_env() {
  local sp
  sp=${TORCH_SP:-$(torch_sp)}
  NEED=("ort-$2")
  if [[ "$3" == torch ]]; then CUDNN_DIR=${sp}/nvidia/cudnn/lib; else CUDNN_DIR=${OM}/$3/lib; NEED+=("$3"); fi
  if [[ "$4" == torch ]]; then LDP=${CUDNN_DIR}:${sp}/nvidia/cu13/lib; else LDP=${CUDNN_DIR}:${OM}/cu12/lib; NEED+=(cu12); fi
  LDP=${LDP}${BASE_LD:+:${BASE_LD}}
  PP=${OM}/ort-$2
}

unpacked() { local c; for c in "$@"; do [[ -f "${OM}/.unpacked-${c}" ]] || return 1; done; }

unpack() {  # every component whose parts are all in STASH and that is not unpacked yet, in parallel
  mkdir -p "${OM}"
  "${PY}" - "${STASH}" "${OM}" "${OM}/ortm.index.tsv" <<'EOF'
import glob, hashlib, os, shutil, sys, tarfile
from concurrent.futures import ProcessPoolExecutor
stash, om, index = sys.argv[1:4]
sizes = {int(p.rsplit("part", 1)[1]): os.path.getsize(p) for p in glob.glob(os.path.join(stash, "ortm.tar.xz.part*"))}
unit = sizes.get(0)  # every part but the last is this long

class Slice:  # bytes [offset, offset + size) of the parts read as one stream, hashed on the way
    def __init__(self, offset, size):
        self.pos, self.end, self.sha = offset, offset + size, hashlib.sha256()
    def read(self, n=-1):
        if self.pos >= self.end:
            return b""
        i, within = divmod(self.pos, unit)
        n = self.end - self.pos if n is None or n < 0 else min(n, self.end - self.pos)
        with open(os.path.join(stash, f"ortm.tar.xz.part{i:02d}"), "rb") as f:
            f.seek(within)
            b = f.read(min(n, unit - within))
        self.pos += len(b)
        self.sha.update(b)
        return b

def ready(offset, size):
    if not unit:
        return False
    last = (offset + size - 1) // unit
    return all(i in sizes for i in range(offset // unit, last + 1)) and last * unit + sizes[last] >= offset + size

def unpack(name, offset, size, sha):
    src = Slice(offset, size)
    with tarfile.open(fileobj=src, mode="r|xz") as tar:
        kw = {"filter": "fully_trusted"} if hasattr(tarfile, "fully_trusted_filter") else {}
        tar.extractall(om, **kw)  # our own payload
    while src.read(1 << 20):  # the stream's tail (xz index) for the checksum
        pass
    if src.sha.hexdigest() != sha:
        shutil.rmtree(os.path.join(om, name), ignore_errors=True)
        return f"{name}: sha256 MISMATCH, removed"
    open(os.path.join(om, f".unpacked-{name}"), "w").close()
    return f"{name}: unpacked ({size} bytes)"

todo = []
for line in open(index):
    name, offset, size, sha = line.split("\t")[:4]
    if not os.path.exists(os.path.join(om, f".unpacked-{name}")) and ready(int(offset), int(size)):
        todo.append((name, int(offset), int(size), sha))
if todo:
    with ProcessPoolExecutor(len(todo)) as pool:
        for msg in pool.map(unpack, *zip(*todo)):
            print(msg, flush=True)
EOF
}

check() {
  local p label ort cudnn cuda
  for p in "${PAIRS[@]}"; do
    read -r label ort cudnn cuda <<< "${p}"
    pair_env "${label}" "${ort}" "${cudnn}" "${cuda}"
    unpacked "${NEED[@]}" || { log "${label}: not unpacked (${NEED[*]})"; continue; }
    log "${label}: LD_LIBRARY_PATH=${LDP} PYTHONPATH=${PP}"
    LD_LIBRARY_PATH=${LDP} PYTHONPATH=${PP} "${PY}" - "${CUDNN_DIR}/libcudnn.so.9" <<'EOF'
import base64, ctypes, sys
import numpy as np
import onnxruntime as ort
print("  onnxruntime", ort.__version__, ort.__file__, ort.get_available_providers())
relu = base64.b64decode("CAg6OwoMCgF4EgF5IgRSZWx1EgFnWhMKAXgSDgoMCAESCAoCCAIKAggDYhMKAXkSDgoMCAESCAoCCAIKAggDQgQKABAR")
x = np.array([[-1, 2, -3], [4, -5, 6]], np.float32)
y = ort.InferenceSession(relu, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
print("  CPU session relu ok:", bool((y == np.maximum(x, 0)).all()))
get = ctypes.CDLL(sys.argv[1]).cudnnGetVersion
get.restype = ctypes.c_size_t
print("  ", sys.argv[1], "cudnnGetVersion", get())
EOF
    LD_LIBRARY_PATH=${LDP} ldd "${PP}/onnxruntime/capi/libonnxruntime_providers_cuda.so" \
      | grep -E 'libcu|libcudnn|not found' | sed 's/^\s*/    /'
  done
}

run_pair() {  # LABEL ORT CUDNN CUDA
  local label=$1
  pair_env "$@"
  log "${label}: LD_LIBRARY_PATH=${LDP} PYTHONPATH=${PP}"
  LD_LIBRARY_PATH=${LDP} PYTHONPATH=${PP} PYTHONUNBUFFERED=1 timeout 420 "${PY}" "${OM}/tools/bench_ort_shape_switch.py" \
    --no-torch --label "${label}" --model plain="${OM}/models/plain.onnx" --model pad16="${OM}/models/pad16.onnx" \
    --images "${OM}/models/images_uint8.npy" --algos EXHAUSTIVE HEURISTIC --budget-s "${BUDGET_S}" \
    --min-switches "${MIN_SWITCHES}" --json "${OM}/results/${label}.json" 2>&1 | grep -vE '^\s*$'
  log "${label}: exit ${PIPESTATUS[0]}"
}

queue() {
  local p label ort cudnn cuda
  mkdir -p "${OM}/results"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  "${PY}" -c 'import platform, numpy, torch; print("python", platform.python_version(), "numpy", numpy.__version__, "torch", torch.__version__, "torch cuDNN", torch.backends.cudnn.version())'
  for p in "${PAIRS[@]}"; do
    read -r label ort cudnn cuda <<< "${p}"
    [[ -n "${ONLY:-}" && " ${ONLY} " != *" ${label} "* ]] && continue
    pair_env "${label}" "${ort}" "${cudnn}" "${cuda}"
    until unpacked "${NEED[@]}"; do
      unpack
      unpacked "${NEED[@]}" && break
      [[ -f "${OM}/no_more_parts" ]] && { unpack; break; }
      sleep 2
    done
    if unpacked "${NEED[@]}"; then run_pair "${label}" "${ort}" "${cudnn}" "${cuda}"; else log "${label}: SKIPPED, parts missing (${NEED[*]})"; fi
  done
  touch "${OM}/results/DONE"
  log "queue done"
}

collect() {
  local j
  for j in "${OM}"/results/*.json; do
    "${PY}" -c 'import json, sys; d = json.load(open(sys.argv[1])); l = d.get("loaded") or {}
print(d["label"], "onnxruntime", d["onnxruntime"], "loaded cuDNN", l.get("cudnn"), l.get("cudnn_path"))' "${j}"
  done
  "${PY}" "${OM}/tools/bench_ort_shape_switch.py" --summarise "${OM}"/results/*.json
  local files=(results)
  [[ -f "${OM}/queue.log" ]] && files+=(queue.log)
  tar -C "${OM}" -czf "${OUT:?}/ortm_results.tar.gz" "${files[@]}"
}

main() {
  BASE_LD=${LD_LIBRARY_PATH:-}
  case "${1:-}" in
    start)
      local src=${2:-$(cd "$(dirname "$0")" && pwd)}
      mkdir -p "${OM}/tools" "${OM}/models" "${STASH}"
      cp "${src}/h200_ort_matrix_run.sh" "${src}/bench_ort_shape_switch.py" "${OM}/tools/" || exit 1
      cp "${src}/ortm.index.tsv" "${OM}/" || exit 1
      cp "${src}/plain.onnx" "${src}/pad16.onnx" "${src}/images_uint8.npy" "${OM}/models/" || exit 1
      setsid nohup bash "${OM}/tools/h200_ort_matrix_run.sh" queue > "${OM}/queue.log" 2>&1 < /dev/null &
      sleep 5
      cat "${OM}/queue.log";;
    queue) queue;;
    wait)
      touch "${OM}/no_more_parts"
      local deadline=$((SECONDS + ${2:-540}))
      while [[ ! -f "${OM}/results/DONE" && ${SECONDS} -lt ${deadline} ]]; do sleep 2; done
      cat "${OM}/queue.log"
      [[ -f "${OM}/results/DONE" ]] || { log "queue not done yet"; exit 3; }
      collect;;
    collect) collect;;
    unpack) unpack;;
    check) check;;
    *) usage; exit 2;;
  esac
}

main "$@"
