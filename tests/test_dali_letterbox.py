"""Track D letterbox: the DALI pipeline (CPU operators here) against ultralytics' ``LetterBox``.

The pipeline definition is the one Triton autoserializes (``1/dali.py``), built here with
``device="cpu"``; the GPU variant of the same definition is checked by ``scripts/bench_dali_gpu.py``.
Reference: ultralytics' ``LetterBox`` applied to ``cv2.imread`` of the same file (BGR -> RGB, CHW, /255).
PNG inputs are decoded identically by both sides, so they carry the strict check (within one grey
level, the difference being cv2's fixed-point bilinear weights); JPEG decoders may differ, so the
JPEG histogram is reported and checked separately.
"""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]

dali = pytest.importorskip("nvidia.dali", reason="nvidia-dali-cuda130 (requirements.txt) is not installed")
LetterBox = pytest.importorskip("ultralytics.data.augment").LetterBox

import letterbox_check as lc  # scripts/letterbox_check.py
from conftest import numpy_dtype
from yolo_triton import dali_pipeline as dp
from yolo_triton import ensemble as ens
from yolo_triton import postprocess as pp
from yolo_triton import settings
from yolo_triton import triton_config as tc

IMGSZ = int(settings.defaults()["IMGSZ"])


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> dict[str, Path]:
    paths = lc.sample_images(tmp_path_factory.mktemp("letterbox_images"))
    tie = tmp_path_factory.mktemp("tie")
    # Exact rounding ties: with h = 2*IMGSZ, r = 1/2 and w*r = 2.5 / 3.5; Python's round gives 2 / 4.
    for w in (5, 7):
        img = cv2.resize(cv2.imread(str(paths["bus.png"])), (w, 2 * IMGSZ), interpolation=cv2.INTER_AREA)
        path = tie / f"tie_{w}x{2 * IMGSZ}.png"
        cv2.imwrite(str(path), img)
        paths[path.name] = path
    return paths


def run_cpu(paths: list[Path], imgsz: int = IMGSZ):
    pipe = dp.letterbox_pipeline(imgsz, "cpu", batch_size=len(paths), num_threads=2)
    pipe.build()
    return lc.run_pipeline(pipe, [np.fromfile(p, np.uint8) for p in paths], dp.INPUT_NAME)


@pytest.fixture(scope="module")
def cpu_results(images):
    names = sorted(images)
    out, info = run_cpu([images[n] for n in names])
    return {n: (out[i], info[i]) for i, n in enumerate(names)}


def _report(title: str, hist: dict) -> None:
    print(f"\n{title}: |diff| in grey levels -> count: {json.dumps(hist)}")


def test_names_agree_between_pipeline_and_config_writer():
    assert (ens.INPUT_NAME, (ens.OUTPUT_IMAGES, ens.OUTPUT_LETTERBOX)) == (dp.INPUT_NAME, dp.OUTPUT_NAMES)
    assert ens.LETTERBOX_LEN == len(dp.LETTERBOX_FIELDS)


def test_numpy_reference_is_ultralytics(images):
    """postprocess.letterbox (the reference on machines without ultralytics, e.g. the GPU run) is bit-exact."""
    for name, path in images.items():
        bgr = cv2.imread(str(path))
        assert np.array_equal(pp.letterbox(bgr, IMGSZ)[0], lc.reference(path, IMGSZ)), name


def test_png_within_one_grey_level_of_ultralytics(images, cpu_results):
    hists = {}
    for name in sorted(images):
        if not name.endswith(".png"):
            continue
        out, _ = cpu_results[name]
        assert out.shape == (3, IMGSZ, IMGSZ) and out.dtype == np.float32, name
        hists[name] = lc.diff_histogram(out, lc.reference(images[name], IMGSZ))
        assert max(hists[name]) <= 1, (name, hists[name])
    _report(f"PNG, DALI CPU vs ultralytics ({len(hists)} images)", lc.merge(hists.values()))
    assert {"grey_zidane.png", "rgba_bus.png", "tiny_7x5.png", "thin_1500x3.png"} <= set(hists)


