"""Segment (task_segment): Track A and YOLO26 one-to-one ONNX exports decoded with NumPy/OpenCV and compared
with ultralytics' own ``YOLO.predict`` masks at the original image size; end2end decoding; COCO RLE."""
from __future__ import annotations

import subprocess
import sys

import cv2
import numpy as np
import onnxruntime as ort
import pytest

from yolo_triton import postprocess as pp
from yolo_triton import tasks
from yolo_triton.errors import StepError
from yolo_triton.settings import END2END_OUTPUTS, END2END_TASK_OUTPUTS, defaults
from yolo_triton.task_base import Instances, NmsParams, TaskShape, Tolerance
from yolo_triton.task_detect import match
from yolo_triton.task_segment import TASK, input_masks, mask_iou, rle_decode, rle_encode, to_original

IMGSZ = 320
D = defaults()
PARAMS = NmsParams(conf=float(D["CONF"]), iou=float(D["IOU"]), topk=int(D["TOPK"]))
TOL = Tolerance(box_px=1.0, score=1e-3)  # mask_iou: the interface's 0.9
NC, NM = 80, 32


def _images():
    from ultralytics.utils import ASSETS

    return [cv2.imread(f"{ASSETS}/{name}") for name in ("bus.jpg", "zidane.jpg")]


def _segment_checkpoint(arch: str, out) -> str:
    """An untrained ``SegmentationModel`` from ultralytics' architecture file, outputs varied by
    ``scratch.vary_outputs`` (BatchNorm recalibrated on the sample images, class logits rescaled).
    ``scratch.make_scratch_checkpoint`` builds a DetectionModel for ``*-seg`` today, hence this."""
    import torch
    import ultralytics
    from ultralytics import YOLO

    from yolo_triton import scratch

    torch.manual_seed(0)
    model = YOLO(f"{arch}.yaml").model
    model.names = scratch.coco_names()
    scratch.vary_outputs(model, 640)
    model.args = {"task": "segment", "imgsz": 640}
    torch.save({"model": model, "train_args": {"task": "segment", "imgsz": 640, "model": f"{arch}.yaml"},
                "version": ultralytics.__version__, "untrained": True}, out)
    return str(out)


def _exported(arch: str, tmp_path_factory, **export_args):
    """(weights, {output name: array}, infos, images) of ultralytics' ONNX export run in onnxruntime."""
    from ultralytics import YOLO

    weights = _segment_checkpoint(arch, tmp_path_factory.mktemp(arch) / f"{arch}_untrained.pt")
    onnx_path = YOLO(weights).export(format="onnx", imgsz=IMGSZ, dynamic=True, verbose=False, **export_args)
    session = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    images = _images()
    batch, infos = TASK.preprocess(images, IMGSZ)
    outputs = dict(zip([o.name for o in session.get_outputs()], session.run(None, {"images": batch})))
    return weights, outputs, infos, images


@pytest.fixture(scope="module")
def yolo11_seg(tmp_path_factory):
    return _exported("yolo11n-seg", tmp_path_factory)


@pytest.fixture(scope="module")
def yolo26_seg(tmp_path_factory):
    return _exported("yolo26n-seg", tmp_path_factory, nms=False)


def _assert_varied(results) -> None:
    """The masks prove something: many instances, none empty, and they neither fill their boxes nor
    look alike (share of each box covered by its mask spread out)."""
    fills = []
    for r in filter(len, results):
        area = np.clip(r.boxes[:, 2:] - r.boxes[:, :2], 1, None).prod(1)
        fills += (r.masks.reshape(len(r), -1).sum(1) / area).tolist()
    fills = np.array(fills)
    assert len(fills) >= 20
    assert (fills > 0).all()
    assert np.mean(fills < 0.9) >= 0.25 and np.ptp(fills) > 0.3, np.quantile(fills, [0, 0.5, 1])


def _assert_agree(ref, test) -> list[float]:
    """Every instance matched one to one, ``compare`` finds nothing; the matched masks' IoUs."""
    assert TASK.compare(ref, test, TOL, PARAMS) == []
    ious = []
    for r, t in zip(ref, test):
        assert len(r) == len(t)
        pairs = match(r, t)
        assert len(pairs) == len(r)
        ious += [mask_iou(r.masks[i], t.masks[j]) for i, j in pairs]
    assert min(ious) >= TOL.mask_iou
    return ious


