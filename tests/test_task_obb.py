"""The OBB task (yolo_triton.task_obb) against ultralytics 8.4.190: NumPy probiou and rotated NMS
against ultralytics' torch ones, real ONNX exports of untrained, output-varied YOLO11 / YOLO26 OBB
checkpoints run in onnxruntime on ultralytics' sample images, decoded and compared with
``YOLO.predict``; end2end and one-to-one decoding on arrays built here."""
from __future__ import annotations

import math

import numpy as np
import pytest

from scratch_tasks import IMGSZ, run_onnx, sample_images
from yolo_triton import postprocess as pp
from yolo_triton import task_obb
from yolo_triton.errors import StepError
from yolo_triton.settings import defaults
from yolo_triton.task_base import Instances, NmsParams, TaskShape, Tolerance
from yolo_triton.tasks import for_task
from yolo_triton.validate import TOLERANCES

D = defaults()
PARAMS = NmsParams(conf=float(D["CONF"]), iou=float(D["IOU"]), topk=int(D["TOPK"]))
FP32 = Tolerance(*TOLERANCES["fp32"])  # score 1e-3; probiou 0.9, angle 0.05 rad
TASK = for_task("obb")


def random_rboxes(rng, n: int, centre_range: float = 300) -> np.ndarray:
    return np.concatenate([rng.uniform(0, centre_range, (n, 2)), rng.uniform(1, 120, (n, 2)),
                           rng.uniform(-math.pi, math.pi, (n, 1))], axis=1).astype(np.float32)


def test_batch_probiou_equals_ultralytics():
    import torch
    from ultralytics.utils.metrics import batch_probiou

    rng = np.random.default_rng(0)
    a = random_rboxes(rng, 64)
    b = np.concatenate([a[:32] + rng.normal(0, 3, (32, 5)).astype(np.float32), random_rboxes(rng, 16)])
    b[:8] = a[:8]  # identical boxes
    b[8:12] = a[8:12] + np.float32([0, 0, 0, 0, math.pi])  # the same rectangles turned by pi
    ours = task_obb.batch_probiou(a, b)
    theirs = batch_probiou(torch.from_numpy(a), torch.from_numpy(b)).numpy()
    assert ours.shape == (64, 48) and ours.dtype == np.float32
    # Equal to float32 rounding (cos/sin differ by an ulp between NumPy and torch), except near probiou 1,
    # where sqrt(1 - exp(-bd) + eps) of a distance bd ~ 1e-7 amplifies that ulp (no threshold lies there).
    assert np.abs(ours - theirs)[theirs < 0.99].max() <= 1e-5
    assert np.abs(ours - theirs).max() <= 1e-3
    assert (ours > 0.5).sum() >= 30 and (ours < 0.01).sum() > 1000  # overlapping and distant pairs
    assert np.diag(ours[:12, :12]).min() > 0.99


def nms_input(rng, nc: int, anchors: int) -> np.ndarray:
    """A raw OBB output ``[1, 4+nc+1, anchors]``: boxes in a few clusters (much suppression), skewed scores."""
    out = np.zeros((1, 4 + nc + 1, anchors), np.float32)
    centres = rng.uniform(40, 280, (12, 2))[rng.integers(0, 12, anchors)]
    out[0, :2] = (centres + rng.normal(0, 12, (anchors, 2))).T
    out[0, 2:4] = rng.uniform(8, 90, (2, anchors))
    out[0, 4:4 + nc] = rng.uniform(0, 1, (nc, anchors)) ** 3
    out[0, -1] = rng.uniform(-0.8, 2.4, anchors)
    return out


