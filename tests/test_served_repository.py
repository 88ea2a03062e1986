"""The model repository that ``make`` writes, served as docker-compose.yml serves it, by the REAL server.

What is real: ``tritonserver`` 2.51 (nvidia-pytriton's), started with exactly the ``triton-api``
service's flags (read from docker-compose.yml: explicit model control, ``--load-model=*``, strict
readiness); Triton's ONNX Runtime backend (../shared/triton, see yolo_triton.triton_server); every
config and ONNX file as ``make ... INSTANCE_KIND=cpu`` writes it; the client (HTTP and gRPC); the
ultralytics predictor the detections are compared with; ultralytics' sample images.

Stand-ins, named as such: there is no DALI backend and no TensorRT here, so Track D's DALI step is a
Python-backend model that runs the project's own DALI pipeline on the CPU
(tests/doubles/triton_python_standins/dali_pipeline_cpu_standin), and its TensorRT step's NAME
(``<name>_trt_end2end``) is served by the ``NMS=onnx`` end2end ONNX through the real ONNX Runtime
backend, with the config write_config.py generates for that file.

The checkpoints are UNTRAINED (make scratch: BatchNorm recalibrated on real images, class convolutions
rescaled so that outputs vary); nothing here says anything about accuracy, only about sameness.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, SCRATCH_NAME, Tree, registered_regions, shm_files, skip_without_real_triton
from yolo_triton import client as client_cli
from yolo_triton import ensemble as ens
from yolo_triton import postprocess as pp
from yolo_triton import triton_config as tc
from yolo_triton import triton_server as ts
from yolo_triton.settings import defaults

import triton_client as client_script  # scripts/triton_client.py, the command line (pytest's pythonpath)

pytestmark = pytest.mark.slow
IMGSZ = 320
D = defaults()
CONF, IOU, TOPK = float(D["CONF"]), float(D["IOU"]), int(D["TOPK"])
FREE = "yolo26n_untrained"
FP16 = "yolo11n_fp16"          # the default precision (AutoCast FP16 inside, FP32 I/O)
INT8 = "yolo11n_int8"          # ModelOpt Q/DQ INT8
UINT8 = "yolo11n_uint8"        # INPUT_DTYPE=uint8: UINT8 images, the graph casts and divides by 255
HALF = "yolo11n_half_out"      # OUTPUT_DTYPE=float16 (an FP32 network): output0 FP16, the float32 values rounded
BROKEN = "garbage"             # a checkpoint that is not one: its export fails
PREPROCESS = ens.preprocess_model_name(IMGSZ)
CONTROL = f"{PREPROCESS}_no_ragged_control"   # the same stand-in without allow_ragged_batch
PROBE = f"{PREPROCESS}_ragged_probe"   # the same stand-in, batches formed by size alone (long queue delay)
PROBE_DELAY_US = 120_000_000   # the batcher waits for a full batch; the test's 16 requests arrive long before
STANDINS = REPO / "tests" / "doubles" / "triton_python_standins"
PROTOCOLS = ("http", "grpc")


def as_standin(model_dir: Path, standin: str, name: str | None = None) -> None:
    """Serve ``model_dir``'s generated config through a Python-backend stand-in (backend python, CPU)."""
    config = tc.parse_config(model_dir / "config.pbtxt")
    config.ClearField("platform")
    config.backend = "python"
    if name:
        config.name = name
    for group in config.instance_group:
        group.kind = tc.mc.ModelInstanceGroup.KIND_CPU
    config.parameters.pop("num_threads", None)
    shutil.rmtree(model_dir / "1", ignore_errors=True)
    (model_dir / "1").mkdir(parents=True)
    shutil.copy(STANDINS / standin / "model.py", model_dir / "1" / "model.py")
    tc.write_model_config(model_dir, config)


