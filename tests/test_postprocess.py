"""Client post-processing: letterbox vs ultralytics, the EfficientNMS NumPy model's semantics, the
ultralytics-compatible NMS vs ultralytics itself on a real (untrained, output-varied) yolo11s output."""
from __future__ import annotations

import numpy as np
import pytest

from yolo_triton import postprocess as pp


# ---------------------------------------------------------------------------------------- helpers
def sample(name: str) -> np.ndarray:
    import cv2
    from ultralytics.utils import ASSETS

    return cv2.imread(str(ASSETS / name))


def ultralytics_letterbox(image: np.ndarray, imgsz: int) -> np.ndarray:
    """ultralytics' LetterBox + the predictor's conversion (flip BGR->RGB, HWC->CHW, float, /255)."""
    import torch
    from ultralytics.data.augment import LetterBox

    boxed = LetterBox(new_shape=(imgsz, imgsz), auto=False, scaleup=True, center=True)(image=image)
    tensor = torch.from_numpy(boxed).unsqueeze(0).permute(0, 3, 1, 2).contiguous().flip(1).float().div_(255)
    return tensor[0].numpy()


def corners(*rows) -> np.ndarray:
    return np.array(rows, np.float32)


@pytest.fixture(scope="module")
def varied_output() -> np.ndarray:
    """Real yolo11s ``output0 [2, 84, 8400]`` on bus.jpg and its mirror image, made output-varied by the
    lead's ``scratch.vary_outputs`` (BN recalibration + class-head rescaling), class biases shifted so
    that 300 (anchor, class) pairs of bus.jpg score >= 0.25 (``bench_postprocess.varied_model``)."""
    from bench_postprocess import model_output, varied_model

    bus = sample("bus.jpg")
    output0, _ = model_output(varied_model("yolo11s", 640), [bus, np.ascontiguousarray(bus[:, ::-1])], 640)
    return output0


# ---------------------------------------------------------------------------------------- letterbox
@pytest.mark.parametrize("imgsz", [320, 640])
@pytest.mark.parametrize("shape", ["bus", "zidane", (333, 517), (517, 333), (71, 45), (640, 640), (2, 3000),
                                   (321, 320), (479, 640)])
def test_letterbox_equals_ultralytics_exactly(shape, imgsz):
    if isinstance(shape, str):
        image = sample(f"{shape}.jpg")
    else:
        image = np.random.default_rng(sum(shape)).integers(0, 256, (*shape, 3), dtype=np.uint8)
    ours, info = pp.letterbox(image, imgsz)
    theirs = ultralytics_letterbox(image, imgsz)
    assert ours.dtype == np.float32 and ours.shape == (3, imgsz, imgsz)
    assert np.array_equal(ours, theirs)  # bit-exact, not allclose
    from ultralytics.data.augment import LetterBox

    params = LetterBox(new_shape=(imgsz, imgsz), auto=False).get_params({"img": image})
    assert (info.pad_x, info.pad_y) == (params["left"], params["top"])
    assert (info.new_w, info.new_h) == params["new_unpad"]
    assert info.ratio == params["ratio"][0]
    assert (info.orig_h, info.orig_w) == image.shape[:2]


def test_letterbox_batch_stacks_and_rejects_bad_input():
    batch, infos = pp.letterbox_batch([sample("bus.jpg"), sample("zidane.jpg")], 320)
    assert batch.shape == (2, 3, 320, 320) and batch.dtype == np.float32
    assert [(i.orig_h, i.orig_w) for i in infos] == [(1080, 810), (720, 1280)]
    assert 0.0 <= batch.min() and batch.max() <= 1.0
    with pytest.raises(ValueError):
        pp.letterbox(np.zeros((10, 10), np.uint8), 320)
    with pytest.raises(ValueError):
        pp.letterbox_batch([], 320)


