"""Every YOLO task served for real: segment, pose, OBB and classify (YOLO11, YOLOv8, YOLO26) through the
same Make graph, the REAL tritonserver and Triton's ONNX Runtime backend (../shared/triton), over HTTP and gRPC,
against ultralytics' own ``predict`` on the same untrained checkpoints (``make scratch``: outputs varied).

What is real: ``make`` (scratch checkpoints, Track A and end2end ONNX, configs with INSTANCE_KIND=cpu),
the server with the compose flags, the client library and command line, ultralytics' predictor and its
own Triton client (``YOLO("http://host:port/<model>")``), ultralytics' sample images. Nothing stands in.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import TASK_ARCHS, TASK_IMGSZ, skip_without_real_triton, task_model_name as name_of
from yolo_triton import client as yc
from yolo_triton import triton_server as ts
from yolo_triton.settings import defaults
from yolo_triton.task_base import Classification, NmsParams
from yolo_triton.tasks import for_task
from yolo_triton.validate_tasks import TASK_TOLERANCES

import triton_client as client_script  # scripts/triton_client.py (pytest's pythonpath)

pytestmark = pytest.mark.slow
IMGSZ = TASK_IMGSZ
D = defaults()
PARAMS = NmsParams(float(D["CONF"]), float(D["IOU"]), int(D["TOPK"]), "ultralytics", False)
TOL = TASK_TOLERANCES["fp32"]
PROTOCOLS = ("http", "grpc")
ARCHS = TASK_ARCHS


@pytest.fixture(scope="module")
def built(task_tree):
    skip_without_real_triton()
    return task_tree


@pytest.fixture(scope="module")
def server(built, tmp_path_factory):
    srv = ts.start_server(built.models, tmp_path_factory.mktemp("triton_tasks"))
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def clients(server):
    opened = {p: yc.connect(server.url(p), p) for p in PROTOCOLS}
    yield opened
    for client in opened.values():
        client.close()


@pytest.fixture(scope="module")
def samples():
    import cv2
    from ultralytics.utils import ASSETS

    paths = [Path(ASSETS) / "bus.jpg", Path(ASSETS) / "zidane.jpg"]
    return paths, [cv2.imread(str(p)) for p in paths]


@pytest.fixture(scope="module")
def references(built, samples):
    """ultralytics' predict per architecture on the samples (the task's own reference): ``(arch, False)`` the
    one-to-many head and its NMS (what Track A serves), ``(arch, True)`` the NMS-free one-to-one head
    (predict with nms=False; what an NMS=free end2end model serves)."""
    from ultralytics import YOLO

    _, images = samples
    found = {}
    for arch, (task, nms) in ARCHS.items():
        yolo = YOLO(str(built.weights / f"{name_of(arch)}.pt"))
        for one2one in (False, True) if nms == "free" else (False,):
            yolo.overrides["nms"] = False if one2one else None
            found[arch, one2one] = for_task(task).reference(yolo, images, IMGSZ, PARAMS)
    return found


def test_every_task_model_is_ready(server):
    expected = {name_of(a) for a in ARCHS} | {f"{name_of(a)}_end2end" for a, (_, nms) in ARCHS.items() if nms}
    states = server.model_states()
    assert set(states) == expected, set(states) ^ expected
    assert all(s.get("state") == "READY" for s in states.values()), states
    assert server.ready()


def test_the_references_are_varied(references):
    """Untrained checkpoints: the comparisons below prove something only if there is something to compare."""
    for arch, (task, _) in ARCHS.items():
        results = references[arch, False]
        if task == "classify":
            top = [r.top(5) for r in results]
            assert all(p[0] > 0.05 and p[0] > p[4] + 1e-3 for _, p in top), (arch, top)
            continue
        counts = [len(r) for r in results]
        assert sum(counts) >= 4, (arch, counts)
        first = results[int(np.argmax(counts))]
        if task == "segment":
            fill = first.masks.reshape(len(first), -1).mean(1)
            assert (fill > 0).all() and (fill < 0.9).all() and np.ptp(fill) > 1e-3, (arch, fill)
        if task == "pose":
            conf = first.keypoints[..., 2]
            assert conf.std() > 0.05, (arch, conf)
        if task == "obb":
            assert np.ptp(first.xywhr[:, 4]) > 0.05, (arch, first.xywhr)


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("arch", list(ARCHS))
def test_track_a_equals_ultralytics_predict(clients, samples, references, arch, protocol):
    task, _ = ARCHS[arch]
    _, images = samples
    served = yc.describe_model(clients[protocol], name_of(arch))
    assert served.task == task
    results = yc.infer(clients[protocol], served, images, PARAMS.conf, PARAMS.iou, PARAMS.topk, "ultralytics")
    assert for_task(task).compare(references[arch, False], results, TOL, PARAMS) == []


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("arch", [a for a, (_, nms) in ARCHS.items() if nms])
def test_end2end_equals_its_reference(clients, samples, references, arch, protocol):
    """NMS=ultralytics / free: the graph's NMS is predict's, so predict is the reference. NMS=onnx is
    multi-label (as EfficientNMS): its reference is the served Track A output decoded with those semantics."""
    task, nms = ARCHS[arch]
    _, images = samples
    client = clients[protocol]
    served = yc.describe_model(client, f"{name_of(arch)}_end2end")
    assert (served.kind, served.task) == (yc.KIND_END2END, task)
    results = yc.infer(client, served, images)
    if nms == "onnx":
        expected = yc.infer(client, name_of(arch), images, PARAMS.conf, PARAMS.iou, PARAMS.topk, "onnx")
        assert for_task(task).compare(expected, results, TOL, NmsParams(PARAMS.conf, PARAMS.iou, PARAMS.topk, "onnx")
                                      ) == []
    else:
        assert for_task(task).compare(references[arch, nms == "free"], results, TOL, PARAMS) == []


@pytest.mark.parametrize("arch", list(ARCHS))
def test_ultralytics_own_triton_client_reads_what_we_serve(server, samples, references, arch):
    """``YOLO("http://host:port/<model>", task=...)``: ultralytics reads names, task, stride, imgsz and
    kpt_shape from our config's ``metadata`` and post-processes our Track A outputs itself."""
    from ultralytics import YOLO

    task, _ = ARCHS[arch]
    paths, images = samples
    remote = YOLO(f"http://{server.url('http')}/{name_of(arch)}", task=task)
    theirs = for_task(task).reference(remote, images, IMGSZ, PARAMS)
    assert for_task(task).compare(references[arch, False], theirs, TOL, PARAMS) == []
    names = remote.predict(images[0], imgsz=IMGSZ, verbose=False)[0].names
    assert names[0] != "class0" and len(names) == len(built_names(server, arch)), names


