# YOLO -> Triton model repository. The file graph, top to bottom:
#
#   $(WEIGHTS_DIR)/<m>.pt                      <- export/download_pytorch_models.sh (yolo11n/s/m), or yours
#   $(MODELS_DIR)/<name>/1/model.onnx          <- export/export_onnx.py   (Track A: ONNX, client NMS)
#   $(MODELS_DIR)/<name>_end2end/1/model.onnx  <- export/add_nms.py       (ONNX + NMS stage, by graph surgery)
#   $(MODELS_DIR)/<name>_trt/1/model.plan      <- export/build_engine.py  (Track B: TensorRT)
#   $(MODELS_DIR)/<name>_trt_end2end/1/model.plan <- export/build_engine.py (Track C: TensorRT + NMS)
#   $(MODELS_DIR)/<dir>/config.pbtxt           <- export/write_config.py  (from the artefact itself)
#   $(MODELS_DIR)/<name>_ensemble/config.pbtxt <- dali/create_ensembles.py (Track D: DALI + <name>_$(ENSEMBLE_DETECTOR))
#   $(MODELS_DIR)/<name>/<N>/{model.onnx,version.json} <- scripts/versions.py (make version VERSION=next)
#
# <name> is yolov11_<size> for the seed's sizes (weights $(WEIGHTS_<size>).pt), or the stem of any
# other checkpoint in $(WEIGHTS_DIR). Every setting is a variable: make TOPK=50 IMGSZ=960 onnx.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DELETE_ON_ERROR:
.SUFFIXES:
.DEFAULT_GOAL := help
MAKEFLAGS += --no-builtin-rules --no-builtin-variables
.SECONDEXPANSION:

# GNU Make 4.2 or newer: the parameter stamps below are read with $(file <...), new in 4.2.
ifeq ($(filter-out 3.% 4.0 4.0.% 4.1 4.1.%,$(MAKE_VERSION)),)
$(error GNU Make >= 4.2 is needed, this is $(or $(MAKE_VERSION),not GNU Make); install a newer make (macOS: brew install make, then run gmake))
endif

include export/defaults.mk

CALIB_DIR ?=
TRTEXEC ?=
MAX_BATCH ?=
PYTHON ?= $(if $(wildcard .venv/bin/python),.venv/bin/python,python3)
NAMES ?= $(SIZES:%=yolov11_%)

# ---- name -> checkpoint, max batch ------------------------------------------------------------------
size_of = $(patsubst yolov11_%,%,$(filter yolov11_%,$(1)))
weights_for = $(WEIGHTS_DIR)/$(or $(WEIGHTS_$(call size_of,$(1))),$(1)).pt
max_batch_for = $(or $(MAX_BATCH),$(MAX_BATCH_$(call size_of,$(1))),$(MAX_BATCH_custom))
base_of = $(patsubst %_trt,%,$(patsubst %_end2end,%,$(patsubst %_trt_end2end,%,$(1))))

# ---- parameter stamps: one small file per model and setting group; artefacts depend on them. Make
# reads each stamp while parsing (no shell, no Python); a stamp whose content differs from the current
# settings gets a rule that rewrites it, which makes exactly the artefacts that use it out of date.
# ORT_BATCHING=pad pads the ONNX graphs to min(ORT_PAD_BATCH, max batch); the mode is resolved in Python
# (settings.ort_batching): the stamp only needs to change when the padding may (tests/test_batch_pad.py).
ort_mode = $(if $(filter auto,$(ORT_BATCHING)),$(if $(filter gpu,$(INSTANCE_KIND)),pad,dynamic),$(ORT_BATCHING))
ort_pad_params = $(if $(filter pad,$(ort_mode)),pad:$(ORT_PAD_BATCH):max$(call max_batch_for,$(1)),$(ORT_BATCHING))
ONNX_PARAMS = imgsz=$(IMGSZ) precision=$(PRECISION) calib=$(CALIB_DIR) input_dtype=$(INPUT_DTYPE) batching=$(call ort_pad_params,$(1))
ONE2ONE_PARAMS = $(call ONNX_PARAMS,$(1)) max_det=$(TOPK)
TRACK_A_PARAMS = $(call ONNX_PARAMS,$(1)) output_dtype=$(OUTPUT_DTYPE)
END2END_PARAMS = nms=$(NMS) conf=$(CONF) iou=$(IOU) topk=$(TOPK) agnostic=$(AGNOSTIC)
CONFIG_PARAMS = max_batch=$(call max_batch_for,$(1)) queue_delay_us=$(QUEUE_DELAY_US) kind=$(INSTANCE_KIND) \
  workspace=$(WORKSPACE) ort_trt_cache=$(ORT_TRT_CACHE_DIR) instances_per_gpu=$(INSTANCES_PER_GPU) gpus=$(GPUS) \
  keep_versions=$(KEEP_VERSIONS) ort_batching=$(ORT_BATCHING) ort_pad_batch=$(ORT_PAD_BATCH)
PLAN_PARAMS = max_batch=$(call max_batch_for,$(1)) imgsz=$(IMGSZ) workspace=$(WORKSPACE) opt_level=$(OPT_LEVEL) \
  gpus=$(GPUS) hw_compat=$(HW_COMPAT)
ENSEMBLE_PARAMS = detector=$(ENSEMBLE_DETECTOR)
STAMPS := $(BUILD_DIR)/params
same = $(if $(subst @$(1),,@$(2))$(subst @$(2),,@$(1)),,same)
define STAMP_RULE
$(1): FORCE
	@mkdir -p $$(@D) && printf '%s\n' '$(2)' > $$@
endef
stamp = $(if $(call same,$(file <$(1)),$(2)),,$(eval $(call STAMP_RULE,$(1),$(2))))
goal_names = $(foreach g,$(filter $(MODELS_DIR)/%,$(MAKECMDGOALS)),$(call base_of,$(patsubst %_ensemble,%,$(firstword \
  $(subst /, ,$(patsubst $(MODELS_DIR)/%,%,$(g)))))))
