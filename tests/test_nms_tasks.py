"""End2end graphs for segment, pose and OBB (nms_graph): the task's values of the kept detections.

Scratch checkpoints of each head (scratch_tasks: untrained, outputs varied), exported by ultralytics at IMGSZ;
``add_nms`` reads the task from the ONNX alone. The end2end graph runs in onnxruntime on ultralytics'
sample images and is compared with the NumPy model applied to the Track A (or one-to-one) outputs of the
same images: the same boxes, scores and classes bit for bit, and the gathered mask coefficients and
keypoints bit-equal to the Track A rows of the anchors the NumPy NMS keeps; then the task's own decoding
(tasks.for_task) of the end2end outputs equals its decoding of the Track A / one-to-one outputs.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from conftest import REPO, Tree
from yolo_triton import postprocess as pp
from yolo_triton.task_base import NmsParams, TaskShape
from yolo_triton.tasks import for_task
from yolo_triton.batch_pad import pad_batch, padded_size
from yolo_triton.errors import StepError
from yolo_triton.nms_graph import add_nms
from yolo_triton.onnx_io import metadata, set_metadata
from yolo_triton.options import Options, violations
from yolo_triton.settings import END2END_OUTPUTS, END2END_TASK_OUTPUTS, PROTOS_OUTPUT

pytestmark = pytest.mark.slow
IMGSZ = 320
# The defaults (export/defaults.mk); the scratch heads (scratch_tasks.SEED) keep detections in both sample
# images, fewer than TOPK in zidane.jpg (padding rows checked too).
CONF, IOU, TOPK = 0.25, 0.45, 100
TASK_OF = {"yolo11n-seg": "segment", "yolo11n-pose": "pose", "yolo26n-seg": "segment", "yolo26n-pose": "pose",
           "yolo26n-obb": "obb"}
# Operators TensorRT's ONNX parser imports natively (onnx/onnx-tensorrt docs/operators.md, 10.x): the
# surgery may add nothing else (NonMaxSuppression -> INMSLayer; GatherND with batch_dims -> IGatherLayer kND).
TENSORRT_NATIVE_OPS = {
    "Abs", "Add", "ArgMax", "Cast", "Concat", "ConstantOfShape", "Cos", "Div", "Gather", "GatherND", "Greater",
    "GreaterOrEqual", "Min", "Mul", "NonMaxSuppression", "Pad", "ReduceMax", "ReduceSum", "Reshape",
    "ScatterElements", "ScatterND", "Shape", "Sin", "Split", "Squeeze", "Sub", "TopK", "Transpose", "Unsqueeze",
    "Where",
}


# ------------------------------------------------------------------------------------------ artefacts
class Artefacts:
    """The session's checkpoints and ultralytics ONNX exports (conftest's ``task_artefacts``), given the
    pipeline's fixed image size, simplification and precision once per module and on first use."""

    def __init__(self, root: Path, shared):
        self.root = root
        self.shared = shared
        self.cache: dict = {}

    def checkpoint(self, arch: str) -> Path:
        return self.shared.checkpoint(arch)

    def onnx(self, arch: str, one2one: bool = False, precision: str = "fp32") -> onnx.ModelProto:
        """ultralytics' export (dynamic batch; ``one2one``: nms=False, max_det=TOPK), then the pipeline's
        fixed image size, simplification and precision (onnx_export's own functions)."""
        key = (arch, one2one, precision)
        if key not in self.cache:
            from yolo_triton import onnx_export

            # onnx_export.ultralytics_onnx's export (the same ultralytics arguments), loaded afresh: not shared
            model = onnx.load(str(self.shared.export(arch, one2one, TOPK)))
            meta = metadata(model)
            onnx_export.fix_image_size(model, IMGSZ)
            model = onnx_export.simplify(model)
            if precision == "fp16":
                work = self.root / f"autocast_{arch}"
                work.mkdir(exist_ok=True)
                model = onnx_export.to_fp16_mixed(model, work)
            set_metadata(model, meta)  # ultralytics' own metadata only: task, kpt_shape, end2end, names
            self.cache[key] = model
        return self.cache[key]


