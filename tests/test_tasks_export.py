"""Every YOLO task (detect, segment, pose, obb, classify) through the spine of the pipeline: checkpoint
inspection, scratch checkpoints, Track A export, Triton configs and TensorRT plan orchestration.

Untrained checkpoints only, built once per session by ``make scratch MODEL=<arch> IMGSZ=320`` (BatchNorm
recalibrated, outputs varied: yolo_triton.scratch), for YOLOv8, YOLO11 and YOLO26 heads. Real ultralytics
export, real ONNX Runtime. TensorRT is not here: plans are "built" by the fake trtexec of tests/doubles
(a TEST DOUBLE) through the real Make rules. ultralytics' own Triton client runs for real against a TEST
DOUBLE of tritonclient's HTTP client that answers from our config.pbtxt and runs our ONNX in ONNX Runtime.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from conftest import REPO, TASK_IMGSZ, Tree, make_plan_config
from yolo_triton import checkpoint as ckpt
from yolo_triton import triton_config as tc
from yolo_triton.engine import read_sidecar, tensor_specs
from yolo_triton.errors import StepError
from yolo_triton.onnx_io import class_names, onnx_io, onnx_metadata, onnx_precision
from yolo_triton.task_base import TaskShape

pytestmark = pytest.mark.slow
IMGSZ = 320
ANCHORS = sum((IMGSZ // s) ** 2 for s in (8, 16, 32))  # 2100
TOPK = 50
# arch -> (task, head class, classes, kpt_shape, one-to-one head); classes and kpt_shape are the defaults of
# the dataset ultralytics trains the task on (COCO, COCO-pose, DOTAv1, ImageNet)
ARCHS = {
    "yolo11n-seg": ("segment", "Segment", 80, None, False),
    "yolov8n-seg": ("segment", "Segment", 80, None, False),
    "yolo26n-seg": ("segment", "Segment26", 80, None, True),
    "yolo11n-pose": ("pose", "Pose", 1, (17, 3), False),
    "yolo26n-pose": ("pose", "Pose26", 1, (17, 3), True),
    "yolo11n-obb": ("obb", "OBB", 15, None, False),
    "yolo26n-obb": ("obb", "OBB26", 15, None, True),
    "yolo11n-cls": ("classify", "Classify", 1000, None, False),
    "yolo26n-cls": ("classify", "Classify", 1000, None, False),
}
ONE2ONE = [arch for arch, facts in ARCHS.items() if facts[4]]


def name(arch: str) -> str:
    return f"{arch}_untrained"


class Tasks:
    """One temporary tree: each scratch checkpoint and each Track A artefact is made at most once. It starts
    as a copy of the session's task tree (conftest's task_tree: its checkpoints linked, its Track A exports
    copied, which make keeps: only a config whose settings differ is written again)."""

    def __init__(self, root: Path, task_tree: Tree):
        shutil.copytree(task_tree.root, root, symlinks=True, dirs_exist_ok=True)
        self.tree = Tree(root)
        self.settings = (f"IMGSZ={IMGSZ}", "PRECISION=fp32")
        self._made: set[str] = set()

    def weights(self, arch: str) -> Path:
        path = self.tree.weights / f"{name(arch)}.pt"
        if not path.is_file():
            self.tree.make("scratch", f"MODEL={arch}", *self.settings)
        return path

    def track_a(self, arch: str) -> Path:
        """``models/<name>/config.pbtxt`` (Track A ONNX + config) through the real Make rules."""
        self.weights(arch)
        config = self.tree.models / name(arch) / "config.pbtxt"
        if str(config) not in self._made:
            self.tree.make(str(config), *self.settings)
            self._made.add(str(config))
        return self.tree.artefact(name(arch))

    def one2one(self, arch: str) -> Path:
        """The NMS-free export (``$(BUILD_DIR)/one2one/<name>.onnx``, ultralytics nms=False) at TOPK."""
        self.weights(arch)
        path = self.tree.root / "build" / "one2one" / f"{name(arch)}.onnx"
        if str(path) not in self._made:  # make decides: the copied task tree's may be at another TOPK
            self.tree.make(str(path), *self.settings, "NMS=free", f"TOPK={TOPK}")
            self._made.add(str(path))
        return path


@pytest.fixture(scope="session")
def tasks(tmp_path_factory, task_tree) -> Tasks:
    assert IMGSZ == TASK_IMGSZ  # the shared checkpoints are varied at this size
    return Tasks(tmp_path_factory.mktemp("tasks"), task_tree)


@pytest.fixture(scope="session")
def images():
    import cv2
    from ultralytics.utils import ASSETS

    return [cv2.imread(str(Path(ASSETS) / f)) for f in ("bus.jpg", "zidane.jpg")]


def session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def letterboxed(images) -> np.ndarray:
    from yolo_triton.postprocess import letterbox_batch

    return letterbox_batch(list(images), IMGSZ, "FP32")[0]


def loaded(path: Path):
    return ckpt.load_yolo(path)


# ---- checkpoint.inspect ---------------------------------------------------------------------------------
@pytest.mark.parametrize("arch", list(ARCHS))
def test_inspect_names_the_task_and_its_shape(tasks, arch):
    task, head, classes, kpt_shape, one2one = ARCHS[arch]
    weights = tasks.weights(arch)
    info = ckpt.inspect(loaded(weights), weights)
    assert (info.task, info.head, info.num_classes, info.has_one2one_head) == (task, head, classes, one2one)
    assert info.shape.task == task and info.shape.num_classes == classes
    assert info.shape.num_masks == (32 if task == "segment" else 0)
    assert info.shape.kpt_shape == kpt_shape
    assert info.stride == (1 if task == "classify" else 32)
    expected_names = {"segment": "person", "pose": "person", "obb": "plane", "classify": "tench"}[task]
    assert info.names[0] == expected_names


def test_inspect_custom_class_count_and_keypoints(tmp_path_factory):
    """``make scratch MODEL=yolo11n-pose NC=3 KPT_SHAPE=5,3``: three classes, five keypoints, generic names;
    the export carries the keypoint shape in ultralytics' metadata and output0 has 4 + 3 + 15 rows."""
    tree = Tree(tmp_path_factory.mktemp("custom"))
    tree.make("scratch", "MODEL=yolo11n-pose", "NC=3", "KPT_SHAPE=5,3", f"IMGSZ={IMGSZ}")
    weights = tree.weights / "yolo11n-pose_untrained.pt"
    info = ckpt.inspect(loaded(weights), weights)
    assert (info.task, info.head, info.names) == ("pose", "Pose", ("class_0", "class_1", "class_2"))
    assert info.shape == TaskShape("pose", 3, kpt_shape=(5, 3)) and info.shape.extra_channels == 15
    tree.make(str(tree.models / "yolo11n-pose_untrained" / "config.pbtxt"), f"IMGSZ={IMGSZ}", "PRECISION=fp32")
    artefact = tree.artefact("yolo11n-pose_untrained")
    assert [(o.name, o.shape) for o in onnx_io(artefact)[1]] == [("output0", (-1, 4 + 3 + 15, ANCHORS))]
    assert onnx_metadata(artefact)["kpt_shape"] == "[5, 3]"
    config = tc.parse_config(artefact.parent.parent / "config.pbtxt")
    assert tc.ultralytics_metadata_of(config)["kpt_shape"] == [5, 3]
    assert (artefact.parent.parent / "labels.txt").read_text().split() == ["class_0", "class_1", "class_2"]
    bad = tree.make("scratch", "MODEL=yolo11n-seg", "KPT_SHAPE=5,3", check=False)
    assert bad.returncode != 0 and "kpt_shape is for pose architectures" in bad.stderr
    assert "Traceback" not in bad.stderr


