"""ORT_BATCHING=pad: the graph pads every execution to one batch size (yolo_triton.batch_pad).

The padded graphs are built by the real Make targets from the scratch checkpoint (varied outputs); their
answers must EQUAL the plain graphs' for every batch 1..pad and beyond, Track A and end2end NMS=onnx.
The served half (the real tritonserver + ONNX Runtime backend) is in tests/test_served_repository.py.
"""
from __future__ import annotations

import re

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from conftest import REPO, SCRATCH_NAME, TEST_IMGSZ, Tree
from yolo_triton import batch_pad, settings
from yolo_triton import triton_config as tc
from yolo_triton.engine import plain_onnx

pytestmark = pytest.mark.slow
PAD = 3
SETTINGS = (f"NAMES={SCRATCH_NAME}", "PRECISION=fp32", f"IMGSZ={TEST_IMGSZ}", "NMS=onnx")


@pytest.fixture(scope="module")
def padded_tree(tmp_path_factory, scratch_weights) -> Tree:
    """``make onnx`` with the GPU default (INSTANCE_KIND=gpu, ORT_BATCHING=auto) and ORT_PAD_BATCH=3."""
    tree = Tree(tmp_path_factory.mktemp("padded"))
    tree.weights.mkdir()
    (tree.weights / scratch_weights.name).symlink_to(scratch_weights)
    tree.make("onnx", *SETTINGS, "ORT_BATCHING=auto", "INSTANCE_KIND=gpu", f"ORT_PAD_BATCH={PAD}")
    return tree


@pytest.fixture(scope="module")
def plain_tree(tmp_path_factory, scratch_weights) -> Tree:
    tree = Tree(tmp_path_factory.mktemp("plain"))
    tree.weights.mkdir()
    (tree.weights / scratch_weights.name).symlink_to(scratch_weights)
    tree.make("onnx", *SETTINGS, "INSTANCE_KIND=gpu", "ORT_BATCHING=dynamic")
    return tree


def session(path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def letterboxed_batches(sample_images, largest: int) -> list[np.ndarray]:
    """Batches of 1..largest real letterboxed images (the images repeat, each batch a different mix)."""
    import cv2

    from yolo_triton.postprocess import letterbox

    tensors = [letterbox(cv2.imread(str(p)), TEST_IMGSZ)[0] for p in sample_images]
    return [np.stack([tensors[(n + i) % len(tensors)] for i in range(n)]) for n in range(1, largest + 1)]


@pytest.mark.parametrize("model_dir", [SCRATCH_NAME, f"{SCRATCH_NAME}_end2end"])
def test_padded_graph_equals_the_plain_graph_for_every_batch(padded_tree, plain_tree, sample_images, model_dir):
    padded_path, plain_path = padded_tree.artefact(model_dir), plain_tree.artefact(model_dir)
    assert batch_pad.padded_size(onnx.load(str(padded_path))) == PAD
    assert batch_pad.padded_size(onnx.load(str(plain_path))) is None
    padded, plain = session(padded_path), session(plain_path)
    seen = []
    for batch in letterboxed_batches(sample_images, PAD + 2):  # PAD + 1, PAD + 2: more than padded, unpadded
        got, want = padded.run(None, {"images": batch}), plain.run(None, {"images": batch})
        for g, w in zip(got, want):
            assert g.shape == w.shape and g.shape[0] == len(batch)
            assert np.array_equal(g, w), f"{model_dir} batch {len(batch)} differs"
        seen.append(got[0])
    # the comparison is not vacuous: the scratch head's outputs vary between images and batches
    assert np.ptp(np.concatenate([s.reshape(len(s), -1)[:, :200] for s in seen]), axis=0).max() > 0


def test_configs_come_from_the_padded_artefact(padded_tree):
    for model_dir in (SCRATCH_NAME, f"{SCRATCH_NAME}_end2end"):
        config = tc.parse_config(padded_tree.models / model_dir / "config.pbtxt")
        assert config.max_batch_size == PAD
        assert list(config.dynamic_batching.preferred_batch_size) == [PAD]


def test_unpad_restores_the_plain_graph(padded_tree, plain_tree):
    for model_dir in (SCRATCH_NAME, f"{SCRATCH_NAME}_end2end"):
        padded = onnx.load(str(padded_tree.artefact(model_dir)))
        plain = onnx.load(str(plain_tree.artefact(model_dir)))
        restored = batch_pad.unpad_batch(padded)
        assert [n.op_type for n in restored.graph.node] == [n.op_type for n in plain.graph.node]
        assert not any(n.name.startswith(batch_pad.PREFIX) for n in restored.graph.node)
        assert batch_pad.padded_size(restored) is None


def test_tensorrt_is_given_the_plain_graph(padded_tree, plain_tree):
    with plain_onnx(padded_tree.artefact(SCRATCH_NAME)) as source:
        assert source != padded_tree.artefact(SCRATCH_NAME)
        given = onnx.load(str(source))
        assert batch_pad.padded_size(given) is None
        assert {n.op_type for n in given.graph.node} == {n.op_type for n in onnx.load(
            str(plain_tree.artefact(SCRATCH_NAME))).graph.node}
    assert not source.exists()  # the temporary copy is gone
    with plain_onnx(plain_tree.artefact(SCRATCH_NAME)) as source:
        assert source == plain_tree.artefact(SCRATCH_NAME)


def test_fixed_mode_writes_batch_one_without_a_batcher(padded_tree):
    out = padded_tree.make(f"{padded_tree.models}/{SCRATCH_NAME}/config.pbtxt", *SETTINGS, "INSTANCE_KIND=gpu",
                           "ORT_BATCHING=fixed", "INSTANCES_PER_GPU=4")
    assert "export_onnx" in out.stdout  # the padded graph is replaced by the plain one
    config = tc.parse_config(padded_tree.models / SCRATCH_NAME / "config.pbtxt")
    assert config.max_batch_size == 1 and not config.HasField("dynamic_batching")
    assert config.instance_group[0].count == 4
    assert batch_pad.padded_size(onnx.load(str(padded_tree.artefact(SCRATCH_NAME)))) is None
    padded_tree.make("onnx", *SETTINGS, "ORT_BATCHING=auto", "INSTANCE_KIND=gpu", f"ORT_PAD_BATCH={PAD}")


def planned(tree, *extra) -> set[str]:
    out = tree.make("-n", "onnx", *SETTINGS, *extra).stdout
    return set(re.findall(r"export/(\w+)\.py --", out))


def test_stamps_follow_the_padding(padded_tree, plain_tree):
    gpu = ("ORT_BATCHING=auto", "INSTANCE_KIND=gpu", f"ORT_PAD_BATCH={PAD}")
    assert planned(padded_tree, *gpu) == set()
    assert planned(padded_tree, "ORT_BATCHING=auto", "INSTANCE_KIND=gpu", "ORT_PAD_BATCH=2") == \
        {"export_onnx", "add_nms", "write_config"}
    # a plain graph does not depend on the pad size or the max batch: only configs change
    dynamic = ("INSTANCE_KIND=gpu", "ORT_BATCHING=dynamic")
    assert planned(plain_tree, *dynamic, "ORT_PAD_BATCH=2") == {"write_config"}
    assert planned(plain_tree, *dynamic, "MAX_BATCH=8") == {"write_config"}


@pytest.mark.parametrize("mode,kind,max_batch,pad,expected", [
    ("auto", "gpu", 64, 16, 16), ("auto", "cpu", 64, 16, None), ("pad", "cpu", 64, 16, 16),
    ("pad", "gpu", 8, 16, 8), ("fixed", "gpu", 64, 16, None), ("dynamic", "gpu", 64, 16, None),
])
def test_pad_size_rules(mode, kind, max_batch, pad, expected):
    assert settings.ort_pad_batch(mode, kind, max_batch, pad) == expected


def test_bad_setting_is_one_line(padded_tree):
    result = padded_tree.make("onnx", *SETTINGS, "ORT_BATCHING=sometimes", "INSTANCE_KIND=gpu", check=False)
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if "ORT_BATCHING" in line]
    assert errors and "Traceback" not in result.stderr, result.stderr
    assert (REPO / "Makefile").is_file()


