# Export service: turns ultralytics .pt checkpoints into Triton model directories (ONNX and TensorRT).
#
# Based on NVIDIA's TensorRT NGC image so that `trtexec` and the TensorRT Python bindings are the
# ones of one NGC month; docker-compose.yml gives the SAME month (TRITON_RELEASE) to the
# tritonserver image, so the TensorRT that builds a plan is the TensorRT that loads it.
#   docker compose build                          # normal use (compose passes RELEASE, HOST_UID, HOST_GID)
#   docker build --build-arg RELEASE=26.10 .      # by hand
# The default below must equal the one in docker-compose.yml (tests/test_serving_files.py checks it).
ARG RELEASE=26.10
FROM nvcr.io/nvidia/tensorrt:${RELEASE}-py3

# Owner of the files written into the bind-mounted ./models, ./pytorch_models and ./trt_cache.
# Pass your own ids so those files stay yours on the host: HOST_UID=$(id -u) HOST_GID=$(id -g).
ARG UID=1000
ARG GID=1000

SHELL ["/bin/bash", "-eo", "pipefail", "-c"]

# The NGC images install Python packages into the system interpreter; so do we (no second venv,
# so `import tensorrt` from the image keeps working next to our packages).
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_BREAK_SYSTEM_PACKAGES=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

# make: the pipeline is a Makefile. libgl1/libglib2.0-0: opencv-python (ultralytics, the client).
# curl: the Makefile's download step. Not version-pinned: the NGC month fixes the Ubuntu release,
# and its security updates are what we want.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends make curl libgl1 libglib2.0-0 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app

# torch: the image has none, and the export needs it on the CPU only (ultralytics' ONNX export);
# PyPI's Linux wheel would add a second CUDA stack (several GB) beside the image's own. PyTorch's CPU
# index offers the same pinned version as '<version>+cpu', which satisfies requirements.txt's '=='
# pin and sorts above the plain version (PEP 440), so pip takes the CPU build; every pin stays in
# requirements.txt alone.
COPY requirements.txt /app/requirements.txt
RUN python3 -m pip install --extra-index-url https://download.pytorch.org/whl/cpu -r requirements.txt \
    && python3 -c 'import torch, tensorrt, ultralytics; print("torch", torch.__version__, "tensorrt", tensorrt.__version__)'

RUN groupadd --non-unique --gid "${GID}" app \
    && useradd --non-unique --create-home --uid "${UID}" --gid "${GID}" --shell /bin/bash app \
    && mkdir -p /app/models /app/pytorch_models /app/trt_cache /app/.build \
    && chown -R "${UID}:${GID}" /app

COPY --chown=${UID}:${GID} Makefile /app/Makefile
COPY --chown=${UID}:${GID} export/ /app/export/
COPY --chown=${UID}:${GID} scripts/ /app/scripts/
COPY --chown=${UID}:${GID} dali/ /app/dali/
COPY --chown=${UID}:${GID} pyproject.toml /app/pyproject.toml

# The yolo_triton library (export/yolo_triton), editable so that the bind-mounted ./export is what runs;
# its dependencies are requirements.txt's, installed above.
RUN python3 -m pip install --no-deps -e /app

USER ${UID}:${GID}
# ultralytics keeps its settings under $HOME/.config; give it a home that this user owns.
ENV HOME=/home/app \
    YOLO_CONFIG_DIR=/home/app/.config/Ultralytics

CMD ["make", "help"]