@pytest.mark.parametrize("cfg,model_class,head", [
    ("rtdetr-l.yaml", "RTDETRDetectionModel", "RTDETRDecoder"),
    ("yolov8s-worldv2.yaml", "WorldModel", "WorldDetect"),
    ("yolo26n-sem.yaml", "SemanticSegmentationModel", "SemanticSegment"),
])
def test_an_unknown_head_is_refused_in_one_line(cfg, model_class, head):
    from ultralytics.nn import tasks as models

    model = getattr(models, model_class)(cfg, verbose=False)
    assert type(model.model[-1]).__name__ == head
    with pytest.raises(StepError) as refused:
        ckpt.inspect(SimpleNamespace(model=model), "their.pt")
    message = str(refused.value)
    assert "\n" not in message and f"head '{head}'" in message and "is not supported" in message
    assert message.startswith("their.pt: ")


def test_every_served_head_is_an_ultralytics_head_class():
    """The served heads are ultralytics' own class names (a rename in an upgrade fails here, not in use)."""
    import inspect

    from ultralytics.nn.modules import head as heads

    classes = {name for name, value in vars(heads).items() if inspect.isclass(value)}
    assert set(ckpt.HEAD_TASKS) <= classes
    assert set(ckpt.HEAD_TASKS.values()) == {"detect", "segment", "pose", "obb", "classify"}