def test_jpeg_histogram_against_ultralytics(images, cpu_results):
    """DALI's CPU decoder (libjpeg-turbo via nvImageCodec) vs OpenCV's: reported; bounded loosely."""
    hists = {name: lc.diff_histogram(cpu_results[name][0], lc.reference(images[name], IMGSZ))
             for name in sorted(images) if name.endswith(".jpg")}
    total = lc.merge(hists.values())
    _report(f"JPEG, DALI CPU vs ultralytics ({len(hists)} images)", total)
    within_one = sum(n for level, n in total.items() if level <= 1) / sum(total.values())
    assert within_one >= 0.999, total


def test_letterbox_output_is_ultralytics_geometry(images, cpu_results):
    """The second output holds ultralytics' exact ratio and padding (float64), for every image."""
    for name, path in images.items():
        h, w = cv2.imread(str(path)).shape[:2]
        expected, _ = pp.letterbox_params(h, w, IMGSZ)
        (info,) = ens.letterbox_infos(cpu_results[name][1])
        assert info == expected, name
    # the tie images: round-half-to-even on the resized width
    assert ens.letterbox_infos(cpu_results[f"tie_5x{2 * IMGSZ}.png"][1])[0].new_w == 2
    assert ens.letterbox_infos(cpu_results[f"tie_7x{2 * IMGSZ}.png"][1])[0].new_w == 4


@pytest.mark.parametrize("imgsz", [320, 960])
def test_other_image_sizes(images, imgsz):
    names = ["bus.png", "odd_landscape_811x457.png", "tiny_7x5.png", f"tie_5x{2 * IMGSZ}.png"]
    outs, infos = run_cpu([images[n] for n in names], imgsz)
    for name, out, info in zip(names, outs, infos):
        ref = lc.reference(images[name], imgsz)
        assert out.shape == (3, imgsz, imgsz)
        assert max(lc.diff_histogram(out, ref)) <= 1, name
        assert ens.letterbox_infos(info)[0] == pp.letterbox_params(*cv2.imread(str(images[name])).shape[:2], imgsz)[0]


def test_boxes_map_back_through_the_letterbox_output(images, cpu_results):
    """A box drawn in original pixels, moved into network pixels, comes back through the pipeline's info."""
    info = ens.letterbox_infos(cpu_results["odd_portrait_333x517.png"][1])[0]
    original = np.array([[10.0, 20.0, 300.0, 500.0]], np.float32)
    net = original.copy()
    net[:, [0, 2]] = net[:, [0, 2]] * info.gain_x + info.pad_x
    net[:, [1, 3]] = net[:, [1, 3]] * info.gain_y + info.pad_y
    num = np.array([[1]], np.int32)
    boxes = np.zeros((1, 100, 4), np.float32)
    boxes[0, 0] = net[0]
    (dets,) = pp.postprocess_end2end(num, boxes, np.ones((1, 100), np.float32), np.zeros((1, 100), np.int32), [info])
    np.testing.assert_allclose(dets.boxes, original, atol=1e-3)
    batch = ens.letterbox_infos(np.stack([cpu_results["bus.png"][1], cpu_results["zidane.png"][1]]))
    assert [(i.orig_h, i.orig_w) for i in batch] == [(1080, 810), (720, 1280)]
    with pytest.raises(ValueError, match="letterbox"):
        ens.letterbox_infos(np.zeros((2, 3)))


def test_huge_image(tmp_path):
    """An 8K JPEG (7680x4320) is letterboxed correctly, not refused."""
    bus = cv2.imread(str(lc.ultralytics_assets() / "bus.jpg"))
    path = tmp_path / "huge_7680x4320.png"
    cv2.imwrite(str(path), cv2.resize(bus, (7680, 4320), interpolation=cv2.INTER_LINEAR),
                [cv2.IMWRITE_PNG_COMPRESSION, 1])
    (out,), (info,) = run_cpu([path])
    assert max(lc.diff_histogram(out, lc.reference(path, IMGSZ))) <= 1
    assert ens.letterbox_infos(info)[0] == pp.letterbox_params(4320, 7680, IMGSZ)[0]


