"""Classify task: preprocessing bit-exact with ultralytics' predictor, ONNX Runtime on ultralytics' own
export against ``YOLO.predict``, decoding, comparison, JSON and drawing.

The classifier is an UNTRAINED ``yolo11n-cls`` built from the architecture file inside ultralytics with
the 1000 ImageNet names (``scratch.make_scratch_checkpoint`` builds detectors only). A fresh classifier
gives every class ~1/1000, which would make "same top-5" meaningless, so BatchNorm is recalibrated on
ultralytics' sample images and the final Linear is scaled so the median top-1 probability of the
calibration views is 0.5 (:func:`build_classifier`); ``test_outputs_are_varied`` checks the variety.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from yolo_triton import tasks
from yolo_triton.settings import TRACK_A_OUTPUT
from yolo_triton.task_base import Classification, NmsParams, TaskShape, Tolerance
from yolo_triton.task_classify import TASK, ClassifyInfo, classification_problems, crop_params, resized_size

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")

IMGSZ = 224  # ultralytics' classify default (ClassificationTrainer sets imgsz=224 when none is given)
NC = 1000
PARAMS = NmsParams(conf=0.25, iou=0.7, topk=100)
FP32_TOL = Tolerance(box_px=1.0, score=1e-4)


def sample_images() -> dict[str, np.ndarray]:
    from ultralytics.utils import ASSETS

    return {p.stem: cv2.imread(str(p)) for p in sorted(Path(ASSETS).glob("*.jpg"))}


def odd_images() -> dict[str, np.ndarray]:
    """Portrait, landscape, upscaled, unresized and crop-rounding-tie sizes cut from the samples."""
    bus, zidane = sample_images()["bus"], sample_images()["zidane"]
    return {
        "portrait_900x97": np.ascontiguousarray(bus[100:1000, 300:397]),
        "landscape_60x500": np.ascontiguousarray(zidane[300:360, 100:600]),
        "small_37x53": np.ascontiguousarray(bus[500:537, 400:453]),
        "exact_224x224": np.ascontiguousarray(zidane[:224, 500:724]),
        "tie_225x224": np.ascontiguousarray(bus[400:625, 300:524]),  # crop top round(0.5) = 0
        "tie_224x227": np.ascontiguousarray(zidane[300:524, 200:427]),  # crop left round(1.5) = 2
        "pixel_1x1": np.ascontiguousarray(bus[:1, :1]),
    }


def build_classifier(path: Path) -> Path:
    """An untrained, output-varied ``yolo11n-cls`` checkpoint (module docstring)."""
    import ultralytics
    import yaml
    from ultralytics.nn.tasks import ClassificationModel
    from ultralytics.utils import ROOT

    torch.manual_seed(0)
    model = ClassificationModel("yolo11n-cls.yaml", verbose=False)
    model.names = yaml.safe_load((Path(ROOT) / "cfg/datasets/ImageNet.yaml").read_text())["names"]
    views = []
    for image in sample_images().values():
        h, w = image.shape[:2]
        views += [image, image[:, ::-1], image[: h // 2], image[:, w // 3:]]
    x = torch.from_numpy(TASK.preprocess(views, IMGSZ)[0])
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.reset_running_stats()
                module.momentum = None  # cumulative average
        model.train()
        model(x)
        model.eval()
        linear = model.model[-1].linear
        captured = []
        hook = linear.register_forward_hook(lambda _m, _i, out: captured.append(out.double()))
        model(x)
        hook.remove()

        def median_top1(scale: float) -> float:
            return float(torch.softmax(captured[0] * scale, 1).max(1).values.median())

        low, high = 0.0, 1.0
        while median_top1(high) < 0.5:
            high *= 2
        for _ in range(50):
            mid = (low + high) / 2
            low, high = (mid, high) if median_top1(mid) < 0.5 else (low, mid)
        linear.weight.mul_(high)
        linear.bias.mul_(high)
    model.args = {"task": "classify", "imgsz": IMGSZ}
    torch.save({"model": model, "train_args": {"task": "classify", "imgsz": IMGSZ, "model": "yolo11n-cls.yaml"},
                "version": ultralytics.__version__, "untrained": True,
                "description": "UNTRAINED yolo11n-cls (random init, BN recalibrated, Linear rescaled)"}, path)
    return path


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    """``(YOLO of the .pt, path of ultralytics' ONNX export at imgsz 224, dynamic batch)``."""
    from ultralytics import YOLO

    pt = build_classifier(tmp_path_factory.mktemp("cls") / "yolo11n-cls_untrained.pt")
    onnx_path = YOLO(str(pt)).export(format="onnx", imgsz=IMGSZ, dynamic=True, verbose=False)
    return YOLO(str(pt)), Path(onnx_path)


@pytest.fixture(scope="module")
def served(classifier):
    """Our preprocess -> onnxruntime on the export -> decode, and the reference, on every test image."""
    yolo, onnx_path = classifier
    images = {**sample_images(), **odd_images()}
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    batch, infos = TASK.preprocess(list(images.values()), IMGSZ, "FP32")
    outputs = dict(zip([o.name for o in session.get_outputs()], session.run(None, {"images": batch})))
    test = TASK.decode(outputs, infos, TaskShape("classify", NC), PARAMS, "track_a")
    ref = TASK.reference(yolo, list(images.values()), IMGSZ, PARAMS)
    return list(images), ref, test, outputs


# ---- preprocessing ------------------------------------------------------------------------------------
def test_is_registered_without_letterbox():
    task = tasks.for_task("classify")
    assert task is TASK and task.name == "classify" and task.letterbox is False


def test_resize_and_crop_arithmetic():
    assert resized_size(1080, 810, 224) == (298, 224)  # int(224 * 1080 / 810) = int(298.67)
    assert resized_size(720, 1280, 224) == (224, 398)
    assert resized_size(37, 53, 224) == (224, 320)  # upscaled
    assert crop_params(225, 224, 224) == ClassifyInfo(225, 224, 225, 224, 0, 0)  # round(0.5) = 0
    assert crop_params(224, 227, 224) == ClassifyInfo(224, 227, 224, 227, 0, 2)  # round(1.5) = 2
    assert crop_params(1080, 810, 224) == ClassifyInfo(1080, 810, 298, 224, 37, 0)


@pytest.mark.parametrize("imgsz", [IMGSZ, 160])
def test_preprocess_is_bit_exact_with_ultralytics(classifier, imgsz):
    """Against the tensor ultralytics' predictor feeds its model (host PIL resize + crop of the BGR image,
    then flip, /255, Normalize) and the full ``classify_transforms`` on the RGB PIL image: max |diff| 0."""
    from PIL import Image
    from ultralytics.data.augment import classify_transforms

    yolo, _ = classifier
    yolo.predict(sample_images()["bus"], imgsz=imgsz, verbose=False)  # sets up the predictor's transforms
    predictor = yolo.predictor
    assert predictor.host_transforms is not None  # the split path of 8.4.190 is the one exercised
    transforms = classify_transforms(imgsz)
    images = {**sample_images(), **odd_images()}
    worst = {}
    for name, image in images.items():
        ours, infos = TASK.preprocess([image], imgsz, "FP32")
        pixels, _ = TASK.preprocess([image], imgsz, "UINT8")
        assert ours.shape == pixels.shape == (1, 3, imgsz, imgsz)
        assert ours.dtype == np.float32 and pixels.dtype == np.uint8
        assert (infos[0].orig_h, infos[0].orig_w) == image.shape[:2]
        theirs = predictor.preprocess([image]).numpy()
        full = transforms(Image.fromarray(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))).unsqueeze(0).numpy()
        worst[name] = max(float(np.abs(ours - theirs).max()), float(np.abs(ours - full).max()))
        # the uint8 wire format is exact: the graph's Cast + /255 gives the same float32 bits
        assert np.array_equal(pixels.astype(np.float32) / np.float32(255), ours)
    assert worst == {name: 0.0 for name in images}