# ---- scratch checkpoints: varied where a comparison would otherwise prove nothing ---------------------
def predicted(weights: Path, images):
    from ultralytics import YOLO

    return YOLO(str(weights)).predict(list(images), imgsz=IMGSZ, conf=0.25, verbose=False)


@pytest.mark.parametrize("arch", ["yolo11n-seg", "yolov8n-seg", "yolo26n-seg"])
def test_scratch_segment_masks_are_neither_empty_nor_full(tasks, images, arch):
    results = predicted(tasks.weights(arch), images)
    covered = []
    for result in results:
        masks = result.masks.data.numpy() > 0.5 if result.masks is not None else np.zeros((0, 1, 1), bool)
        height, width = masks.shape[1:]
        gain = min(height / result.orig_shape[0], width / result.orig_shape[1])
        for mask, box in zip(masks, result.boxes.xyxy.numpy()):
            x1, y1, x2, y2 = (box * gain).round().astype(int)
            inside = mask[y1:y2, x1:x2]
            covered.append(inside.mean() if inside.size else 0.0)
    covered = np.array(covered)
    assert len(covered) >= 10
    assert np.mean((covered > 0.05) & (covered < 0.95)) >= 0.8, np.round(covered, 2)
    assert covered.std() > 0.05  # not one mask shape everywhere


@pytest.mark.parametrize("arch", ["yolo11n-pose", "yolo26n-pose"])
def test_scratch_keypoint_confidences_spread_around_one_half(tasks, images, arch):
    results = predicted(tasks.weights(arch), images)
    confidences = np.concatenate([r.keypoints.conf.numpy().ravel() for r in results if len(r.boxes)])
    assert sum(len(r.boxes) for r in results) >= 5
    low, median, high = np.percentile(confidences, [10, 50, 90])
    assert low < 0.35 and 0.3 < median < 0.7 and high > 0.65, (low, median, high)
    xy = np.concatenate([r.keypoints.xy.numpy().reshape(-1, 2) for r in results if len(r.boxes)])
    assert len(np.unique(xy.round(1), axis=0)) > 0.9 * len(xy)  # keypoints do not collapse onto one point


@pytest.mark.parametrize("arch", ["yolo11n-obb", "yolo26n-obb"])
def test_scratch_obb_angles_spread(tasks, images, arch):
    results = predicted(tasks.weights(arch), images)
    angles = np.concatenate([r.obb.xywhr.numpy()[:, 4] for r in results])
    assert len(angles) >= 10
    assert angles.std() > 0.3 and np.ptp(angles) > 1.0, np.round(angles, 2)


def test_scratch_classifier_is_confident_and_its_top5_separated(tasks, images):
    results = predicted(tasks.weights("yolo11n-cls"), images)
    tops = []
    for result in results:
        probs = result.probs.data.numpy()
        assert probs.shape == (1000,) and abs(probs.sum() - 1) < 1e-4
        top5 = np.sort(probs)[::-1][:5]
        assert top5[0] >= 0.1  # 100 times the uniform 0.001
        assert (top5[:4] / top5[1:]).min() >= 1.04, top5  # ranks 1..5 clearly apart
        assert top5[4] >= 1e-3
        tops.append(int(probs.argmax()))
    assert tops[0] != tops[1]  # the two images get different classes


