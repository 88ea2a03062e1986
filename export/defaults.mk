# The one place where the pipeline's default settings live.
# The Makefile includes this file; export/yolo_triton/settings.py parses it for Python tools
# (validation, the Triton client), so a default changed here changes everywhere.
# Every value can be overridden on the make command line: make TOPK=50 onnx
IMGSZ ?= 640
CONF ?= 0.25
IOU ?= 0.45
TOPK ?= 100
AGNOSTIC ?= 0
PRECISION ?= fp16
# The image input of every model that takes the letterboxed tensor (Track A, end2end, plans, Track D's DALI
# output): float32 (the client sends pixels / 255) or uint8 (the pixels; the graph casts and divides by 255).
INPUT_DTYPE ?= float32
# The raw-head outputs of Track A and of the Track B plan built from it (output0 [B, 4+nc+extra, anchors]; segment's
# output1): float32, float16 (half the bytes: 1.4 instead of 2.8 MB per 640 image of 80 classes), or auto = float16
# at PRECISION=fp16 (its boxes are FP16 values already; scores move by 2^-12 at most), float32 at fp32/int8.
# end2end outputs stay float32. Measured on an H200: 1.2-1.5x Track A images/s at 64 clients (README).
OUTPUT_DTYPE ?= auto
NMS ?= efficient
SIZES ?= nano small medium
MAX_BATCH_nano ?= 128
MAX_BATCH_small ?= 64
MAX_BATCH_medium ?= 32
MAX_BATCH_custom ?= 32
WEIGHTS_nano ?= yolo11n
WEIGHTS_small ?= yolo11s
WEIGHTS_medium ?= yolo11m
QUEUE_DELAY_US ?= 100
WORKSPACE ?= 4G
OPT_LEVEL ?= 3
ENGINE_BUILDER ?= auto
# GPUs of this host that build plans and serve them: nvidia-smi indices (GPUS=0,2), empty = every GPU
# nvidia-smi lists. One build per GPU at a time; GPUs of several compute capabilities get one plan each.
# HW_COMPAT=ampere+ builds one portable plan instead (Ampere and newer; fewer tactics).
GPUS ?=
HW_COMPAT ?= none
# Triton instances of each model on each of GPUS (instance_group count; gpus: GPUS when set)
INSTANCES_PER_GPU ?= 1
DALI_THREADS ?= 4
# Track D's detector step, the ensemble's second model: trt_end2end = <name>_trt_end2end, the TensorRT plan
# (Track C); end2end = <name>_end2end, the end2end ONNX served by ONNX Runtime, for a server without TensorRT
# (there with NMS=ultralytics, onnx or free: NMS=efficient's plugin needs TensorRT too).
ENSEMBLE_DETECTOR ?= trt_end2end
# Directories, relative to the repository root (where make runs)
MODELS_DIR ?= models
WEIGHTS_DIR ?= pytorch_models
CACHE_DIR ?= trt_cache
BUILD_DIR ?= .build
# Serving: Triton instance kind (gpu, or cpu for a Triton without GPUs: Track A and end2end NMS=onnx/ultralytics/free
# only), and the engine cache of ONNX Runtime's TensorRT execution provider AS THE SERVER SEES IT
# (NMS=efficient end2end ONNX; docker-compose.yml mounts ./trt_cache/onnxruntime there, writable).
INSTANCE_KIND ?= gpu
# How Triton executes batches of the ONNX models (Track A, end2end): pad | fixed | dynamic | auto (= pad on
# GPU instances, dynamic on CPU ones). ONNX Runtime's CUDA EP pays seconds whenever a run's batch size
# differs from the last one's, which dynamic batching does all the time: pad = the graph pads every
# execution to ORT_PAD_BATCH images (at most the model's MAX_BATCH) and slices the answers back (one shape
# for cuDNN; max_batch_size = ORT_PAD_BATCH); fixed = max_batch_size 1 on INSTANCES_PER_GPU instances, no
# batching; dynamic = dynamic batching up to MAX_BATCH (right for CPU instances and TensorRT plans).
ORT_BATCHING ?= auto
ORT_PAD_BATCH ?= 16
ORT_TRT_CACHE_DIR ?= /ort_trt_cache
# Model versions (A/B rollouts): VERSION=next writes models/<name>/<N>/ beside the others (make version);
# Triton serves the KEEP_VERSIONS newest version folders (config version_policy latest) until make promote
# pins versions (version_policy specific).
VERSION ?= 1
KEEP_VERSIONS ?= 1
# The client's pixel budget (decompression-bomb guard): an image file whose header claims more pixels
# (width x height) is refused with one line before it is decoded (yolo_triton.client.check_pixel_budget).
# 100 MP = 300 MB of BGR pixels in the client; raise it for larger genuine images.
MAX_PIXELS ?= 100000000