@pytest.fixture(scope="module")
def built(tmp_path_factory, scratch_weights, scratch_checkpoint):
    """``make`` writes the repository: Track A (FP32, FP16, INT8), end2end NMS=onnx, YOLO26 NMS=free,
    Track D (generated DALI + ensemble configs), all with INSTANCE_KIND=cpu; plus a failed export."""
    skip_without_real_triton()
    from ultralytics.utils import ASSETS

    tree = Tree(tmp_path_factory.mktemp("served"))
    tree.weights.mkdir()
    for stem in (SCRATCH_NAME, FP16, INT8, UINT8, HALF):
        (tree.weights / f"{stem}.pt").symlink_to(scratch_weights)
    (tree.weights / f"{BROKEN}.pt").write_bytes(os.urandom(4096))
    (tree.weights / "yolo26n_untrained.pt").symlink_to(scratch_checkpoint("yolo26n"))
    common = ("INSTANCE_KIND=cpu", f"IMGSZ={IMGSZ}")
    m = tree.models
    tree.make(f"{m}/{SCRATCH_NAME}/config.pbtxt", f"{m}/{SCRATCH_NAME}_end2end/config.pbtxt", "NMS=onnx",
              "PRECISION=fp32", *common)
    tree.make(f"{m}/{UINT8}/config.pbtxt", f"{m}/{UINT8}_end2end/config.pbtxt", "NMS=onnx", "PRECISION=fp32",
              "INPUT_DTYPE=uint8", *common)
    tree.make(f"{m}/{HALF}/config.pbtxt", "PRECISION=fp32", "OUTPUT_DTYPE=float16", *common)
    tree.make(f"{m}/{FREE}/config.pbtxt", f"{m}/{FREE}_end2end/config.pbtxt", "NMS=free", "PRECISION=fp32", *common)
    tree.make(f"{m}/{FP16}/config.pbtxt", *common)
    tree.make(f"{m}/{INT8}/config.pbtxt", "PRECISION=int8", f"CALIB_DIR={ASSETS}", *common)
    failed = tree.make(f"{m}/{BROKEN}/config.pbtxt", *common, check=False)
    assert failed.returncode != 0

    # Track D: the plan's name served by the NMS=onnx end2end ONNX (real backend, generated config) ...
    trt_dir = m / f"{SCRATCH_NAME}_trt_end2end"
    (trt_dir / "1").mkdir(parents=True)
    shutil.copy(m / f"{SCRATCH_NAME}_end2end" / "1" / "model.onnx", trt_dir / "1" / "model.onnx")
    py = sys.executable
    subprocess.run([py, REPO / "export" / "write_config.py", "--artefact", trt_dir / "1" / "model.onnx",
                    "--max-batch", "8", "--queue-delay-us", D["QUEUE_DELAY_US"], "--instance-kind", "cpu"], check=True)
    # ... the DALI model and the ensemble as the Track D steps write them ...
    subprocess.run([py, REPO / "dali" / "create_dali_letterbox_pipeline.py", "--model-dir", m, "--imgsz", str(IMGSZ),
                    "--max-batch", "8", "--device", "cpu"], check=True)
    subprocess.run([py, REPO / "dali" / "create_ensembles.py", "--names", SCRATCH_NAME, "--imgsz", str(IMGSZ),
                    "--model-dir", m], check=True)
    ensemble_text = (m / ens.ensemble_name(SCRATCH_NAME) / "config.pbtxt").read_text()
    # ... and the DALI step served by its CPU stand-in; the control lacks only allow_ragged_batch.
    shutil.copytree(m / PREPROCESS, m / CONTROL)
    as_standin(m / PREPROCESS, "dali_pipeline_cpu_standin")
    as_standin(m / CONTROL, "dali_pipeline_cpu_standin", name=CONTROL)
    control = tc.parse_config(m / CONTROL / "config.pbtxt")
    control.input[0].allow_ragged_batch = False
    tc.write_model_config(m / CONTROL, control)
    # The probe: with allow_ragged_batch, a batch of max_batch_size requests forms as soon as they are queued
    # (preferred size = max); the long delay means no smaller batch runs before that (recorded, not timed).
    shutil.copytree(m / PREPROCESS, m / PROBE)
    probe = tc.parse_config(m / PROBE / "config.pbtxt")
    probe.name = PROBE
    probe.dynamic_batching.ClearField("preferred_batch_size")
    probe.dynamic_batching.preferred_batch_size.append(probe.max_batch_size)
    probe.dynamic_batching.max_queue_delay_microseconds = PROBE_DELAY_US
    tc.write_model_config(m / PROBE, probe)
    return {"tree": tree, "failed": failed, "ensemble_text": ensemble_text}


@pytest.fixture(scope="module")
def server(built, tmp_path_factory):
    srv = ts.start_server(built["tree"].models, tmp_path_factory.mktemp("triton"))
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def clients(server):
    opened = {p: client_cli.connect(server.url(p), p) for p in PROTOCOLS}
    yield opened
    for client in opened.values():
        client.close()


@pytest.fixture(scope="module")
def samples():
    import cv2
    from ultralytics.utils import ASSETS

    paths = [Path(ASSETS) / "bus.jpg", Path(ASSETS) / "zidane.jpg"]
    return paths, [cv2.imread(str(p)) for p in paths]


def predicted(weights: Path, paths, one2one: bool = False, nms: bool | None = None):
    """ultralytics' predictor at the square letterbox (rect=False); nms=False = the one-to-one head."""
    from ultralytics import YOLO

    results = YOLO(str(weights)).predict([str(p) for p in paths], imgsz=IMGSZ, conf=CONF, iou=IOU, max_det=TOPK,
                                         rect=False, verbose=False, nms=False if one2one else nms)
    return [(r.boxes.xyxy.numpy(), r.boxes.conf.numpy(), r.boxes.cls.numpy().astype(int)) for r in results]