# ---------------------------------------------------------------------------------------- decode
def test_decode_yolo_output_centre_to_corners():
    out = np.zeros((1, 4 + 2, 3), np.float32)
    out[0, :4, 1] = [100, 50, 20, 10]  # cx, cy, w, h of anchor 1
    out[0, 4:, 1] = [0.1, 0.9]
    boxes, scores = pp.decode_yolo_output(out)
    assert boxes.shape == (1, 3, 4) and scores.shape == (1, 3, 2)
    assert boxes[0, 1].tolist() == [90, 45, 110, 55]
    assert scores[0, 1].tolist() == pytest.approx([0.1, 0.9])
    with pytest.raises(ValueError):
        pp.decode_yolo_output(np.zeros((1, 4, 3), np.float32))


# ---------------------------------------------------------------------------------------- EfficientNMS model
def test_efficient_nms_multilabel_threshold_ge_and_padding():
    # One anchor, two classes above CONF -> two detections (multi-label); score == CONF is kept (>=).
    boxes = corners([0, 0, 10, 10], [50, 50, 60, 60], [80, 80, 90, 90])[None]
    scores = np.array([[[0.9, 0.8, 0.0], [0.0, 0.0, 0.25], [0.2, 0.0, 0.0]]], np.float32)
    num, det_boxes, det_scores, det_classes = pp.efficient_nms(boxes, scores, 0.25, 0.5, 5, box_coding=0)
    assert num.dtype == np.int32 and num.shape == (1, 1) and num[0, 0] == 3
    assert det_boxes.dtype == np.float32 and det_boxes.shape == (1, 5, 4)
    assert det_scores.dtype == np.float32 and det_classes.dtype == np.int32
    assert det_scores[0].tolist() == pytest.approx([0.9, 0.8, 0.25, 0, 0])  # descending across classes
    assert det_classes[0].tolist() == [0, 1, 2, 0, 0]  # padding rows are class 0
    assert det_boxes[0, 3:].tolist() == [[0] * 4] * 2
    # strict (ONNX NonMaxSuppression) semantics drop the score that equals CONF
    assert pp.efficient_nms(boxes, scores, 0.25, 0.5, 5, box_coding=0, strict_thresholds=True)[0][0, 0] == 2


def test_efficient_nms_iou_equal_to_threshold_is_suppressed():
    # IoU([0,0,10,10], [0,0,10,5]) = 50/100 = 0.5 exactly.
    boxes = corners([0, 0, 10, 10], [0, 0, 10, 5])[None]
    scores = np.array([[[0.9], [0.8]]], np.float32)
    assert pp.efficient_nms(boxes, scores, 0.25, 0.5, 10, box_coding=0)[0][0, 0] == 1  # IoU >= 0.5 suppressed
    assert pp.efficient_nms(boxes, scores, 0.25, 0.5, 10, box_coding=0, strict_thresholds=True)[0][0, 0] == 2


def test_efficient_nms_per_class_vs_agnostic_topk_and_centre_size_input():
    xywh = np.array([[[50, 50, 20, 20], [51, 50, 20, 20], [150, 150, 10, 10]]], np.float32)
    scores = np.array([[[0.9, 0.0], [0.0, 0.8], [0.0, 0.7]]], np.float32)
    num, det_boxes, _, det_classes = pp.efficient_nms(xywh, scores, 0.25, 0.45, 10)
    assert num[0, 0] == 3  # overlapping boxes of different classes both survive per-class NMS
    assert det_boxes[0, 0].tolist() == [40, 40, 60, 60]  # output is corners although the input was xywh
    num, _, _, det_classes = pp.efficient_nms(xywh, scores, 0.25, 0.45, 10, agnostic=True)
    assert num[0, 0] == 2 and det_classes[0, :2].tolist() == [0, 1]
    num, _, det_scores, _ = pp.efficient_nms(xywh, scores, 0.25, 0.45, 2)
    assert num[0, 0] == 2 and det_scores[0].tolist() == pytest.approx([0.9, 0.8])  # global top-k
    assert pp.efficient_nms(xywh, scores, 0.25, 0.45, 10, candidate_cap=1)[0][0, 0] == 1


