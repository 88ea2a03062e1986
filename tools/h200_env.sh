# Source me (bash): environment for the payload of make_h200_ort131_payload.sh, unpacked by
# h200_unpack.sh into P (default /root/p): the real tritonserver 2.51.0, Triton's ONNX Runtime
# backend built against onnxruntime-gpu 1.31.1 (CUDA 13), that onnxruntime-gpu in Python, tritonclient.
#
# LD_LIBRARY_PATH, because tritonserver cannot "import torch" first:
#   <torch site-packages>/nvidia/cu13/lib    CUDA 13 libraries that ORT 1.31.1's CUDA provider NEEDs
#                                            (libcudart.so.13, libcublas(Lt).so.13, libcurand.so.10) and
#                                            dlopens (libcufft.so.12, libnvrtc.so.13)
#   <torch site-packages>/nvidia/cudnn/lib   cuDNN 9 (dlopened: libcudnn.so.9 and its sub-libraries)
#   P/site/nvidia_pytriton.libs              the server's bundled libraries (its CUDA 12 runtime too)
# torch's site-packages is the purelib of the python3 on PATH (/opt/torch/.venv/lib/python3.12/
# site-packages on the H200); TORCH_SP overrides it.
# PYTHONPATH: P/site first (onnxruntime-gpu 1.31.1 ahead of the image's CPU onnxruntime 1.30,
# tritonclient and its deps), P/site-pb (grpcio 1.85.3, protobuf 6.33.6) only when the image's own
# do not satisfy tritonclient 2.73 (protobuf >=6.30,<7; grpcio >=1.81.1), then the project's export/
# (yolo_triton) when run from a checkout.
# Verified on the CPU machine: the server and backend start with it (no CUDA libraries there);
# the CUDA paths themselves only on the H200 (h200_unpack.sh prints what resolves).
P=${P:-/root/p}
TORCH_SP=${TORCH_SP:-$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')}
CU13_LIB=$TORCH_SP/nvidia/cu13/lib
CUDNN_LIB=$TORCH_SP/nvidia/cudnn/lib
export LD_LIBRARY_PATH="$CU13_LIB:$CUDNN_LIB:$P/site/nvidia_pytriton.libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
_h200_pb=$(python3 -c '
import google.protobuf as pb, grpc
v = [int(x) for x in pb.__version__.split(".")[:2]]; g = [int(x) for x in grpc.__version__.split(".")[:2]]
print("own" if v[0] == 6 and v[1] >= 30 and g >= [1, 81] else "pack")' 2>/dev/null)
[ "$_h200_pb" = own ] && _h200_pb="" || _h200_pb=":$P/site-pb"
_h200_export=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." 2>/dev/null && pwd)/export
export PYTHONPATH="$P/site$_h200_pb${_h200_export:+:$_h200_export}${PYTHONPATH:+:$PYTHONPATH}"
unset _h200_export _h200_pb
export TRITONSERVER=$P/site/pytriton/tritonserver/bin/tritonserver
export TRITON_BACKEND_DIR=$P/backends