def assert_same(ours: pp.Detections, theirs, box_tol: float, score_tol: float) -> None:
    """Same count; every detection matched once (same class, box within box_tol px, score within score_tol)."""
    boxes, scores, classes = theirs
    assert len(ours) == len(scores), (len(ours), len(scores))
    used: set[int] = set()
    for box, score, cls in zip(ours.boxes, ours.scores, ours.classes):
        match = [j for j in range(len(scores)) if j not in used and classes[j] == cls
                 and np.abs(boxes[j] - box).max() <= box_tol and abs(scores[j] - score) <= score_tol]
        assert match, (box, score, cls)
        used.add(match[0])


def as_tuple(d: pp.Detections):
    return d.boxes, d.scores, d.classes


# ---- the repository as compose starts it ------------------------------------------------------------
def test_server_started_with_the_compose_flags(server):
    import yaml

    command = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]["triton-api"]["command"]
    assert {"--model-control-mode=explicit", "--load-model=*", "--strict-readiness=true",
            "--exit-on-error=false"} <= set(command)
    assert server.flags == [a for a in command[1:] if not a.startswith("--model-repository")]


def test_server_is_ready_and_every_model_is_ready(server, built):
    states = server.model_states()
    expected = {SCRATCH_NAME, f"{SCRATCH_NAME}_end2end", FREE, f"{FREE}_end2end", FP16, INT8, UINT8, f"{UINT8}_end2end", HALF,
                f"{SCRATCH_NAME}_trt_end2end", PREPROCESS, CONTROL, PROBE, ens.ensemble_name(SCRATCH_NAME)}
    assert set(states) == expected, set(states) ^ expected
    not_ready = {name: s.get("reason") for name, s in states.items() if s.get("state") != "READY"}
    assert not not_ready, not_ready
    assert server.ready()  # strict readiness: the compose healthcheck would pass


def test_a_failed_export_leaves_no_folder_in_the_repository(built):
    """The broken checkpoint's export failed with one line, and nothing of it reached models/ (a
    half-written model folder would keep the strict-readiness server from ever being ready)."""
    tree, failed = built["tree"], built["failed"]
    assert not (tree.models / BROKEN).exists()
    assert not list(tree.models.rglob("*.tmp"))
    errors = [line for line in failed.stderr.splitlines() if "] error: " in line]
    assert len(errors) == 1 and BROKEN in errors[0], failed.stderr


def test_generated_configs_are_served_unchanged(clients, built):
    # Triton's served ensemble against one stated here by hand (not the generated file against itself)
    served = clients["grpc"].get_model_config(ens.ensemble_name(SCRATCH_NAME)).config
    tensors = lambda ts: [(t.name, tc.mc.DataType.Name(t.data_type), list(t.dims)) for t in ts]  # noqa: E731
    detections = ("num_dets", "det_boxes", "det_scores", "det_classes")
    assert (served.name, served.platform, served.max_batch_size) == (f"{SCRATCH_NAME}_ensemble", "ensemble", 8)
    assert tensors(served.input) == [("IMAGE_BYTES", "TYPE_UINT8", [-1])]
    assert tensors(served.output) == [("num_dets", "TYPE_INT32", [1]), ("det_boxes", "TYPE_FP32", [TOPK, 4]),
                                      ("det_scores", "TYPE_FP32", [TOPK]), ("det_classes", "TYPE_INT32", [TOPK]),
                                      ("letterbox", "TYPE_FP64", [5])]
    assert [(s.model_name, dict(s.input_map), dict(s.output_map)) for s in served.ensemble_scheduling.step] == [
        (f"preprocess_letterbox_{IMGSZ}", {"encoded": "IMAGE_BYTES"}, {"images": "preprocessed", "letterbox": "letterbox"}),
        (f"{SCRATCH_NAME}_trt_end2end", {"images": "preprocessed"}, {n: n for n in detections})]
    assert built["ensemble_text"] == (built["tree"].models / ens.ensemble_name(SCRATCH_NAME) / "config.pbtxt").read_text()
    for name in (SCRATCH_NAME, f"{SCRATCH_NAME}_end2end", INT8):
        config = clients["grpc"].get_model_config(name).config
        assert config.platform == "onnxruntime_onnx" and config.backend == "onnxruntime"
        assert [g.kind for g in config.instance_group] == [tc.mc.ModelInstanceGroup.KIND_CPU]
        assert not config.optimization.execution_accelerators.gpu_execution_accelerator


# ---- detections through the real server == ultralytics' --------------------------------------------
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_track_a_matches_the_predictor(clients, built, samples, protocol):
    paths, images = samples
    got = client_cli.infer(clients[protocol], SCRATCH_NAME, images, mode="ultralytics")
    theirs = predicted(built["tree"].weights / f"{SCRATCH_NAME}.pt", paths)
    assert sum(len(g) for g in got) > 10, "the scratch model should detect something"
    for ours, t in zip(got, theirs):
        assert_same(ours, t, box_tol=0.5, score_tol=1e-3)


