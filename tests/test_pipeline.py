"""The chain through the real Make targets: scratch checkpoint -> Track A ONNX -> end2end ONNX ->
configs, checked against the PyTorch model on real images."""
from __future__ import annotations

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from conftest import SCRATCH_NAME, TEST_IMGSZ, numpy_dtype
from yolo_triton import triton_config as tc
from yolo_triton.engine import make_profile
from yolo_triton.nms_graph import pre_nms_model
from yolo_triton.onnx_io import class_names, onnx_io, onnx_metadata
from yolo_triton.settings import defaults

pytestmark = pytest.mark.slow
END2END = f"{SCRATCH_NAME}_end2end"


def letterboxed(path, imgsz=TEST_IMGSZ) -> np.ndarray:
    """ultralytics' own LetterBox, as its predictor does it (RGB, CHW, /255)."""
    from ultralytics.data.augment import LetterBox

    image = LetterBox(new_shape=(imgsz, imgsz), auto=False)(image=cv2.imread(str(path)))
    return np.ascontiguousarray(image[..., ::-1].transpose(2, 0, 1))[None].astype(np.float32) / 255.0


def torch_head(weights, batch: np.ndarray) -> np.ndarray:
    from ultralytics import YOLO

    model = YOLO(str(weights)).model.float().eval()
    with torch.no_grad():
        out = model(torch.from_numpy(batch))
    return (out[0] if isinstance(out, (list, tuple)) else out).numpy()


def test_scratch_checkpoint_is_marked_and_varied(scratch_weights, sample_images):
    checkpoint = torch.load(scratch_weights, weights_only=False)
    assert checkpoint["untrained"] is True and "UNTRAINED" in checkpoint["description"]
    assert "untrained" in scratch_weights.name
    scores = torch_head(scratch_weights, letterboxed(sample_images[0], 640))[0, 4:]
    # An untrained head scores every anchor alike (~1e-4); the recalibrated one must not.
    assert scores.std() > 0.01, scores.std()
    above = int((scores > 0.25).sum())
    assert 20 <= above <= 5000, above
    assert len(np.unique(scores.argmax(0))) > 10  # many different best classes across anchors