def test_preprocess_batches_and_rejects_bad_input():
    images = list(odd_images().values())[:3]
    batch, infos = TASK.preprocess(images, 64, "UINT8")
    assert batch.shape == (3, 3, 64, 64) and [i.orig_h for i in infos] == [im.shape[0] for im in images]
    for single, image in zip(batch, images):
        assert np.array_equal(single, TASK.preprocess([image], 64, "UINT8")[0][0])
    with pytest.raises(ValueError, match="HxWx3"):
        TASK.preprocess([np.zeros((8, 8), np.uint8)], 64)
    with pytest.raises(ValueError, match="at least one"):
        TASK.preprocess([], 64)
    with pytest.raises(ValueError, match="FP16"):
        TASK.preprocess(images, 64, "FP16")


# ---- the exported model ------------------------------------------------------------------------------
def test_export_ends_in_softmax(classifier):
    import onnx

    graph = onnx.load(str(classifier[1])).graph
    assert [i.name for i in graph.input] == ["images"] and [o.name for o in graph.output] == [TRACK_A_OUTPUT]
    last = [n for n in graph.node if TRACK_A_OUTPUT in n.output]
    assert [n.op_type for n in last] == ["Softmax"]
    dims = graph.output[0].type.tensor_type.shape.dim
    assert dims[0].dim_param and dims[1].dim_value == NC