STAMPED_NAMES := $(sort $(NAMES) $(basename $(notdir $(wildcard $(WEIGHTS_DIR)/*.pt))) $(goal_names) \
  $(if $(filter version,$(MAKECMDGOALS)),$(MODEL)))
$(foreach n,$(STAMPED_NAMES),\
  $(call stamp,$(STAMPS)/$(n).onnx,$(call TRACK_A_PARAMS,$(n)))\
  $(if $(filter free,$(NMS)),$(call stamp,$(STAMPS)/$(n).one2one,$(call ONE2ONE_PARAMS,$(n))))\
  $(call stamp,$(STAMPS)/$(n).end2end,$(END2END_PARAMS))\
  $(call stamp,$(STAMPS)/$(n).config,$(call CONFIG_PARAMS,$(n)))\
  $(call stamp,$(STAMPS)/$(n).plan,$(call PLAN_PARAMS,$(n)))\
  $(call stamp,$(STAMPS)/$(n).ensemble,$(ENSEMBLE_PARAMS)))
.PHONY: FORCE
FORCE:

# ---- INSTANCE_KIND=cpu (a Triton without GPUs): refuse, before anything is built, what cannot run there
ifeq ($(filter gpu cpu,$(INSTANCE_KIND)),)
$(error INSTANCE_KIND=$(INSTANCE_KIND) is not gpu or cpu)
endif
ifeq ($(filter auto pad fixed dynamic,$(ORT_BATCHING)),)
$(error ORT_BATCHING=$(ORT_BATCHING) is not auto, pad, fixed or dynamic)
endif
ifeq ($(filter float32 uint8,$(INPUT_DTYPE)),)
$(error INPUT_DTYPE=$(INPUT_DTYPE) is not float32 or uint8)
endif
ifeq ($(filter auto float32 float16,$(OUTPUT_DTYPE)),)
$(error OUTPUT_DTYPE=$(OUTPUT_DTYPE) is not auto, float32 or float16)
endif
ifeq ($(filter trt_end2end end2end,$(ENSEMBLE_DETECTOR)),)
$(error ENSEMBLE_DETECTOR=$(ENSEMBLE_DETECTOR) is not trt_end2end (the TensorRT plan) or end2end (the ONNX, ONNX Runtime))
endif
# ---- GPUS: nvidia-smi indices; checked here, before anything is built or any parameter stamp rewritten
non_digits = $(subst 0,,$(subst 1,,$(subst 2,,$(subst 3,,$(subst 4,,$(subst 5,,$(subst 6,,$(subst 7,,$(subst \
  8,,$(subst 9,,$(1)))))))))))
# Track D builds a plan only when its detector step is one (ENSEMBLE_DETECTOR=trt_end2end)
TRACKD_GOALS := dali trackd %_ensemble/config.pbtxt
PLAN_GOALS := trt all %.plan %_trt/config.pbtxt %_trt_end2end/config.pbtxt $(if $(filter trt_end2end,$(ENSEMBLE_DETECTOR)),$(TRACKD_GOALS))
gpus_comma := ,
GPUS_LIST := $(if $(filter all,$(strip $(GPUS))),,$(subst $(gpus_comma), ,$(GPUS)))
ifneq ($(GPUS_LIST),)
GPUS_NOT_INDEX := $(strip $(foreach g,$(GPUS_LIST),$(if $(call non_digits,$(g)),$(g))))
ifneq ($(GPUS_NOT_INDEX),)
$(error GPUS=$(GPUS): '$(firstword $(GPUS_NOT_INDEX))' is not a GPU index; use e.g. GPUS=0,2 (nvidia-smi -L lists them), or leave GPUS empty for every GPU)
endif
GPUS_LISTED := $(strip $(foreach g,$(shell nvidia-smi --query-gpu=index --format=csv,noheader 2>/dev/null),$(if $(call non_digits,$(g)),,$(g))))
GPUS_ABSENT := $(filter-out $(GPUS_LISTED),$(GPUS_LIST))
ifneq ($(GPUS_LISTED),)
ifneq ($(GPUS_ABSENT),)
$(error GPUS=$(GPUS): GPU $(firstword $(GPUS_ABSENT)) is not on this machine (nvidia-smi lists $(subst $(eval) ,$(gpus_comma),$(strip $(GPUS_LISTED)))))
endif
else ifneq ($(filter $(PLAN_GOALS),$(MAKECMDGOALS)),)
$(error GPUS=$(GPUS) but nvidia-smi lists no GPU here: plans are built on this machine's GPUs; leave GPUS empty)
endif
endif

ifeq ($(INSTANCE_KIND),cpu)
CPU_REFUSED := $(filter $(PLAN_GOALS),$(MAKECMDGOALS))
ifneq ($(CPU_REFUSED),)
$(error INSTANCE_KIND=cpu: $(firstword $(CPU_REFUSED)) needs TensorRT on a GPU; build onnx targets for a CPU Triton)
endif
CPU_REFUSED_DALI := $(filter $(TRACKD_GOALS),$(MAKECMDGOALS))
ifneq ($(CPU_REFUSED_DALI),)
$(error INSTANCE_KIND=cpu: $(firstword $(CPU_REFUSED_DALI)) is Track D, whose DALI model decodes on a GPU (KIND_GPU); build onnx targets for a CPU Triton)
endif
ifeq ($(NMS),efficient)
ifneq ($(filter onnx %_end2end/1/model.onnx %_end2end/config.pbtxt,$(MAKECMDGOALS)),)
$(error INSTANCE_KIND=cpu with NMS=efficient: the EfficientNMS_TRT plugin runs only on a GPU (TensorRT); add NMS=onnx (or NMS=free for YOLO26/YOLOv10))
endif
endif
endif

LIB := export/yolo_triton
# Each step's command and the library modules it runs (ARCHITECTURE.md): editing one rebuilds what it makes.
BASE := $(LIB)/settings.py $(LIB)/files.py
ONNX_STEP := export/export_onnx.py $(LIB)/onnx_export.py $(LIB)/batch_pad.py $(LIB)/input_uint8.py $(LIB)/output_dtype.py $(LIB)/checkpoint.py $(LIB)/onnx_io.py $(LIB)/options.py \
  $(BASE) $(if $(filter int8,$(PRECISION)),$(LIB)/int8.py $(LIB)/postprocess.py)
NMS_STEP := export/add_nms.py $(LIB)/nms_graph.py $(LIB)/output_dtype.py $(LIB)/batch_pad.py $(LIB)/nms_onnx.py $(LIB)/options.py $(LIB)/onnx_io.py $(BASE)
CONFIG_STEP := export/write_config.py $(LIB)/triton_config.py $(LIB)/onnx_io.py $(BASE)
ENGINE_STEP := export/build_engine.py $(wildcard $(LIB)/engine*.py) $(LIB)/batch_pad.py $(BASE)

# ---- help -------------------------------------------------------------------------------------------
.PHONY: help
help: ## Show the targets and the settings
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-16s %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@echo "Settings: IMGSZ=$(IMGSZ) CONF=$(CONF) IOU=$(IOU) TOPK=$(TOPK) PRECISION=$(PRECISION) NMS=$(NMS) INPUT_DTYPE=$(INPUT_DTYPE) OUTPUT_DTYPE=$(OUTPUT_DTYPE) SIZES='$(SIZES)'"
	@echo "          MAX_BATCH_{nano,small,medium}=$(MAX_BATCH_nano),$(MAX_BATCH_small),$(MAX_BATCH_medium) MODELS_DIR=$(MODELS_DIR)"
	@echo "Example:  make models/yolov11_small_trt_end2end/1/model.plan"

# ---- set-up and tests -------------------------------------------------------------------------------
.PHONY: setup test system-tools
setup: .venv/.installed system-tools ## .venv with the pinned dependencies + yolo_triton (as root: apt-get docker-compose; SYSTEM_TOOLS=0 skips)

# Debian's docker-compose reads docker-compose.yml in the tests (no Docker engine needed). As root, with
# apt-get, it is installed after saying so; SYSTEM_TOOLS=0 never touches the system.
SYSTEM_TOOLS ?= 1
system-tools:
	@command -v docker-compose >/dev/null || { if [ "$(SYSTEM_TOOLS)" = 1 ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "make setup: running as root, installing the Debian package docker-compose with apt-get (SYSTEM_TOOLS=0 skips this)" >&2; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose >/dev/null; \
	  else echo "note: install docker-compose (Debian/Ubuntu package) for the compose-file test" >&2; fi; }
.venv/.installed: requirements.txt pyproject.toml
	python3 -m venv .venv
	.venv/bin/pip install --quiet --upgrade pip
	.venv/bin/pip install --quiet -r requirements.txt
	.venv/bin/pip install --quiet -e . --no-deps
	touch $@

# TEST_WORKERS: pytest-xdist processes, each running whole test files (tests/conftest.py orders them, and
# shares the session's built artefacts between them: tests/shared_build.py); 0 = one process.
TEST_WORKERS ?= 2
test: ## Run the test suite (CPU; TensorRT through honest doubles)
	$(PYTHON) -m pytest -q $(if $(filter-out 0,$(TEST_WORKERS)),-n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder) tests

# ---- checkpoints ------------------------------------------------------------------------------------
# WEIGHTS_BASE_URL: a mirror serving the same yolo11n/s/m.pt (checksums still pinned); empty = the script's.
WEIGHTS_BASE_URL ?=
SEED_WEIGHTS := $(foreach s,$(SIZES),$(WEIGHTS_DIR)/$(WEIGHTS_$(s)).pt)
squote = '$(subst ','\'',$(1))'
comma := ,
DOWNLOAD = $(if $(WEIGHTS_BASE_URL),YOLO_WEIGHTS_BASE_URL=$(call squote,$(WEIGHTS_BASE_URL)) )bash export/download_pytorch_models.sh
# A checkpoint that cannot be had: the hint names a command that then works. The UNTRAINED checkpoint of
# `make scratch` is served under its own name <arch>_untrained, never under the seed's or yours: the goals
# asked for, with the model name swapped, and the command-line settings kept.
# $(1): the missing checkpoint's stem, $(2): the architecture for make scratch.
names_using = $(1) $(foreach s,$(sort $(SIZES) nano small medium),$(if $(filter $(1),$(WEIGHTS_$(s))),yolov11_$(s)))
goal_model = $(if $(filter $(MODELS_DIR)/%,$(1)),$(call base_of,$(patsubst %_ensemble,%,$(firstword $(subst /, ,$(patsubst $(MODELS_DIR)/%,%,$(1)))))))
renamed_goal = $(if $(filter $(2),$(call goal_model,$(1))),$(patsubst $(MODELS_DIR)/$(call goal_model,$(1))%,$(MODELS_DIR)/$(3)%,$(1)))
NAMES_GOALS := onnx trt all dali trackd
# A goal that is the checkpoint itself (make demo's first step): the scratch step alone makes it, under its own name.
hint_goals = $(strip $(foreach g,$(MAKECMDGOALS),$(call renamed_goal,$(g),$(call names_using,$(1)),$(2)_untrained) \
  $(filter $(NAMES_GOALS) validate,$(g))))
scratch_hint = make scratch MODEL=$(2) $(filter WEIGHTS_DIR=% PYTHON=%,$(MAKEOVERRIDES))$(if $(or $(call \
  hint_goals,$(1),$(2)),$(if $(filter $(WEIGHTS_DIR)/%.pt,$(MAKECMDGOALS)),,default)), && make $(strip \
  $(or $(call hint_goals,$(1),$(2)),$(MODELS_DIR)/$(2)_untrained_trt_end2end/1/model.plan) \
  $(if $(filter $(NAMES_GOALS),$(MAKECMDGOALS)),NAMES=$(2)_untrained) \
  $(if $(filter validate,$(MAKECMDGOALS)),MODEL=$(2)_untrained) $(filter-out MODEL=% NAMES=%,$(MAKEOVERRIDES))))
.PHONY: download scratch
download: ## Download yolo11n/s/m.pt for SIZES (checksums verified; WEIGHTS_BASE_URL= for a mirror)
	$(DOWNLOAD) --dir $(WEIGHTS_DIR) $(foreach s,$(SIZES),$(WEIGHTS_$(s)))

$(foreach s,nano small medium,$(WEIGHTS_DIR)/$(WEIGHTS_$(s)).pt):
	@$(DOWNLOAD) --dir $(WEIGHTS_DIR) --scratch-hint $(call squote,$(call scratch_hint,$(basename $(notdir $@)),$(basename $(notdir $@)))) \
	  $(basename $(notdir $@))

# Any other missing checkpoint: <arch>_untrained.pt is made by make scratch MODEL=<arch>; yours by you.
scratch_arch = $(if $(filter %_untrained,$(1)),$(patsubst %_untrained,%,$(1)),yolo11n)
$(WEIGHTS_DIR)/%.pt:
	@printf '%s\n' $(call squote,error: checkpoint $@ not found: copy your .pt there$(comma) or build from an \
	  UNTRAINED test checkpoint under its own name: $(call scratch_hint,$*,$(call scratch_arch,$*))) >&2; exit 1

MODEL ?=
NC ?=
KPT_SHAPE ?=
scratch: ## Write an UNTRAINED test checkpoint: make scratch MODEL=yolo11n|yolo11n-seg|yolo26n-pose|yolo11n-obb|yolo11n-cls [NC=3] [KPT_SHAPE=5,3]
	@test -n "$(MODEL)" || { echo "usage: make scratch MODEL=yolo11n (or yolov8n, yolo12n, yolo26n, yolov10n; any task: yolo11n-seg, yolo26n-pose, yolo11n-obb, yolo11n-cls) [NC=3] [KPT_SHAPE=5,3]" >&2; exit 2; }
	$(PYTHON) export/make_scratch_checkpoint.py --arch $(MODEL) --out $(WEIGHTS_DIR)/$(MODEL)_untrained.pt --imgsz $(IMGSZ) $(if $(NC),--nc $(NC)) \
	  $(if $(KPT_SHAPE),--kpt-shape $(KPT_SHAPE))

# ---- Track A: ONNX ----------------------------------------------------------------------------------
# ORT_BATCHING (defaults.mk): how GPU Triton runs these graphs; pad wraps the graph (yolo_triton.batch_pad)
ort_batch_args = --ort-batching $(ORT_BATCHING) --ort-pad-batch $(ORT_PAD_BATCH) --instance-kind $(INSTANCE_KIND) \
  --max-batch $(call max_batch_for,$(1))
$(MODELS_DIR)/%/1/model.onnx: $$(call weights_for,$$*) $(ONNX_STEP) $(STAMPS)/$$*.onnx
	$(PYTHON) export/export_onnx.py --weights $< --out $@ --imgsz $(IMGSZ) --precision $(PRECISION) \
	  --input-dtype $(INPUT_DTYPE) --output-dtype $(OUTPUT_DTYPE) $(if $(CALIB_DIR),--calib-dir $(CALIB_DIR)) \
	  $(call ort_batch_args,$*)

# ---- end2end: ONNX + NMS ----------------------------------------------------------------------------
# NMS=efficient|onnx|ultralytics: surgery on the Track A graph. NMS=free (YOLO26, YOLOv10): surgery on an export of
# the NMS-free one-to-one head with max_det=TOPK, kept outside the model repository.
END2END_SOURCE = $(if $(filter free,$(NMS)),$(BUILD_DIR)/one2one/$*.onnx,$(MODELS_DIR)/$*/1/model.onnx)
$(BUILD_DIR)/one2one/%.onnx: $$(call weights_for,$$*) $(ONNX_STEP) $(STAMPS)/$$*.one2one
	$(PYTHON) export/export_onnx.py --weights $< --out $@ --imgsz $(IMGSZ) --precision $(PRECISION) \
	  --input-dtype $(INPUT_DTYPE) --one2one --topk $(TOPK) $(if $(CALIB_DIR),--calib-dir $(CALIB_DIR)) $(call ort_batch_args,$*)

$(MODELS_DIR)/%_end2end/1/model.onnx: $$(END2END_SOURCE) $(NMS_STEP) $(STAMPS)/$$*.end2end
	$(PYTHON) export/add_nms.py --onnx $< --out $@ --nms $(NMS) --conf $(CONF) --iou $(IOU) \
	  --topk $(TOPK) --agnostic $(AGNOSTIC)

# ---- Tracks B and C: TensorRT plans (timing cache in CACHE_DIR) --------------------------------------
# make -j trt is safe: each build waits for a free GPU of GPUS (a lock per GPU in CACHE_DIR/locks) and is
# pinned to it; timing caches are merged under a lock. GPUs of several compute capabilities: each
# model.plan target also writes model_sm<XY>.plan for the other capabilities (cc_model_filenames).
ENGINE_ARGS = --max-batch $(call max_batch_for,$*) --imgsz $(IMGSZ) --workspace $(WORKSPACE) \
  --opt-level $(OPT_LEVEL) --cache-dir $(CACHE_DIR) --builder $(ENGINE_BUILDER) $(if $(TRTEXEC),--trtexec $(TRTEXEC)) \
  --gpus '$(GPUS)' --hw-compat $(HW_COMPAT) --lock-dir $(CACHE_DIR)/locks
$(MODELS_DIR)/%_trt/1/model.plan: $(MODELS_DIR)/%/1/model.onnx $(ENGINE_STEP) $(STAMPS)/$$*.plan | $(CACHE_DIR)
	$(PYTHON) export/build_engine.py --onnx $< --plan $@ $(ENGINE_ARGS)

$(MODELS_DIR)/%_trt_end2end/1/model.plan: $(MODELS_DIR)/%_end2end/1/model.onnx $(ENGINE_STEP) $(STAMPS)/$$*.plan | $(CACHE_DIR)
	$(PYTHON) export/build_engine.py --onnx $< --plan $@ $(ENGINE_ARGS)

$(CACHE_DIR):
	mkdir -p $@

# Plans run only on the TensorRT version (and GPU model) that built them: an explicit check, never part
# of a no-op make. After moving GPU or image: make check-plans REMOVE_STALE=1 && make trt
PLANS = $(wildcard $(MODELS_DIR)/*/1/model.plan $(MODELS_DIR)/*/1/model_sm*.plan)
REMOVE_STALE ?= 0
.PHONY: check-plans
check-plans: ## List plans built on another GPU model / TensorRT version (REMOVE_STALE=1 deletes them)
	$(PYTHON) export/build_engine.py --check-plans $(PLANS) --builder $(ENGINE_BUILDER) \
	  $(if $(TRTEXEC),--trtexec $(TRTEXEC)) $(if $(filter 1,$(REMOVE_STALE)),--remove-stale) \
	  --gpus '$(GPUS)' --hw-compat $(HW_COMPAT)

# ---- Triton configs ---------------------------------------------------------------------------------
CONFIG_ARGS = --max-batch $(call max_batch_for,$*) --queue-delay-us $(QUEUE_DELAY_US) --instance-kind $(INSTANCE_KIND) \
  --workspace $(WORKSPACE) --ort-trt-cache-dir $(ORT_TRT_CACHE_DIR) --instances-per-gpu $(INSTANCES_PER_GPU) --gpus '$(GPUS)' \
  --keep-versions $(KEEP_VERSIONS) --ort-batching $(ORT_BATCHING)
$(MODELS_DIR)/%_trt_end2end/config.pbtxt: $(MODELS_DIR)/%_trt_end2end/1/model.plan $(CONFIG_STEP) $(STAMPS)/$$*.config
	$(PYTHON) export/write_config.py --artefact $< --source-onnx $(MODELS_DIR)/$*_end2end/1/model.onnx $(CONFIG_ARGS)

$(MODELS_DIR)/%_trt/config.pbtxt: $(MODELS_DIR)/%_trt/1/model.plan $(CONFIG_STEP) $(STAMPS)/$$*.config
	$(PYTHON) export/write_config.py --artefact $< --source-onnx $(MODELS_DIR)/$*/1/model.onnx $(CONFIG_ARGS)

$(MODELS_DIR)/%_end2end/config.pbtxt: $(MODELS_DIR)/%_end2end/1/model.onnx $(CONFIG_STEP) $(STAMPS)/$$*.config
	$(PYTHON) export/write_config.py --artefact $< $(CONFIG_ARGS)

$(MODELS_DIR)/%/config.pbtxt: $(MODELS_DIR)/%/1/model.onnx $(CONFIG_STEP) $(STAMPS)/$$*.config
	$(PYTHON) export/write_config.py --artefact $< $(CONFIG_ARGS)

# Every artefact of a known name is named here, so make never treats one as an intermediate to delete.
ARTEFACTS := $(foreach n,$(STAMPED_NAMES),$(MODELS_DIR)/$(n)/1/model.onnx $(MODELS_DIR)/$(n)_end2end/1/model.onnx \
  $(BUILD_DIR)/one2one/$(n).onnx \
  $(MODELS_DIR)/$(n)_trt/1/model.plan $(MODELS_DIR)/$(n)_trt_end2end/1/model.plan)
$(ARTEFACTS):

# ---- groups -----------------------------------------------------------------------------------------
ONNX_CONFIGS := $(foreach n,$(NAMES),$(MODELS_DIR)/$(n)/config.pbtxt $(MODELS_DIR)/$(n)_end2end/config.pbtxt)
TRT_CONFIGS := $(foreach n,$(NAMES),$(MODELS_DIR)/$(n)_trt/config.pbtxt $(MODELS_DIR)/$(n)_trt_end2end/config.pbtxt)
.PHONY: onnx trt all clean-reexport
onnx: $(ONNX_CONFIGS) ## ONNX artefacts + configs (Track A and end2end) for SIZES (or NAMES)
trt: $(TRT_CONFIGS) ## TensorRT plans + configs (Tracks B and C) for SIZES (or NAMES)
all: onnx trt dali ## Everything for SIZES (Tracks A-D)

# ---- Track D: DALI letterbox model + ensembles (encoded bytes -> DALI -> <name>_$(ENSEMBLE_DETECTOR)) ------
#   $(MODELS_DIR)/preprocess_letterbox_<IMGSZ>/{config.pbtxt,1/dali.py} <- dali/create_dali_letterbox_pipeline.py
#   $(MODELS_DIR)/<name>_ensemble/config.pbtxt <- dali/create_ensembles.py (reads both step configs)
# One DALI model per IMGSZ, shared by every name, max batch = the largest of NAMES' (an ensemble's is
# the smallest of its steps': with ORT_BATCHING=pad an ONNX detector's is its pad). Triton's own DALI
# autoserializes 1/dali.py at load time, on its GPU. The detector step, ENSEMBLE_DETECTOR: trt_end2end
# (the plan, Track C) or end2end (the end2end ONNX through ONNX Runtime, for a server without TensorRT).
PREPROCESS_DIR = $(MODELS_DIR)/preprocess_letterbox_$(IMGSZ)
DALI_MAX_BATCHES = $(foreach n,$(NAMES),$(call max_batch_for,$(n)))
DALI_PARAMS = imgsz=$(IMGSZ) max_batch=$(DALI_MAX_BATCHES) queue_delay_us=$(QUEUE_DELAY_US) threads=$(DALI_THREADS) \
  input_dtype=$(INPUT_DTYPE)
$(call stamp,$(STAMPS)/preprocess_$(IMGSZ).dali,$(DALI_PARAMS))
DALI_STEP := dali/create_dali_letterbox_pipeline.py $(LIB)/dali_pipeline.py $(LIB)/ensemble.py $(LIB)/triton_config.py $(BASE)
ENSEMBLE_STEP := dali/create_ensembles.py $(LIB)/ensemble.py $(LIB)/triton_config.py $(BASE)

$(PREPROCESS_DIR)/config.pbtxt: $(DALI_STEP) $(STAMPS)/preprocess_$(IMGSZ).dali
	$(PYTHON) dali/create_dali_letterbox_pipeline.py --model-dir $(MODELS_DIR) --imgsz $(IMGSZ) \
	  --max-batch $(DALI_MAX_BATCHES) --queue-delay-us $(QUEUE_DELAY_US) --num-threads $(DALI_THREADS) \
	  --input-dtype $(INPUT_DTYPE)

$(MODELS_DIR)/%_ensemble/config.pbtxt: $(PREPROCESS_DIR)/config.pbtxt $(MODELS_DIR)/%_$(ENSEMBLE_DETECTOR)/config.pbtxt \
  $(ENSEMBLE_STEP) $(STAMPS)/$$*.ensemble
	$(PYTHON) dali/create_ensembles.py --names $* --imgsz $(IMGSZ) --model-dir $(MODELS_DIR) --detector $(ENSEMBLE_DETECTOR)

DALI_CONFIGS = $(foreach n,$(NAMES),$(MODELS_DIR)/$(n)_ensemble/config.pbtxt)
.PHONY: dali trackd
dali: $(DALI_CONFIGS) ## Track D: DALI letterbox model + <name>_ensemble for SIZES (or NAMES); builds the detectors (ENSEMBLE_DETECTOR)
trackd: dali

# ---- operating the result ---------------------------------------------------------------------------
.PHONY: validate bench-postprocess
# The end2end model too, where the checkpoint has one under NMS (export/end2end_refusal.py says why not:
# classify, YOLO11/v8 OBB, segment/pose with NMS=efficient).
validate: $(if $(MODEL),$(MODELS_DIR)/$(MODEL)/1/model.onnx) ## Compare PyTorch, ONNX, end2end (+ plans on a GPU): make validate MODEL=yolov11_small [IMAGES=dir]
	@test -n "$(MODEL)" || { echo "usage: make validate MODEL=<name> [IMAGES=dir] (e.g. MODEL=yolov11_small)" >&2; exit 2; }
	@why_not=$$($(PYTHON) export/end2end_refusal.py $(call weights_for,$(MODEL)) --nms $(NMS)); \
	if [ -z "$$why_not" ]; then $(MAKE) --no-print-directory $(MODELS_DIR)/$(MODEL)_end2end/1/model.onnx; \
	else echo "[validate] $(MODEL): no end2end model: $$why_not" >&2; fi
	$(PYTHON) scripts/validate.py --model $(MODEL) --models-dir $(MODELS_DIR) --weights-dir $(WEIGHTS_DIR) \
	  --conf $(CONF) --iou $(IOU) --topk $(TOPK) --agnostic $(AGNOSTIC) $(if $(IMAGES),--images $(IMAGES)) \
	  --json results/validate_$(MODEL).json

bench-postprocess: ## Time the NumPy client post-processing against ultralytics' NMS (one CPU thread)
	OMP_NUM_THREADS=1 $(PYTHON) scripts/bench_postprocess.py --json results/bench_postprocess.json

# ---- demo: the first run on any machine (no GPU, no TensorRT, no network needed) ---------------------
# The seed's nano checkpoint when it downloads, else an UNTRAINED one (said loudly); Track A and an end2end
# ONNX that runs on a CPU (NMS=onnx), their configs (INSTANCE_KIND=cpu) in their own repository
# $(DEMO_DIR)/models, make validate, then (where a Triton can start here) served and queried, PNGs drawn.
DEMO_DIR ?= demo
DEMO_MODELS = $(DEMO_DIR)/models
DEMO_ARGS = MODELS_DIR=$(DEMO_MODELS) BUILD_DIR=$(DEMO_DIR)/.build INSTANCE_KIND=cpu NMS=onnx PRECISION=fp32
.PHONY: demo
demo: ## First run anywhere: checkpoint, Track A + CPU end2end, configs, validate, real Triton + client PNGs
	@if $(MAKE) --no-print-directory $(WEIGHTS_DIR)/$(WEIGHTS_nano).pt; then name=$(WEIGHTS_nano); \
	else name=$(WEIGHTS_nano)_untrained; \
	  echo "######## demo: no download here: using an UNTRAINED $$name checkpoint (boxes are meaningless) ########" >&2; \
	  test -f $(WEIGHTS_DIR)/$$name.pt || $(MAKE) --no-print-directory scratch MODEL=$(WEIGHTS_nano); fi; \
	$(MAKE) --no-print-directory $(DEMO_ARGS) $(DEMO_MODELS)/$$name/config.pbtxt $(DEMO_MODELS)/$${name}_end2end/config.pbtxt && \
	$(MAKE) --no-print-directory $(DEMO_ARGS) validate MODEL=$$name && \
	{ $(PYTHON) scripts/serve_local.py --models-dir $(DEMO_MODELS) --model $$name $${name}_end2end \
	    --draw-dir $(DEMO_DIR)/results; rc=$$?; \
	  if [ $$rc = 3 ]; then echo "demo: built and validated; not served (no Triton here, see the line above)"; \
	  elif [ $$rc != 0 ]; then exit $$rc; else echo "demo: served; drawn detections in $(DEMO_DIR)/results/"; fi; }

# ---- serving: the running Triton (docker compose) -------------------------------------------------
PROTOCOL ?= http
# The running Triton: TRITON_HOST (docker-compose.yml sets triton-api inside yolo-api), its HTTP/gRPC
# ports 8000/8001; TRITON_URL=host:port overrides the client's address for PROTOCOL.
TRITON_HOST ?= 127.0.0.1
TRITON_HTTP ?= $(TRITON_HOST):8000
TRITON_URL ?= $(TRITON_HOST):$(if $(filter grpc,$(PROTOCOL)),8001,8000)
IMAGES ?=
SMOKE_OUT ?= results/smoke
.PHONY: smoke reload
smoke: ## Send images to a served model, print + draw detections: make smoke MODEL=yolov11_small_trt_end2end
	@test -n "$(MODEL)" || { echo "usage: make smoke MODEL=<served model> [IMAGES=files or dir] [PROTOCOL=http|grpc] [TRITON_URL=host:port]" >&2; exit 2; }
	$(PYTHON) scripts/triton_client.py --model $(MODEL) --protocol $(PROTOCOL) --url $(TRITON_URL) \
	  $(if $(IMAGES),--images $(IMAGES)) --model-repository $(MODELS_DIR) --draw $(SMOKE_OUT)/$(MODEL).png --max-pixels $(MAX_PIXELS)

# A Triton published beyond loopback answers load/unload only with its admin key (docker-compose.yml,
# scripts/triton_entrypoint.sh): reload, promote and rollback send $$TRITON_ADMIN_KEY when it is set, as the
# header admin-key (yolo_triton.settings.ADMIN_HEADER). curl reads the header from stdin (-H @-), so the
# key shows neither in make's echo nor on curl's command line; pass it in the environment.
reload: ## Load a re-exported model into the running Triton: make reload MODEL=yolov11_small_trt_end2end
	@test -n "$(MODEL)" || { echo "usage: make reload MODEL=<model directory name under $(MODELS_DIR)>" >&2; exit 2; }
	@echo "POST http://$(TRITON_HTTP)/v2/repository/models/$(MODEL)/load$${TRITON_ADMIN_KEY:+ (admin key from TRITON_ADMIN_KEY)}"
	@{ [ -z "$${TRITON_ADMIN_KEY:-}" ] || printf 'admin-key: %s\n' "$$TRITON_ADMIN_KEY"; } | \
	  curl -sS --fail-with-body -H @- -X POST http://$(TRITON_HTTP)/v2/repository/models/$(MODEL)/load || { \
	  echo; echo "reload: $(MODEL) not loaded (Triton's answer above; 403 'This API is restricted': set" \
	    "TRITON_ADMIN_KEY to the server's admin key)" >&2; exit 1; }
	@echo; echo "loaded $(MODEL)"

# ---- serving benchmark: the track comparison on the running Triton, as clients see it -----------------
# Every served track of MODEL (<m>, <m>_trt, <m>_end2end, <m>_trt_end2end, <m>_ensemble; BENCH_TRACKS to
# choose) x BENCH_CONCURRENCY x BENCH_BATCH (images per request), through yolo_triton.client: images/s,
# latency p50/p90/p99, client pre / server / client post, the server's own batch statistics.
BENCH_PROTOCOL ?= grpc
BENCH_URL ?= $(if $(filter command line environment,$(origin TRITON_URL)),$(TRITON_URL),$(TRITON_HOST):$(if $(filter grpc,$(BENCH_PROTOCOL)),8001,8000))
BENCH_CONCURRENCY ?= 1 2 4 8
BENCH_BATCH ?= 1
BENCH_SECONDS ?= 10
BENCH_REQUESTS ?=
BENCH_WARMUP ?= 2
BENCH_PROCESSES ?= 1
BENCH_TRACKS ?=
# How tensors travel: none (in the requests), system (/dev/shm: clients on the server's machine, or
# containers sharing IPC: docker-compose.yml's ipc), cuda (GPU memory: the server on this machine's GPU).
BENCH_SHARED_MEMORY ?= none
BENCH_NOTE ?=
BENCH_OUT ?= results/bench_serving
BENCH_ARGS = --concurrency $(BENCH_CONCURRENCY) --batch $(BENCH_BATCH) \
  $(if $(BENCH_REQUESTS),--requests $(BENCH_REQUESTS),--seconds $(BENCH_SECONDS)) --warmup $(BENCH_WARMUP) \
  --processes $(BENCH_PROCESSES) $(if $(BENCH_TRACKS),--tracks $(BENCH_TRACKS)) $(if $(IMAGES),--images $(IMAGES)) \
  --shared-memory $(BENCH_SHARED_MEMORY) $(if $(BENCH_NOTE),--note "$(BENCH_NOTE)") --out $(BENCH_OUT)
.PHONY: bench-serving bench-serving-local
bench-serving: ## Serving benchmark of MODEL's tracks on the running Triton: make bench-serving MODEL=yolov11_small [BENCH_CONCURRENCY='1 4 16'] [TRITON_URL=host:port]
	@test -n "$(MODEL)" || { echo "usage: make bench-serving MODEL=<base name> [BENCH_TRACKS='A C D'] [BENCH_CONCURRENCY='1 2 4 8'] [BENCH_BATCH='1 8'] [BENCH_SECONDS=10 | BENCH_REQUESTS=N] [BENCH_PROCESSES=8] [BENCH_PROTOCOL=grpc|http] [BENCH_SHARED_MEMORY=none|system|cuda] [TRITON_URL=host:port] [IMAGES=dir]" >&2; exit 2; }
	$(PYTHON) scripts/bench_serving.py --url $(BENCH_URL) --protocol $(BENCH_PROTOCOL) --model $(MODEL) $(BENCH_ARGS)

# Here, without a GPU: Track A + end2end NMS=onnx (FP32, INSTANCE_KIND=cpu) built into BENCH_LOCAL_DIR, Track D
# through the CPU stand-ins (scripts/bench_serving_local.py says which), served by the real tritonserver.
BENCH_LOCAL_DIR ?= results/bench_local
BENCH_LOCAL_MAKE = MODELS_DIR=$(BENCH_LOCAL_DIR)/models BUILD_DIR=$(BENCH_LOCAL_DIR)/.build INSTANCE_KIND=cpu NMS=onnx PRECISION=fp32
bench-serving-local: ## CPU serving benchmark here: build MODEL's Track A + end2end, Track D stand-in, real Triton: make bench-serving-local MODEL=yolo11n_untrained
	@test -n "$(MODEL)" || { echo "usage: make bench-serving-local MODEL=<checkpoint stem in $(WEIGHTS_DIR)> [IMGSZ=320] [BENCH_* as for bench-serving]" >&2; exit 2; }
	$(MAKE) --no-print-directory $(BENCH_LOCAL_MAKE) $(BENCH_LOCAL_DIR)/models/$(MODEL)/config.pbtxt $(BENCH_LOCAL_DIR)/models/$(MODEL)_end2end/config.pbtxt
	$(PYTHON) scripts/bench_serving_local.py --models-dir $(BENCH_LOCAL_DIR)/models --model $(MODEL) --trackd-standin \
	  --protocol $(BENCH_PROTOCOL) -- $(if $(BENCH_TRACKS),,--tracks A end2end D) $(BENCH_ARGS)

# ---- soak: load with faults injected, every answer checked (yolo_triton.soak) ------------------------
# Here: MODEL's Track A + end2end NMS=onnx (FP32, INSTANCE_KIND=cpu) built into SOAK_DIR (an UNTRAINED
# scratch checkpoint when MODEL is <arch>_untrained and missing), Track D through the CPU stand-ins, version 2
# of Track A, served by the real tritonserver that scripts/soak.py starts, SIGKILLs, restarts and stops.
# TRITON_URL=host:port (gRPC; TRITON_HTTP for readiness): soak a running server (load, checks, malformed only).
SOAK_SECONDS ?= 120
SOAK_CLIENTS ?= 4
SOAK_MODEL ?= $(WEIGHTS_nano)_untrained
SOAK_DIR ?= results/soak_build
SOAK_OUT ?= results/soak
SOAK_MAKE = MODELS_DIR=$(SOAK_DIR)/models BUILD_DIR=$(SOAK_DIR)/.build INSTANCE_KIND=cpu NMS=onnx PRECISION=fp32
SOAK_ARGS = --model $(SOAK_MODEL) --seconds $(SOAK_SECONDS) --clients $(SOAK_CLIENTS) --out $(SOAK_OUT) \
  $(if $(IMAGES),--images $(IMAGES))
.PHONY: soak
soak: ## Bounded soak with faults (reload, promote/rollback, broken model, malformed, SIGKILL): make soak [SOAK_SECONDS=120] [TRITON_URL=host:port]
ifneq ($(filter command line environment,$(origin TRITON_URL)),)
	$(PYTHON) scripts/soak.py --url $(TRITON_URL) --http-url $(TRITON_HTTP) $(SOAK_ARGS)
else
	@test -f $(WEIGHTS_DIR)/$(SOAK_MODEL).pt || case "$(SOAK_MODEL)" in *_untrained) \
	  $(MAKE) --no-print-directory scratch MODEL=$(patsubst %_untrained,%,$(SOAK_MODEL));; esac
	$(MAKE) --no-print-directory $(SOAK_MAKE) $(SOAK_DIR)/models/$(SOAK_MODEL)/config.pbtxt $(SOAK_DIR)/models/$(SOAK_MODEL)_end2end/config.pbtxt
	$(PYTHON) scripts/soak.py --models-dir $(SOAK_DIR)/models --weights-dir $(WEIGHTS_DIR) $(SOAK_ARGS)
endif

clean-reexport: ## Back up configs, remove .onnx/.plan artefacts and timing caches (DRY_RUN=1 to preview)
	bash export/cleanup_for_reexport.sh --models-dir $(MODELS_DIR) --cache-dir $(CACHE_DIR) \
	  $(if $(BACKUP_DIR),--backup-dir $(BACKUP_DIR)) $(if $(filter 1,$(DRY_RUN)),--dry-run)

# ---- model versions: A/B rollouts through the running Triton ------------------------------------------
#   $(BUILD_DIR)/versions/<MODEL>/<N>/model.onnx  <- export/export_onnx.py (CHECKPOINT; staged outside models/,
#                                                    exported afresh each time, removed once copied in)
#   $(MODELS_DIR)/<MODEL>/<N>/{model.onnx,version.json} <- scripts/versions.py add (same config? validated?)
# VERSION=next is one more than the highest version folder; version 1 is the Track A rule above, as it
# was (make version MODEL=m only adds its sidecar). A version, once written, is never rebuilt. The versions
# share <MODEL>/config.pbtxt, so they must share inputs, outputs and classes (checked before anything is
# copied). Which versions Triton serves: version_policy (KEEP_VERSIONS, or what make promote pinned).
CHECKPOINT ?=
VALIDATE ?= 1
FORCE ?= 0
OFFLINE ?= 0
VERSIONS ?=
BOX_TOL ?=
SCORE_TOL ?=
ifneq ($(filter version,$(MAKECMDGOALS)),)
ifeq ($(MODEL),)
$(error usage: make version MODEL=<name> [VERSION=next|N] [CHECKPOINT=new.pt] [VALIDATE=0] [IMAGES=dir])
endif
ifneq ($(filter %_end2end %_trt %_ensemble,$(MODEL)),)
$(error make version writes Track A (ONNX) versions: MODEL=$(MODEL) is not a Track A model folder)
endif
ifeq ($(VERSION),next)
LAST_VERSION := $(shell ls -1 $(MODELS_DIR)/$(MODEL) 2>/dev/null | grep -xE '[0-9]+' | sort -n | tail -n 1)
VERSION_N := $(shell echo $$(( $(or $(LAST_VERSION),0) + 1 )))
else
VERSION_N := $(VERSION)
endif
ifneq ($(or $(subst 0,,$(subst 1,,$(subst 2,,$(subst 3,,$(subst 4,,$(subst 5,,$(subst 6,,$(subst 7,,$(subst 8,,$(subst \
  9,,$(VERSION_N))))))))))),$(filter 0%,$(VERSION_N)),$(if $(VERSION_N),,empty)),)
$(error VERSION=$(VERSION) is not next or a version number >= 1)
endif
ifneq ($(CHECKPOINT),)
ifeq ($(wildcard $(CHECKPOINT)),)
$(error CHECKPOINT=$(CHECKPOINT) not found: give the path of the new .pt)
endif
endif
ifneq ($(and $(CHECKPOINT),$(filter 1,$(VERSION_N))),)
$(error CHECKPOINT is for VERSION=next (or N > 1); version 1 is built from $(call weights_for,$(MODEL)))
endif
endif
VERSION_CHECKPOINT = $(or $(CHECKPOINT),$(call weights_for,$(MODEL)))
VERSION_STAGED = $(if $(filter 1,$(VERSION_N)),$(MODELS_DIR)/$(MODEL)/1/model.onnx,$(BUILD_DIR)/versions/$(MODEL)/$(VERSION_N)/model.onnx)
VERSION_SIDECAR = $(MODELS_DIR)/$(MODEL)/$(VERSION_N)/version.json
# Every setting goes into the sidecar: each variable of export/defaults.mk (read when the recipe runs) + these.
VERSION_SETTINGS = $(shell sed -n 's/^\([A-Za-z_][A-Za-z0-9_]*\) *?=.*/\1/p' export/defaults.mk) CALIB_DIR MAX_BATCH \
  CHECKPOINT VALIDATE IMAGES BOX_TOL SCORE_TOL
VERSION_REPORT ?= results/validate_$(MODEL)_v$(VERSION_N).json

VERSION_ADD = $(PYTHON) scripts/versions.py add --models-dir $(MODELS_DIR) --model $(MODEL) --version $(VERSION_N) \
  --source $(VERSION_STAGED) --checkpoint $(VERSION_CHECKPOINT) \
  $(foreach v,$(VERSION_SETTINGS),--setting '$(v)=$($(v))') --setting 'max_batch=$(call max_batch_for,$(MODEL))' \
  $(if $(filter 1,$(VALIDATE)),--validate --report $(VERSION_REPORT) --conf $(CONF) --iou $(IOU) --topk $(TOPK) \
    --agnostic $(AGNOSTIC) $(if $(IMAGES),--images $(IMAGES)) $(if $(BOX_TOL),--box-tol $(BOX_TOL)) \
    $(if $(SCORE_TOL),--score-tol $(SCORE_TOL)))
ifneq ($(filter version,$(MAKECMDGOALS)),)
ifneq ($(VERSION_N),1)
# Exported afresh from CHECKPOINT into BUILD_DIR, checked, validated, then copied in with its sidecar.
# Neither version 1 nor the config is a prerequisite here: a new version never remakes them.
$(VERSION_SIDECAR): | $(VERSION_CHECKPOINT)
	rm -f $(VERSION_STAGED)
	$(PYTHON) export/export_onnx.py --weights $(VERSION_CHECKPOINT) --out $(VERSION_STAGED) --imgsz $(IMGSZ) \
	  --precision $(PRECISION) --input-dtype $(INPUT_DTYPE) --output-dtype $(OUTPUT_DTYPE) \
	  $(if $(CALIB_DIR),--calib-dir $(CALIB_DIR)) $(call ort_batch_args,$(MODEL))
	$(VERSION_ADD)
	rm -f $(VERSION_STAGED)
else
$(VERSION_SIDECAR): $(VERSION_STAGED) | $(MODELS_DIR)/$(MODEL)/config.pbtxt
	$(VERSION_ADD)
endif
endif

.PHONY: version versions promote rollback compare
# (A new version leaves version 1 and the config as they are: only VERSION=1 (re)makes them.)
version: $(if $(MODEL),$(if $(filter 1,$(VERSION_N)),$(MODELS_DIR)/$(MODEL)/config.pbtxt) $(VERSION_SIDECAR)) ## Write a numbered version + its sidecar: make version MODEL=m VERSION=next CHECKPOINT=new.pt
	@echo "version $(VERSION_N) of $(MODEL): $(VERSION_SIDECAR) (make promote MODEL=$(MODEL) VERSION=$(VERSION_N) serves it)"

versions: ## List a model's versions, sidecars and what is served: make versions MODEL=m
	@test -n "$(MODEL)" || { echo "usage: make versions MODEL=<name>" >&2; exit 2; }
	$(PYTHON) scripts/versions.py list --models-dir $(MODELS_DIR) --model $(MODEL) \
	  $(if $(filter 1,$(OFFLINE)),,--url $(TRITON_HTTP))

SERVE_ARGS = --models-dir $(MODELS_DIR) --model $(MODEL) --url $(TRITON_HTTP) $(if $(filter 1,$(FORCE)),--force) \
  $(if $(filter 1,$(OFFLINE)),--offline)
promote: ## Serve version N as the newest and load it in the running Triton: make promote MODEL=m VERSION=N [FORCE=1]
	@test -n "$(MODEL)" -a "$(origin VERSION)" != file || { \
	  echo "usage: make promote MODEL=<name> VERSION=<N|latest> [KEEP_VERSIONS=k] [FORCE=1] [OFFLINE=1]" >&2; exit 2; }
	$(PYTHON) scripts/versions.py promote $(SERVE_ARGS) --version $(VERSION) --keep $(KEEP_VERSIONS)

rollback: ## Undo the last promote/rollback in the running Triton: make rollback MODEL=m
	@test -n "$(MODEL)" || { echo "usage: make rollback MODEL=<name> [FORCE=1] [OFFLINE=1]" >&2; exit 2; }
	$(PYTHON) scripts/versions.py rollback $(SERVE_ARGS)

comma := ,
CLIENT_NMS ?=
COMPARE_JSON ?= results/compare_$(MODEL)_$(subst $(comma),_,$(VERSIONS)).json
compare: ## A/B: same images to two served versions, a table of differences: make compare MODEL=m VERSIONS=1,2 [IMAGES=dir]
	@test -n "$(MODEL)" -a -n "$(VERSIONS)" || { \
	  echo "usage: make compare MODEL=<name> VERSIONS=A,B [IMAGES=dir] [PROTOCOL=http|grpc] [TRITON_URL=host:port]" >&2; exit 2; }
	$(PYTHON) scripts/compare_versions.py --model $(MODEL) --versions $(VERSIONS) --protocol $(PROTOCOL) \
	  --url $(TRITON_URL) $(if $(IMAGES),--images $(IMAGES)) $(if $(CLIENT_NMS),--nms-mode $(CLIENT_NMS)) \
	  --json $(COMPARE_JSON)