def ultralytics_multilabel(weights: Path, images):
    """ultralytics' own ``non_max_suppression`` with ``multi_label=True`` (strict thresholds, per-class
    NMS, best TOPK overall: the NonMaxSuppression graph's semantics) on the checkpoint's PyTorch output
    for the square letterbox, mapped back to the original pixels."""
    import torch
    from ultralytics import YOLO
    from ultralytics.utils.nms import non_max_suppression

    batch, infos = pp.letterbox_batch(images, IMGSZ)
    model = YOLO(str(weights)).model.float().eval()
    with torch.no_grad():
        raw = model(torch.from_numpy(batch))
    raw = raw[0] if isinstance(raw, (list, tuple)) else raw
    found = non_max_suppression(raw, CONF, IOU, multi_label=True, max_det=TOPK)
    return [(pp.map_boxes_to_original(d[:, :4].numpy(), info), d[:, 4].numpy(), d[:, 5].numpy().astype(int))
            for d, info in zip(found, infos)]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_end2end_onnx_nms_matches_ultralytics_multilabel_nms(clients, built, samples, protocol):
    """The served NMS=onnx graph (multi-label) == ultralytics' non_max_suppression(multi_label=True) on the
    checkpoint's own output, and == the client's strict-threshold NMS on the served Track A output."""
    paths, images = samples
    client = clients[protocol]
    e2e = client_cli.infer(client, f"{SCRATCH_NAME}_end2end", images)
    assert sum(len(d) for d in e2e) > 10
    for ours, t in zip(e2e, ultralytics_multilabel(built["tree"].weights / f"{SCRATCH_NAME}.pt", images)):
        assert_same(ours, t, box_tol=0.5, score_tol=1e-3)
    for ours, t in zip(e2e, client_cli.infer(client, SCRATCH_NAME, images, mode="onnx")):
        assert_same(ours, as_tuple(t), box_tol=1e-2, score_tol=1e-5)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_end2end_nms_free_matches_the_one2one_predictor(clients, built, samples, protocol):
    paths, images = samples
    got = client_cli.infer(clients[protocol], f"{FREE}_end2end", images)
    theirs = predicted(built["tree"].weights / f"{FREE}.pt", paths, one2one=True)
    assert sum(len(g) for g in got) > 10
    for ours, t in zip(got, theirs):
        assert_same(ours, t, box_tol=0.5, score_tol=1e-3)


