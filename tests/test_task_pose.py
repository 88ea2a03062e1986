"""The pose task (yolo_triton.task_pose) against ultralytics 8.4.190: real ONNX exports of untrained,
output-varied YOLO11 / YOLO26 pose checkpoints run in onnxruntime on ultralytics' sample images,
decoded and compared with ``YOLO.predict``; the NMS, keypoint gathering and ``scale_coords`` bit for bit
against ultralytics on the same output; end2end decoding on arrays built here."""
from __future__ import annotations

import numpy as np
import pytest

from scratch_tasks import IMGSZ, run_onnx, sample_images
from yolo_triton import postprocess as pp
from yolo_triton import task_pose
from yolo_triton.errors import StepError
from yolo_triton.settings import defaults
from yolo_triton.task_base import Instances, NmsParams, TaskShape, Tolerance
from yolo_triton.tasks import for_task
from yolo_triton.validate import TOLERANCES

D = defaults()
PARAMS = NmsParams(conf=float(D["CONF"]), iou=float(D["IOU"]), topk=int(D["TOPK"]))
FP32 = Tolerance(*TOLERANCES["fp32"])  # box_px 0.05 input px, score 1e-3
TASK = for_task("pose")


@pytest.fixture(scope="module")
def built(task_artefacts):
    """A memo: arch -> (checkpoint, {one2one: decoded ONNX outputs}, shape), built on first use."""
    from ultralytics import YOLO

    cache = {}

    def get(arch: str, one2one: bool = False):
        if arch not in cache:
            pt = task_artefacts.checkpoint(arch)
            head = YOLO(str(pt)).model.model[-1]
            cache[arch] = (pt, {}, TaskShape("pose", head.nc, kpt_shape=tuple(head.kpt_shape)))
        pt, outputs, shape = cache[arch]
        if one2one not in outputs:
            path = task_artefacts.export(arch, one2one, PARAMS.topk)
            batch, infos = TASK.preprocess(sample_images(), IMGSZ)
            outputs[one2one] = (run_onnx(path, batch), infos)
        return pt, outputs[one2one][0], outputs[one2one][1], shape

    return get


def assert_varied(results: list[Instances]) -> None:
    """Enough instances, keypoint confidences on both sides of the drawing threshold, spread positions."""
    assert all(len(r) for r in results), [len(r) for r in results]
    kpts = np.concatenate([r.keypoints for r in results])
    assert len(kpts) >= 10
    conf = kpts[..., 2]
    assert conf.min() < 0.1 and conf.max() > 0.9 and conf.std() > 0.1, np.percentile(conf, [0, 50, 100])
    assert kpts[..., 0].std() > 20 and kpts[..., 1].std() > 20


@pytest.mark.slow
@pytest.mark.parametrize("arch,layout", [("yolo11n-pose", "track_a"), ("yolo26n-pose", "track_a"),
                                         ("yolo26n-pose", "one2one")])
def test_decode_matches_ultralytics_predict(built, arch, layout):
    from ultralytics import YOLO

    pt, outputs, infos, shape = built(arch, layout == "one2one")
    assert shape.kpt_shape == (17, 3)
    values = outputs["output0"].shape[1] if layout == "track_a" else outputs["output0"].shape[2]
    assert values == (4 + shape.num_classes if layout == "track_a" else 6) + 17 * 3
    test = TASK.decode(outputs, infos, shape, PARAMS, layout)
    yolo = YOLO(str(pt))
    yolo.overrides["nms"] = False if layout == "one2one" else None  # the NMS-free head, or NMS (Task.reference)
    ref = TASK.reference(yolo, sample_images(), IMGSZ, PARAMS)
    assert [len(r) for r in ref] == [len(t) for t in test]
    assert_varied(test)
    assert all(t.keypoints.shape == (len(t), 17, 3) and t.gain == info.ratio for t, info in zip(test, infos))
    assert TASK.compare(ref, test, FP32, PARAMS) == []

    # The comparison can fail: one keypoint moved by twice the tolerance, one instance's score changed.
    moved = [Instances(t.boxes, t.scores.copy(), t.classes, keypoints=t.keypoints.copy(), gain=t.gain) for t in test]
    moved[0].keypoints[0, 5, 1] += 2 * FP32.box_px / moved[0].gain
    moved[0].scores[1] += 0.01
    problems = TASK.compare(ref, moved, FP32, PARAMS)
    assert len(problems) == 2, problems
    assert problems[0].startswith("image 0: instance 1: score") and "keypoint position differs" in problems[1]