@pytest.fixture(scope="module")
def artefacts(tmp_path_factory, task_artefacts) -> Artefacts:
    return Artefacts(tmp_path_factory.mktemp("tasks"), task_artefacts)


@pytest.fixture(scope="module")
def batch(sample_images):
    """The letterboxed sample images and their LetterboxInfo."""
    import cv2

    return pp.letterbox_batch([cv2.imread(str(p)) for p in sample_images], IMGSZ)


def run(model: onnx.ModelProto, images: np.ndarray) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, {session.get_inputs()[0].name: images})))


def added_ops(end2end: onnx.ModelProto, source: onnx.ModelProto) -> set[str]:
    before = {n.name for n in source.graph.node}
    return {n.op_type for n in end2end.graph.node if n.name not in before}


def assert_contract(end2end: onnx.ModelProto, task: str, source: onnx.ModelProto, extra_shape: tuple) -> None:
    """Output names (settings), dtypes and shapes; standard ops only, all native to TensorRT."""
    outputs = {o.name: o.type.tensor_type for o in end2end.graph.output}
    names = list(END2END_OUTPUTS + END2END_TASK_OUTPUTS[task])
    assert list(outputs) == names
    dims = {name: [d.dim_param or d.dim_value for d in t.shape.dim] for name, t in outputs.items()}
    assert dims["det_boxes"] == ["batch", TOPK, 4] and dims["num_dets"] == ["batch", 1]
    assert outputs["num_dets"].elem_type == outputs["det_classes"].elem_type == TensorProto.INT32
    task_output = END2END_TASK_OUTPUTS[task][0]
    assert dims[task_output] == ["batch", TOPK, *extra_shape]
    assert outputs[task_output].elem_type == TensorProto.FLOAT
    ops = added_ops(end2end, source)
    assert ops <= TENSORRT_NATIVE_OPS, ops - TENSORRT_NATIVE_OPS
    assert {n.domain for n in end2end.graph.node} <= {""}
    assert metadata(end2end)["task"] == task


def assert_equal(got: np.ndarray, expected: np.ndarray, what: str) -> None:
    assert got.dtype == expected.dtype and got.shape == expected.shape, (what, got.dtype, got.shape, expected.shape)
    assert np.array_equal(got, expected), f"{what} differs by {np.abs(got.astype(float) - expected).max()}"
    assert got.tobytes() == expected.tobytes(), f"{what}: the same numbers, other bits (-0.0 for +0?)"


def numpy_four(boxes, scores, mode):
    """The NumPy model's four outputs of ``mode`` on Track A's boxes and scores."""
    if mode == "onnx":
        return pp.efficient_nms(boxes, scores, CONF, IOU, TOPK, strict_thresholds=True)
    num = np.zeros((len(boxes), 1), np.int32)
    det_boxes, det_scores = np.zeros((len(boxes), TOPK, 4), np.float32), np.zeros((len(boxes), TOPK), np.float32)
    det_classes = np.zeros((len(boxes), TOPK), np.int32)
    for b, det in enumerate(pp.ultralytics_nms(boxes, scores, CONF, IOU, TOPK, box_coding=pp.BOX_CENTER_SIZE)):
        n = num[b, 0] = len(det)
        det_boxes[b, :n], det_scores[b, :n], det_classes[b, :n] = det[:, :4], det[:, 4], det[:, 5]
    return num, det_boxes, det_scores, det_classes


def padded_rows(rows_per_image: list[np.ndarray], shape: tuple) -> np.ndarray:
    out = np.zeros((len(rows_per_image), TOPK, *shape), np.float32)
    for b, rows in enumerate(rows_per_image):
        out[b, :len(rows)] = rows
    return out


def task_shape(model: onnx.ModelProto, task: str) -> TaskShape:
    meta = metadata(model)
    nc = len(eval(meta["names"]))  # noqa: S307 - ultralytics' dict literal
    return TaskShape(task, nc, num_masks=32 if task == "segment" else 0,
                     kpt_shape=tuple(eval(meta["kpt_shape"])) if task == "pose" else None)  # noqa: S307