def test_outputs_are_varied(served):
    """Otherwise "same top-5" would prove nothing: clearly non-uniform, different per image, separated ranks."""
    _, ref, _, _ = served
    top1 = [float(r.probs.max()) for r in ref]
    assert min(top1) > 20 / NC and np.median(top1) > 0.2
    assert len({tuple(r.top(5)[0].tolist()) for r in ref}) >= len(ref) - 2
    assert len({int(r.top(1)[0][0]) for r in ref}) >= 3
    gaps = np.concatenate([-np.diff(r.top(5)[1]) for r in ref])  # between consecutive top-5 ranks
    assert np.mean(gaps > FP32_TOL.score) > 0.85  # few near-ties: the ranks themselves are tested


def test_onnxruntime_matches_predict(served):
    names, ref, test, outputs = served
    assert outputs[TRACK_A_OUTPUT].shape == (len(names), NC)
    assert TASK.compare(ref, test, FP32_TOL, PARAMS) == []
    for name, r, t in zip(names, ref, test):
        assert r.top(5)[0].tolist() == t.top(5)[0].tolist(), name
    worst = max(float(np.abs(r.probs - t.probs).max()) for r, t in zip(ref, test))
    assert worst < FP32_TOL.score  # measured 1.3e-5 (the Linear's x42 scale magnifies fp32 rounding)