# ---- Track A export ---------------------------------------------------------------------------------------
def expected_outputs(arch: str, one2one: bool = False) -> list[tuple[str, tuple[int, ...]]]:
    task, _, classes, kpt_shape, _ = ARCHS[arch]
    extra = {"segment": 32, "pose": int(np.prod(kpt_shape or (0,))), "obb": 1}.get(task, 0)
    if task == "classify":
        outputs = [("output0", (-1, classes))]
    elif one2one:
        outputs = [("output0", (-1, TOPK, 6 + extra))]
    else:
        outputs = [("output0", (-1, 4 + classes + extra, ANCHORS))]
    if task == "segment":
        outputs.append(("output1", (-1, 32, IMGSZ // 4, IMGSZ // 4)))
    return outputs


@pytest.mark.parametrize("arch", list(ARCHS))
def test_track_a_export_has_ultralytics_outputs_and_metadata(tasks, arch):
    task, head, classes, kpt_shape, _ = ARCHS[arch]
    artefact = tasks.track_a(arch)
    inputs, outputs = onnx_io(artefact)
    assert [(i.name, i.dtype, i.shape) for i in inputs] == [("images", "float32", (-1, 3, IMGSZ, IMGSZ))]
    assert [(o.name, o.shape) for o in outputs] == expected_outputs(arch)
    assert {o.dtype for o in outputs} == {"float32"}
    meta = onnx_metadata(artefact)
    assert (meta["task"], meta["head"], meta["imgsz"], meta["one2one"], meta["precision"]) == (
        task, head, f"[{IMGSZ}, {IMGSZ}]", "False", "fp32")
    assert len(class_names(meta)) == classes
    assert ("kpt_shape" in meta) == (task == "pose")
    if kpt_shape:
        assert meta["kpt_shape"] == str(list(kpt_shape)) and "nose" in meta["kpt_names"]
    # the TaskShape of the checkpoint predicts the graph's output0 (task_base.TaskShape.extra_channels)
    weights = tasks.weights(arch)
    shape = ckpt.inspect(loaded(weights), weights).shape
    if task != "classify":
        assert outputs[0].shape[1] == 4 + shape.num_classes + shape.extra_channels
    # the graph runs and answers per image
    got = session(artefact).run(None, {"images": np.random.default_rng(0).random((2, 3, IMGSZ, IMGSZ), np.float32)})
    assert [g.shape[0] for g in got] == [2] * len(outputs) and all(np.isfinite(g).all() for g in got)


@pytest.mark.parametrize("arch", ONE2ONE)
def test_one2one_export_of_every_yolo26_task(tasks, arch):
    """NMS=free: ultralytics' NMS-free head (nms=False, max_det=TOPK) of a YOLO26 segment/pose/obb model."""
    path = tasks.one2one(arch)
    inputs, outputs = onnx_io(path)
    assert [(o.name, o.shape) for o in outputs] == expected_outputs(arch, one2one=True)
    meta = onnx_metadata(path)
    assert (meta["one2one"], meta["end2end"], meta["task"]) == ("True", "True", ARCHS[arch][0])
    rows = session(path).run(None, {"images": letterboxed([np.full((240, 320, 3), 114, np.uint8)] * 2)})[0]
    assert rows.shape == (2, TOPK, outputs[0].shape[2])
    assert np.all(np.diff(rows[:, :, 4], axis=1) <= 1e-6)  # scores sorted, best first


def test_classify_exports_at_imgsz_and_names_its_training_size(tasks, tmp_path, caplog):
    """IMGSZ applies to classify too (its head pools globally); a size other than the checkpoint's training
    size is exported, with a warning that names the training size and the setting that serves it."""
    import logging

    from yolo_triton.onnx_export import export_onnx

    out = tmp_path / "cls224.onnx"
    with caplog.at_level(logging.WARNING, logger="yolo_triton.onnx_export"):
        meta = export_onnx(tasks.weights("yolo11n-cls"), out, 224, "fp32")
    inputs, outputs = onnx_io(out)
    assert (inputs[0].shape, [(o.name, o.shape) for o in outputs]) == ((-1, 3, 224, 224), [("output0", (-1, 1000))])
    assert meta["imgsz"] == "[224, 224]" and meta["task"] == "classify"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(f"trained at {IMGSZ} px, exported at IMGSZ=224" in w and f"make IMGSZ={IMGSZ}" in w for w in warnings)
    probs = session(out).run(None, {"images": np.random.default_rng(1).random((3, 3, 224, 224), np.float32)})[0]
    np.testing.assert_allclose(probs.sum(1), 1, atol=1e-5)


@pytest.mark.parametrize("arch,cause,head", [
    ("yolo11n-obb", "NMS=free needs a one-to-one (NMS-free) head", "OBB head"),
    ("yolo11n-cls", "a classify model has no NMS, so there is no end2end graph to make", "Classify head"),
])
def test_nms_free_is_refused_for_a_head_without_one(tasks, arch, cause, head):
    tasks.weights(arch)
    bad = tasks.tree.make(str(tasks.tree.root / "build" / "one2one" / f"{name(arch)}.onnx"), *tasks.settings,
                          "NMS=free", check=False)
    errors = [line for line in bad.stderr.splitlines() if "error" in line.lower()]
    assert bad.returncode != 0 and cause in bad.stderr, bad.stderr
    assert head in errors[0] and "Traceback" not in bad.stderr


def test_fp16_segment_export_keeps_float32_outputs_and_close_masks(tasks, tmp_path, images):
    from yolo_triton.onnx_export import export_onnx

    plain = tasks.track_a("yolo11n-seg")
    half = tmp_path / "fp16.onnx"
    export_onnx(tasks.weights("yolo11n-seg"), half, IMGSZ, "fp16")
    assert onnx_precision(onnx.load(str(half))) == "fp16"
    assert [(o.name, o.dtype, o.shape) for o in onnx_io(half)[1]] == [(o.name, o.dtype, o.shape)
                                                                         for o in onnx_io(plain)[1]]
    batch = letterboxed(images)
    want, got = session(plain).run(None, {"images": batch}), session(half).run(None, {"images": batch})
    assert np.abs(got[1] - want[1]).max() < 0.05 * np.abs(want[1]).max()  # prototypes
    scores_want, scores_got = want[0][:, 4:84], got[0][:, 4:84]
    assert np.abs(scores_got - scores_want).max() < 0.03


# ---- configs from the artefact ----------------------------------------------------------------------------
@pytest.mark.parametrize("arch", list(ARCHS))
def test_track_a_config_has_every_output_labels_and_ultralytics_metadata(tasks, arch):
    task, _, classes, kpt_shape, _ = ARCHS[arch]
    artefact = tasks.track_a(arch)
    model_dir = artefact.parent.parent
    config = tc.parse_config(model_dir / "config.pbtxt")
    inputs, outputs = onnx_io(artefact)
    assert [(o.name, tc.numpy_dtype(o.data_type), tuple(o.dims)) for o in config.output] == [
        (o.name, o.dtype, o.shape[1:]) for o in outputs]
    assert [(i.name, tuple(i.dims)) for i in config.input] == [("images", (3, IMGSZ, IMGSZ))]
    labels = (model_dir / "labels.txt").read_text().splitlines()
    assert labels == class_names(onnx_metadata(artefact)) and len(labels) == classes
    # classify: labels.txt names output0's entries (Triton's classification extension, class_count)
    assert [o.label_filename for o in config.output] == (["labels.txt"] if task == "classify" else [""] * len(outputs))
    applied = apply_as_ultralytics(tc.ultralytics_metadata_of(config))
    assert (applied["task"], applied["imgsz"], applied["batch"], applied["dynamic"], applied["end2end"]) == (
        task, [IMGSZ, IMGSZ], 1, False, False)
    assert applied["stride"] == (1 if task == "classify" else 32)
    assert applied["names"] == dict(enumerate(labels))
    assert applied.get("kpt_shape") == (list(kpt_shape) if kpt_shape else None)


def apply_as_ultralytics(meta: dict) -> dict:
    """ultralytics' own ``BaseBackend.apply_metadata`` (what ``YOLO("http://...")`` runs on the parameter)."""
    from ultralytics.nn.backends.base import BaseBackend

    backend = SimpleNamespace(dynamic=False)
    BaseBackend.apply_metadata(backend, dict(meta))
    return vars(backend)


class FakeTritonHttp:
    """TEST DOUBLE of ``tritonclient.http`` (InferenceServerClient, InferInput, InferRequestedOutput): no
    server and no network; ``get_model_config`` answers our config.pbtxt as Triton's HTTP API does (JSON with
    the proto's field names), ``infer`` runs our ONNX in ONNX Runtime. Everything of ultralytics (its Triton
    client, metadata, pre- and postprocessing) runs for real."""

    def __init__(self, repository: Path):
        self.repository = repository
        self.requests: list[tuple[str, tuple[int, ...], str]] = []
        double = self

        class InferInput:
            def __init__(self, name, shape, datatype):
                self.name, self.shape, self.datatype = name, list(shape), datatype

            def set_data_from_numpy(self, array):
                self.array = array

        class InferRequestedOutput:
            def __init__(self, name):
                self.name = name

        class InferenceServerClient:
            def __init__(self, url, verbose=False, ssl=False):
                self.url = url

            def get_model_config(self, model_name):
                from google.protobuf.json_format import MessageToDict

                config = tc.parse_config(double.repository / model_name / "config.pbtxt")
                return MessageToDict(config, preserving_proto_field_name=True)

            def infer(self, model_name, inputs, outputs):
                artefact = double.repository / model_name / "1" / "model.onnx"
                for i in inputs:
                    double.requests.append((model_name, tuple(i.array.shape), str(i.array.dtype)))
                answers = session(artefact).run([o.name for o in outputs], {i.name: i.array for i in inputs})
                named = dict(zip([o.name for o in outputs], answers))
                return SimpleNamespace(as_numpy=named.__getitem__)

        self.InferInput, self.InferRequestedOutput = InferInput, InferRequestedOutput
        self.InferenceServerClient = InferenceServerClient


@pytest.mark.parametrize("arch", ["yolo11n-seg", "yolo11n-pose", "yolo26n-pose", "yolo11n-obb", "yolo11n-cls"])
def test_ultralytics_triton_client_reads_every_task_and_matches_its_predict(tasks, images, monkeypatch, arch):
    """``YOLO("http://host:8000/<model>", task=...)``: ultralytics' own client reads names, task, stride,
    imgsz and kpt_shape from the config's metadata parameter and, on our Track A outputs, gives what the
    checkpoint's own predict gives (boxes, masks, keypoints, rotated boxes, class probabilities)."""
    import tritonclient.http
    from ultralytics import YOLO

    task = ARCHS[arch][0]
    artefact = tasks.track_a(arch)
    double = FakeTritonHttp(tasks.tree.models)
    for attribute in ("InferenceServerClient", "InferInput", "InferRequestedOutput"):
        monkeypatch.setattr(tritonclient.http, attribute, getattr(double, attribute))
    remote = YOLO(f"http://triton.invalid:8000/{artefact.parent.parent.name}", task=task)
    theirs = remote.predict(list(images), conf=0.25, verbose=False)
    ours = predicted(tasks.weights(arch), images)
    backend = remote.predictor.model
    assert (backend.task, list(backend.imgsz), backend.dynamic) == (task, [IMGSZ, IMGSZ], False)
    assert double.requests and {shape for _, shape, _ in double.requests} == {(1, 3, IMGSZ, IMGSZ)}
    assert sum(len(r.probs.data) if task == "classify" else len(r.obb if task == "obb" else r.boxes)
               for r in theirs) > 0
    for served, own in zip(theirs, ours, strict=True):
        assert served.names == own.names
        if task == "classify":
            np.testing.assert_allclose(served.probs.data.numpy(), own.probs.data.numpy(), atol=1e-4)
            assert served.probs.top5 == own.probs.top5
            continue
        boxes = served.obb if task == "obb" else served.boxes
        own_boxes = own.obb if task == "obb" else own.boxes
        assert len(boxes) == len(own_boxes)
        np.testing.assert_allclose(boxes.conf.numpy(), own_boxes.conf.numpy(), atol=1e-3)
        np.testing.assert_array_equal(boxes.cls.numpy(), own_boxes.cls.numpy())
        data = (boxes.xywhr, own_boxes.xywhr) if task == "obb" else (boxes.xyxy, own_boxes.xyxy)
        np.testing.assert_allclose(data[0].numpy(), data[1].numpy(), atol=0.5)
        if task == "segment" and len(boxes):
            a, b = served.masks.data.numpy() > 0.5, own.masks.data.numpy() > 0.5
            iou = (a & b).sum((1, 2)) / np.maximum((a | b).sum((1, 2)), 1)
            assert iou.min() > 0.95
        if task == "pose":
            np.testing.assert_allclose(served.keypoints.data.numpy(), own.keypoints.data.numpy(), atol=0.5)


# ---- uint8 input and batch padding on a segment model -------------------------------------------------------
@pytest.fixture(scope="module")
def padded_segment(tasks, tmp_path_factory) -> Tree:
    """yolo11n-seg with INPUT_DTYPE=uint8 and ORT_BATCHING=pad (ORT_PAD_BATCH=3, MAX_BATCH=4)."""
    tree = Tree(tmp_path_factory.mktemp("padded-seg"))
    tree.weights.mkdir()
    (tree.weights / f"{name('yolo11n-seg')}.pt").symlink_to(tasks.weights("yolo11n-seg"))
    tree.make(str(tree.models / name("yolo11n-seg") / "config.pbtxt"), *tasks.settings, "INPUT_DTYPE=uint8",
              "ORT_BATCHING=pad", "ORT_PAD_BATCH=3", "MAX_BATCH=4", "INSTANCE_KIND=gpu")
    return tree


def test_uint8_padded_segment_model_slices_every_output(tasks, padded_segment, images):
    padded = padded_segment.artefact(name("yolo11n-seg"))
    plain = tasks.track_a("yolo11n-seg")
    inputs, outputs = onnx_io(padded)
    assert [(i.name, i.dtype) for i in inputs] == [("images", "uint8")]
    assert [(o.name, o.shape) for o in outputs] == expected_outputs("yolo11n-seg")
    model = onnx.load(str(padded))
    slices = {n.output[0] for n in model.graph.node if n.op_type == "Slice" and n.name.startswith("batch_pad/")}
    assert slices == {"output0", "output1"}
    pixels = np.round(letterboxed(images) * 255).astype(np.uint8)
    pixels = np.concatenate([pixels, pixels[::-1], pixels])  # 6 images: 1..5 runs pad and exceed the pad size
    padded_run, plain_run = session(padded), session(plain)
    for n in (1, 2, 3, 5):
        got = padded_run.run(None, {"images": pixels[:n]})
        want = plain_run.run(None, {"images": pixels[:n].astype(np.float32) / np.float32(255)})
        for g, w, output in zip(got, want, ("output0", "output1")):
            assert g.shape == w.shape and g.shape[0] == n, (output, n)
            np.testing.assert_allclose(g, w, atol=1e-4, err_msg=f"{output} batch {n}")
    config = tc.parse_config(padded.parent.parent / "config.pbtxt")
    assert config.max_batch_size == 3 and list(config.dynamic_batching.preferred_batch_size) == [3]
    assert [o.name for o in config.output] == ["output0", "output1"]
    assert [tc.numpy_dtype(i.data_type) for i in config.input] == ["uint8"]
    with pytest.raises(ValueError, match="not for ultralytics' Triton client: its input images is UINT8"):
        apply_as_ultralytics(tc.ultralytics_metadata_of(config))


# ---- Tracks B/C orchestration: plans through the Make rules, the fake trtexec (TEST DOUBLE) ------------------
@pytest.mark.parametrize("arch", ["yolo11n-seg", "yolo26n-pose"])
def test_plan_of_a_task_model_built_through_make_and_its_config_from_the_sidecar(tasks, padded_segment, tmp_path,
                                                                               arch):
    """Segment (the uint8, batch-padded graph: TensorRT gets the plain one) and pose: trtexec is asked for the
    profile of the one image input; the sidecar records every output and the metadata; the plan's config has
    every output (output1 too) and, where ultralytics can read the plan, its metadata with kpt_shape."""
    segment = arch == "yolo11n-seg"
    tree = padded_segment if segment else tasks.tree
    settings = [*tasks.settings, *(("INPUT_DTYPE=uint8", "ORT_BATCHING=pad", "ORT_PAD_BATCH=3", "INSTANCE_KIND=gpu")
                                   if segment else ())]
    source = tree.artefact(name(arch)) if segment else tasks.track_a(arch)
    plan, argv = make_plan_config(tree, name(arch), tmp_path, *settings, "MAX_BATCH=4")
    assert argv[0] == ["--help"]
    build = argv[1]
    onnx_arg = next(a.split("=", 1)[1] for a in build if a.startswith("--onnx="))
    assert (onnx_arg != str(source)) == segment  # a padded graph reaches TensorRT unpadded (a temporary copy)
    for flag, batch in (("--minShapes", 1), ("--optShapes", 2), ("--maxShapes", 4)):
        assert f"{flag}=images:{batch}x3x{IMGSZ}x{IMGSZ}" in build
    assert plan.read_bytes().startswith(b"FAKE-TRTEXEC-PLAN")
    record = read_sidecar(plan)
    inputs, outputs = onnx_io(source)
    assert tensor_specs(record["outputs"]) == outputs and tensor_specs(record["inputs"]) == inputs
    assert record["onnx_metadata"]["task"] == ARCHS[arch][0] and "batch_pad" not in record["onnx_metadata"]
    assert record["profile"]["max"] == [4, 3, IMGSZ, IMGSZ]
    config = tc.parse_config(plan.parent.parent / "config.pbtxt")
    assert config.platform == tc.TENSORRT_PLATFORM and config.max_batch_size == 4
    assert [(o.name, tuple(o.dims)) for o in config.output] == [(o.name, o.shape[1:]) for o in outputs]
    labels = (plan.parent.parent / "labels.txt").read_text().splitlines()
    assert labels == class_names(onnx_metadata(source))
    meta = tc.ultralytics_metadata_of(config)
    if segment:  # a UINT8 input: ultralytics' client is refused with the reason
        assert "input images is UINT8" in meta["stride"]
    else:
        applied = apply_as_ultralytics(meta)
        assert (applied["task"], applied["kpt_shape"], applied["imgsz"]) == ("pose", [17, 3], [IMGSZ, IMGSZ])


def test_plan_config_without_source_onnx_comes_from_the_sidecar(tasks, tmp_path, restore_logging):
    """write_config.py needs no --source-onnx when the sidecar holds the plan's I/O and metadata; a sidecar
    without them (an older build) and no --source-onnx is one line naming the fix."""
    from write_config import build_config

    from yolo_triton.engine import sidecar_path, tensor_records

    artefact = tasks.track_a("yolo11n-obb")
    inputs, outputs = onnx_io(artefact)
    plan = tmp_path / "obb_trt" / "1" / "model.plan"
    plan.parent.mkdir(parents=True)
    plan.write_bytes(b"not read")
    sidecar_path(plan).write_text(json.dumps({"inputs": tensor_records(inputs), "outputs": tensor_records(outputs),
                                              "onnx_metadata": onnx_metadata(artefact)}))
    _, config, names = build_config(plan, 4, 100, None)
    assert [o.name for o in config.output] == ["output0"] and len(names) == 15
    assert tc.ultralytics_metadata_of(config)["task"] == "obb"
    sidecar_path(plan).write_text("{}")
    with pytest.raises(StepError, match="pass --source-onnx"):
        build_config(plan, 4, 100, None)
    _, config, _ = build_config(plan, 4, 100, artefact)  # the older sidecar: the source ONNX's
    assert tc.ultralytics_metadata_of(config)["task"] == "obb"