def test_efficient_nms_agnostic_equals_plain_greedy_over_all_labels():
    """The agnostic shortcut (best label per anchor) equals literal agnostic NMS over every label."""
    rng = np.random.default_rng(3)
    for _ in range(30):
        a, nc = 60, 4
        xy = rng.uniform(0, 100, (1, a, 2))
        boxes = np.concatenate([xy, xy + rng.uniform(2, 40, (1, a, 2))], 2).astype(np.float32)
        scores = rng.uniform(0, 1, (1, a, nc)).astype(np.float32) ** 2
        got = pp.efficient_nms(boxes, scores, 0.2, 0.5, 1000, agnostic=True, box_coding=0)
        ai, ci = np.nonzero(scores[0] >= np.float32(0.2))
        s = scores[0, ai, ci]
        order = np.argsort(-s, kind="stable")
        keep = pp.greedy_nms(boxes[0, ai[order]], None, 0.5, 1000, strict=False)
        assert got[0][0, 0] == len(keep)
        assert np.array_equal(got[2][0, :len(keep)], s[order][keep])
        assert np.array_equal(got[3][0, :len(keep)], ci[order][keep])


def test_fast_greedy_nms_equals_reference_loop():
    rng = np.random.default_rng(0)
    for trial in range(200):
        n = int(rng.integers(0, 300))
        xy = rng.uniform(0, 100, (n, 2)).astype(np.float32)
        boxes = np.concatenate([xy, xy + rng.uniform(1, 40, (n, 2)).astype(np.float32)], 1)
        classes = rng.integers(0, int(rng.integers(1, 6)), n)
        iou, strict = float(rng.choice([0.3, 0.45, 0.7])), bool(trial % 2)
        for cls in (classes, None):
            expected = pp.greedy_nms(boxes, cls, iou, 10**6, strict)
            assert np.array_equal(pp.fast_greedy_nms(boxes, cls, iou, 10**6, strict), expected)
            assert np.array_equal(pp.fast_greedy_nms(boxes, cls, iou, 7, strict), expected[:7])


def test_empty_inputs_give_zero_detections():
    boxes = np.zeros((2, 5, 4), np.float32)
    scores = np.zeros((2, 5, 3), np.float32)
    num, det_boxes, det_scores, det_classes = pp.efficient_nms(boxes, scores, 0.25, 0.45, 4)
    assert num.tolist() == [[0], [0]] and not det_boxes.any() and not det_scores.any() and not det_classes.any()
    assert [len(r) for r in pp.ultralytics_nms(boxes, scores, 0.25, 0.45, 4)] == [0, 0]


# ---------------------------------------------------------------------------------------- vs ultralytics
def test_varied_output_is_realistic(varied_output):
    scores = varied_output[:, 4:, :]
    above = (scores >= 0.25).sum(axis=(1, 2))
    assert scores.std() > 0.01  # an untrained head would give ~1e-6
    assert above[0] == 300  # bus.jpg: the calibrated load ("tens to a few hundred")
    assert 20 <= above[1] <= 5000, above  # its mirror image: similar, not identical
    boxes = varied_output[:, 2:4, :]
    assert boxes.std() > 1.0  # box sizes vary too


@pytest.mark.parametrize("conf,iou,agnostic", [(0.25, 0.45, False), (0.25, 0.7, False), (0.1, 0.45, False),
                                               (0.25, 0.45, True)])
def test_ultralytics_mode_matches_ultralytics_nms(varied_output, conf, iou, agnostic):
    import torch
    import torchvision  # noqa: F401  ultralytics then uses torchvision.ops.nms, its normal path
    from ultralytics.utils.nms import non_max_suppression

    expected = non_max_suppression(torch.from_numpy(varied_output), conf, iou, agnostic=agnostic, max_det=100)
    got = pp.ultralytics_nms(*pp.decode_yolo_output(varied_output), conf, iou, 100, agnostic)
    for exp, ours in zip(expected, got):
        exp = exp.numpy()
        assert len(exp) > 5
        assert ours.shape == exp.shape
        assert np.array_equal(ours[:, 5], exp[:, 5])  # classes, in order
        assert np.array_equal(ours[:, 4], exp[:, 4])  # scores: same values, same order
        np.testing.assert_allclose(ours[:, :4], exp[:, :4], rtol=0, atol=1e-4)


