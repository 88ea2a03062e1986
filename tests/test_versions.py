"""Model versions for A/B rollouts (issue 14, items 5-8), on the REAL server with the REAL ONNX Runtime backend.

What is real: two different UNTRAINED checkpoints (``make scratch``: yolo11n and yolov8n, both 80 classes, so
one config serves both) exported by ``make version`` into versions 1 and 2 of one model folder, each
validated against its own checkpoint by make validate's check; ``tritonserver`` 2.51 with the
docker-compose.yml flags (explicit model control, ``--load-model=*``, strict readiness) and Triton's ONNX
Runtime backend (yolo_triton.triton_server); ``make promote`` / ``make rollback`` / ``make compare`` as
a user runs them; ultralytics' own predictor on each checkpoint as the reference. Nothing says anything
about accuracy (untrained weights), only about which checkpoint answered.

The tests run in file order against one server: build -> serve v1 -> promote v2 (both served) -> A/B ->
promote/rollback -> refused versions -> a failed load.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from tritonclient.utils import InferenceServerException

from conftest import Tree, skip_without_real_triton
from yolo_triton import ab_compare
from yolo_triton import client as client_cli
from yolo_triton import postprocess as pp
from yolo_triton import triton_config as tc
from yolo_triton import triton_server as ts
from yolo_triton import versions as vs
from yolo_triton.settings import defaults

import triton_client as client_script  # noqa: E402 - scripts/triton_client.py

pytestmark = pytest.mark.slow
IMGSZ = 320
D = defaults()
CONF, IOU, TOPK = float(D["CONF"]), float(D["IOU"]), int(D["TOPK"])
NAME = "det"
COMMON = ("INSTANCE_KIND=cpu", f"IMGSZ={IMGSZ}", "PRECISION=fp32", "NMS=onnx")


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def built(tmp_path_factory, scratch_weights):
    """Version 1 from yolo11n (scratch), version 2 from yolov8n (scratch), both through ``make version``."""
    skip_without_real_triton()
    tree = Tree(tmp_path_factory.mktemp("versions"))
    tree.weights.mkdir()
    (tree.weights / f"{NAME}.pt").symlink_to(scratch_weights)
    tree.make("scratch", "MODEL=yolov8n")
    second = tree.weights / "yolov8n_untrained.pt"
    reports = tree.root / "reports"
    v1 = tree.make("version", f"MODEL={NAME}", f"VERSION_REPORT={reports}/v1.json", *COMMON)
    v2 = tree.make("version", f"MODEL={NAME}", "VERSION=next", f"CHECKPOINT={second}",
                   f"VERSION_REPORT={reports}/v2.json", *COMMON)
    return {"tree": tree, "v1": v1, "v2": v2, "checkpoints": {1: tree.weights / f"{NAME}.pt", 2: second},
            "reports": reports}


@pytest.fixture(scope="module")
def server(built, tmp_path_factory):
    srv = ts.start_server(built["tree"].models, tmp_path_factory.mktemp("triton"))
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def client(server):
    opened = client_cli.connect(server.http_url, "http")
    yield opened
    opened.close()


@pytest.fixture(scope="module")
def samples():
    import cv2
    from ultralytics.utils import ASSETS

    paths = sorted(Path(ASSETS).glob("*.jpg"))
    return paths, [cv2.imread(str(p)) for p in paths]


@pytest.fixture(scope="module")
def predictions(built, samples):
    """ultralytics' predictor on each checkpoint at the square letterbox: the reference per version."""
    from ultralytics import YOLO

    paths, _ = samples
    out = {}
    for version, weights in built["checkpoints"].items():
        results = YOLO(str(weights)).predict([str(p) for p in paths], imgsz=IMGSZ, conf=CONF, iou=IOU, max_det=TOPK,
                                             rect=False, verbose=False)
        out[version] = [pp.Detections(r.boxes.xyxy.numpy(), r.boxes.conf.numpy(), r.boxes.cls.numpy().astype(int))
                        for r in results]
    return out