def assert_same_decoding(got: dict, raw: dict, infos, shape: TaskShape, params: NmsParams, layout: str) -> None:
    """The task's decoding (original-image pixels: masks, keypoints, rotated boxes) of the end2end outputs is
    the same as of the Track A (``layout`` track_a) or one-to-one outputs."""
    task = for_task(shape.task)
    ours = task.decode(got, infos, shape, params, "end2end")
    theirs = task.decode(raw, infos, shape, params, layout)
    assert sum(len(r) for r in ours) > 0
    for mine, ref in zip(ours, theirs):
        for field in ("boxes", "scores", "classes", "masks", "keypoints", "xywhr"):
            a, b = getattr(mine, field), getattr(ref, field)
            assert (a is None) == (b is None), field
            if a is not None:
                assert a.shape == b.shape and np.array_equal(a, b), field


def check_track_a(end2end: onnx.ModelProto, track_a: onnx.ModelProto, batch, task: str, mode: str,
                  min_dets: int = 20) -> dict[str, np.ndarray]:
    """End2end in onnxruntime == NumPy model on Track A's output0: four outputs and the task's rows."""
    images, infos = batch
    got = run(end2end, images)
    raw = run(track_a, images)
    output0 = raw["output0"]
    nc = len(eval(metadata(track_a)["names"]))  # noqa: S307 - our own file's dict literal
    boxes, scores = output0[:, :4].transpose(0, 2, 1), output0[:, 4:4 + nc].transpose(0, 2, 1)
    extra = output0[:, 4 + nc:].transpose(0, 2, 1)  # [B, A, extra]
    for name, g, e in zip(END2END_OUTPUTS, (got[n] for n in END2END_OUTPUTS), numpy_four(boxes, scores, mode)):
        assert_equal(g, e, name)
    anchors = [a for _, a in pp.track_a_kept(output0, infos, CONF, IOU, TOPK, mode, num_classes=nc)]
    nums = got["num_dets"][:, 0]
    assert [len(a) for a in anchors] == nums.tolist()
    assert nums.sum() >= min_dets and nums.min() >= 5 and nums.min() < TOPK, nums  # many, and padding rows too
    for b, a in enumerate(anchors):  # the helper's anchors are the detections' own (boxes bit-equal)
        assert_equal(got["det_boxes"][b, :len(a)], pp.xywh_to_xyxy(boxes[b, a]), "boxes of the kept anchors")
    if task == "segment":
        expected = padded_rows([extra[b, a] for b, a in enumerate(anchors)], (extra.shape[2],))
        assert_equal(got["det_mask_coeffs"], expected, "det_mask_coeffs")
        assert_equal(got[PROTOS_OUTPUT], raw["output1"], "prototypes")
    else:
        k, d = eval(metadata(track_a)["kpt_shape"])  # noqa: S307
        rows = [extra[b, a].reshape(-1, k, d) for b, a in enumerate(anchors)]
        expected = padded_rows(rows, (k, d))
        assert_equal(got["det_keypoints"], expected, "det_keypoints")
    for b, a in enumerate(anchors):  # varied: each distinct kept anchor has its own row of task values
        distinct = np.unique(a)
        assert len(distinct) >= 5 and len(np.unique(extra[b, distinct], axis=0)) == len(distinct)
    assert_same_decoding(got, raw, infos, task_shape(track_a, task), NmsParams(CONF, IOU, TOPK, mode), "track_a")
    return got


# ------------------------------------------------------------------------------ Track A, NMS=onnx/ultralytics
@pytest.mark.parametrize("mode", ["onnx", "ultralytics"])
@pytest.mark.parametrize("arch", ["yolo11n-seg", "yolo11n-pose"])
def test_track_a_task_values_follow_the_nms_indices(artefacts, batch, arch, mode):
    task = TASK_OF[arch]
    track_a = artefacts.onnx(arch)
    end2end = add_nms(track_a, mode, CONF, IOU, TOPK, 0)
    assert_contract(end2end, task, track_a, (32,) if task == "segment" else (17, 3))
    check_track_a(end2end, track_a, batch, task, mode)