def test_track_a_ultralytics_mode_matches_ultralytics_pipeline(varied_output):
    """postprocess_track_a(mode=ultralytics) == non_max_suppression + scale_boxes in original pixels."""
    import torch
    from ultralytics.utils.nms import non_max_suppression
    from ultralytics.utils.ops import scale_boxes

    infos = [pp.letterbox_params(1080, 810, 640)[0]] * 2
    got = pp.postprocess_track_a(varied_output, infos, 0.25, 0.45, 100, mode="ultralytics")
    expected = non_max_suppression(torch.from_numpy(varied_output), 0.25, 0.45, max_det=100)
    for dets, exp, info in zip(got, expected, infos):
        ref = scale_boxes((640, 640), exp[:, :4].clone(), (info.orig_h, info.orig_w)).numpy()
        np.testing.assert_allclose(dets.boxes, ref, rtol=0, atol=1e-3)
        assert np.array_equal(dets.classes, exp[:, 5].numpy().astype(np.int32))
        assert (dets.boxes[:, [0, 2]] <= info.orig_w).all() and (dets.boxes[:, [1, 3]] <= info.orig_h).all()


def test_efficient_mode_relation_to_ultralytics(varied_output):
    """EfficientNMS is multi-label: at least as many detections; each image's best detection agrees."""
    infos = [pp.letterbox_params(640, 640, 640)[0]] * 2
    eff = pp.postprocess_track_a(varied_output, infos, 0.25, 0.45, 300, mode="efficient")
    ult = pp.postprocess_track_a(varied_output, infos, 0.25, 0.45, 300, mode="ultralytics")
    for e, u in zip(eff, ult):
        assert len(e) >= len(u) > 0
        assert (e.classes[0], e.scores[0]) == (u.classes[0], u.scores[0])
        np.testing.assert_allclose(e.boxes[0], u.boxes[0], atol=1e-4)
        assert (np.diff(e.scores) <= 0).all()  # descending across classes


# ---------------------------------------------------------------------------------------- old == new
# The NMS paths read only the candidate anchors' rows and resolve greedy NMS vectorised. These references
# are the semantics as they were before that (commit c30aa82), written literally: every candidate pair,
# one global stable sort, the per-kept-box reference loop ``greedy_nms`` (agnostic over every label, no
# shortcut), the per-axis mapping back. The fast paths must give bit-identical arrays.
def reference_efficient_nms(boxes, scores, conf, iou, topk, agnostic=False, box_coding=1, candidate_cap=5000,
                            strict=False):
    batch, _, nc = scores.shape
    out = (np.zeros((batch, 1), np.int32), np.zeros((batch, topk, 4), np.float32),
           np.zeros((batch, topk), np.float32), np.zeros((batch, topk), np.int32))
    c32 = np.float32(conf)
    for b in range(batch):
        s = scores[b]
        best = s.max(axis=1)  # an anchor with a NaN score never is a candidate
        anchors = np.flatnonzero(best > c32 if strict else best >= c32)
        sub = s[anchors]
        ai, ci = np.nonzero(sub > c32 if strict else sub >= c32)  # anchor-major
        cand_scores = sub[ai, ci]
        order = np.argsort(-cand_scores, kind="stable")[:candidate_cap]
        anchor_idx, cls, cand_scores = anchors[ai[order]], ci[order], cand_scores[order]
        cand = boxes[b, anchor_idx].astype(np.float32)
        if box_coding == 1:
            cand = pp.xywh_to_xyxy(cand)
        iou_boxes = np.concatenate([np.minimum(cand[:, :2], cand[:, 2:]), np.maximum(cand[:, :2], cand[:, 2:])], 1)
        keep = pp.greedy_nms(iou_boxes, None if agnostic else cls, iou, topk, strict)
        n = len(keep)
        out[0][b, 0] = n
        out[1][b, :n], out[2][b, :n], out[3][b, :n] = cand[keep], cand_scores[keep], cls[keep]
    return out