def assert_same(ours: pp.Detections, theirs: pp.Detections, box_tol: float = 0.5, score_tol: float = 1e-3) -> None:
    """Same count; every detection matched once (same class, box within box_tol px, score within score_tol)."""
    assert len(ours) == len(theirs), (len(ours), len(theirs))
    used: set[int] = set()
    for box, score, cls in zip(ours.boxes, ours.scores, ours.classes):
        match = [j for j in range(len(theirs)) if j not in used and theirs.classes[j] == cls
                 and np.abs(theirs.boxes[j] - box).max() <= box_tol and abs(theirs.scores[j] - score) <= score_tol]
        assert match, (box, score, cls)
        used.add(match[0])


def served(server) -> list[int]:
    return vs.Triton(server.http_url).ready_versions(NAME)


def policy(built) -> dict:
    return tc.version_policy(tc.parse_config(built["tree"].models / NAME / "config.pbtxt"))


def answer(client, images, version="") -> list[pp.Detections]:
    return client_cli.infer(client, NAME, images, mode="ultralytics", model_version=version)


def make_serving(built, server, *goals, **kw):
    return built["tree"].make(*goals, f"MODEL={NAME}", f"TRITON_HTTP={server.http_url}",
                              f"TRITON_URL={server.http_url}", *COMMON, **kw)


# ---- item 5: numbered versions with sidecars --------------------------------------------------------
def test_version_next_writes_version_2_beside_1_with_sidecars(built):
    models = built["tree"].models / NAME
    assert vs.version_numbers(models) == [1, 2]
    assert (models / "1" / "model.onnx").is_file() and (models / "2" / "model.onnx").is_file()
    assert sha256(models / "1" / "model.onnx") != sha256(models / "2" / "model.onnx")
    assert "version 2 of det" in built["v2"].stdout
    for version, weights in built["checkpoints"].items():
        record = json.loads((models / str(version) / "version.json").read_text())
        assert record["version"] == version and record["model"] == NAME
        assert record["checkpoint_sha256"] == sha256(weights)
        assert record["artefact_sha256"] == sha256(models / str(version) / "model.onnx")
        assert record["settings"]["IMGSZ"] == str(IMGSZ) and record["settings"]["PRECISION"] == "fp32"
        assert record["settings"]["INSTANCE_KIND"] == "cpu" and record["settings"]["max_batch"] == D["MAX_BATCH_custom"]
        assert set(D) <= set(record["settings"])  # every setting of defaults.mk
        assert record["validation"]["run"] and record["validation"]["passed"], record["validation"]
        assert record["validation"]["formats"] == {"onnx": "passed"}
        assert json.loads((built["reports"] / f"v{version}.json").read_text())["passed"] is True
        assert datetime.fromisoformat(record["built"]).tzinfo is not None
    assert json.loads((models / "1" / "version.json").read_text())["checkpoint_sha256"] != \
        json.loads((models / "2" / "version.json").read_text())["checkpoint_sha256"]
    # version 2 did not go live by itself: the config now pins what was served (version 1)
    assert policy(built) == {"specific": [1]}
    # a version is never rebuilt: asking for version 2 again is a no-op
    again = built["tree"].make("version", f"MODEL={NAME}", "VERSION=2", f"CHECKPOINT={built['checkpoints'][1]}",
                               *COMMON, PYTHON="false")
    assert "version 2 of det" in again.stdout


def test_version_1_paths_and_config_rule_unchanged(built):
    """``make version`` for version 1 went through the Track A rule: make -q is a no-op for it."""
    tree = built["tree"]
    target = f"{tree.models}/{NAME}/config.pbtxt"
    assert tree.make("-q", target, *COMMON, check=False).returncode == 0
    config = tc.parse_config(tree.models / NAME / "config.pbtxt")
    assert config.name == NAME and config.platform == "onnxruntime_onnx"