@pytest.mark.parametrize("payload", [b"this is not an image", b"", b"\x89PNG\r\n\x1a\n" + b"\0" * 64],
                         ids=["text", "empty", "png-header-only"])
def test_bad_bytes_raise_an_error_not_a_crash(images, payload):
    """The pipeline reports an error naming the decoder; the process survives (Triton returns it to the client)."""
    good = np.fromfile(images["bus.jpg"], np.uint8)
    pipe = dp.letterbox_pipeline(IMGSZ, "cpu", batch_size=2, num_threads=2)
    pipe.build()
    with pytest.raises(RuntimeError, match="decoders.image|peek_image_shape"):
        lc.run_pipeline(pipe, [np.frombuffer(payload, np.uint8), good], dp.INPUT_NAME)
    out, _ = run_cpu([images["bus.jpg"]])  # a fresh pipeline in the same process still works
    assert out[0].shape == (3, IMGSZ, IMGSZ)


def test_bad_arguments():
    with pytest.raises(ValueError, match="device"):
        dp.letterbox_pipeline(IMGSZ, "tpu", 1, num_threads=2)
    with pytest.raises(ValueError, match="positive integer"):
        dp.autoserialize_source(0, 8, 2, "cpu")


# ---- the Triton model directory and autoserialization -----------------------------------------------
def _import(path: Path):
    spec = importlib.util.spec_from_file_location(f"dali_model_{abs(hash(path))}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_preprocess_model_dir_gpu(tmp_path):
    """What Triton gets: config through the schema (backend dali) and a dali.py with one @autoserialize GPU pipeline."""
    max_batch = max(settings.max_batch_for_size(s) for s in settings.size_names())
    model_dir = ens.write_preprocess_model(tmp_path, IMGSZ, max_batch, 100)
    assert model_dir.name == f"preprocess_letterbox_{IMGSZ}"
    assert sorted(p.name for p in (model_dir / "1").iterdir()) == ["dali.py"]
    config = tc.parse_config(model_dir / "config.pbtxt")
    assert (config.backend, config.platform, config.max_batch_size) == ("dali", "", max_batch)
    assert [(i.name, numpy_dtype(i.data_type), list(i.dims)) for i in config.input] == [("encoded", "uint8", [-1])]
    assert [(o.name, numpy_dtype(o.data_type), list(o.dims)) for o in config.output] == [
        ("images", "float32", [3, IMGSZ, IMGSZ]), ("letterbox", "float64", [5])]
    source = (model_dir / "1" / "dali.py").read_text()
    from nvidia.dali._utils.autoserialize import _discover_autoserialize

    found = _discover_autoserialize(_import(model_dir / "1" / "dali.py"), visited=[])  # what Triton's DALI looks for
    assert [f.__name__ for f in found] == [f"yolo_letterbox_{IMGSZ}"]
    assert f'letterbox_graph(encoded, {IMGSZ}, "gpu", "float32")' in source
    assert f"batch_size={max_batch}," in source and "device_id=0," in source
    # a stale model.dali would win over dali.py in dali_backend's load order: the writer removes it
    (model_dir / "1" / "model.dali").write_bytes(b"old")
    ens.write_preprocess_model(tmp_path, IMGSZ, max_batch, 100)
    assert not (model_dir / "1" / "model.dali").exists()


def test_autoserialize_roundtrip_cpu(tmp_path, images):
    """DALI's own autoserialize on the generated dali.py (CPU variant) -> model.dali -> deserialize -> same output."""
    from nvidia.dali import Pipeline
    from nvidia.dali._utils.autoserialize import invoke_autoserialize

    model_dir = ens.write_preprocess_model(tmp_path, IMGSZ, 4, 100, device="cpu")
    serialized = model_dir / "1" / "model.dali"
    invoke_autoserialize(_import(model_dir / "1" / "dali.py"), str(serialized))
    assert 0 < serialized.stat().st_size < 200_000
    pipe = Pipeline.deserialize(filename=str(serialized), batch_size=2, num_threads=2, device_id=None)
    pipe.build()
    paths = [images["zidane.jpg"], images["rgba_bus.png"]]
    loaded = lc.run_pipeline(pipe, [np.fromfile(p, np.uint8) for p in paths], dp.INPUT_NAME)
    direct = run_cpu(paths)
    for a, b in zip(loaded[0] + loaded[1], direct[0] + direct[1]):
        assert np.array_equal(a, b)


def test_uint8_images_for_an_input_dtype_uint8_detector(tmp_path, images):
    """INPUT_DTYPE=uint8: the generated model (config and autoserialized dali.py) emits the letterboxed CHW
    pixels as uint8, without the / 255; the float32 pipeline's images are exactly those pixels / 255."""
    from nvidia.dali import Pipeline
    from nvidia.dali._utils.autoserialize import invoke_autoserialize

    model_dir = ens.write_preprocess_model(tmp_path, IMGSZ, 4, 100, device="cpu", input_dtype="uint8")
    config = tc.parse_config(model_dir / "config.pbtxt")
    assert [(o.name, numpy_dtype(o.data_type), list(o.dims)) for o in config.output] == [
        ("images", "uint8", [3, IMGSZ, IMGSZ]), ("letterbox", "float64", [5])]
    serialized = model_dir / "1" / "model.dali"
    invoke_autoserialize(_import(model_dir / "1" / "dali.py"), str(serialized))
    pipe = Pipeline.deserialize(filename=str(serialized), batch_size=3, num_threads=2, device_id=None)
    pipe.build()
    paths = [images["zidane.jpg"], images["rgba_bus.png"], images["bus.png"]]
    pixels, boxes = lc.run_pipeline(pipe, [np.fromfile(p, np.uint8) for p in paths], dp.INPUT_NAME)
    floats, float_boxes = run_cpu(paths)
    for u8, f32, a, b in zip(pixels, floats, boxes, float_boxes):
        assert u8.dtype == np.uint8 and u8.shape == (3, IMGSZ, IMGSZ)
        assert np.array_equal(pp.to_model_input(u8, "float32"), f32) and np.array_equal(a, b)
    with pytest.raises(ens.EnsembleError, match="INPUT_DTYPE"):
        ens.write_preprocess_model(tmp_path / "bad", IMGSZ, 4, 100, device="cpu", input_dtype="float16")


def test_cli_defaults_write_the_model(tmp_path, restore_logging):
    import create_dali_letterbox_pipeline as cli

    assert cli.main(["--model-dir", str(tmp_path)]) == 0
    config = tc.parse_config(tmp_path / f"preprocess_letterbox_{IMGSZ}" / "config.pbtxt")
    assert config.max_batch_size == max(settings.max_batch_for_size(s) for s in settings.size_names())
    assert cli.main(["--model-dir", str(tmp_path), "--imgsz", "0"]) == 1  # refused, one line


def test_a_comparison_without_the_reference_refuses(tmp_path, monkeypatch):
    """Without ultralytics the check must not quietly compare the NumPy port with itself."""
    image = tmp_path / "bus.png"
    cv2.imwrite(str(image), cv2.imread(str(lc.ultralytics_assets() / "bus.jpg")))
    ours = lc.reference(image, IMGSZ, "numpy")  # named explicitly: allowed
    assert lc.diff_histogram(ours, lc.reference(image, IMGSZ)).keys() <= {0, 1}
    monkeypatch.setattr(lc, "LetterBox", None)
    with pytest.raises(RuntimeError, match="LetterBox .*missing"):
        lc.reference(image, IMGSZ)