def reference_ultralytics_nms(boxes, scores, conf, iou, max_det, agnostic=False, box_coding=0):
    results = []
    for b in range(scores.shape[0]):
        s = scores[b]
        best = s.max(axis=1)
        anchors = np.flatnonzero(best > np.float32(conf))
        cls = s[anchors].argmax(axis=1) if anchors.size else np.zeros(0, np.int64)
        score = best[anchors]
        order = np.argsort(-score, kind="stable")[:30000]
        anchors, cls, score = anchors[order], cls[order], score[order]
        box = boxes[b, anchors].astype(np.float32)
        if box_coding == 1:
            box = pp.xywh_to_xyxy(box)
        shifted = box if agnostic else box + (cls.astype(np.float32) * np.float32(7680))[:, None]
        keep = pp.greedy_nms(shifted, None if agnostic else cls, iou, max_det, strict=True)
        results.append(np.concatenate([box[keep], score[keep, None], cls[keep, None].astype(np.float32)], axis=1))
    return results


def reference_map(det_boxes, info):
    boxes = np.asarray(det_boxes, dtype=np.float32).copy()
    boxes[..., [0, 2]] = (boxes[..., [0, 2]] - info.pad_x) / np.float32(info.gain_x)
    boxes[..., [1, 3]] = (boxes[..., [1, 3]] - info.pad_y) / np.float32(info.gain_y)
    boxes[..., [0, 2]] = boxes[..., [0, 2]].clip(0, info.orig_w)
    boxes[..., [1, 3]] = boxes[..., [1, 3]].clip(0, info.orig_h)
    return boxes


def reference_track_a(output0, infos, conf, iou, topk, mode, agnostic):
    boxes, scores = output0[:, :4, :].transpose(0, 2, 1), output0[:, 4:, :].transpose(0, 2, 1)
    if mode == "ultralytics":
        rows = reference_ultralytics_nms(boxes, scores, conf, iou, topk, agnostic, box_coding=1)
        return [(reference_map(r[:, :4], info), r[:, 4].copy(), r[:, 5].astype(np.int32))
                for r, info in zip(rows, infos)]
    num, det_boxes, det_scores, det_classes = reference_efficient_nms(boxes, scores, conf, iou, topk, agnostic,
                                                                       strict=mode == "onnx")
    return [(reference_map(det_boxes[b, :n], info), det_scores[b, :n], det_classes[b, :n])
            for b, (n, info) in enumerate(zip(num[:, 0], infos))]


def assert_identical(got, expected, where=""):
    """Same dtype, shape and values (NaN == NaN), recursively over tuples / lists / Detections."""
    if isinstance(got, pp.Detections):
        got = (got.boxes, got.scores, got.classes)
    if isinstance(got, (list, tuple)):
        assert len(got) == len(expected), where
        for g, e in zip(got, expected):
            assert_identical(g, e, where)
        return
    assert got.dtype == expected.dtype and got.shape == expected.shape, (where, got.dtype, got.shape, expected.shape)
    assert np.array_equal(got, expected, equal_nan=True), (where, got, expected)


def all_paths(output0, infos, conf, iou, topk, agnostic, cap=5000):
    """Every public NMS path on ``output0`` -> (name, new result, reference result)."""
    boxes, scores = output0[:, :4, :].transpose(0, 2, 1), output0[:, 4:, :].transpose(0, 2, 1)
    corners, _ = pp.decode_yolo_output(output0)
    for mode in pp.MODES:
        yield (mode, pp.postprocess_track_a(output0, infos, conf, iou, topk, mode, agnostic),
               reference_track_a(output0, infos, conf, iou, topk, mode, agnostic))
    for strict in (False, True):
        yield (f"efficient_nms strict={strict}",
               pp.efficient_nms(boxes, scores, conf, iou, topk, agnostic, 1, cap, strict),
               reference_efficient_nms(boxes, scores, conf, iou, topk, agnostic, 1, cap, strict))
        yield (f"efficient_nms corners strict={strict}",  # contiguous [B, A, nc] scores, corner boxes
               pp.efficient_nms(corners, np.ascontiguousarray(scores), conf, iou, topk, agnostic, 0, cap, strict),
               reference_efficient_nms(corners, scores, conf, iou, topk, agnostic, 0, cap, strict))
    yield ("ultralytics_nms", pp.ultralytics_nms(corners, scores, conf, iou, topk, agnostic),
           reference_ultralytics_nms(corners, scores, conf, iou, topk, agnostic))
    yield ("ultralytics_nms xywh", pp.ultralytics_nms(boxes, scores, conf, iou, topk, agnostic, box_coding=1),
           reference_ultralytics_nms(boxes, scores, conf, iou, topk, agnostic, box_coding=1))


