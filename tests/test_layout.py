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


def test_ensemble_detector_names_the_step_make_chains(tmp_path):
    """ENSEMBLE_DETECTOR: the plan (default) or the end2end ONNX; the step script is told which, and with
    end2end no plan is on the way to the ensemble."""
    tree = Tree(tmp_path)
    ensemble = str(tree.models / settings.ensemble_name(NAME) / settings.CONFIG_FILE)
    plan = str(settings.artefact_path(tree.models, NAME, "trt_end2end"))
    default = tree.make("-n", ensemble, f"NAMES={NAME}").stdout
    assert re.search(rf"create_ensembles\.py --names {NAME} .*--detector trt_end2end\b", default)
    assert re.search(rf"build_engine\.py .*--plan {re.escape(plan)}", default)
    onnx = tree.make("-n", ensemble, f"NAMES={NAME}", ENSEMBLE_DETECTOR="end2end").stdout
    assert re.search(rf"create_ensembles\.py --names {NAME} .*--detector end2end\b", onnx)
    assert "build_engine.py" not in onnx
    end2end_onnx = re.escape(str(settings.artefact_path(tree.models, NAME, "end2end")))
    assert re.search(rf"write_config\.py --artefact {end2end_onnx} ", onnx)  # the end2end config is on the way
    assert "detector=end2end" in onnx  # its parameter stamp


def test_ensemble_detector_refusals_are_one_line(tmp_path):
    tree = Tree(tmp_path)
    bad = tree.make("-n", "dali", f"NAMES={NAME}", check=False, ENSEMBLE_DETECTOR="plan")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1
    assert "ENSEMBLE_DETECTOR=plan is not trt_end2end (the TensorRT plan) or end2end" in bad.stderr
    # a Triton without GPUs: Track D is refused with either detector, each for its own reason
    plan = tree.make("-n", "dali", f"NAMES={NAME}", check=False, INSTANCE_KIND="cpu")
    onnx = tree.make("-n", "dali", f"NAMES={NAME}", check=False, INSTANCE_KIND="cpu", ENSEMBLE_DETECTOR="end2end")
    assert plan.returncode == onnx.returncode == 2
    assert "dali needs TensorRT on a GPU" in plan.stderr
    assert "dali is Track D, whose DALI model decodes on a GPU (KIND_GPU)" in onnx.stderr