def built_names(server, arch: str) -> list[str]:
    return (server.model_repository / name_of(arch) / "labels.txt").read_text().split("\n")[:-1]


@pytest.mark.parametrize("arch", ["yolo11n-seg", "yolo11n-pose", "yolo26n-obb", "yolo11n-cls"])
def test_client_json_and_pictures(server, built, samples, tmp_path, arch, capsys):
    """``scripts/triton_client.py --json --draw``: the documented schema, per image path."""
    task, _ = ARCHS[arch]
    paths, images = samples
    out_json, out_png = tmp_path / "out.json", tmp_path / "out.png"
    code = client_script.main(["--model", name_of(arch), "--url", server.url("http"), "--images", *map(str, paths),
                               "--json", str(out_json), "--draw", str(out_png), "--model-repository",
                               str(built.models), "--imgsz", str(IMGSZ)])
    assert code == 0
    data = json.loads(out_json.read_text())
    assert sorted(data) == sorted(map(str, paths))
    for path, image in zip(paths, images):
        entry = data[str(path)]
        if task == "classify":
            assert [set(row) for row in entry["top5"]] == [{"class_id", "label", "score"}] * 5
            continue
        assert all({"class_id", "label", "score", "box"} <= set(row) for row in entry)
        if not entry:  # an image without instances (the other one has some: checked below)
            continue
        row = entry[0]
        if task == "segment":
            h, w = image.shape[:2]
            assert row["mask"]["size"] == [h, w] and sum(row["mask"]["counts"]) == h * w
        if task == "pose":
            assert len(row["keypoints"]) == 17 and all(len(k) == 3 for k in row["keypoints"])
        if task == "obb":
            assert len(row["obb"]["xywhr"]) == 5 and len(row["obb"]["corners"]) == 4
    if task != "classify":
        assert any(data[str(p)] for p in paths), data
    for path in paths:
        drawn = out_png.with_name(f"out_{path.stem}.png")
        assert drawn.is_file() and drawn.stat().st_size > 10_000


@pytest.mark.parametrize("arch", ["yolo11n-seg", "yolo11n-pose", "yolo26n-obb"])
def test_track_d_ensemble_of_a_task_passes_its_outputs_through(built, tmp_path, arch):
    """Track D's ensemble config (ENSEMBLE_DETECTOR=end2end) from a task's end2end config: every detector
    output (the task's extras too) and the yolo_task parameter reach the client."""
    import shutil

    from yolo_triton import ensemble as ens
    from yolo_triton import triton_config as tc
    from yolo_triton.settings import END2END_OUTPUTS, END2END_TASK_OUTPUTS, TASK_PARAMETER

    task, _ = ARCHS[arch]
    detector = f"{name_of(arch)}_end2end"
    shutil.copytree(built.models / detector, tmp_path / detector)
    ens.write_preprocess_model(tmp_path, IMGSZ, 8, 100, device="cpu")
    config = tc.parse_config(ens.write_ensemble(tmp_path, name_of(arch), IMGSZ, "end2end"))
    outputs = [o.name for o in config.output]
    assert outputs == [*END2END_OUTPUTS, *END2END_TASK_OUTPUTS[task], "letterbox"]
    assert json.loads(config.parameters[TASK_PARAMETER].string_value)["task"] == task
    served = yc.served_task(config, [(o.name, "FP32", tuple(o.dims)) for o in config.output])[0]
    assert served.task == task