def test_an_incompatible_checkpoint_is_refused_before_it_reaches_the_repository(built):
    tree = built["tree"]
    tree.make("scratch", "MODEL=yolo11n", "NC=3")
    result = tree.make("version", f"MODEL={NAME}", "VERSION=next", f"CHECKPOINT={tree.weights}/yolo11n_untrained.pt",
                       "VALIDATE=0", *COMMON, check=False)
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert errors and "differ from" in errors[0] and "name of its own" in errors[0], result.stderr
    assert vs.version_numbers(tree.models / NAME) == [1, 2] and not (tree.models / NAME / "3").exists()


# ---- items 6-8: served by the real Triton --------------------------------------------------------
def test_server_starts_serving_only_version_1(server):
    assert served(server) == [1]


def test_promote_2_with_keep_2_serves_both_versions(built, server):
    result = make_serving(built, server, "promote", "VERSION=2", "KEEP_VERSIONS=2")
    assert "Triton serves versions [1, 2]" in result.stdout, result.stdout + result.stderr
    assert policy(built) == {"specific": [1, 2]}
    assert served(server) == [1, 2] and server.ready()


def test_each_version_is_answered_by_its_own_checkpoint(built, server, client, samples, predictions):
    _, images = samples
    got = {v: answer(client, images, v) for v in (1, 2)}
    for version in (1, 2):
        assert sum(len(d) for d in got[version]) > 5
        for ours, theirs in zip(got[version], predictions[version]):
            assert_same(ours, theirs)
    # the two checkpoints really differ, and a request without a version gets the newest served (2)
    assert [len(d) for d in got[1]] != [len(d) for d in got[2]] or not all(
        np.allclose(a.scores, b.scores) for a, b in zip(got[1], got[2]))
    for ours, theirs in zip(answer(client, images), predictions[2]):
        assert_same(ours, theirs)


def test_client_cli_model_version(built, server, samples, predictions, capsys):
    paths, _ = samples
    for version in (1, 2):
        assert client_script.main(["--url", server.http_url, "--model", NAME, "--model-version", str(version),
                                   "--nms-mode", "ultralytics", "--images", *map(str, paths)]) == 0
        out = capsys.readouterr().out
        for path, theirs in zip(paths, predictions[version]):
            assert f"{path}: {len(theirs)} detections" in out


def reference_comparison(a: pp.Detections, b: pp.Detections, iou_min: float = 0.5) -> dict:
    """README's A/B rule, restated: each detection of A in descending score order takes the unmatched
    detection of B of the same class with the highest IoU, if that IoU >= 0.5; score shift = B - A."""
    def iou(p, q) -> float:
        w = max(0.0, min(p[2], q[2]) - max(p[0], q[0]))
        h = max(0.0, min(p[3], q[3]) - max(p[1], q[1]))
        inter = w * h
        union = (p[2] - p[0]) * (p[3] - p[1]) + (q[2] - q[0]) * (q[3] - q[1]) - inter
        return inter / union if union > 0 else 0.0

    taken, shifts = set(), []
    for i in sorted(range(len(a)), key=lambda k: -float(a.scores[k])):
        options = [(iou(a.boxes[i], b.boxes[j]), j) for j in range(len(b))
                   if j not in taken and int(b.classes[j]) == int(a.classes[i])]
        best = max(options, key=lambda t: (t[0], -t[1]), default=(0.0, None))  # ties: the first of B
        if best[1] is not None and best[0] >= iou_min:
            taken.add(best[1])
            shifts.append(float(b.scores[best[1]]) - float(a.scores[i]))
    return {"a": len(a), "b": len(b), "matched": len(shifts), "only_a": len(a) - len(shifts),
            "only_b": len(b) - len(shifts), "score_shift_sum": sum(shifts),
            "mean_score_shift": sum(shifts) / len(shifts) if shifts else None}