def test_fp16_segment_end2end(artefacts, batch):
    """PRECISION=fp16 (AutoCast inside, FP32 I/O): the appended stage is FP32 and gathers the FP16 graph's
    own rows bit for bit."""
    track_a = artefacts.onnx("yolo11n-seg", precision="fp16")
    assert any(i.data_type == TensorProto.FLOAT16 for i in track_a.graph.initializer)
    end2end = add_nms(track_a, "onnx", CONF, IOU, TOPK, 0)
    assert_contract(end2end, "segment", track_a, (32,))
    check_track_a(end2end, track_a, batch, "segment", "onnx")


def test_batch_padding_keeps_the_task_outputs(artefacts, batch):
    """ORT_BATCHING=pad: a padded Track A is unpadded, given the NMS stage, and padded again; every output,
    the prototypes and the coefficients included, is sliced back to the images sent."""
    track_a = artefacts.onnx("yolo11n-seg")
    plain = add_nms(track_a, "ultralytics", CONF, IOU, TOPK, 0)
    padded = add_nms(pad_batch(track_a, 4), "ultralytics", CONF, IOU, TOPK, 0)
    assert padded_size(padded) == 4
    assert [o.name for o in padded.graph.output] == [o.name for o in plain.graph.output]
    want, got = run(plain, batch[0]), run(padded, batch[0])
    for name in want:
        assert got[name].shape[0] == len(batch[0])
        assert np.array_equal(got[name], want[name]), name


# ------------------------------------------------------------------------------- NMS=free (YOLO26 heads)
def hull(xywhr: np.ndarray) -> np.ndarray:
    """Axis-aligned hull of ultralytics' own corners of rotated boxes (ops.xywhr2xyxyxyxy)."""
    import torch
    from ultralytics.utils.ops import xywhr2xyxyxyxy

    corners = xywhr2xyxyxyxy(torch.from_numpy(xywhr)).numpy()  # [n, 4, 2]
    return np.concatenate([corners.min(axis=1), corners.max(axis=1)], axis=1)


