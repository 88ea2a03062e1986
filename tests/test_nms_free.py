"""YOLO26 and YOLOv10 (NMS-free one-to-one heads) through every track and every NMS mode, checked
against ultralytics' own predictor on real images."""
from __future__ import annotations

import shutil

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest

from conftest import Tree
from yolo_triton.nms_graph import pre_nms_model
from yolo_triton.onnx_io import onnx_io, onnx_metadata
from yolo_triton.postprocess import efficient_nms, letterbox_batch, postprocess_end2end, postprocess_track_a
from yolo_triton.settings import defaults

pytestmark = pytest.mark.slow
IMGSZ = 320
ARCHS = ("yolo26n", "yolov10n")
D = defaults()
CONF, IOU, TOPK = float(D["CONF"]), float(D["IOU"]), int(D["TOPK"])
END2END_IO = [("num_dets", "int32", (-1, 1)), ("det_boxes", "float32", (-1, TOPK, 4)),
              ("det_scores", "float32", (-1, TOPK)), ("det_classes", "int32", (-1, TOPK))]


@pytest.fixture(scope="module", params=ARCHS)
def nms_free_tree(request, tmp_path_factory, scratch_checkpoint):
    """One scratch checkpoint of the architecture, built through the Make targets in all three modes
    (each mode in its own model repository, a copy of the previous one: make keeps its Track A, which no
    NMS mode changes, and writes the end2end model again)."""
    arch = request.param
    root = tmp_path_factory.mktemp(arch)
    name = f"{arch}_untrained"
    trees = {}
    for mode in ("efficient", "onnx", "free"):
        tree = Tree(root / mode)
        if trees:
            shutil.copytree(list(trees.values())[-1].root, tree.root, symlinks=True)
        else:
            tree.weights.mkdir(parents=True)
            (tree.weights / f"{name}.pt").symlink_to(scratch_checkpoint(arch))
        tree.make("onnx", f"NAMES={name}", f"NMS={mode}", "PRECISION=fp32", f"IMGSZ={IMGSZ}")
        trees[mode] = tree
    return arch, name, trees


def images():
    from ultralytics.utils import ASSETS

    paths = [f"{ASSETS}/bus.jpg", f"{ASSETS}/zidane.jpg"]
    return paths, [cv2.imread(p) for p in paths]


def predicted(weights, paths, one2one: bool):
    """ultralytics' predictor: ``nms=False`` selects the one-to-one head (no NMS), ``nms=None`` the
    one-to-many head and its NMS. rect=False: the pipeline's square letterbox (the default pads minimally)."""
    from ultralytics import YOLO

    results = YOLO(str(weights)).predict(paths, imgsz=IMGSZ, conf=CONF, iou=IOU, max_det=TOPK, rect=False,
                                         verbose=False, nms=False if one2one else None)
    return [(r.boxes.xyxy.numpy(), r.boxes.conf.numpy(), r.boxes.cls.numpy().astype(int)) for r in results]


def assert_same_detections(ours, theirs, box_tol=0.5, score_tol=1e-3):
    """Same count; every detection matched (same class, box within box_tol px, score within score_tol)."""
    boxes, scores, classes = theirs
    assert len(ours) == len(scores)
    used = set()
    for box, score, cls in zip(ours.boxes, ours.scores, ours.classes):
        candidates = [j for j in range(len(scores)) if j not in used and classes[j] == cls
                      and np.abs(boxes[j] - box).max() <= box_tol and abs(scores[j] - score) <= score_tol]
        assert candidates, (box, score, cls)
        used.add(candidates[0])