@pytest.mark.slow
def test_kept_anchors_keypoints_and_scale_coords_equal_ultralytics_exactly(built):
    """The same output0 through ultralytics' non_max_suppression (torchvision NMS, as its predictor) and
    through ours: the same anchors, keypoints equal to ultralytics' rows, scale_coords bit for bit."""
    import torch
    import torchvision  # noqa: F401 - ultralytics' NMS takes torchvision's path when it is imported, as predict does
    from ultralytics.utils import ops
    from ultralytics.utils.nms import non_max_suppression

    _, outputs, infos, shape = built("yolo11n-pose")
    output0 = outputs["output0"]
    nc = shape.num_classes
    rows, keep = non_max_suppression(torch.from_numpy(output0), PARAMS.conf, PARAMS.iou, max_det=PARAMS.topk, nc=nc,
                                     return_idxs=True)
    kept = pp.track_a_kept(output0, infos, PARAMS.conf, PARAMS.iou, PARAMS.topk, "ultralytics", num_classes=nc)
    decoded = TASK.decode(outputs, infos, shape, PARAMS, "track_a")
    for b, ((dets, anchors), info) in enumerate(zip(kept, infos)):
        assert len(anchors) and anchors.dtype == np.int64 and np.array_equal(anchors, keep[b].numpy())
        theirs = rows[b][:, 6:].reshape(-1, 17, 3)
        assert np.array_equal(output0[b][4 + nc:, anchors].T.reshape(-1, 17, 3), theirs.numpy())
        scaled = ops.scale_coords((IMGSZ, IMGSZ), theirs.clone(), (info.orig_h, info.orig_w)).numpy()
        assert np.array_equal(task_pose.map_keypoints_to_original(theirs.numpy(), info), scaled)
        assert np.array_equal(decoded[b].keypoints, scaled)
        assert np.array_equal(decoded[b].boxes, dets.boxes)


@pytest.mark.slow
@pytest.mark.parametrize("mode", pp.MODES)
def test_track_a_kept_on_a_pose_output_points_at_the_kept_detections(built, mode):
    """Every mode, on the whole pose output0: each kept detection's anchor has that box (mapped back) and
    that class score, and the keypoint rows take no part in NMS (the same as on the box and class rows)."""
    _, outputs, infos, shape = built("yolo11n-pose")
    output0, nc = outputs["output0"], shape.num_classes
    kept = pp.track_a_kept(output0, infos, PARAMS.conf, PARAMS.iou, PARAMS.topk, mode, num_classes=nc)
    for out, info, (dets, anchors) in zip(output0, infos, kept):
        assert len(anchors) == len(dets) > 0
        corners = pp.xywh_to_xyxy(out[:4, anchors].T)
        assert np.array_equal(pp.map_boxes_to_original(corners, info), dets.boxes)
        assert np.array_equal(out[4 + dets.classes, anchors], dets.scores)
    alone = pp.postprocess_track_a(output0[:, :4 + nc], infos, PARAMS.conf, PARAMS.iou, PARAMS.topk, mode)
    assert [d.boxes.tolist() for d, _ in kept] == [d.boxes.tolist() for d in alone]