# ---- served: the real tritonserver + ONNX Runtime backend, padded next to plain, INSTANCE_KIND=cpu ------
@pytest.fixture(scope="module")
def served(tmp_path_factory, scratch_weights):
    from conftest import skip_without_real_triton
    from yolo_triton import triton_server as ts

    skip_without_real_triton()
    tree = Tree(tmp_path_factory.mktemp("served_padded"))
    tree.weights.mkdir()
    (tree.weights / f"{SCRATCH_NAME}.pt").symlink_to(scratch_weights)
    (tree.weights / "padded.pt").symlink_to(scratch_weights)
    cpu = ("NMS=onnx", "PRECISION=fp32", f"IMGSZ={TEST_IMGSZ}", "INSTANCE_KIND=cpu")
    m = tree.models
    tree.make(f"{m}/{SCRATCH_NAME}/config.pbtxt", f"{m}/{SCRATCH_NAME}_end2end/config.pbtxt", *cpu)
    tree.make(f"{m}/padded/config.pbtxt", f"{m}/padded_end2end/config.pbtxt", *cpu, "ORT_BATCHING=pad",
              f"ORT_PAD_BATCH={PAD}")
    server = ts.start_server(m, tmp_path_factory.mktemp("triton_padded"))
    yield server
    server.stop()


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_served_padded_models_answer_as_the_plain_ones(served, sample_images, protocol):
    from yolo_triton import client as yc

    client = yc.connect(served.url(protocol), protocol)
    module = __import__(f"tritonclient.{protocol}", fromlist=["InferInput"])
    try:
        assert client.is_model_ready("padded") and client.is_model_ready("padded_end2end")
        for suffix in ("", "_end2end"):
            for batch in letterboxed_batches(sample_images, PAD):
                answers = []
                for name in (f"padded{suffix}", f"{SCRATCH_NAME}{suffix}"):
                    tensor = module.InferInput("images", list(batch.shape), "FP32")
                    tensor.set_data_from_numpy(batch)
                    result = client.infer(name, [tensor])
                    outputs = ["output0"] if not suffix else list(settings.END2END_OUTPUTS)
                    answers.append([result.as_numpy(o) for o in outputs])
                for got, want in zip(*answers):
                    assert got.shape[0] == len(batch) and np.array_equal(got, want), (suffix, len(batch))
    finally:
        client.close()