@pytest.mark.slow
def test_track_a_masks_match_predict(yolo11_seg):
    """YOLO11 Track A (output0 [B, 4+80+32, A] + prototypes) with ultralytics-mode NMS: the same instances as
    ``YOLO.predict``, every mask IoU >= 0.9 at the original size (measured: min > 0.99)."""
    from ultralytics import YOLO

    weights, outputs, infos, images = yolo11_seg
    assert outputs["output0"].shape[1] == 4 + NC + NM and outputs["output1"].shape[1:] == (NM, IMGSZ // 4, IMGSZ // 4)
    test = TASK.decode(outputs, infos, TaskShape("segment", NC, NM), PARAMS, "track_a")
    ref = TASK.reference(YOLO(weights), images, IMGSZ, PARAMS)
    for result, image in zip(test, images):
        assert result.masks.dtype == bool and result.masks.shape == (len(result), *image.shape[:2])
    assert all(len(r) for r in test)
    _assert_varied(test)
    assert np.mean(_assert_agree(ref, test)) > 0.99


@pytest.mark.slow
def test_one2one_masks_match_predict(yolo26_seg):
    """YOLO26 NMS-free export (output0 [B, 300, 6+32]) vs ``predict(nms=False)`` (the one-to-one head)."""
    from ultralytics import YOLO

    weights, outputs, infos, images = yolo26_seg
    assert outputs["output0"].shape[2] == 6 + NM
    test = TASK.decode(outputs, infos, TaskShape("segment", NC, NM), PARAMS, "one2one")
    yolo = YOLO(weights)
    yolo.overrides["nms"] = False
    ref = TASK.reference(yolo, images, IMGSZ, PARAMS)
    _assert_varied(test)
    _assert_agree(ref, test)
    # the one-to-many head with its NMS is another set of instances: the comparison can fail
    assert TASK.compare(TASK.reference(YOLO(weights), images, IMGSZ, PARAMS), test, TOL, PARAMS)


@pytest.mark.slow
def test_end2end_decodes_like_track_a(yolo11_seg):
    """end2end outputs built from the Track A arrays (EfficientNMS's selection, padded to TOPK, the kept
    anchors' coefficients) decode to exactly the Track A result in ``efficient`` mode."""
    _, outputs, infos, _ = yolo11_seg
    output0, protos = outputs["output0"], outputs["output1"]
    params = NmsParams(PARAMS.conf, PARAMS.iou, PARAMS.topk, mode="efficient")
    batch = len(infos)
    arrays = {"num_dets": np.zeros((batch, 1), np.int32), "det_boxes": np.zeros((batch, params.topk, 4), np.float32),
              "det_scores": np.zeros((batch, params.topk), np.float32),
              "det_classes": np.zeros((batch, params.topk), np.int32),
              "det_mask_coeffs": np.zeros((batch, params.topk, NM), np.float32), "output1": protos}
    for b, (dets, anchors) in enumerate(pp.track_a_kept(output0, infos, params.conf, params.iou, params.topk,
                                                       "efficient", num_classes=NC)):
        n = len(dets)
        arrays["num_dets"][b] = n
        arrays["det_boxes"][b, :n] = pp.xywh_to_xyxy(output0[b, :4, anchors])
        arrays["det_scores"][b, :n], arrays["det_classes"][b, :n] = dets.scores, dets.classes
        arrays["det_mask_coeffs"][b, :n] = output0[b, 4 + NC:, anchors]
    assert set(arrays) == set(END2END_OUTPUTS + END2END_TASK_OUTPUTS["segment"])
    assert TASK.output_names("end2end", TaskShape("segment", NC, NM)) == tuple(arrays)
    e2e = TASK.decode(arrays, infos, TaskShape("segment", NC, NM), params, "end2end")
    track_a = TASK.decode(outputs, infos, TaskShape("segment", NC, NM), params, "track_a")
    assert sum(len(r) for r in e2e) > 20
    for e, t in zip(e2e, track_a):
        np.testing.assert_array_equal(e.boxes, t.boxes)
        np.testing.assert_array_equal(e.scores, t.scores)
        np.testing.assert_array_equal(e.classes, t.classes)
        np.testing.assert_array_equal(e.masks, t.masks)


@pytest.mark.slow
def test_compare_catches_a_wrong_mask(yolo11_seg):
    """A mask replaced by its box (boxes right, mask wrong) is reported with its IoU; so is a missing mask."""
    _, outputs, infos, _ = yolo11_seg
    test = TASK.decode(outputs, infos, TaskShape("segment", NC, NM), PARAMS, "track_a")
    ref = TASK.decode(outputs, infos, TaskShape("segment", NC, NM), PARAMS, "track_a")
    assert TASK.compare(ref, test, TOL, PARAMS) == []
    area = (test[0].boxes[:, 2:] - test[0].boxes[:, :2]).prod(1)
    k = int(np.argmin(test[0].masks.reshape(len(test[0]), -1).sum(1) / area))  # the mask filling least of its box
    x1, y1, x2, y2 = np.round(test[0].boxes[k]).astype(int)
    test[0].masks[k] = False
    test[0].masks[k, y1:y2, x1:x2] = True
    problems = TASK.compare(ref, test, TOL, PARAMS)
    assert len(problems) == 1 and problems[0].startswith(f"image 0: instance {k}: mask IoU"), problems
    test[1].masks = None
    assert any("masks None" in p for p in TASK.compare(ref, test, TOL, PARAMS))


def test_track_a_kept_names_the_anchors():
    """``track_a_kept``: the anchors' boxes are the detections' boxes; the extra rows take no part in NMS
    (same detections as ``postprocess_track_a`` on the class rows alone)."""
    rng = np.random.default_rng(0)
    batch, nc, extra, anchors = 2, 3, 5, 400
    output0 = np.empty((batch, 4 + nc + extra, anchors), np.float32)
    output0[:, :2] = rng.uniform(0, 320, (batch, 2, anchors))
    output0[:, 2:4] = rng.uniform(4, 60, (batch, 2, anchors))
    output0[:, 4:4 + nc] = rng.uniform(0, 1, (batch, nc, anchors))
    output0[:, 4 + nc:] = 5.0  # would win every class if read as scores
    infos = [pp.letterbox_params(480, 640, 320)[0]] * batch
    for mode in pp.MODES:
        kept = pp.track_a_kept(output0, infos, 0.5, 0.5, 50, mode, num_classes=nc)
        plain = pp.postprocess_track_a(output0[:, :4 + nc], infos, 0.5, 0.5, 50, mode)
        for b, ((dets, idx), ref) in enumerate(zip(kept, plain)):
            assert len(dets) > 5 and idx.dtype == np.int64
            np.testing.assert_array_equal(dets.boxes, ref.boxes)
            np.testing.assert_array_equal(dets.classes, ref.classes)
            corners = pp.xywh_to_xyxy(output0[b, :4, idx].astype(np.float32))
            np.testing.assert_array_equal(pp.map_boxes_to_original(corners, infos[b]), dets.boxes)
            np.testing.assert_array_equal(output0[b, 4 + dets.classes, idx], dets.scores)
    with pytest.raises(ValueError, match="no room"):
        pp.track_a_kept(output0, infos, 0.5, 0.5, 50, num_classes=nc + extra + 1)


def test_masks_are_cropped_and_mapped_back():
    """One prototype that is positive everywhere: the mask is its box (crop_mask's x1 <= c < x2), and at
    the original size the letterbox padding is gone and the box is scaled by 1 / ratio."""
    protos = np.ones((NM, 8, 8), np.float32)
    coeffs = np.zeros((1, NM), np.float32)
    coeffs[0, 0] = 1.0
    masks = input_masks(protos, coeffs, np.array([[4.0, 8.5, 20.0, 30.0]], np.float32))
    assert masks.shape == (1, 32, 32)
    rows, cols = masks[0].any(1).nonzero()[0], masks[0].any(0).nonzero()[0]
    assert (cols.min(), cols.max(), rows.min(), rows.max()) == (4, 19, 9, 29)
    assert masks.sum() == 16 * 21
    info, _ = pp.letterbox_params(16, 32, 32)  # ratio 1, 8 px of padding above and below
    full = np.zeros((1, 32, 32), bool)
    full[0, 8:24, 0:16] = True
    back = to_original(full, info)
    assert back.shape == (1, 16, 32) and back[0, :, :16].all() and not back[0, :, 16:].any()
    assert to_original(np.zeros((0, 32, 32), bool), info).shape == (0, 16, 32)


def test_decode_rejects_outputs_that_do_not_fit():
    infos = [pp.letterbox_params(32, 32, 32)[0]]
    protos = np.zeros((1, NM, 8, 8), np.float32)
    shape = TaskShape("segment", NC, NM)
    with pytest.raises(StepError, match=r"not \[B, 4 \+ 80 classes \+ 32 mask"):
        TASK.decode({"output0": np.zeros((1, 4 + NC, 21), np.float32), "output1": protos}, infos, shape, PARAMS,
                    "track_a")
    with pytest.raises(StepError, match="NMS-free"):
        TASK.decode({"output0": np.zeros((1, 300, 6), np.float32), "output1": protos}, infos, shape, PARAMS,
                    "one2one")
    with pytest.raises(StepError, match="prototypes"):
        TASK.decode({"output0": np.zeros((1, 300, 38), np.float32), "output1": protos[0]}, infos, shape, PARAMS,
                    "one2one")
    with pytest.raises(StepError, match="outputs lack det_mask_coeffs, output1"):
        TASK.decode({name: np.zeros((1, 1)) for name in END2END_OUTPUTS}, infos, shape, PARAMS, "end2end")
    with pytest.raises(StepError, match="unknown layout"):
        TASK.decode({}, infos, shape, PARAMS, "track_b")


def test_rle_is_coco_uncompressed_column_major():
    """Hand-checked: column by column, zeros first; pycocotools 2.0.11 ``frPyObjects`` of these counts gives
    ``b'423OO'`` and ``b'033'``, the same as its ``encode`` of the masks."""
    mask = np.array([[0, 0, 0, 1], [0, 1, 0, 0], [0, 1, 0, 0]], bool)
    assert rle_encode(mask) == {"size": [3, 4], "counts": [4, 2, 3, 1, 2]}
    starts_set = np.array([[1, 1, 0], [1, 0, 0]], bool)
    assert rle_encode(starts_set) == {"size": [2, 3], "counts": [0, 3, 3]}
    assert rle_encode(np.zeros((2, 5), bool))["counts"] == [10]
    assert rle_encode(np.ones((2, 5), bool))["counts"] == [0, 10]
    rng = np.random.default_rng(0)
    for _ in range(50):
        m = rng.random(tuple(rng.integers(1, 30, 2))) < rng.random()
        rle = rle_encode(m)
        assert sum(rle["counts"]) == m.size and all(c > 0 for c in rle["counts"][1:])
        np.testing.assert_array_equal(rle_decode(rle), m)
    with pytest.raises(ValueError, match="sum to 9"):
        rle_decode({"size": [2, 5], "counts": [4, 5]})


def test_to_json_and_draw():
    masks = np.zeros((2, 40, 60), bool)
    masks[0, 5:15, 10:30] = True
    masks[1, 20:38, 40:55] = True
    inst = Instances(np.array([[10, 5, 30, 15], [40, 20, 55, 38]], np.float32), np.array([0.9, 0.5], np.float32),
                     np.array([0, 2], np.int32), masks=masks)
    rows = TASK.to_json(inst, ["person", "bicycle", "car"])
    assert [r["label"] for r in rows] == ["person", "car"] and rows[1]["box"] == [40.0, 20.0, 55.0, 38.0]
    assert rows[0]["mask"]["size"] == [40, 60]
    for row, mask in zip(rows, masks):
        np.testing.assert_array_equal(rle_decode(row["mask"]), mask)
    image = np.full((40, 60, 3), 100, np.uint8)
    drawn = TASK.draw(image, inst, None)
    assert drawn.shape == image.shape and (image == 100).all()
    assert (drawn[8:13, 13:27] != 100).any(axis=-1).all()  # inside mask 0, away from its box outline
    assert (drawn[25:35, 2:8] == 100).all()  # no mask, no box
    with pytest.raises(StepError, match="do not fit"):
        TASK.draw(np.zeros((20, 20, 3), np.uint8), inst, None)


def test_registered_and_free_of_torch():
    assert tasks.for_task("segment") is TASK and TASK.name == "segment"
    assert TASK.output_names("track_a", TaskShape("segment", NC, NM)) == ("output0", "output1")
    code = "import sys, yolo_triton.task_segment; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