def test_reference_comparison_is_the_documented_rule():
    a = pp.Detections(np.array([[0, 0, 10, 10], [20, 20, 30, 30], [50, 50, 60, 60]], np.float32),
                      np.array([0.9, 0.8, 0.7], np.float32), np.array([1, 2, 3]))
    b = pp.Detections(np.array([[1, 0, 11, 10], [20, 20, 30, 30], [80, 80, 90, 90]], np.float32),
                      np.array([0.95, 0.6, 0.5], np.float32), np.array([1, 5, 3]))
    got = reference_comparison(a, b)
    assert (got["a"], got["b"], got["matched"], got["only_a"], got["only_b"]) == (3, 3, 1, 2, 2)
    assert got["mean_score_shift"] == pytest.approx(0.05)
    assert {k: got[k] for k in ("a", "b", "matched", "only_a", "only_b")} == \
        {k: ab_compare.compare_detections(a, b)[k] for k in ("a", "b", "matched", "only_a", "only_b")}


def test_make_compare_against_the_checkpoints_own_predictions(built, server, samples, predictions, tmp_path):
    from ultralytics.utils import ASSETS

    out = tmp_path / "compare.json"
    result = make_serving(built, server, "compare", "VERSIONS=1,2", f"IMAGES={ASSETS}", "CLIENT_NMS=ultralytics",
                          f"COMPARE_JSON={out}")
    report = json.loads(out.read_text())
    paths, _ = samples
    assert [Path(r["image"]).name for r in report["images"]] == [p.name for p in paths]
    totals = {"a": 0, "b": 0, "matched": 0, "only_a": 0, "only_b": 0}
    shifts = []
    for row, a, b in zip(report["images"], predictions[1], predictions[2]):
        # each side's detections are its checkpoint's own
        for side, theirs in (("a", a), ("b", b)):
            dets = row[f"detections_{side}"]
            ours = pp.Detections(np.array([d["box"] for d in dets], np.float32).reshape(-1, 4),
                                 np.array([d["score"] for d in dets], np.float32),
                                 np.array([d["class_id"] for d in dets], int))
            assert_same(ours, theirs)
        # and the counts are those of the two predictors' outputs, matched by the documented rule (written
        # out here, not ab_compare's own function)
        expected = reference_comparison(a, b)
        for key in totals:
            assert row[key] == expected[key], (row["image"], key)
            totals[key] += expected[key]
        if expected["matched"]:
            assert row["mean_score_shift"] == pytest.approx(expected["mean_score_shift"], abs=2e-3)
            shifts.append(expected["score_shift_sum"])
        assert row["latency_ms_a"] > 0 and row["latency_ms_b"] > 0
        assert row["a"] == row["matched"] + row["only_a"] and row["b"] == row["matched"] + row["only_b"]
    for key, value in totals.items():
        assert report["total"][key] == value
    assert report["total"]["matched"] > 0 and report["total"]["only_a"] + report["total"]["only_b"] > 0
    assert report["total"]["mean_score_shift"] == pytest.approx(sum(shifts) / totals["matched"], abs=2e-3)
    total_line = [line for line in result.stdout.splitlines() if line.startswith("TOTAL")]
    assert len(total_line) == 1
    assert total_line[0].split()[3:8] == [str(totals[k]) for k in ("a", "b", "matched", "only_a", "only_b")]
    print("\n" + "\n".join(line for line in result.stdout.splitlines() if not line.startswith(("make", "  "))))


class Traffic:
    """Requests without a version, one after another from a thread, while a promote/rollback runs: the
    server must answer every one of them (never without a loaded version)."""

    def __init__(self, server, image):
        import threading

        self.client = client_cli.connect(server.http_url, "http")
        self.image, self.ok, self.errors = image, 0, []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run)

    def run(self):
        while not self.stop.is_set():
            try:
                answer(self.client, [self.image])
                self.ok += 1
            except Exception as err:  # noqa: BLE001 - collected and asserted
                self.errors.append(str(err).splitlines()[0])

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(timeout=60)
        self.client.close()