def test_uint8_input_graph_is_bit_identical(classifier, served):
    """INPUT_DTYPE=uint8 on a classifier: our uint8 pixels into the Cast + /255 graph = the float32 graph."""
    import onnx

    from yolo_triton.input_uint8 import uint8_input

    _, onnx_path = classifier
    _, _, _, outputs = served
    images = list({**sample_images(), **odd_images()}.values())
    pixels, _ = TASK.preprocess(images, IMGSZ, "UINT8")
    session = ort.InferenceSession(uint8_input(onnx.load(str(onnx_path))).SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    assert np.array_equal(session.run([TRACK_A_OUTPUT], {"images": pixels})[0], outputs[TRACK_A_OUTPUT])


# ---- decode, compare, JSON, drawing ------------------------------------------------------------------
def infos(n: int) -> list[ClassifyInfo]:
    return [crop_params(100, 100, 64)] * n


def softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def test_decode_only_track_a():
    shape = TaskShape("classify", 10)
    assert TASK.output_names("track_a", shape) == (TRACK_A_OUTPUT,)
    probs = softmax(np.random.default_rng(0).normal(size=(2, 10)))
    out = TASK.decode({TRACK_A_OUTPUT: probs}, infos(2), shape, PARAMS, "track_a")
    assert len(out) == 2 and np.array_equal(out[1].probs, probs[1]) and out[1].probs.dtype == np.float32
    for layout in ("end2end", "one2one"):
        with pytest.raises(ValueError, match="no boxes to suppress"):
            TASK.decode({TRACK_A_OUTPUT: probs}, infos(2), shape, PARAMS, layout)
        with pytest.raises(ValueError, match="no NMS"):
            TASK.output_names(layout, shape)


@pytest.mark.parametrize("outputs, count, match", [
    (np.full((3, 10), 0.1, np.float32), 2, r"\[2, nc\]"),  # batch != images
    (np.full((2, 9), 1 / 9, np.float32), 2, "9 classes"),
    (np.random.default_rng(1).normal(size=(2, 10)).astype(np.float32), 2, "not probabilities"),  # logits
])
def test_decode_rejects(outputs, count, match):
    with pytest.raises(ValueError, match=match):
        TASK.decode({TRACK_A_OUTPUT: outputs}, infos(count), TaskShape("classify", 10), PARAMS, "track_a")


def test_compare_allows_only_tied_swaps():
    probs = np.array([0.5, 0.2, 0.1, 0.08, 0.05, 0.04, 0.03], np.float32)
    ref = Classification(probs)
    tol = 1e-3
    assert classification_problems(ref, Classification(probs.copy()), tol) == []
    tied = probs.copy()
    tied[3], tied[4] = 0.06, 0.0605  # ranks 4 and 5 swap within tol ...
    ref_tied = Classification(np.where(np.arange(7) == 4, np.float32(0.0599), tied).astype(np.float32))
    assert ref_tied.top(5)[0].tolist() != Classification(tied).top(5)[0].tolist()
    assert classification_problems(ref_tied, Classification(tied), tol) == []
    swapped = probs.copy()
    swapped[0], swapped[1] = 0.2, 0.5  # a real swap of the top two
    problems = classification_problems(ref, Classification(swapped), tol)
    assert problems[0].startswith("rank 1: class 0") and "class 0: probability" in problems[-1]
    off = probs.copy()
    off[6] += 2 * tol  # top-5 unchanged, one probability off
    assert [p.split(":")[0] for p in classification_problems(ref, Classification(off), tol)] == ["class 6"]
    assert TASK.compare([ref], [ref, ref], Tolerance(1, tol), PARAMS) == ["1 reference images but 2 results"]
    assert "10 served" in classification_problems(ref, Classification(np.full(10, 0.1, np.float32)), tol)[0]


def test_json_and_draw():
    probs = softmax(np.arange(8, dtype=np.float64)[None] * 0.7)[0]
    result = Classification(probs)
    names = [f"n{i}" for i in range(6)]  # classes 6 and 7 have no name: their id is the label
    doc = TASK.to_json(result, names)
    assert list(doc) == ["top5"] and [e["class_id"] for e in doc["top5"]] == [7, 6, 5, 4, 3]
    assert [e["label"] for e in doc["top5"]] == ["7", "6", "n5", "n4", "n3"]
    assert doc["top5"][0]["score"] == pytest.approx(float(probs[7])) and isinstance(doc["top5"][0]["score"], float)
    image = np.full((120, 200, 3), 90, np.uint8)
    drawn = TASK.draw(image, result, names)
    assert drawn.shape == image.shape and (image == 90).all()  # a copy; the input is untouched
    changed_rows = np.nonzero((drawn != image).any(axis=(1, 2)))[0]
    assert changed_rows.min() == 0 and 60 < changed_rows.max() < 120  # five lines from the top
    assert (drawn[:, 150:] == image[:, 150:]).all()  # the text stays in the top-left corner


def test_reference_refuses_saved_transforms_that_differ(classifier):
    """A checkpoint's own saved transforms steer .pt predict; ours (and exported models') are the defaults."""
    from ultralytics.data.augment import classify_transforms

    from yolo_triton.task_classify import transforms_problem

    yolo, _ = classifier
    try:
        yolo.model.transforms = classify_transforms(IMGSZ)
        assert transforms_problem(yolo, IMGSZ) is None
        yolo.model.transforms = classify_transforms(IMGSZ, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
        assert transforms_problem(yolo, 320) is None  # another size: predict ignores them
        with pytest.raises(ValueError, match="Normalize"):
            TASK.reference(yolo, [sample_images()["bus"]], IMGSZ, PARAMS)
    finally:
        del yolo.model.transforms
