"""Client helpers that need no server: ensemble discovery from configs, image paths, drawing paths.
The client against the real server and the real ONNX Runtime backend: tests/test_served_repository.py."""
from __future__ import annotations

from pathlib import Path

import pytest

from yolo_triton import client as tc

END2END_OUTPUTS = ("num_dets", "det_boxes", "det_scores", "det_classes")


class _ConfigOnlyClientFake:
    """FAKE client answering get_model_config from dicts (what HTTP returns), for ensemble discovery."""

    def __init__(self, configs):
        self.configs = configs

    def get_model_config(self, name):
        return self.configs[name]


def test_ensemble_input_size_comes_from_its_detector_step():
    fp32 = {"name": "images", "data_type": "TYPE_FP32", "dims": [3, 416, 416]}
    fake = _ConfigOnlyClientFake({
        "ens": {"name": "ens", "platform": "ensemble", "max_batch_size": 8,
                "input": [{"name": "IMAGE_BYTES", "data_type": "TYPE_UINT8", "dims": [-1]}],
                "output": [{"name": n, "data_type": "TYPE_FP32", "dims": [1]} for n in END2END_OUTPUTS],
                "ensemble_scheduling": {"step": [{"model_name": "pre", "model_version": -1},
                                                 {"model_name": "det", "model_version": -1}]}},
        "pre": {"name": "pre", "max_batch_size": 8,
                "input": [{"name": "IMAGE_BYTES", "data_type": "TYPE_UINT8", "dims": [-1]}]},
        "det": {"name": "det", "max_batch_size": 8, "input": [fp32]},
    })
    served = tc.describe_model(fake, "ens")
    assert (served.kind, served.imgsz, served.steps) == (tc.KIND_ENCODED, 416, ("pre", "det"))


# ---- pure helpers (no server) ---------------------------------------------------------------------
def test_image_paths_expand_directories_and_refuse_missing(tmp_path, sample_images):
    sample_paths = sample_images
    for path in sample_paths:
        (tmp_path / path.name).write_bytes(path.read_bytes())
    (tmp_path / "notes.txt").write_text("not an image")
    assert tc.image_paths([tmp_path]) == sorted(tmp_path / p.name for p in sample_paths)
    with pytest.raises(tc.ClientError, match="not found"):
        tc.image_paths([tmp_path / "missing.jpg"])


def test_draw_paths():
    out = Path("out/pic.png")
    assert tc.draw_paths(out, [Path("a/bus.jpg")]) == [out]
    assert tc.draw_paths(out, [Path("a/bus.jpg"), Path("b/z.jpg")]) == [Path("out/pic_bus.png"),
                                                                         Path("out/pic_z.png")]