def test_promote_and_rollback_through_the_server(built, server, client, samples, predictions):
    _, images = samples
    with Traffic(server, images[0]) as traffic:
        result = make_serving(built, server, "promote", "VERSION=1", "KEEP_VERSIONS=1")
    assert not traffic.errors and traffic.ok > 0, traffic.errors[:3]
    assert "Triton serves versions [1]" in result.stdout
    assert policy(built) == {"specific": [1]} and served(server) == [1] and server.ready()
    for ours, theirs in zip(answer(client, images), predictions[1]):
        assert_same(ours, theirs)
    with pytest.raises(InferenceServerException, match=r"'det' version 2 is not at ready state"):
        answer(client, images, 2)  # unloaded by the promote: Triton says so (not any error mentioning a 2)
    # rebuilding the config (another queue delay) keeps the promoted pin
    tree = built["tree"]
    tree.make(f"{tree.models}/{NAME}/config.pbtxt", "QUEUE_DELAY_US=250", *COMMON)
    config = tc.parse_config(tree.models / NAME / "config.pbtxt")
    assert config.dynamic_batching.max_queue_delay_microseconds == 250 and policy(built) == {"specific": [1]}

    with Traffic(server, images[0]) as traffic:
        result = make_serving(built, server, "rollback")
    assert not traffic.errors and traffic.ok > 0, traffic.errors[:3]
    print(f"\nrequests answered during promote + rollback: none failed ({traffic.ok} during the rollback)")
    assert policy(built) == {"specific": [1, 2]} and served(server) == [1, 2], result.stdout
    for ours, theirs in zip(answer(client, images), predictions[2]):
        assert_same(ours, theirs)
    history = json.loads((tree.models / NAME / "rollout.json").read_text())["history"]
    assert [h["action"] for h in history] == ["initial", "rollback"]
    assert [h["policy"] for h in history] == [{"specific": [1]}, {"specific": [1, 2]}]