@pytest.mark.parametrize("agnostic", [False, True])
@pytest.mark.parametrize("conf,iou,topk", [(0.25, 0.45, 100), (0.25, 0.7, 300), (0.1, 0.45, 300), (0.5, 0.3, 5),
                                           (0.25, 0.45, 1)])
def test_fast_paths_equal_reference_on_real_outputs(varied_output, conf, iou, topk, agnostic):
    """Batch of 2 real yolo11s outputs (bus.jpg and its mirror image): every mode, bit for bit."""
    infos = [pp.letterbox_params(1080, 810, 640)[0], pp.letterbox_params(1080, 810, 640)[0]]
    for name, got, expected in all_paths(varied_output, infos, conf, iou, topk, agnostic):
        assert_identical(got, expected, name)
    # the grid exercises what it claims: detections in both images, multi-label anchors in efficient mode
    dets = pp.postprocess_track_a(varied_output, infos, conf, iou, topk, "efficient", agnostic)
    assert all(len(d) > 0 for d in dets)
    if not agnostic and topk >= 100:
        kept = pp.efficient_nms(*(varied_output[:, s, :].transpose(0, 2, 1) for s in (slice(0, 4), slice(4, None))),
                                conf, iou, topk)
        n = kept[0][0, 0]
        boxes = kept[1][0, :n]
        assert len(np.unique(boxes, axis=0)) < n  # one box, several classes: multi-label candidates survive


def test_fast_paths_empty_results(varied_output):
    infos = [pp.letterbox_params(1080, 810, 640)[0]] * 2
    for name, got, expected in all_paths(varied_output, infos, 0.999, 0.45, 100, False):
        assert_identical(got, expected, name)
    for dets in pp.postprocess_track_a(varied_output, infos, 0.999, 0.45, 100, "efficient"):
        assert len(dets) == 0 and dets.boxes.shape == (0, 4) and dets.boxes.dtype == np.float32
        assert dets.scores.dtype == np.float32 and dets.classes.dtype == np.int32


def synthetic_output(rng, trial):
    """Random ``output0 [B, 4+nc, A]`` with the awkward cases: score ties and scores equal to CONF
    (quantised), IoU ties (integer boxes), zero-area boxes, NaN scores, float16, one class."""
    batch, anchors, nc = int(rng.integers(1, 4)), int(rng.integers(1, 400)), int(rng.integers(1, 7))
    xy, wh = rng.uniform(0, 100, (batch, 2, anchors)), rng.uniform(0, 40, (batch, 2, anchors))
    if trial % 7 == 0:
        wh[..., ::5] = 0
    if trial % 3 == 0:
        xy, wh = np.round(xy), np.round(wh)
    scores = rng.uniform(0, 1, (batch, nc, anchors)) ** 3
    if trial % 5 == 0:
        scores = np.round(scores * 8) / 8
    if trial % 13 == 0:
        scores[0, 0, ::7] = np.nan
    out = np.concatenate([xy, wh, scores], 1).astype(np.float32)
    return out.astype(np.float16) if trial % 17 == 0 else out


