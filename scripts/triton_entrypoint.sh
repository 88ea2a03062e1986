#!/usr/bin/env bash
# Entrypoint of docker-compose.yml's triton-api service: runs the service's command (tritonserver ...)
# with Triton's admin endpoints locked behind a key when the ports are published beyond loopback.
#
#   TRITON_BIND       the address compose publishes 8000/8001 on (default 127.0.0.1)
#   TRITON_ADMIN_KEY  the key (at least 16 of A-Z a-z 0-9 . _ ~ + / = -); REQUIRED when TRITON_BIND is
#                     not loopback (the service refuses to start without it); used whenever it is set
#
# With a key, these endpoints of HTTP and gRPC answer only requests that carry it (HTTP 403 / gRPC
# UNAVAILABLE otherwise): model-repository (index, load, unload), shared-memory (register, status,
# unregister), trace and logging. Inference, health, metadata, model config and statistics stay open.
# HTTP header `admin-key: <key>`; gRPC metadata `triton-grpc-protocol-admin-key: <key>` (Triton adds
# the prefix to gRPC keys). yolo_triton.settings.admin_headers sends the same from $TRITON_ADMIN_KEY.
#
# Option syntax, checked in tritonserver 2.51 (r24.10, nvidia-pytriton 0.7.0) and in the server sources
# (triton-inference-server/server src/command_line_parser.cc, ParseRestrictedFeatureOption:
# ParseGenericConfigOption(arg, ":", "=") at r24.10 e0f0734d, r26.08 6fa22ae0 and main e1db8a60, the
# 26.09 development line; no r26.10 branch was available to read):
#   --http-restricted-api=<api>[,<api>...]:<header>=<value>
#   --grpc-restricted-protocol=<api>[,<api>...]:<header>=<value>
# r24.10's --help prints a comma before <key> (fixed to ':' in the help from r25.09, server commit
# 2e632a98); the comma form is refused ("option format is '<config name>:<setting>=<value>'").
# There is no --grpc-restricted-api. The key ends up on tritonserver's command line: the only way
# Triton takes it (processes that can read the container's /proc see it).
set -euo pipefail

readonly RESTRICTED_APIS="model-repository,shared-memory,trace,logging"
readonly ADMIN_HEADER="admin-key"
readonly MIN_KEY_LENGTH=16
readonly NVIDIA_ENTRYPOINT="/opt/nvidia/nvidia_entrypoint.sh"  # the NGC image's own entrypoint

usage() {
  echo "usage: $0 tritonserver [flags...]  (reads TRITON_BIND and TRITON_ADMIN_KEY from the environment)" >&2
}

is_loopback() {
  case "$1" in
    127.* | localhost | ::1 | "[::1]") return 0 ;;
    *) return 1 ;;
  esac
}

main() {
  if [[ $# -eq 0 ]]; then
    usage
    exit 2
  fi
  local bind="${TRITON_BIND:-127.0.0.1}"
  local key="${TRITON_ADMIN_KEY:-}"
  local -a flags=()
  if [[ -z "${key}" ]]; then
    if ! is_loopback "${bind}"; then
      echo "triton-api: refusing to start: TRITON_BIND=${bind} publishes Triton beyond this machine and" \
        "TRITON_ADMIN_KEY is not set, so anyone reaching port 8000/8001 could load and unload models." \
        "Set TRITON_ADMIN_KEY (e.g. export TRITON_ADMIN_KEY=\$(openssl rand -hex 32)) or TRITON_BIND=127.0.0.1." >&2
      exit 1
    fi
    echo "triton-api: published on ${bind} (loopback): admin endpoints not restricted" >&2
  else
    if [[ ${#key} -lt ${MIN_KEY_LENGTH} || ! "${key}" =~ ^[A-Za-z0-9._~+/=-]+$ ]]; then
      echo "triton-api: refusing to start: TRITON_ADMIN_KEY must be at least ${MIN_KEY_LENGTH} characters of" \
        "A-Z a-z 0-9 . _ ~ + / = - (it travels as an HTTP header and gRPC metadata);" \
        "e.g. export TRITON_ADMIN_KEY=\$(openssl rand -hex 32)" >&2
      exit 1
    fi
    flags=("--http-restricted-api=${RESTRICTED_APIS}:${ADMIN_HEADER}=${key}"
      "--grpc-restricted-protocol=${RESTRICTED_APIS}:${ADMIN_HEADER}=${key}")
    echo "triton-api: published on ${bind}: ${RESTRICTED_APIS} endpoints need the admin key" \
      "(HTTP header ${ADMIN_HEADER}, gRPC metadata triton-grpc-protocol-${ADMIN_HEADER})" >&2
  fi
  if [[ -x "${NVIDIA_ENTRYPOINT}" ]]; then
    exec "${NVIDIA_ENTRYPOINT}" "$@" "${flags[@]}"
  fi
  exec "$@" "${flags[@]}"
}

main "$@"