def test_track_a_onnx_contract(fp32_tree, fp16_tree, scratch_weights):
    for tree, precision in ((fp32_tree, "fp32"), (fp16_tree, "fp16")):
        path = tree.artefact(SCRATCH_NAME)
        inputs, outputs = onnx_io(path)
        assert [(i.name, i.dtype, i.shape) for i in inputs] == [("images", "float32", (-1, 3, TEST_IMGSZ, TEST_IMGSZ))]
        anchors = sum((TEST_IMGSZ // s) ** 2 for s in (8, 16, 32))
        out_dtype = {"fp32": "float32", "fp16": "float16"}[precision]  # OUTPUT_DTYPE=auto
        assert [(o.name, o.dtype, o.shape) for o in outputs] == [("output0", out_dtype, (-1, 84, anchors))]
        meta = onnx_metadata(path)
        assert meta["precision"] == precision and meta["task"] == "detect" and meta["stride"] == "32"
        assert meta["output_dtype"] == out_dtype
        model = onnx.load(str(path))
        fp16_tensors = [t for t in model.graph.initializer if t.data_type == onnx.TensorProto.FLOAT16]
        assert bool(fp16_tensors) == (precision == "fp16")


def test_end2end_graph_nms_node_and_outputs(fp32_tree):
    model = onnx.load(str(fp32_tree.artefact(END2END)))
    nms_nodes = [n for n in model.graph.node if n.op_type == "EfficientNMS_TRT"]
    assert len(nms_nodes) == 1
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in nms_nodes[0].attribute}
    d = defaults()
    assert attrs == {
        "plugin_version": b"1", "plugin_namespace": b"",
        "score_threshold": pytest.approx(float(d["CONF"])), "iou_threshold": pytest.approx(float(d["IOU"])),
        "max_output_boxes": int(d["TOPK"]), "background_class": -1, "score_activation": 0,
        "class_agnostic": 0, "box_coding": 1,
    }
    types = {a.name: a.type for a in nms_nodes[0].attribute}
    assert types["score_threshold"] == onnx.AttributeProto.FLOAT and types["max_output_boxes"] == onnx.AttributeProto.INT
    assert list(nms_nodes[0].input) == ["boxes", "scores"]
    topk = int(d["TOPK"])
    _, outputs = onnx_io(fp32_tree.artefact(END2END))
    assert [(o.name, o.dtype, o.shape) for o in outputs] == [
        ("num_dets", "int32", (-1, 1)), ("det_boxes", "float32", (-1, topk, 4)),
        ("det_scores", "float32", (-1, topk)), ("det_classes", "int32", (-1, topk)),
    ]
    # Surgery, not a second export: every Track A node survives unchanged in the end2end graph.
    track_a = onnx.load(str(fp32_tree.artefact(SCRATCH_NAME)))
    assert {n.name for n in track_a.graph.node} <= {n.name for n in model.graph.node}


def pre_nms_session(tree) -> ort.InferenceSession:
    model = pre_nms_model(onnx.load(str(tree.artefact(END2END))))
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def test_pre_nms_part_matches_pytorch_head_fp32(fp32_tree, scratch_weights, sample_images):
    """FP32 ONNX pre-NMS part vs the PyTorch FP32 head, per image: boxes within 0.02 input pixels,
    scores within 1e-3."""
    session = pre_nms_session(fp32_tree)
    for path in sample_images:
        batch = letterboxed(path)
        boxes, scores = session.run(["boxes", "scores"], {"images": batch})
        reference = torch_head(scratch_weights, batch)[0].T  # [A, 4+nc]
        assert np.abs(boxes[0] - reference[:, :4]).max() < 2e-2
        assert np.abs(scores[0] - reference[:, 4:]).max() < 1e-3


def test_pre_nms_part_fp16_stays_close_to_pytorch(fp16_tree, scratch_weights, sample_images):
    """AutoCast FP16 (FP32 I/O) in CPU onnxruntime vs PyTorch FP32. Measured on this scratch checkpoint:
    score error max 0.19 / 99.9th percentile 0.067 / mean 4e-4, box error 99th percentile 2.7 px / max
    10.9 px (bus.jpg, 320 px). Bounds: scores max 0.25, p99.9 0.1, mean 2e-3; boxes p99 4 px, max 16 px.
    The GPU comparison (onnxruntime-gpu FP16 vs PyTorch FP16) lives in scripts/bench_onnx_gpu.py."""
    session = pre_nms_session(fp16_tree)
    for path in sample_images:
        batch = letterboxed(path)
        boxes, scores = session.run(["boxes", "scores"], {"images": batch})
        reference = torch_head(scratch_weights, batch)[0].T
        score_error = np.abs(scores[0] - reference[:, 4:])
        box_error = np.abs(boxes[0] - reference[:, :4])
        assert score_error.max() < 0.25 and np.quantile(score_error, 0.999) < 0.1 and score_error.mean() < 2e-3
        assert box_error.max() < 16 and np.quantile(box_error, 0.99) < 4


def test_final_detections_follow_efficient_nms_semantics(fp32_tree, sample_images):
    """The NumPy model of EfficientNMS on the ONNX pre-NMS outputs: corners, >= CONF, sorted, padded."""
    from yolo_triton.postprocess import efficient_nms

    d = defaults()
    conf, iou, topk = float(d["CONF"]), float(d["IOU"]), int(d["TOPK"])
    session = pre_nms_session(fp32_tree)
    batch = np.concatenate([letterboxed(p) for p in sample_images])
    boxes, scores = session.run(["boxes", "scores"], {"images": batch})
    num_dets, det_boxes, det_scores, det_classes = efficient_nms(boxes, scores, conf, iou, topk)
    assert num_dets.shape == (len(batch), 1) and num_dets.dtype == np.int32
    assert det_boxes.shape == (len(batch), topk, 4) and det_classes.dtype == np.int32
    for i in range(len(batch)):
        n = int(num_dets[i, 0])
        assert 0 < n <= topk
        kept_scores = det_scores[i, :n]
        assert (kept_scores >= conf).all() and (np.diff(kept_scores) <= 0).all()
        x1, y1, x2, y2 = det_boxes[i, :n].T
        assert (x2 >= x1).all() and (y2 >= y1).all()
        assert not det_boxes[i, n:].any() and not det_scores[i, n:].any() and not det_classes[i, n:].any()
        # Each kept box must be the centre-size candidate of some anchor (corner conversion, no rescale).
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        anchor_centres = boxes[i, :, :2]
        nearest = np.abs(anchor_centres[None] - np.stack([cx, cy], 1)[:, None]).sum(-1).min(1)
        assert nearest.max() < 1e-3


def test_configs_parse_back_through_triton_schema(fp32_tree, scratch_weights):
    from ultralytics import YOLO

    names = [str(n) for _, n in sorted(YOLO(str(scratch_weights)).model.names.items())]
    for model_dir in (SCRATCH_NAME, END2END):
        config = tc.parse_config(fp32_tree.models / model_dir / "config.pbtxt")
        inputs, outputs = onnx_io(fp32_tree.artefact(model_dir))
        assert config.name == model_dir and config.platform == "onnxruntime_onnx"
        assert config.max_batch_size == int(defaults()["MAX_BATCH_custom"])
        for declared, actual in ((config.input, inputs), (config.output, outputs)):
            assert [(t.name, numpy_dtype(t.data_type), tuple(t.dims)) for t in declared] == [
                (s.name, s.dtype, s.shape[1:]) for s in actual]
        # Triton batches to the sizes the engines are tuned for: the profile's opt and max batch
        profile = make_profile(inputs[0], config.max_batch_size, TEST_IMGSZ)
        assert list(config.dynamic_batching.preferred_batch_size) == [profile.opt[0], profile.max[0]] == [16, 32]
        assert config.dynamic_batching.max_queue_delay_microseconds == int(defaults()["QUEUE_DELAY_US"])
        assert [(g.count, g.kind) for g in config.instance_group] == [(1, tc.mc.ModelInstanceGroup.KIND_GPU)]
        labels = (fp32_tree.models / model_dir / "labels.txt").read_text().splitlines()
        assert labels == names == class_names(onnx_metadata(fp32_tree.artefact(model_dir)))
    end2end = tc.parse_config(fp32_tree.models / END2END / "config.pbtxt")
    assert [o.label_filename for o in end2end.output] == ["", "", "", "labels.txt"]


def test_custom_class_count_and_yolov8(tmp_path):
    """A 3-class YOLOv8 checkpoint flows through the same targets with its own names."""
    from conftest import Tree

    tree = Tree(tmp_path)
    tree.make("scratch", "MODEL=yolov8n", "NC=3")
    name = "yolov8n_untrained"
    tree.make(f"{tree.models}/{name}_end2end/config.pbtxt", "PRECISION=fp32", "IMGSZ=256")
    _, outputs = onnx_io(tree.artefact(name))
    assert outputs[0].shape == (-1, 7, sum((256 // s) ** 2 for s in (8, 16, 32)))
    assert (tree.models / f"{name}_end2end" / "labels.txt").read_text().split() == ["class_0", "class_1", "class_2"]
    session = pre_nms_session_for(tree.artefact(f"{name}_end2end"))
    _, scores = session.run(["boxes", "scores"], {"images": np.zeros((2, 3, 256, 256), np.float32)})
    assert scores.shape[-1] == 3


def pre_nms_session_for(path) -> ort.InferenceSession:
    model = pre_nms_model(onnx.load(str(path)))
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