@pytest.mark.parametrize("agnostic", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rotated_nms_equals_ultralytics(agnostic, seed):
    """Same kept anchors, in the same order, with the same rows as ultralytics'
    ``non_max_suppression(rotated=True)``."""
    import torch
    from ultralytics.utils.nms import non_max_suppression

    nc = 5
    out = nms_input(np.random.default_rng(seed), nc, 800)
    rows, keep = non_max_suppression(torch.from_numpy(out), PARAMS.conf, PARAMS.iou, agnostic=agnostic, max_det=300,
                                     nc=nc, rotated=True, return_idxs=True)
    boxes, scores, classes, anchors = task_obb.nms_rotated(out[0, 4:4 + nc], np.concatenate([out[0, :4], out[0, -1:]]),
                                                           PARAMS.conf, PARAMS.iou, 300, agnostic)
    candidates = int((out[0, 4:4 + nc].max(axis=0) > PARAMS.conf).sum())
    assert 20 < len(anchors) < candidates  # NMS suppressed some, kept many
    assert np.array_equal(anchors, keep[0].numpy())
    theirs = rows[0].numpy()
    assert np.array_equal(boxes, theirs[:, [0, 1, 2, 3, 6]])
    assert np.array_equal(scores, theirs[:, 4]) and np.array_equal(classes, theirs[:, 5].astype(int))


def test_fast_nms_suppresses_with_suppressed_boxes_like_ultralytics():
    """Fast-NMS (not greedy): C overlaps only B, B overlaps A; B is suppressed by A and still removes C."""
    import torch
    from ultralytics.utils.nms import non_max_suppression

    out = np.zeros((1, 6, 3), np.float32)
    out[0, :4] = np.array([[100, 100, 60, 20], [120, 100, 60, 20], [140, 100, 60, 20]]).T
    out[0, 4] = [0.9, 0.8, 0.7]
    iou = float(task_obb.batch_probiou(out[0, [0, 1, 2, 3, 5]].T, out[0, [0, 1, 2, 3, 5]].T)[0, 1]) - 0.01
    assert task_obb.batch_probiou(out[0, [0, 1, 2, 3, 5]].T[[0]], out[0, [0, 1, 2, 3, 5]].T[[2]])[0, 0] < iou
    _, _, _, anchors = task_obb.nms_rotated(out[0, 4:5], out[0, [0, 1, 2, 3, 5]], 0.25, iou, 300, False)
    assert anchors.tolist() == [0]
    assert len(non_max_suppression(torch.from_numpy(out), 0.25, iou, nc=1, rotated=True)[0]) == 1


@pytest.fixture(scope="module")
def built(task_artefacts):
    """A memo: arch -> (checkpoint, {one2one: (ONNX outputs, infos)}, shape), built on first use."""
    from ultralytics import YOLO

    cache = {}

    def get(arch: str, one2one: bool = False):
        if arch not in cache:
            pt = task_artefacts.checkpoint(arch)
            cache[arch] = (pt, {}, TaskShape("obb", YOLO(str(pt)).model.model[-1].nc))
        pt, outputs, shape = cache[arch]
        if one2one not in outputs:
            path = task_artefacts.export(arch, one2one, PARAMS.topk)
            batch, infos = TASK.preprocess(sample_images(), IMGSZ)
            outputs[one2one] = (run_onnx(path, batch), infos)
        return pt, outputs[one2one][0], outputs[one2one][1], shape

    return get


@pytest.mark.slow
@pytest.mark.parametrize("arch,layout", [("yolo11n-obb", "track_a"), ("yolo26n-obb", "track_a"),
                                         ("yolo26n-obb", "one2one")])
def test_decode_matches_ultralytics_predict(built, arch, layout):
    from ultralytics import YOLO

    pt, outputs, infos, shape = built(arch, layout == "one2one")
    assert outputs["output0"].shape[1:] == ((4 + shape.num_classes + 1, 2100) if layout == "track_a"
                                            else (PARAMS.topk, 7))
    test = TASK.decode(outputs, infos, shape, PARAMS, layout)
    yolo = YOLO(str(pt))
    yolo.overrides["nms"] = False if layout == "one2one" else None  # the NMS-free head, or NMS (Task.reference)
    ref = TASK.reference(yolo, sample_images(), IMGSZ, PARAMS)
    assert [len(r) for r in ref] == [len(t) for t in test] and all(len(t) for t in test)
    angles = np.concatenate([t.xywhr[:, 4] for t in test])
    assert len(angles) >= 10 and np.ptp(angles) > 1.0 and angles.std() > 0.2  # varied angles
    assert all(np.array_equal(t.boxes, task_obb.hull(t.xywhr)) and t.gain == i.ratio for t, i in zip(test, infos))
    assert TASK.compare(ref, test, FP32, PARAMS) == []

    # The rectangle's symmetries pass; a turn by three times the tolerance and a changed score do not. The
    # turned box is image 0's squarest (it keeps a probiou above 0.3 with its original, so it stays matched).
    turned = [Instances(t.boxes, t.scores.copy(), t.classes, xywhr=t.xywhr.copy(), gain=t.gain) for t in test]
    sizes = np.abs(turned[0].xywhr[:, 2:4])
    k = int(np.argmin(sizes.max(axis=1) / sizes.min(axis=1)))
    j = (k + 1) % len(turned[0])
    turned[0].xywhr[k, 4] += math.pi
    turned[0].xywhr[j] = turned[0].xywhr[j, [0, 1, 3, 2, 4]] + np.float32([0, 0, 0, 0, math.pi / 2])
    assert TASK.compare(ref, turned, FP32, PARAMS) == []
    turned[0].xywhr[k, 4] += 3 * FP32.angle_rad
    turned[0].scores[j] += 0.01
    loose = Tolerance(FP32.box_px, FP32.score, probiou=0.3)
    problems = sorted(TASK.compare(ref, turned, loose, PARAMS))
    assert len(problems) == 2, problems
    assert problems[0].startswith(f"image 0: instance {k}: angle differs by 0.15"), problems
    assert problems[1].startswith(f"image 0: instance {j}: score"), problems


@pytest.mark.slow
def test_nms_and_scale_boxes_equal_ultralytics_on_the_real_output(built):
    """The ONNX output0 through ultralytics' non_max_suppression(rotated=True) + scale_boxes(xywh=True)
    and through ours: the same anchors and rows, the mapping bit for bit, the hull as Results.obb.xyxy."""
    import torch
    from ultralytics.engine.results import OBB
    from ultralytics.utils import ops
    from ultralytics.utils.nms import non_max_suppression

    _, outputs, infos, shape = built("yolo11n-obb")
    output0 = outputs["output0"]
    nc = shape.num_classes
    rows, keep = non_max_suppression(torch.from_numpy(output0), PARAMS.conf, PARAMS.iou, max_det=PARAMS.topk, nc=nc,
                                     rotated=True, return_idxs=True)
    decoded = TASK.decode(outputs, infos, shape, PARAMS, "track_a")
    for b, info in enumerate(infos):
        out = output0[b]
        boxes, scores, _, anchors = task_obb.nms_rotated(out[4:4 + nc], np.concatenate([out[:4], out[4 + nc:]]),
                                                         PARAMS.conf, PARAMS.iou, PARAMS.topk, False)
        assert len(anchors) and np.array_equal(anchors, keep[b].numpy())
        rbox = torch.cat([rows[b][:, :4], rows[b][:, -1:]], dim=-1)
        assert np.array_equal(boxes, rbox.numpy())
        rbox[:, :4] = ops.scale_boxes((IMGSZ, IMGSZ), rbox[:, :4], (info.orig_h, info.orig_w), xywh=True)
        assert np.array_equal(decoded[b].xywhr, rbox.numpy())
        theirs = OBB(torch.cat([rbox, rows[b][:, 4:6]], dim=-1), (info.orig_h, info.orig_w))
        assert np.abs(decoded[b].boxes - theirs.xyxy.numpy()).max() <= 1e-3
        assert np.array_equal(decoded[b].scores, theirs.conf.numpy())


def test_one2one_columns_are_xywh_score_class_angle():
    info = pp.letterbox_params(640, 480, IMGSZ)[0]  # gain 0.5, pad_x 40
    rows = np.array([[[100, 120, 40, 10, 0.9, 3, 0.5], [200, 50, 20, 30, 0.6, 1, -1.2],
                      [10, 10, 5, 5, PARAMS.conf, 0, 0.1], [0, 0, 1, 1, 0.1, 0, 0]]], np.float32)
    (result,) = TASK.decode({"output0": rows}, [info], TaskShape("obb", 4), PARAMS, "one2one")
    assert result.classes.tolist() == [3, 1] and result.scores.tolist() == pytest.approx([0.9, 0.6])
    assert np.allclose(result.xywhr, [[120, 240, 80, 20, 0.5], [320, 100, 40, 60, -1.2]])
    assert np.array_equal(result.boxes, task_obb.hull(result.xywhr))
    with pytest.raises(StepError, match=r"\[B, max_det, 7\], got \[1, 4, 6\]"):
        TASK.decode({"output0": rows[..., :6]}, [info], TaskShape("obb", 4), PARAMS, "one2one")


@pytest.mark.slow
def test_exported_one2one_rows_hold_classes_then_angles(built):
    """ultralytics' NMS-free OBB export: column 5 holds class ids, column 6 angles (radians, varied)."""
    _, outputs, _, shape = built("yolo26n-obb", True)
    rows = outputs["output0"]
    assert np.array_equal(rows[..., 5], np.round(rows[..., 5])) and rows[..., 5].max() < shape.num_classes
    assert (np.diff(rows[..., 4], axis=1) <= 0).all()  # sorted by score
    assert rows[..., 6].std() > 0.2 and not np.array_equal(rows[..., 6], np.round(rows[..., 6]))


def test_end2end_decode_maps_xywhr_and_recomputes_the_hull():
    info = pp.letterbox_params(480, 640, IMGSZ)[0]  # gain 0.5, pad_y 40
    rng = np.random.default_rng(3)
    topk = 5
    xywhr = random_rboxes(rng, 2 * topk).reshape(2, topk, 5)
    outputs = {"num_dets": np.array([[2], [0]], np.int32), "det_boxes": np.zeros((2, topk, 4), np.float32),
               "det_scores": np.full((2, topk), 0.5, np.float32), "det_classes": np.ones((2, topk), np.int32),
               "det_xywhr": xywhr}
    assert TASK.output_names("end2end", TaskShape("obb", 15)) == (
        "num_dets", "det_boxes", "det_scores", "det_classes", "det_xywhr")
    first, second = TASK.decode(outputs, [info, info], TaskShape("obb", 15), PARAMS, "end2end")
    assert len(first) == 2 and len(second) == 0 and second.xywhr.shape == (0, 5)
    expected = xywhr[0, :2].copy()
    expected[:, 1] -= 40
    expected[:, :4] /= 0.5
    assert np.allclose(first.xywhr, expected, atol=1e-4)
    assert np.array_equal(first.boxes, task_obb.hull(first.xywhr))  # not det_boxes (zeros here)
    outputs["det_xywhr"] = xywhr[..., :4]
    with pytest.raises(StepError, match=r"det_xywhr must be \[B, topk, 5\]"):
        TASK.decode(outputs, [info, info], TaskShape("obb", 15), PARAMS, "end2end")


def test_bad_outputs_raise_step_errors():
    info = pp.letterbox_params(320, 320, IMGSZ)[0]
    with pytest.raises(StepError, match=r"is \[B, 20, anchors\], got \[1, 19, 10\]"):
        TASK.decode({"output0": np.zeros((1, 19, 10), np.float32)}, [info], TaskShape("obb", 15), PARAMS, "track_a")
    with pytest.raises(StepError, match="2 LetterboxInfo for a batch of 1"):
        TASK.decode({"output0": np.zeros((1, 20, 10), np.float32)}, [info, info], TaskShape("obb", 15), PARAMS,
                    "track_a")
    with pytest.raises(StepError, match="unknown layout"):
        TASK.decode({}, [info], TaskShape("obb", 15), PARAMS, "free")


@pytest.mark.parametrize("other,expected", [
    ([50, 40, 30, 10, 0.3 + math.pi], 0.0),  # turned by pi: the same rectangle
    ([50, 40, 10, 30, 0.3 + math.pi / 2], 0.0),  # w and h swapped, turned by pi/2
    ([50, 40, 10, 30, 0.3 - math.pi / 2], 0.0),
    ([50, 40, -30, 10, 0.3], 0.0),  # a negative size (untrained heads) draws the same rectangle
    ([50, 40, 30, 10, 0.35], 0.05),
    ([50, 40, 30, 10, 0.3 - math.pi + 0.05], 0.05),
    ([50, 40, 10, 30, 0.3 + math.pi / 2 + 0.1], 0.1),
    ([50, 40, 10, 30, 0.3], math.pi / 2),  # swapped sizes at the same angle: a quarter turn
])
def test_angle_difference_modulo_the_rectangle_symmetries(other, expected):
    box = np.array([50, 40, 30, 10, 0.3], np.float32)
    assert task_obb.angle_difference(box, np.array(other, np.float32)) == pytest.approx(expected, abs=1e-6)
    square = np.array([50, 40, 20, 20.2, 0.3], np.float32)  # nearly square: a quarter turn is no difference
    assert task_obb.angle_difference(square, square + np.float32([0, 0, 0, 0, math.pi / 2 + 0.02])) == \
        pytest.approx(0.02, abs=1e-6)


def one_box() -> Instances:
    xywhr = np.array([[100, 80, 120, 40, math.pi / 6]], np.float32)
    return Instances(task_obb.hull(xywhr), np.array([0.8], np.float32), np.array([2], np.int32), xywhr=xywhr)


def test_to_json_adds_the_rotated_box_and_its_corners():
    (row,) = TASK.to_json(one_box(), ["plane", "ship", "storage tank"])
    assert row["label"] == "storage tank" and row["class_id"] == 2
    assert row["obb"]["xywhr"] == [100.0, 80.0, 120.0, 40.0, round(math.pi / 6, 5)]
    corners = np.array(row["obb"]["corners"])
    assert corners.shape == (4, 2) and np.allclose(corners.mean(axis=0), [100, 80], atol=0.01)
    assert row["box"] == pytest.approx([round(v, 2) for v in corners.min(0).tolist() + corners.max(0).tolist()])
    assert np.hypot(*(corners[0] - corners[1])) == pytest.approx(40, abs=0.02)  # pt1 -> pt2 spans h


def test_draw_rotated_polygons():
    image = np.zeros((400, 500, 3), np.uint8)  # line width 2
    drawn = TASK.draw(image, one_box(), None)
    assert not image.any() and drawn.shape == image.shape
    corners = task_obb.xywhr_corners(one_box().xywhr)[0]
    x, y = np.round((corners[0] + corners[1]) / 2).astype(int)  # the middle of an edge
    assert drawn[y, x].any()
    assert not drawn[80, 100].any()  # the centre: an outline, not a fill
    x1, y1 = np.round(one_box().boxes[0, :2]).astype(int)
    assert not drawn[y1 + 2, x1 + 2].any()  # the hull's corner is outside the rotated box: no axis-aligned box


def test_module_imports_no_torch():
    import subprocess
    import sys

    code = "import sys, yolo_triton.task_obb; print('torch' in sys.modules, 'ultralytics' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.split() == ["False", "False"]


def test_an_image_without_candidates_gives_no_instances():
    info = pp.letterbox_params(320, 320, IMGSZ)[0]
    out = np.full((1, 4 + 3 + 1, 50), 0.1, np.float32)  # every score below CONF
    (result,) = TASK.decode({"output0": out}, [info], TaskShape("obb", 3), PARAMS, "track_a")
    assert len(result) == 0 and result.boxes.shape == (0, 4) and result.xywhr.shape == (0, 5)
    assert TASK.to_json(result, None) == [] and TASK.compare([result], [result], FP32, PARAMS) == []
    assert TASK.draw(np.zeros((8, 8, 3), np.uint8), result, None).shape == (8, 8, 3)
