"""INT8 by explicit quantization: Q/DQ nodes from NVIDIA ModelOpt, calibrated on real images.

TensorRT 10.1 deprecated implicit INT8 calibration and 11.x removed it (NVIDIA's "Migrating from
TensorRT 10.x to 11.x", docs.nvidia.com/deeplearning/tensorrt); a strongly typed build takes INT8 only
from QuantizeLinear/DequantizeLinear pairs in the graph. This module puts them there with
``modelopt.onnx.quantization.quantize`` (ModelOpt 0.47), calibrating through ONNX Runtime on the CPU,
on images letterboxed exactly as at inference time (:func:`yolo_triton.postprocess.letterbox`: ultralytics ``LetterBox(auto=False, scaleup=True)``,
BGR->RGB, /255, CHW). Without calibration images it refuses: ModelOpt would otherwise fall back to
random data, i.e. meaningless scales.
"""
from __future__ import annotations

import logging
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
import onnx

from yolo_triton.errors import StepError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
DEFAULT_MAX_IMAGES = 256
HIGH_PRECISIONS = ("fp16", "fp32")
CALIBRATION_METHODS = ("entropy", "max")  # ModelOpt's INT8 choices; entropy is TensorRT's classic default


def calibration_images(calib_dir: str | Path | None, max_images: int = DEFAULT_MAX_IMAGES) -> list[Path]:
    """Image files under ``calib_dir`` (recursive, sorted, at most ``max_images`` spread evenly)."""
    if not calib_dir:
        raise StepError("PRECISION=int8 needs calibration images: set CALIB_DIR to a folder of "
                        "representative images (a few hundred from your data)")
    root = Path(calib_dir)
    if not root.is_dir():
        raise StepError(f"CALIB_DIR={root} is not a directory; point it at a folder of representative images")
    found = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not found:
        raise StepError(f"CALIB_DIR={root} has no images ({', '.join(IMAGE_SUFFIXES)}); add a few hundred "
                        "representative images: INT8 scales are never made up")
    if max_images < 1:
        raise StepError(f"--max-images {max_images} must be >= 1")
    if len(found) > max_images:
        picks = np.linspace(0, len(found) - 1, max_images).round().astype(int)
        found = [found[i] for i in sorted(set(picks.tolist()))]
    return found


def calibration_batch(paths: list[Path], imgsz: int) -> np.ndarray:
    """``[N, 3, imgsz, imgsz]`` float32 RGB in [0, 1], letterboxed like inference."""
    import cv2  # noqa: PLC0415 - only the INT8 path needs OpenCV

    from yolo_triton.postprocess import letterbox  # noqa: PLC0415

    arrays = []
    for path in paths:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            log.warning("skipping %s: OpenCV cannot read it", path)
            continue
        arrays.append(letterbox(image, imgsz)[0])
    if not arrays:
        raise StepError(f"none of the {len(paths)} calibration images could be read; check CALIB_DIR")
    return np.stack(arrays).astype(np.float32)


def _image_input(model: onnx.ModelProto) -> onnx.ValueInfoProto:
    initializers = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if len(inputs) != 1 or len(inputs[0].type.tensor_type.shape.dim) != 4:
        raise StepError("INT8 quantization expects one NCHW image input; export the FP32 ONNX with this pipeline")
    return inputs[0]


def head_node_pattern(model: onnx.ModelProto) -> str | None:
    """Regex for the nodes of the last ultralytics module (the Detect head, ``/model.<last>/...``)."""
    indices = [int(m.group(1)) for n in model.graph.node if (m := re.match(r"/model\.(\d+)/", n.name))]
    return rf"/model\.{max(indices)}/.*" if indices else None


def quantize_onnx(fp32_path: str | Path, calib_dir: str | Path | None, imgsz: int,
                  max_images: int = DEFAULT_MAX_IMAGES, high_precision: str = "fp16",
                  method: str = "entropy") -> onnx.ModelProto:
    """Q/DQ-quantize the FP32 ONNX at ``fp32_path`` with calibration images; returns the model.

    ``high_precision`` is the type of what stays unquantized (ModelOpt's ``high_precision_dtype``):
    ``fp16`` (ModelOpt's default, INT8+FP16 like TensorRT's old ``--best``) or ``fp32``. Graph inputs
    and outputs keep their FP32 type either way.
    """
    if method not in CALIBRATION_METHODS:
        raise StepError(f"calibration method {method!r} must be one of {', '.join(CALIBRATION_METHODS)}")
    if high_precision not in HIGH_PRECISIONS:
        raise StepError(f"high precision {high_precision!r} must be one of {', '.join(HIGH_PRECISIONS)}")
    fp32_path = Path(fp32_path)
    paths = calibration_images(calib_dir, max_images)  # refuse before any heavy import
    model = onnx.load(str(fp32_path), load_external_data=False)
    image = _image_input(model)
    dims = [d.dim_value if d.HasField("dim_value") else -1 for d in image.type.tensor_type.shape.dim]
    if dims[2:] not in ([imgsz, imgsz], [-1, -1]):
        raise StepError(f"{fp32_path} takes {dims[2]}x{dims[3]} images but IMGSZ={imgsz}; re-export it")
    ops = {n.op_type for n in model.graph.node}
    if "QuantizeLinear" in ops:
        raise StepError(f"{fp32_path} is already quantized; quantize the FP32 export")
    head = head_node_pattern(model)
    del model
    data = calibration_batch(paths, imgsz)
    log.info("calibrating %s on %d images from %s (%dx%d, CPU, %s)", fp32_path, len(data),
             calib_dir, imgsz, imgsz, method)

    from modelopt.onnx.quantization import quantize  # noqa: PLC0415 - heavy import

    if not log.isEnabledFor(logging.DEBUG):
        logging.getLogger("modelopt").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="yolo-int8-") as tmp:
        # ModelOpt writes intermediate files beside its input: give it a private copy
        src = Path(tmp) / "fp32.onnx"
        shutil.copyfile(fp32_path, src)
        out = Path(tmp) / "int8.onnx"
        quantize(
            onnx_path=str(src),
            quantize_mode="int8",
            calibration_data={image.name: data},
            calibration_method=method,
            calibration_eps=["cpu"],  # ONNX Runtime CPU: no GPU or TensorRT needed to calibrate
            high_precision_dtype=high_precision,
            # The detection head (box regression, DFL, decode, class scores) stays in high precision: its
            # outputs are pixel coordinates and probabilities, where INT8 steps show directly in boxes.
            nodes_to_exclude=[head] if head else None,
            output_path=str(out),
            log_level="DEBUG" if log.isEnabledFor(logging.DEBUG) else "WARNING",
        )
        if not out.is_file():
            raise StepError("ModelOpt wrote no quantized model; rerun with -v for its log")
        quantized = onnx.load(str(out))
    count = sum(n.op_type == "QuantizeLinear" for n in quantized.graph.node)
    if count == 0:
        raise StepError("ModelOpt inserted no Q/DQ nodes; the graph has nothing INT8 can run")
    log.info("inserted %d QuantizeLinear nodes (rest in %s)", count, high_precision)
    return quantized