def test_two_value_keypoints_get_confidence_one_and_match_ultralytics():
    """kpt_shape (3, 2): no confidence in the head; positions as ultralytics' NMS + scale_coords give them."""
    import torch
    from ultralytics.utils import ops
    from ultralytics.utils.nms import non_max_suppression

    info = pp.letterbox_params(240, 320, IMGSZ)[0]  # pad_y 40, gain 1.0
    out = np.zeros((1, 4 + 2 + 6, 4), np.float32)
    out[0, :4] = np.array([[50, 150, 250, 52], [100, 100, 200, 101], [40, 40, 60, 40], [40, 40, 60, 40]]).T
    out[0, 4:6] = np.array([[0.9, 0.1], [0.2, 0.8], [0.7, 0.1], [0.1, 0.1]]).T  # anchor 3 below CONF
    out[0, 6:] = np.random.default_rng(0).uniform(0, 320, (6, 4))
    out[0, 6, 0], out[0, 7, 1] = -15, 330  # outside the image: clipped to x 0, y 240
    shape = TaskShape("pose", 2, kpt_shape=(3, 2))
    (result,) = TASK.decode({"output0": out}, [info], shape, PARAMS, "track_a")
    rows = non_max_suppression(torch.from_numpy(out), PARAMS.conf, PARAMS.iou, max_det=PARAMS.topk, nc=2)[0]
    theirs = ops.scale_coords((IMGSZ, IMGSZ), rows[:, 6:].reshape(-1, 3, 2).clone(), (240, 320)).numpy()
    assert len(result) == 3 and result.classes.tolist() == [0, 1, 0]
    assert result.keypoints.shape == (3, 3, 3) and (result.keypoints[..., 2] == 1.0).all()
    assert np.array_equal(result.keypoints[..., :2], theirs)
    assert result.keypoints[..., 0].min() == 0 and result.keypoints[..., 1].max() == 240  # clipped


def test_one2one_keeps_rows_above_conf_strictly_and_maps_keypoints():
    info = pp.letterbox_params(640, 480, IMGSZ)[0]  # gain 0.5, pad_x 40
    rows = np.zeros((1, 5, 6 + 17 * 3), np.float32)
    rows[0, :, :4] = [100, 100, 200, 220]
    rows[0, :, 4] = [0.9, 0.5, PARAMS.conf, 0.1, 0.0]  # sorted by score; score == CONF is dropped (score > conf)
    rows[0, :, 5] = [3, 0, 1, 2, 0]
    kpts = np.random.default_rng(1).uniform(0, 320, (5, 17, 3)).astype(np.float32)
    rows[0, :, 6:] = kpts.reshape(5, -1)
    (result,) = TASK.decode({"output0": rows}, [info], TaskShape("pose", 4, kpt_shape=(17, 3)), PARAMS, "one2one")
    assert result.classes.tolist() == [3, 0] and result.scores.tolist() == pytest.approx([0.9, 0.5])
    assert result.boxes[0].tolist() == [120, 200, 320, 440]
    expected = kpts[:2].copy()
    expected[..., 0] = np.clip((expected[..., 0] - 40) / np.float32(0.5), 0, 480)
    expected[..., 1] = np.clip(expected[..., 1] / np.float32(0.5), 0, 640)
    assert np.array_equal(result.keypoints, expected)


def test_end2end_decode_slices_by_num_dets_and_maps_keypoints():
    info = pp.letterbox_params(480, 640, IMGSZ)[0]  # gain 0.5, pad_y 40
    rng = np.random.default_rng(2)
    topk, k = 6, 17
    outputs = {"num_dets": np.array([[3], [0]], np.int32),
               "det_boxes": rng.uniform(0, 320, (2, topk, 4)).astype(np.float32),
               "det_scores": np.sort(rng.uniform(0.3, 1, (2, topk)).astype(np.float32))[:, ::-1].copy(),
               "det_classes": rng.integers(0, 80, (2, topk)).astype(np.int32),
               "det_keypoints": rng.uniform(-10, 330, (2, topk, k, 3)).astype(np.float32)}
    outputs["det_keypoints"][..., 2] = rng.uniform(0, 1, (2, topk, k))
    assert TASK.output_names("end2end", TaskShape("pose", 80, kpt_shape=(17, 3))) == (
        "num_dets", "det_boxes", "det_scores", "det_classes", "det_keypoints")
    first, second = TASK.decode(outputs, [info, info], TaskShape("pose", 80, kpt_shape=(17, 3)), PARAMS, "end2end")
    assert len(first) == 3 and len(second) == 0 and second.keypoints.shape == (0, 17, 3)
    assert np.array_equal(first.boxes, pp.map_boxes_to_original(outputs["det_boxes"][0, :3], info))
    kp = outputs["det_keypoints"][0, :3]
    assert np.array_equal(first.keypoints[..., 2], kp[..., 2])  # confidences untouched
    assert np.allclose(first.keypoints[..., 0], np.clip(kp[..., 0] / 0.5, 0, 640), atol=1e-4)
    assert np.allclose(first.keypoints[..., 1], np.clip((kp[..., 1] - 40) / 0.5, 0, 480), atol=1e-4)
    outputs["det_keypoints"] = outputs["det_keypoints"][..., :2]
    with pytest.raises(StepError, match=r"det_keypoints must be \[B, topk, 17, 3\]"):
        TASK.decode(outputs, [info, info], TaskShape("pose", 80, kpt_shape=(17, 3)), PARAMS, "end2end")


