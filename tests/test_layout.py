"""The Makefile's pattern rules and yolo_triton.settings spell the same model-repository layout."""
from __future__ import annotations

import re

from conftest import Tree
from yolo_triton import settings

NAME = "my_detector"


def test_make_builds_every_artefact_where_settings_says(tmp_path):
    tree = Tree(tmp_path)
    goals = [str(tree.models / settings.model_dir_name(NAME, kind) / settings.CONFIG_FILE) for kind in settings.ARTEFACTS]
    out = tree.make("-n", *goals, f"NAMES={NAME}").stdout
    written = {
        "onnx": re.findall(r"export_onnx\.py .*?--out (\S+)", out),
        "end2end": re.findall(r"add_nms\.py .*?--out (\S+)", out),
        "plans": re.findall(r"build_engine\.py .*?--plan (\S+)", out),
        "configs": re.findall(r"write_config\.py --artefact (\S+)", out),
    }
    path = {kind: str(settings.artefact_path(tree.models, NAME, kind)) for kind in settings.ARTEFACTS}
    assert written["onnx"] == [path["onnx"]] and written["end2end"] == [path["end2end"]]
    assert sorted(written["plans"]) == sorted([path["trt"], path["trt_end2end"]])
    assert sorted(written["configs"]) == sorted(path.values())


def test_make_knows_the_dali_model_and_the_ensemble_by_their_settings_names(tmp_path):
    tree = Tree(tmp_path)
    imgsz = int(settings.defaults()["IMGSZ"])
    preprocess = tree.models / settings.preprocess_model_name(imgsz) / settings.CONFIG_FILE
    out = tree.make("-n", str(preprocess)).stdout
    assert "create_dali_letterbox_pipeline.py" in out and f"--imgsz {imgsz}" in out
    ensemble = tree.models / settings.ensemble_name(NAME) / settings.CONFIG_FILE
    out = tree.make("-n", str(ensemble), f"NAMES={NAME}").stdout
    assert re.search(rf"create_ensembles\.py --names {NAME} ", out)