def test_a_version_that_failed_validation_is_refused(built, server):
    """Version 3 from the first checkpoint, validated with an impossible score tolerance (1e-9): its
    validation genuinely fails; promote refuses it and leaves config and server as they were."""
    tree = built["tree"]
    result = tree.make("version", f"MODEL={NAME}", "VERSION=next", f"CHECKPOINT={built['checkpoints'][1]}",
                       "SCORE_TOL=1e-9", f"VERSION_REPORT={built['reports']}/v3.json", *COMMON)
    assert "FAILED validation" in result.stderr
    record = json.loads((tree.models / NAME / "3" / "version.json").read_text())
    assert record["validation"]["run"] and record["validation"]["passed"] is False
    before = (tree.models / NAME / "config.pbtxt").read_text()
    refused = make_serving(built, server, "promote", "VERSION=3", check=False)
    assert refused.returncode != 0
    errors = [line for line in refused.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and "failed validation" in errors[0] and "FORCE=1" in errors[0], refused.stderr
    assert (tree.models / NAME / "config.pbtxt").read_text() == before and served(server) == [1, 2]


def test_a_version_triton_cannot_load_is_refused_even_forced_and_the_server_stays_ready(
        built, server, client, samples, predictions):
    """Version 4 (second checkpoint, VALIDATE=0) whose model.onnx is then damaged: promote refuses it
    (SHA-256 differs from its sidecar), and FORCE=1 refuses it too, before config.pbtxt or Triton is
    touched (issue 21, item 7): Triton r24.10 keeps a version whose load failed in its repository index as
    UNAVAILABLE for good (only a successful load of that version replaces the record), so with
    --strict-readiness=true /v2/health/ready would answer 400 until a restart. Versions 1 and 2 keep
    serving and the server stays ready."""
    tree = built["tree"]
    tree.make("version", f"MODEL={NAME}", "VERSION=next", f"CHECKPOINT={built['checkpoints'][2]}", "VALIDATE=0",
              *COMMON)
    onnx_path = tree.models / NAME / "4" / "model.onnx"
    data = bytearray(onnx_path.read_bytes())
    onnx_path.write_bytes(bytes(data[: len(data) // 3]))  # truncated: not a loadable model any more
    before = (tree.models / NAME / "config.pbtxt").read_text()
    refused = make_serving(built, server, "promote", "VERSION=4", check=False)
    assert refused.returncode != 0 and "SHA-256 differs" in refused.stderr, refused.stderr
    assert server.ready()
    forced = make_serving(built, server, "promote", "VERSION=4", "KEEP_VERSIONS=2", "FORCE=1", check=False)
    assert forced.returncode != 0
    # the server is ready (strict readiness) and its index never saw version 4
    assert server.ready(), forced.stderr
    errors = [line for line in forced.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and "Triton cannot load it" in errors[0] and "FORCE=1 does not skip" in errors[0], \
        forced.stderr
    print(f"\n{errors[0]}")
    assert (tree.models / NAME / "config.pbtxt").read_text() == before
    index = ts._post(f"http://{server.http_url}/v2/repository/index", {})[1]
    assert [e["version"] for e in json.loads(index) if e["name"] == NAME] == ["1", "2"], index
    assert served(server) == [1, 2]
    _, images = samples
    for version in (1, 2):
        for ours, theirs in zip(answer(client, images, version), predictions[version]):
            assert_same(ours, theirs)
    for ours, theirs in zip(answer(client, images), predictions[2]):
        assert_same(ours, theirs)
    listing = make_serving(built, server, "versions")
    assert "Triton serves [1, 2] now" in listing.stdout and "FAILED" in listing.stdout


# ---- pure parts ----------------------------------------------------------------------------------
def test_promote_policy_keeps_older_versions_only():
    assert vs.promote_policy(3, [1, 2, 3, 4], keep=1) == {"specific": [3]}
    assert vs.promote_policy(3, [1, 2, 3, 4], keep=2) == {"specific": [2, 3]}
    assert vs.promote_policy(3, [1, 2, 3, 4], keep=5) == {"specific": [1, 2, 3]}
    assert vs.promote_policy(3, [1, 2, 3], keep=2, usable=lambda v: v != 2) == {"specific": [1, 3]}
    assert vs.newest_served({"specific": [1, 3]}, [1, 2, 3, 4]) == 3
    assert vs.newest_served({"latest": 2}, [1, 2, 5]) == 5 and vs.served_versions({"latest": 2}, [1, 2, 5]) == [2, 5]


def test_compare_detections_counts_matches_and_score_shift():
    a = pp.Detections(np.array([[0, 0, 10, 10], [20, 20, 30, 30], [50, 50, 60, 60]], np.float32),
                      np.array([0.9, 0.8, 0.7], np.float32), np.array([1, 2, 3]))
    b = pp.Detections(np.array([[1, 0, 11, 10], [20, 20, 30, 30], [80, 80, 90, 90]], np.float32),
                      np.array([0.95, 0.6, 0.5], np.float32), np.array([1, 5, 3]))
    got = ab_compare.compare_detections(a, b)
    # box 1: IoU 9/11 >= 0.5 same class -> matched; box 2: other class; box 3: no overlap
    assert (got["a"], got["b"], got["matched"], got["only_a"], got["only_b"]) == (3, 3, 1, 2, 2)
    assert got["mean_score_shift"] == pytest.approx(0.05)


def test_make_version_rejects_bad_versions(tmp_path):
    tree = Tree(tmp_path)
    for bad in ("0", "x", "2a"):
        result = tree.make("-n", "version", "MODEL=m", f"VERSION={bad}", check=False)
        assert result.returncode != 0 and "is not next or a version number" in result.stderr
    result = tree.make("-n", "version", "MODEL=m", "VERSION=next", f"CHECKPOINT={tmp_path}/missing.pt", check=False)
    assert result.returncode != 0 and "missing.pt not found" in result.stderr
    result = tree.make("-n", "version", "MODEL=m_end2end", check=False)
    assert result.returncode != 0 and "not a Track A model folder" in result.stderr
    result = tree.make("promote", "MODEL=m", check=False)
    assert result.returncode == 2 and "usage: make promote" in result.stderr


def test_version_next_counts_from_the_highest_folder(tmp_path):
    tree = Tree(tmp_path)
    for name in ("1", "2", "10", "notes"):
        (tree.models / "m" / name).mkdir(parents=True)
    out = tree.make("-n", "version", "MODEL=m", "VERSION=next", "VALIDATE=0").stdout
    assert f"--out {tree.root}/build/versions/m/11/model.onnx" in out and "--version 11" in out
    assert vs.next_version(tree.models / "m") == 11
