#!/usr/bin/env bash
# Start the real tritonserver 2.51.0 of the payload (make_h200_ort131_payload.sh, unpacked by
# h200_unpack.sh into P) on 127.0.0.1 with docker-compose.yml's triton-api flags:
#   --model-control-mode=explicit --load-model=*   every model of MODELS_DIR loaded at start, no polling
#   --exit-on-error=false                          a broken model does not take the others down
#   --strict-readiness=true                        /v2/health/ready only when every model is READY
#   --log-info=true
# then wait (at most READY_TIMEOUT s, default 600: EXHAUSTIVE cuDNN searches, FP16 sessions) until
# every model has left LOADING, and print each model's state from the repository index.
# The server keeps running in the background (its own session); its PID is in OUTDIR/server.pid,
# its log in OUTDIR/server.log. Stop it with: kill "$(cat OUTDIR/server.pid)".
# Usage: h200_start_triton.sh MODELS_DIR OUTDIR   (env: P, HTTP_PORT 8000, GRPC_PORT 8001,
#        METRICS_PORT 8002, READY_TIMEOUT, EXTRA_FLAGS e.g. "--log-verbose=1")
# Exit status: 0 when the server reports ready (every model READY), 1 otherwise (states printed).
# Verified on the CPU machine with a KIND_CPU model; KIND_GPU models only on the H200.
set -uo pipefail
MODELS_DIR=${1:?usage: h200_start_triton.sh MODELS_DIR OUTDIR}
OUTDIR=${2:?usage: h200_start_triton.sh MODELS_DIR OUTDIR}
here=$(cd "$(dirname "$0")" && pwd)
export P=${P:-/root/p}
HTTP_PORT=${HTTP_PORT:-8000} GRPC_PORT=${GRPC_PORT:-8001} METRICS_PORT=${METRICS_PORT:-8002}
READY_TIMEOUT=${READY_TIMEOUT:-600}
# shellcheck source=tools/h200_env.sh source-path=SCRIPTDIR
source "$here/h200_env.sh"
mkdir -p "$OUTDIR"
MODELS_DIR=$(cd "$MODELS_DIR" && pwd) || exit 1
log() { echo "[h200_start_triton $(date +%T)] $*"; }

# shellcheck disable=SC2086
setsid "$TRITONSERVER" --model-repository="$MODELS_DIR" --backend-directory="$TRITON_BACKEND_DIR" \
  --model-control-mode=explicit --load-model='*' --exit-on-error=false --strict-readiness=true --log-info=true \
  --http-address=127.0.0.1 --grpc-address=127.0.0.1 --http-port="$HTTP_PORT" --grpc-port="$GRPC_PORT" \
  --metrics-port="$METRICS_PORT" ${EXTRA_FLAGS:-} > "$OUTDIR/server.log" 2>&1 < /dev/null &
SERVER=$!
echo "$SERVER" > "$OUTDIR/server.pid"
log "tritonserver pid $SERVER, log $OUTDIR/server.log"

python3 - "$HTTP_PORT" "$READY_TIMEOUT" "$SERVER" <<'EOF'
import json, os, sys, time, urllib.request, urllib.error
port, timeout, pid = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
base = f"http://127.0.0.1:{port}"
def get(path, data=None):
    req = urllib.request.Request(base + path, data=data, method="POST" if data is not None else "GET")
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.status, r.read()
def alive():
    try:
        os.kill(pid, 0); return True
    except OSError:
        return False
t0, index, live, stateless_since = time.time(), None, False, None
while time.time() - t0 < timeout:
    if not alive():
        print("server exited"); break
    try:
        live = live or get("/v2/health/live")[0] == 200
        index = json.loads(get("/v2/repository/index", b"{}")[1])
        unsettled = [m for m in index or [] if m.get("state") in (None, "", "LOADING", "UNAVAILABLE") and not m.get("reason")]
        if index and not unsettled:
            break
        # a model with no state at all while nothing is LOADING was never tried: an ensemble whose step
        # failed to load. Settled once that has lasted 5 s (instead of waiting out the timeout).
        if index and all(m.get("state") in (None, "") for m in unsettled):
            stateless_since = stateless_since or time.time()
            if time.time() - stateless_since >= 5:
                break
        else:
            stateless_since = None
    except (urllib.error.URLError, ConnectionError, OSError, ValueError):
        pass
    time.sleep(1)
ready = False
try:
    ready = get("/v2/health/ready")[0] == 200
except Exception:
    pass
print(f"after {time.time() - t0:.1f} s: live {live}, ready {ready}")
for m in index or []:
    print(f"  {m.get('name')} v{m.get('version', '-')}: {m.get('state')} {m.get('reason', '')}".rstrip())
sys.exit(0 if ready else 1)
EOF
rc=$?
grep -E "Started GRPCInferenceService|Started HTTPService|onnxruntime|CUDA|GPU|error|Error|failed" "$OUTDIR/server.log" | head -40
exit $rc