def test_fp16_and_int8_track_a_serve_close_to_fp32(clients, samples):
    """Both precisions load and answer; their raw output0 stays near the FP32 model's (loose bounds:
    the untrained net's rescaled class head amplifies rounding, see tests/test_int8.py)."""
    _, images = samples
    batch, _ = pp.letterbox_batch(images, IMGSZ)
    outputs = {}
    for name in (SCRATCH_NAME, FP16, INT8):
        served = client_cli.describe_model(clients["grpc"], name)
        outputs[name] = client_cli._request(clients["grpc"], served, batch, ["output0"])["output0"]
    reference = outputs[SCRATCH_NAME]
    assert reference.shape == (2, 84, sum((IMGSZ // s) ** 2 for s in (8, 16, 32)))
    for name, bound_boxes, bound_scores in ((FP16, 2.0, 0.25), (INT8, 40.0, 0.9)):
        out = outputs[name]
        assert out.shape == reference.shape and np.isfinite(out).all()
        assert np.percentile(np.abs(out[:, :4] - reference[:, :4]), 99) < bound_boxes, name
        assert np.abs(out[:, 4:] - reference[:, 4:]).max() < bound_scores, name
        assert not np.array_equal(out, reference), name


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_uint8_input_models_answer_exactly_as_the_float32_ones(clients, samples, protocol):
    """INPUT_DTYPE=uint8 Track A and NMS=onnx end2end, served for real: the client reads UINT8 from the
    config and sends the letterboxed pixels (a quarter of the bytes); every output is bit-identical to the
    float32 model's for the same images, and so are the detections."""
    _, images = samples
    client = clients[protocol]
    pixels, _ = pp.letterbox_batch(images, IMGSZ, dtype="uint8")
    for suffix, outputs in (("", ["output0"]), ("_end2end", list(client_cli.END2END_OUTPUTS))):
        ours, theirs = (client_cli.describe_model(client, name + suffix) for name in (UINT8, SCRATCH_NAME))
        assert (ours.input_dtype, theirs.input_dtype, ours.kind, ours.imgsz) == ("UINT8", "FP32", theirs.kind, IMGSZ)
        got = client_cli._request(client, ours, pp.to_model_input(pixels, ours.input_dtype), outputs)
        want = client_cli._request(client, theirs, pp.to_model_input(pixels, theirs.input_dtype), outputs)
        for name in outputs:
            assert got[name].dtype == want[name].dtype and np.array_equal(got[name], want[name]), (suffix, name)
        if suffix:
            assert int(got["num_dets"].sum()) > 10
        for a, b in zip(client_cli.infer(client, ours, images), client_cli.infer(client, theirs, images)):
            assert all(np.array_equal(x, y) for x, y in zip(as_tuple(a), as_tuple(b)))


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_fp16_output_model_answers_the_float32_values_rounded(server, clients, samples, protocol):
    """OUTPUT_DTYPE=float16 Track A (an FP32 network), served for real: its config says FP16 and FP16 comes
    over the wire (half the bytes); the client turns it into float32: exactly the float32 model's output0
    rounded to FP16, through the response and through system shared memory (a region half the size);
    detections agree within the rounding; ultralytics' own client reads it too."""
    paths, images = samples
    client = clients[protocol]
    ours, theirs = (client_cli.describe_model(client, name) for name in (HALF, SCRATCH_NAME))
    assert [(n, w) for n, w, _ in ours.output_specs] == [("output0", "FP16")] and ours.kind == theirs.kind
    batch, _ = pp.letterbox_batch(images, IMGSZ)
    got = client_cli._request(client, ours, batch, ["output0"])["output0"]
    want = client_cli._request(client, theirs, batch, ["output0"])["output0"]
    assert got.dtype == want.dtype == np.float32 and np.unique(want[:, 4:]).size > 1000
    assert np.array_equal(got, want.astype(np.float16).astype(np.float32)) and not np.array_equal(got, want)
    module = client_cli._protocol_module(client)
    request = module.InferInput("images", list(batch.shape), "FP32")
    request.set_data_from_numpy(batch)
    wire = client.infer(HALF, [request]).as_numpy("output0")
    assert wire.dtype == np.float16 and wire.nbytes * 2 == want.nbytes
    with client_cli.SharedMemory(client, ours, "system") as regions, \
            client_cli.SharedMemory(client, theirs, "system") as full:
        (half_region,), (full_region,) = regions._outputs.values(), full._outputs.values()
        assert half_region.size * 2 == full_region.size
        assert np.array_equal(client_cli._request(client, ours, batch, ["output0"], regions)["output0"], got)
    # detections: exactly those of the float32 model's output0 rounded to FP16 (the rounding may move a box across
    # an NMS or TOPK decision, so the float32 model's own detections are not the reference), every NMS mode
    _, infos = pp.letterbox_batch(images, IMGSZ)
    for mode in pp.MODES:
        detections = client_cli.infer(client, ours, images, mode=mode)
        assert sum(len(d) for d in detections) > 10
        rounded = pp.postprocess_track_a(want.astype(np.float16).astype(np.float32), infos, CONF, IOU, TOPK, mode)
        assert all(same_detections(a, b) for a, b in zip(detections, rounded, strict=True)), mode
    # ultralytics' own client casts the FP16 output to float32 and runs its NMS: as ours in its mode
    results = remote_yolo(server, protocol, HALF).predict([str(p) for p in paths], conf=CONF, iou=IOU, max_det=TOPK,
                                                          verbose=False)
    for result, reference in zip(results, client_cli.infer(client, ours, images, mode="ultralytics"), strict=True):
        assert_same(pp.Detections(result.boxes.xyxy.numpy(), result.boxes.conf.numpy(),
                                  result.boxes.cls.numpy().astype(int)), as_tuple(reference), box_tol=0.5, score_tol=1e-3)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_track_d_jpeg_bytes_in_original_pixels_out(clients, built, samples, protocol):
    """Encoded JPEG bytes -> DALI stand-in (our pipeline, CPU) -> NMS=onnx end2end under the plan's
    name -> boxes mapped back with the ensemble's letterbox output. Equal to running the two steps one
    after the other by hand; and close to the client-side (OpenCV) path: DALI's JPEG decoder and
    OpenCV's differ by a grey level here and there, which the untrained net's rescaled head amplifies,
    so that comparison is on the confident detections (the letterbox itself is checked against
    ultralytics in tests/test_dali_letterbox.py)."""
    import tritonclient.grpc as grpcclient

    paths, images = samples
    name = ens.ensemble_name(SCRATCH_NAME)
    client = clients[protocol]
    served = client_cli.describe_model(client, name)
    assert (served.kind, served.imgsz) == (client_cli.KIND_ENCODED, IMGSZ)
    got = client_cli.infer(client, served, images, encoded=[p.read_bytes() for p in paths])
    by_hand = []
    step_client = clients["grpc"]
    for path in paths:
        data = np.frombuffer(path.read_bytes(), np.uint8)[None]
        inp = grpcclient.InferInput("encoded", list(data.shape), "UINT8")
        inp.set_data_from_numpy(data)
        pre = step_client.infer(PREPROCESS, [inp])
        det = client_cli._request(step_client, client_cli.describe_model(step_client, f"{SCRATCH_NAME}_trt_end2end"),
                                  pre.as_numpy("images"), client_cli.END2END_OUTPUTS)
        by_hand += pp.postprocess_end2end(*(det[n] for n in client_cli.END2END_OUTPUTS),
                                          ens.letterbox_infos(pre.as_numpy("letterbox")))
    assert sum(len(d) for d in got) > 10
    for ours, t in zip(got, by_hand):
        assert_same(ours, as_tuple(t), box_tol=1e-3, score_tol=1e-6)
    # The served preprocessing against ultralytics' LetterBox on lossless PNG bytes of the same pixels:
    # within one grey level (DALI's and OpenCV's linear resize round differently). The detection step is
    # the end2end graph checked against ultralytics' NMS above. (Detections are not compared end to end
    # here: on this UNTRAINED net one grey level moves scores by up to ~0.03.)
    import cv2
    from ultralytics.data.augment import LetterBox

    for image in images:
        png = np.frombuffer(cv2.imencode(".png", image)[1].tobytes(), np.uint8)[None]
        inp = grpcclient.InferInput("encoded", list(png.shape), "UINT8")
        inp.set_data_from_numpy(png)
        served_image = step_client.infer(PREPROCESS, [inp]).as_numpy("images")[0]
        reference = LetterBox(new_shape=(IMGSZ, IMGSZ), auto=False, scaleup=True)(image=image)
        reference = reference[..., ::-1].transpose(2, 0, 1).astype(np.float32) / 255.0
        assert served_image.shape == reference.shape
        assert np.abs(served_image - reference).max() <= 1.0 / 255 + 1e-6


# ---- ultralytics' own Triton client (YOLO("http://host:8000/<model>")) on what we serve ---------------
def remote_yolo(server, protocol: str, model: str):
    from ultralytics import YOLO

    return YOLO(f"{protocol}://{server.url(protocol)}/{model}", task="detect")


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_ultralytics_triton_client_reads_the_metadata_and_matches_the_predictor(server, built, samples, protocol):
    """Track A (YOLO11 and YOLO26's one-to-many head) through ultralytics' own client: names, task, stride
    and image size come from the config's metadata parameter; boxes, scores and class names equal the
    checkpoint's predict at the same image size (FP32 tolerances as above; YOLO26: predict(nms=True))."""
    from ultralytics import YOLO

    paths, _ = samples
    for name in (SCRATCH_NAME, FREE):
        weights = built["tree"].weights / f"{name}.pt"
        remote = remote_yolo(server, protocol, name)
        results = remote.predict([str(p) for p in paths], conf=CONF, iou=IOU, max_det=TOPK, verbose=False)
        backend = remote.predictor.model
        assert (backend.format, backend.task, backend.stride, list(backend.imgsz), backend.end2end, backend.dynamic
                ) == ("triton", "detect", 32, [IMGSZ, IMGSZ], False, False)
        names = YOLO(str(weights)).names
        labels = (built["tree"].models / name / "labels.txt").read_text().splitlines()
        assert names == dict(enumerate(labels)) and names[0] != "class0"
        assert sum(len(r.boxes) for r in results) > 10
        for result, theirs in zip(results, predicted(weights, paths, nms=True), strict=True):
            assert result.names == names
            ours = pp.Detections(result.boxes.xyxy.numpy(), result.boxes.conf.numpy(),
                                 result.boxes.cls.numpy().astype(int))
            assert_same(ours, theirs, box_tol=0.5, score_tol=1e-3)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_ultralytics_triton_client_refuses_what_it_cannot_parse(server, samples, protocol):
    """end2end graphs (four outputs) and UINT8-input models: the config's metadata makes ultralytics' client
    refuse them with the reason before any request, even given the right imgsz. Track D's ensemble takes
    encoded bytes: the server refuses ultralytics' [1, 3, H, W] tensor."""
    from tritonclient.utils import InferenceServerException

    paths, _ = samples
    for model, reason in ((f"{SCRATCH_NAME}_end2end", "outputs num_dets"), (f"{FREE}_end2end", "outputs num_dets"),
                          (f"{SCRATCH_NAME}_trt_end2end", "outputs num_dets"), (UINT8, "input images is UINT8"),
                          (f"{UINT8}_end2end", "outputs num_dets")):
        before = _stats(server, model)["inferences"]
        with pytest.raises(ValueError, match=f"{model} is not for ultralytics' Triton client: its {reason}"):
            remote_yolo(server, protocol, model).predict(str(paths[0]), imgsz=IMGSZ, verbose=False)
        assert _stats(server, model)["inferences"] == before
    with pytest.raises(InferenceServerException, match="unexpected shape for input 'IMAGE_BYTES'"):
        remote_yolo(server, protocol, ens.ensemble_name(SCRATCH_NAME)).predict(str(paths[0]), imgsz=IMGSZ,
                                                                               verbose=False)


def test_ultralytics_client_would_send_a_uint8_model_a_black_image(server, samples):
    """Why the UINT8 model is refused: ultralytics' TritonRemoteModel casts its float 0..1 image to the
    input type, so the model sees pixels 0 (and 1 where the float was exactly 1.0), not the image."""
    from ultralytics.utils.triton import TritonRemoteModel

    _, images = samples
    batch, _ = pp.letterbox_batch(images[:1], IMGSZ)
    cast = TritonRemoteModel(f"http://{server.http_url}/{UINT8}")(batch)[0]
    as_float = TritonRemoteModel(f"http://{server.http_url}/{SCRATCH_NAME}")
    assert np.array_equal(cast, as_float(np.floor(batch) / 255.0)[0])
    assert not np.allclose(cast, as_float(batch)[0], atol=1e-2)


def _stats(server, model: str) -> dict:
    status, body = ts._get(f"http://{server.http_url}/v2/models/{model}/stats")
    assert status == 200, body
    stats = json.loads(body)["model_stats"][0]
    return {"inferences": int(stats["inference_count"]), "executions": int(stats["execution_count"]),
            "batch_sizes": {int(b["batch_size"]): int(b["compute_infer"]["count"]) for b in stats["batch_stats"]}}


def test_ragged_batching_merges_jpegs_of_different_lengths(server, clients, samples, built):
    """16 concurrent one-JPEG requests of 16 byte lengths: with allow_ragged_batch the dynamic batcher
    merges them into full batches (the probe: executions of exactly max_batch_size each, from the server's
    own statistics); the control without it runs every request alone. No timing is asserted."""
    import tritonclient.grpc as grpcclient

    paths, _ = samples
    # 16 different byte lengths (trailing bytes after the JPEG's end marker are ignored by decoders)
    payloads = [np.frombuffer(paths[i % 2].read_bytes() + bytes(i), np.uint8)[None] for i in range(16)]
    results = {}
    for model in (PROBE, CONTROL):
        before = _stats(server, model)
        errors = []

        def send(i, model=model, errors=errors):
            client = grpcclient.InferenceServerClient(server.grpc_url)
            try:
                data = payloads[i]
                inp = grpcclient.InferInput("encoded", list(data.shape), "UINT8")
                inp.set_data_from_numpy(data)
                out = client.infer(model, [inp]).as_numpy("images")
                assert out.shape == (1, 3, IMGSZ, IMGSZ)
            except Exception as err:  # noqa: BLE001 - collected and asserted below
                errors.append(err)
            finally:
                client.close()

        threads = [threading.Thread(target=send, args=(i,)) for i in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert not errors, errors
        deadline = time.monotonic() + 10
        while (after := _stats(server, model))["inferences"] - before["inferences"] < 16 and time.monotonic() < deadline:
            time.sleep(0.2)  # statistics are updated just after the responses go out
        results[model] = {k: after[k] - before[k] for k in ("inferences", "executions")}
        results[model]["batch_sizes"] = {size: count - before["batch_sizes"].get(size, 0)
                                         for size, count in after["batch_sizes"].items()
                                         if count - before["batch_sizes"].get(size, 0)}
    print(f"\nragged batching (16 concurrent JPEG requests): {results}")
    full = tc.parse_config(built["tree"].models / PROBE / "config.pbtxt").max_batch_size
    assert results[PROBE]["inferences"] == results[CONTROL]["inferences"] == 16
    assert results[CONTROL]["executions"] == 16 and results[CONTROL]["batch_sizes"] == {1: 16}
    assert results[PROBE]["batch_sizes"] == {full: 16 // full}, results[PROBE]


# ---- shared memory: the same detections, nothing left behind ---------------------------------------
def same_detections(a: pp.Detections, b: pp.Detections) -> bool:
    return (np.array_equal(a.boxes, b.boxes) and np.array_equal(a.scores, b.scores)
            and np.array_equal(a.classes, b.classes))


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("model", [SCRATCH_NAME, f"{SCRATCH_NAME}_end2end", ens.ensemble_name(SCRATCH_NAME)])
def test_system_shared_memory_gives_the_same_detections(clients, samples, protocol, model):
    """Track A (output0 of 2 images in one request), end2end and Track D (encoded bytes in, end2end and
    letterbox out) through regions in /dev/shm that the real server maps: bit-identical detections (and
    Track A's raw output0) to the normal path; while open the server lists the regions and the files
    exist; after close the server has none registered and no file of ours is left."""
    paths, images = samples
    client = clients[protocol]
    served = client_cli.describe_model(client, model)
    encoded = [p.read_bytes() for p in paths]
    plain = client_cli.infer(client, served, images, encoded=encoded)
    assert sum(len(d) for d in plain) > 10
    with client_cli.SharedMemory(client, served, "system") as regions:
        names = sorted(r.name for r in regions.regions())
        assert registered_regions(client) == names
        assert shm_files(os.getpid()) == names
        for _ in range(2):  # the regions are reused request after request
            shared = client_cli.infer(client, served, images, encoded=encoded, shared_memory=regions)
            assert all(same_detections(a, b) for a, b in zip(plain, shared, strict=True))
        if served.kind == client_cli.KIND_OUTPUT0:
            batch, _ = pp.letterbox_batch(images, IMGSZ)
            raw = client_cli._request(client, served, batch, ["output0"])["output0"]
            assert np.array_equal(client_cli._request(client, served, batch, ["output0"], regions)["output0"], raw)
        if served.kind == client_cli.KIND_ENCODED:  # the input region is made for the first file's length
            assert len(regions.regions()) == len(names) + 1 and regions.regions()[0].name.endswith("_input")
    assert registered_regions(client) == [] and shm_files(os.getpid()) == []
    once = client_cli.infer(client, served, images, encoded=encoded, shared_memory="system")  # per call
    assert all(same_detections(a, b) for a, b in zip(plain, once, strict=True))
    assert registered_regions(client) == [] and shm_files(os.getpid()) == []


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_shared_memory_is_removed_after_ctrl_c_or_a_refused_request(clients, samples, protocol, monkeypatch):
    import dataclasses

    from tritonclient.utils import InferenceServerException

    _, images = samples
    client = clients[protocol]
    served = client_cli.describe_model(client, SCRATCH_NAME)
    with monkeypatch.context() as patched:  # Ctrl-C once the input is in shared memory, before the answer
        def interrupted(*args, **kwargs):
            assert len(registered_regions(client)) == 2 and len(shm_files(os.getpid())) == 2
            raise KeyboardInterrupt

        patched.setattr(client, "infer", interrupted)
        with pytest.raises(KeyboardInterrupt):
            client_cli.infer(client, served, images, shared_memory="system")
    assert registered_regions(client) == [] and shm_files(os.getpid()) == []
    # a real refusal by the server: a version that is not served
    wrong = dataclasses.replace(served, version="9")
    with pytest.raises(InferenceServerException):
        client_cli.infer(client, wrong, images, shared_memory="system")
    assert registered_regions(client) == [] and shm_files(os.getpid()) == []
    # more images per request than the regions were sized for: refused before anything is sent
    with client_cli.SharedMemory(client, served, "system", batch=1) as regions:
        with pytest.raises(client_cli.ClientError, match="sized for"):
            client_cli.infer(client, served, images, shared_memory=regions)
    assert registered_regions(client) == [] and shm_files(os.getpid()) == []


# ---- the client CLI against the real server ----------------------------------------------------------
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_cli_prints_named_detections_and_draws_pngs(server, built, samples, tmp_path, capsys, protocol):
    import cv2

    paths, images = samples
    out = tmp_path / "drawn.png"
    rc = client_script.main(["--url", server.url(protocol), "--protocol", protocol, "--model", f"{SCRATCH_NAME}_end2end",
                          "--images", *map(str, paths), "--draw", str(out),
                          "--model-repository", str(built["tree"].models)])
    assert rc == 0
    stdout = capsys.readouterr().out
    labels = (built["tree"].models / f"{SCRATCH_NAME}_end2end" / "labels.txt").read_text().split("\n")
    for path, image in zip(paths, images):
        assert f"{path}: " in stdout
        drawn = cv2.imread(str(tmp_path / f"drawn_{path.stem}.png"))
        assert drawn is not None and drawn.shape == image.shape and not np.array_equal(drawn, image)
    assert any(line.split()[0] in labels for line in stdout.splitlines() if not line.startswith(str(paths[0])))


def test_cli_unknown_model_and_refused_load_are_one_line(server, samples, capsys):
    paths, _ = samples
    assert client_script.main(["--url", server.grpc_url, "--protocol", "grpc", "--model", "no_such_model",
                            "--images", str(paths[0])]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no_such_model" in err[0]
    assert client_script.main(["--url", server.http_url, "--model", "not_in_the_repository", "--load",
                            "--images", str(paths[0])]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not_in_the_repository" in err[0]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_cli_shared_memory_prints_the_same_and_leaves_nothing(server, clients, built, samples, capsys, caplog,
                                                             protocol):
    import logging

    caplog.set_level(logging.INFO, logger="triton_client")
    paths, _ = samples
    argv = ["--url", server.url(protocol), "--protocol", protocol, "--model", SCRATCH_NAME, "--images",
            *map(str, paths), "--model-repository", str(built["tree"].models)]
    assert client_script.main(argv) == 0
    plain = capsys.readouterr().out
    assert client_script.main([*argv, "--shared-memory", "system"]) == 0
    assert capsys.readouterr().out == plain and "tensors through system shared memory" in caplog.text
    assert registered_regions(clients[protocol]) == [] and shm_files(os.getpid()) == []


def test_cli_cuda_shared_memory_without_a_gpu_is_one_line_before_any_request(server, samples, capsys):
    try:
        client_cli.check_cuda_shared_memory()
    except client_cli.ClientError:
        pass
    else:
        pytest.skip("CUDA shared memory can work on this machine")
    before = _stats(server, SCRATCH_NAME)["inferences"]
    rc = client_script.main(["--url", server.grpc_url, "--protocol", "grpc", "--model", SCRATCH_NAME,
                             "--images", str(samples[0][0]), "--shared-memory", "cuda"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and "--shared-memory cuda" in err[0] and "GPU" in err[0], err
    assert _stats(server, SCRATCH_NAME)["inferences"] == before