def test_every_mode_has_the_end2end_contract(nms_free_tree):
    arch, name, trees = nms_free_tree
    for mode, tree in trees.items():
        path = tree.artefact(f"{name}_end2end")
        _, outputs = onnx_io(path)
        assert [(o.name, o.dtype, o.shape) for o in outputs] == END2END_IO, mode
        ops = {n.op_type for n in onnx.load(str(path)).graph.node}
        assert ("EfficientNMS_TRT" in ops) == (mode == "efficient")
        assert ("NonMaxSuppression" in ops) == (mode == "onnx")
        assert onnx_metadata(path)["nms"] == mode
    # Track A is the one-to-many head, whatever NMS says.
    for tree in trees.values():
        _, outputs = onnx_io(tree.artefact(name))
        assert outputs[0].shape == (-1, 84, sum((IMGSZ // s) ** 2 for s in (8, 16, 32)))


def test_free_end2end_matches_the_one2one_predictor(nms_free_tree):
    """No plugin: onnxruntime runs the whole NMS-free end2end graph; boxes within 0.5 px of ultralytics'
    predictor (one-to-one head), scores within 1e-3, same classes, same counts."""
    arch, name, trees = nms_free_tree
    tree = trees["free"]
    paths, bgr = images()
    batch, infos = letterbox_batch(bgr, IMGSZ)
    session = ort.InferenceSession(str(tree.artefact(f"{name}_end2end")), providers=["CPUExecutionProvider"])
    outputs = session.run(None, {"images": batch})
    num_dets, det_boxes, det_scores, det_classes = outputs
    for i in range(len(batch)):
        n = int(num_dets[i, 0])
        assert (det_scores[i, :n] >= CONF).all() and not det_scores[i, n:].any() and not det_classes[i, n:].any()
        assert not det_boxes[i, n:].any()
    ours = postprocess_end2end(*outputs, infos)
    theirs = predicted(tree.weights / f"{name}.pt", paths, one2one=True)
    assert sum(len(o) for o in ours) > 10
    for o, t in zip(ours, theirs):
        assert_same_detections(o, t)


def test_one2many_path_matches_the_predictor_with_its_nms(nms_free_tree):
    """Track A + the client's ultralytics-compatible NMS equals ultralytics' predictor with the
    one-to-many head and its NMS. The end2end graphs follow their own (documented) semantics: the
    EfficientNMS one equals the NumPy EfficientNMS model on the Track A output, the standard-op one its
    strict-threshold variant; being multi-label, they keep at least 80% of the predictor's detections above their TOPK cut (a
    second label of one anchor may suppress a same-class box the single-label predictor keeps)."""
    arch, name, trees = nms_free_tree
    paths, bgr = images()
    batch, infos = letterbox_batch(bgr, IMGSZ)
    theirs = predicted(trees["efficient"].weights / f"{name}.pt", paths, one2one=False)
    track_a = ort.InferenceSession(str(trees["efficient"].artefact(name)), providers=["CPUExecutionProvider"])
    (output0,) = track_a.run(["output0"], {"images": batch})
    for o, t in zip(postprocess_track_a(output0, infos, CONF, IOU, TOPK, mode="ultralytics"), theirs):
        assert_same_detections(o, t)

    e2e = onnx.load(str(trees["efficient"].artefact(f"{name}_end2end")))
    pre = ort.InferenceSession(pre_nms_model(e2e).SerializeToString(), providers=["CPUExecutionProvider"])
    boxes, scores = pre.run(["boxes", "scores"], {"images": batch})
    efficient = postprocess_end2end(*efficient_nms(boxes, scores, CONF, IOU, TOPK), infos)
    standard = ort.InferenceSession(str(trees["onnx"].artefact(f"{name}_end2end")), providers=["CPUExecutionProvider"])
    onnx_nms = postprocess_end2end(*standard.run(None, {"images": batch}), infos)
    for dets, mode in ((efficient, "efficient"), (onnx_nms, "onnx")):
        for o, t in zip(dets, postprocess_track_a(output0, infos, CONF, IOU, TOPK, mode=mode)):
            assert_same_detections(o, (t.boxes, t.scores, t.classes), box_tol=1e-2, score_tol=1e-5)
        found = total = 0
        for o, (t_boxes, t_scores, t_classes) in zip(dets, theirs):
            # With TOPK rows full, extra labels push the lowest single-label detections out: compare above the cut.
            cut = o.scores[-1] if len(o) == TOPK else -np.inf
            for box, score, cls in zip(t_boxes, t_scores, t_classes):
                if score <= cut:
                    continue
                total += 1
                found += bool(((o.classes == cls) & (np.abs(o.boxes - box).max(axis=1) <= 0.5)).any())
        assert found >= 0.8 * total, (mode, found, total)


def test_free_mode_is_refused_without_a_one2one_head(tmp_path, scratch_weights):
    tree = Tree(tmp_path)
    tree.weights.mkdir()
    (tree.weights / scratch_weights.name).symlink_to(scratch_weights)
    result = tree.make(f"{tree.models}/{scratch_weights.stem}_end2end/1/model.onnx", "NMS=free", "PRECISION=fp32",
                       f"IMGSZ={IMGSZ}", check=False)
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and "NMS=free needs a one-to-one (NMS-free) head" in errors[0]
    assert not list(tree.models.rglob("*.onnx"))


def test_track_a_decode_of_an_nms_free_export(nms_free_tree):
    """The client's NMS-free decode of the raw one-to-one export ([B, TOPK, 6]) gives exactly what the
    NMS=free end2end graph gives."""
    arch, name, trees = nms_free_tree
    from yolo_triton.postprocess import postprocess_one2one

    tree = trees["free"]
    _, bgr = images()
    batch, infos = letterbox_batch(bgr, IMGSZ)
    one2one = ort.InferenceSession(str(tree.root / "build" / "one2one" / f"{name}.onnx"),
                                   providers=["CPUExecutionProvider"])
    (raw,) = one2one.run(["output0"], {"images": batch})
    assert raw.shape == (len(batch), TOPK, 6)
    decoded = postprocess_one2one(raw, infos, CONF)
    e2e = ort.InferenceSession(str(tree.artefact(f"{name}_end2end")), providers=["CPUExecutionProvider"])
    for o, t in zip(decoded, postprocess_end2end(*e2e.run(None, {"images": batch}), infos)):
        assert np.array_equal(o.classes, t.classes) and np.allclose(o.scores, t.scores)
        assert np.allclose(o.boxes, t.boxes, atol=1e-4)


@pytest.mark.parametrize("mode", ["efficient", "free"])
def test_make_validate_covers_nms_free_checkpoints(nms_free_tree, mode, tmp_path):
    """scripts/validate.py (what `make validate` runs) passes for YOLO26/YOLOv10 in both modes: Track A and
    the one-to-many end2end graph against PyTorch, the NMS=free graph against the one-to-one head."""
    import json

    import validate as validate_cli  # scripts/validate.py

    arch, name, trees = nms_free_tree
    tree = trees[mode]
    report = tmp_path / "report.json"
    assert validate_cli.main(["--model", name, "--models-dir", str(tree.models), "--weights-dir", str(tree.weights),
                          "--json", str(report)]) == 0
    formats = {r["name"]: r for r in json.loads(report.read_text())["formats"]}
    assert formats["onnx"]["status"] == formats["end2end"]["status"] == "passed"
    assert formats["end2end"]["detections"]["matched"] == formats["end2end"]["detections"]["reference"] > 0


def test_validate_refuses_an_nms_free_output0_as_track_a(nms_free_tree, tmp_path):
    """An NMS-free export [B, max_det, 6] in the Track A slot is named as such: output0 must be [B, 4+nc, A]."""
    import json
    import shutil

    import validate as validate_cli  # scripts/validate.py

    arch, name, trees = nms_free_tree
    tree = Tree(tmp_path / "t")
    shutil.copytree(trees["free"].root, tree.root, symlinks=True)
    shutil.copyfile(tree.root / "build" / "one2one" / f"{name}.onnx", tree.models / name / "1" / "model.onnx")
    report = tmp_path / "report.json"
    assert validate_cli.main(["--model", name, "--models-dir", str(tree.models), "--weights-dir", str(tree.weights),
                              "--json", str(report)]) == 1
    (onnx_result,) = [r for r in json.loads(report.read_text())["formats"] if r["name"] == "onnx"]
    assert onnx_result["status"] == "failed"
    assert any("is not [B, 4+nc = 84, anchors]" in note for note in onnx_result["notes"]), onnx_result["notes"]