@pytest.mark.parametrize("arch", ["yolo26n-seg", "yolo26n-pose", "yolo26n-obb"])
def test_free_mode_thresholds_the_one2one_rows(artefacts, batch, arch):
    """ultralytics' one-to-one export (nms=False, max_det=TOPK) -> the same end2end outputs: the rows with
    score >= CONF (a prefix: sorted by score), their task values, zeros after num_dets."""
    task = TASK_OF[arch]
    one2one = artefacts.onnx(arch, one2one=True)
    images, infos = batch
    raw = run(one2one, images)
    rows = raw["output0"]  # [B, TOPK, 6 + extra]
    # CONF from the untrained head's own scores, between two rows (no score equals it): every image keeps at
    # least TOPK/2 rows, one image fewer than TOPK (padding rows checked too).
    low = int(rows[:, TOPK // 2, 4].argmin())
    conf = float((rows[low, TOPK // 2, 4] + rows[low, TOPK // 2 + 1, 4]) / 2)
    end2end = add_nms(one2one, "free", conf, IOU, TOPK, 0)
    assert_contract(end2end, task, one2one, {"segment": (32,), "pose": (17, 3), "obb": (5,)}[task])
    assert not added_ops(end2end, one2one) & {"NonMaxSuppression", "TopK"}
    got = run(end2end, images)
    keep = rows[..., 4] >= np.float32(conf)
    nums = keep.sum(axis=1)
    assert all(keep[b, :n].all() for b, n in enumerate(nums))  # sorted: the kept rows come first
    assert got["num_dets"][:, 0].tolist() == nums.tolist() and nums.min() >= 5 and nums.min() < TOPK, nums
    kept = [rows[b, :n] for b, n in enumerate(nums)]
    assert_equal(got["det_scores"], padded_rows([r[:, 4] for r in kept], ()), "det_scores")
    assert_equal(got["det_classes"], padded_rows([r[:, 5] for r in kept], ()).astype(np.int32), "det_classes")
    if task == "obb":
        xywhr = [np.concatenate([r[:, :4], r[:, 6:7]], axis=1) for r in kept]
        assert_equal(got["det_xywhr"], padded_rows(xywhr, (5,)), "det_xywhr")
        np.testing.assert_allclose(got["det_boxes"], padded_rows([hull(x) for x in xywhr], (4,)), atol=2e-3)
        assert not got["det_boxes"][~keep].any()
        n0 = nums[0]
        assert (got["det_boxes"][0, :n0, 2:] > got["det_boxes"][0, :n0, :2]).all()
    else:
        assert_equal(got["det_boxes"], padded_rows([r[:, :4] for r in kept], (4,)), "det_boxes")
    if task == "segment":
        assert_equal(got["det_mask_coeffs"], padded_rows([r[:, 6:] for r in kept], (32,)), "det_mask_coeffs")
        assert_equal(got[PROTOS_OUTPUT], raw["output1"], "prototypes")
    elif task == "pose":
        assert_equal(got["det_keypoints"], padded_rows([r[:, 6:].reshape(-1, 17, 3) for r in kept], (17, 3)),
                     "det_keypoints")
    assert_same_decoding(got, raw, infos, task_shape(one2one, task), NmsParams(conf, IOU, TOPK), "one2one")


# ---------------------------------------------------------------------- stand-in heads: layouts, refusals
def stand_in(task: str, nc: int = 3, anchors: int = 64, extra: int = 0, one2one: bool = False,
             meta: dict | None = None, protos: bool = False) -> onnx.ModelProto:
    """A graph whose input is the head output itself (Identity), with ultralytics-style metadata."""
    shape = ["batch", TOPK, 6 + extra] if one2one else ["batch", 4 + nc + extra, anchors]
    inputs = [helper.make_tensor_value_info("head_in", TensorProto.FLOAT, shape)]
    outputs = [helper.make_tensor_value_info("output0", TensorProto.FLOAT, shape)]
    nodes = [helper.make_node("Identity", ["head_in"], ["output0"])]
    if protos:
        inputs.append(helper.make_tensor_value_info("protos_in", TensorProto.FLOAT, ["batch", extra, 8, 8]))
        outputs.append(helper.make_tensor_value_info(PROTOS_OUTPUT, TensorProto.FLOAT, ["batch", extra, 8, 8]))
        nodes.append(helper.make_node("Identity", ["protos_in"], [PROTOS_OUTPUT]))
    model = helper.make_model(helper.make_graph(nodes, "head", inputs, outputs),
                              opset_imports=[helper.make_opsetid("", 18)])
    set_metadata(model, {"names": str({i: f"c{i}" for i in range(nc)}), "task": task,
                         "end2end": str(one2one), **(meta or {})})
    return model


def test_pose_without_keypoint_confidence_gets_one():
    """kpt_shape [K, 2]: det_keypoints [B, TOPK, K, 3] with confidence 1.0 on detections, 0 on padding."""
    rng = np.random.default_rng(3)
    k, nc, anchors = 5, 2, 64
    model = add_nms(stand_in("pose", nc, anchors, 2 * k, meta={"kpt_shape": str([k, 2])}), "ultralytics",
                    CONF, IOU, TOPK, 0)
    xy = rng.uniform(0, 320, (1, anchors, 2))
    wh = rng.uniform(4, 40, (1, anchors, 2))
    scores = rng.uniform(0, 1, (1, anchors, nc)) ** 2
    kpts = rng.uniform(0, 320, (1, anchors, 2 * k))
    head = np.concatenate([xy, wh, scores, kpts], 2).astype(np.float32).transpose(0, 2, 1).copy()
    got = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        ["num_dets", "det_keypoints"], {"head_in": head})
    n = int(got[0][0, 0])
    ((_, anchors_kept),) = pp.track_a_kept(head, [pp.LetterboxInfo(1.0, 0, 0, 320, 320)], CONF, IOU, TOPK,
                                           "ultralytics", num_classes=nc)
    assert n == len(anchors_kept) > 5
    expected = np.zeros((TOPK, k, 3), np.float32)
    expected[:n, :, :2] = head[0, 4 + nc:, anchors_kept].reshape(n, k, 2)
    expected[:n, :, 2] = 1.0
    assert_equal(got[1][0], expected, "det_keypoints")


REFUSALS = [
    ("segment", "efficient", {"extra": 4, "protos": True}, "EfficientNMS_TRT returns no indices, so the masks"),
    ("pose", "efficient", {"extra": 6, "meta": {"kpt_shape": "[2, 3]"}}, "so the keypoints of the kept boxes"),
    ("obb", "onnx", {"extra": 1}, "no standard-operator rotated NMS"),
    ("obb", "ultralytics", {"extra": 1}, "no standard-operator rotated NMS"),
    ("obb", "efficient", {"extra": 1}, "no standard-operator rotated NMS"),
    ("obb", "free", {"extra": 1}, "NMS=free needs an ONNX exported from the one-to-one head"),
    ("classify", "onnx", {}, "a classify model has no NMS"),
    ("classify", "free", {"one2one": True}, "a classify model has no NMS"),
]


@pytest.mark.parametrize("task, mode, layout, message", REFUSALS)
def test_refusals_are_one_line_before_any_surgery(task, mode, layout, message):
    with pytest.raises(StepError) as err:
        add_nms(stand_in(task, **layout), mode, CONF, IOU, TOPK, 0)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_refusals_are_option_rules():
    """One rule per clash (options.RULES), one message each; what works is not refused."""
    for task, mode in [("segment", "efficient"), ("pose", "efficient"), ("obb", "onnx"), ("classify", "free")]:
        assert len(violations(Options(nms=mode, task=task))) == 1, (task, mode)
    for task, mode in [("segment", "onnx"), ("pose", "ultralytics"), ("obb", "free"), ("detect", "efficient")]:
        assert violations(Options(nms=mode, task=task)) == [], (task, mode)
    (message,) = violations(Options(nms="free", task="obb", has_one2one_head=False))
    assert "OBB model without one has no end2end graph" in message


def test_layout_that_disagrees_with_its_task_is_named():
    with pytest.raises(StepError, match=r"expected \[batch, 4\+3\+6, anchors\] for a pose head"):
        add_nms(stand_in("pose", extra=5, meta={"kpt_shape": "[2, 3]"}), "onnx", CONF, IOU, TOPK, 0)
    with pytest.raises(StepError, match="without a usable 'kpt_shape'"):
        add_nms(stand_in("pose", extra=6), "onnx", CONF, IOU, TOPK, 0)
    with pytest.raises(StepError, match=r"a segment ONNX has the outputs \['output0', 'output1'\]"):
        add_nms(stand_in("segment", extra=4), "onnx", CONF, IOU, TOPK, 0)
    with pytest.raises(StepError, match=r"expected \[batch, max_det, 6\+1\]"):
        add_nms(stand_in("obb", extra=2, one2one=True), "free", CONF, IOU, TOPK, 0)


def test_make_end2end_refuses_efficient_for_segment_in_one_line(artefacts, tmp_path):
    """The Makefile's end2end rule on a segment Track A with NMS=efficient: add_nms.py says why in one
    line, make fails, nothing is written."""
    name = "seg_untrained"
    tree = Tree(tmp_path)
    tree.weights.mkdir()
    (tree.weights / f"{name}.pt").symlink_to(artefacts.checkpoint("yolo11n-seg"))
    settings = (f"IMGSZ={IMGSZ}", "PRECISION=fp32", "NMS=efficient")
    tree.make(str(tree.root / "build" / "params" / f"{name}.onnx"), *settings)  # the Track A stamp, as make writes it
    track_a = tree.artefact(name)
    track_a.parent.mkdir(parents=True)
    onnx.save(artefacts.onnx("yolo11n-seg"), str(track_a))  # newer than its prerequisites: not rebuilt
    end2end = tree.artefact(f"{name}_end2end")
    assert "export_onnx.py" not in tree.make(str(end2end), *settings, "-n").stdout
    result = tree.make(str(end2end), *settings, check=False)
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1, result.stderr
    assert "EfficientNMS_TRT returns no indices, so the masks of the kept boxes cannot be gathered; use NMS=onnx " \
           "or ultralytics" in errors[0]
    assert not end2end.parent.exists() or not any(end2end.parent.iterdir())
    ok = subprocess.run([sys.executable, str(REPO / "export" / "add_nms.py"), "--onnx", str(track_a), "--out",
                         str(end2end), "--nms", "onnx", "--conf", str(CONF), "--iou", str(IOU), "--topk", str(TOPK),
                         "--agnostic", "0"], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert [o.name for o in onnx.load(str(end2end)).graph.output] == [*END2END_OUTPUTS, "det_mask_coeffs", "output1"]