def test_fast_paths_equal_reference_on_awkward_synthetic_outputs():
    rng = np.random.default_rng(0)
    for trial in range(170):
        output0 = synthetic_output(rng, trial)
        infos = [pp.letterbox_params(480, 640, 128)[0]] * output0.shape[0]
        conf = float(rng.choice([0.25, 0.125, 0.5, 0.01]))
        iou = float(rng.choice([0.45, 0.5, 0.3, 0.7, 0.0]))
        topk = int(rng.choice([1, 5, 100, 1000]))
        cap = int(rng.choice([5000, 10]))
        for agnostic in (False, True):
            for name, got, expected in all_paths(output0, infos, conf, iou, topk, agnostic, cap):
                assert_identical(got, expected, (trial, name))


def test_nms_waves_and_pair_fallbacks_equal_reference_loop(monkeypatch):
    """Small WAVE and MAX_PAIRS force several dense waves and the class-aware waves fallback; a limit below
    the candidate count forces the growing prefix."""
    monkeypatch.setattr(pp, "WAVE", 8)
    monkeypatch.setattr(pp, "MAX_PAIRS", 50)
    rng = np.random.default_rng(5)
    for trial in range(150):
        n = int(rng.integers(0, 500))
        xy = np.round(rng.uniform(0, 200, (n, 2))).astype(np.float32)
        boxes = np.concatenate([xy, xy + np.round(rng.uniform(0, 50, (n, 2))).astype(np.float32)], 1)
        classes = rng.integers(0, int(rng.integers(1, 4)), n)
        iou, strict = float(rng.choice([0.3, 0.5, 0.7])), bool(trial % 2)
        for cls in (classes, None):
            expected = pp.greedy_nms(boxes, cls, iou, 10**6, strict)
            for limit in (10**6, 3, 60):
                assert np.array_equal(pp.fast_greedy_nms(boxes, cls, iou, limit, strict), expected[:limit])


# ---------------------------------------------------------------------------------------- mapping back
def test_map_boxes_to_original_equals_scale_boxes():
    import torch
    from ultralytics.utils.ops import scale_boxes

    rng = np.random.default_rng(1)
    for h, w, s in [(1080, 810, 640), (720, 1280, 640), (333, 517, 320), (50, 70, 640)]:
        info = pp.letterbox_params(h, w, s)[0]
        boxes = rng.uniform(-20, s + 20, (50, 4)).astype(np.float32)
        expected = scale_boxes((s, s), torch.from_numpy(boxes.copy()), (h, w)).numpy()
        np.testing.assert_allclose(pp.map_boxes_to_original(boxes, info), expected, rtol=0, atol=1e-3)


def test_postprocess_end2end_slices_by_num_dets_and_maps_back():
    info = pp.letterbox_params(100, 200, 64)[0]  # ratio 0.32, pad_y 16
    num = np.array([[1], [0]], np.int32)
    det_boxes = np.zeros((2, 3, 4), np.float32)
    det_boxes[0, 0] = [0, 16, 32, 32]
    det_scores = np.array([[0.9, 0, 0], [0, 0, 0]], np.float32)
    det_classes = np.zeros((2, 3), np.int32)
    det_classes[0, 0] = 7
    out = pp.postprocess_end2end(num, det_boxes, det_scores, det_classes, [info, info])
    assert [len(d) for d in out] == [1, 0]
    np.testing.assert_allclose(out[0].boxes[0], [0, 0, 100, 50], atol=1e-4)
    rows = out[0].to_list(["a"] * 7 + ["dog"])
    assert rows == [{"class_id": 7, "score": 0.9, "box": [0.0, 0.0, 100.0, 50.0], "label": "dog"}]
    assert out[0].format(["a"] * 7 + ["dog"]).startswith("dog 0.900 0.0 0.0 100.0 50.0")
    with pytest.raises(ValueError):
        pp.postprocess_end2end(num, det_boxes, det_scores, det_classes, [info])


def test_postprocess_track_a_rejects_unknown_mode():
    with pytest.raises(ValueError):
        pp.postprocess_track_a(np.zeros((1, 6, 4), np.float32), [pp.letterbox_params(8, 8, 8)[0]], 0.25, 0.45, 5,
                               mode="nope")