def test_bad_outputs_raise_step_errors():
    info = pp.letterbox_params(320, 320, IMGSZ)[0]
    shape = TaskShape("pose", 1, kpt_shape=(17, 3))
    with pytest.raises(StepError, match=r"is \[B, 56, anchors\], got \[1, 55, 10\]"):
        TASK.decode({"output0": np.zeros((1, 55, 10), np.float32)}, [info], shape, PARAMS, "track_a")
    with pytest.raises(StepError, match=r"is \[B, max_det, 57\]"):
        TASK.decode({"output0": np.zeros((1, 10, 56), np.float32)}, [info], shape, PARAMS, "one2one")
    with pytest.raises(StepError, match="kpt_shape"):
        TASK.decode({"output0": np.zeros((1, 56, 10), np.float32)}, [info], TaskShape("pose", 1), PARAMS, "track_a")
    with pytest.raises(StepError, match="2 LetterboxInfo for a batch of 1"):
        TASK.decode({"output0": np.zeros((1, 56, 10), np.float32)}, [info, info], shape, PARAMS, "track_a")


def one_person(conf: float) -> Instances:
    """One instance with the 17 COCO keypoints of a standing figure in a 200 x 200 image."""
    xy = np.array([[100, 30], [95, 25], [105, 25], [90, 28], [110, 28], [80, 60], [120, 60], [70, 90], [130, 90],
                   [65, 120], [135, 120], [88, 120], [112, 120], [85, 155], [115, 155], [84, 190], [116, 190]],
                  np.float32)
    kpts = np.concatenate([xy, np.full((17, 1), conf, np.float32)], axis=1)[None]
    return Instances(np.array([[60, 20, 140, 195]], np.float32), np.array([0.87], np.float32), np.array([0], np.int32),
                     keypoints=kpts)


def test_to_json_adds_keypoints():
    (row,) = TASK.to_json(one_person(0.75), ["person"])
    assert row["label"] == "person" and row["score"] == pytest.approx(0.87) and row["box"] == [60, 20, 140, 195]
    assert len(row["keypoints"]) == 17 and row["keypoints"][0] == [100.0, 30.0, 0.75]


def test_draw_keypoints_and_skeleton_above_the_threshold_only():
    image = np.zeros((200, 200, 3), np.uint8)
    drawn = TASK.draw(image, one_person(0.9), ["person"])
    assert drawn.shape == image.shape and not image.any()  # a copy
    assert drawn[30, 100].any() and drawn[120, 65].any()  # keypoints
    assert drawn[60, 100].any()  # the shoulder-to-shoulder limb (6, 7) between (80, 60) and (120, 60)
    faint = TASK.draw(image, one_person(0.1), ["person"])
    assert not faint[30, 100].any() and not faint[60, 100].any() and faint[20, 100].any()  # the box only
    four = one_person(0.9)
    four.keypoints = four.keypoints[:, [5, 6, 0, 1]]  # K == 4: points, no COCO skeleton
    drawn = TASK.draw(image, four, None)
    assert drawn[60, 80].any() and not drawn[60, 100].any()


def test_module_imports_no_torch():
    import subprocess
    import sys

    code = "import sys, yolo_triton.task_pose; print('torch' in sys.modules, 'ultralytics' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.split() == ["False", "False"]


def test_an_image_without_candidates_gives_no_instances():
    info = pp.letterbox_params(320, 320, IMGSZ)[0]
    out = np.full((1, 4 + 2 + 17 * 3, 50), 0.1, np.float32)  # every score below CONF
    (result,) = TASK.decode({"output0": out}, [info], TaskShape("pose", 2, kpt_shape=(17, 3)), PARAMS, "track_a")
    assert len(result) == 0 and result.boxes.shape == (0, 4) and result.keypoints.shape == (0, 17, 3)
    assert TASK.to_json(result, None) == [] and TASK.compare([result], [result], FP32, PARAMS) == []
