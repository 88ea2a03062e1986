"""TEST DOUBLES for the served YOLO models (no TensorRT, no GPU): what a PyTriton server runs in
place of the TensorRT plans and ONNX Runtime models of the real deployment.

* :class:`EfficientNMSPlanDouble` stands in for a ``*_trt_end2end`` plan: the end2end ONNX's part
  before NMS (``yolo_triton.nms_graph.pre_nms_model``) in ONNX Runtime on the CPU, then the NumPy
  model of EfficientNMS_TRT (``yolo_triton.postprocess.efficient_nms``) with the attributes read
  from the graph's ``EfficientNMS_TRT`` node. Same I/O contract as the plan: ``images [B,3,S,S] FP32``
  -> ``num_dets [B,1] INT32, det_boxes [B,TOPK,4] FP32, det_scores [B,TOPK] FP32, det_classes [B,TOPK] INT32``.
* :class:`TrackAOnnxRunner` runs a Track A ONNX (``output0 [B,4+nc,A]``) in ONNX Runtime: what the
  Triton onnxruntime backend (Track A) or a ``*_trt`` plan (Track B) would return.
* :class:`DecodeLetterboxDouble` + :class:`EncodedEnd2EndDouble` stand in for a Track D ensemble
  (encoded bytes in, end2end outputs out), with OpenCV where DALI would decode.
* :func:`build_scratch_models` writes an UNTRAINED scratch checkpoint and exports both ONNX graphs
  with the pipeline's own functions (``yolo_triton.scratch``, ``onnx_export``, ``nms_graph``).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from yolo_triton import postprocess as pp
from yolo_triton.nms_graph import add_nms, pre_nms_model
from yolo_triton.onnx_io import class_names, metadata

END2END_OUTPUTS = ("num_dets", "det_boxes", "det_scores", "det_classes")


def _session(model: onnx.ModelProto | str | Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2  # a small shared machine
    options.inter_op_num_threads = 1
    source = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


class TrackAOnnxRunner:
    """``images -> {"output0": ...}`` with ONNX Runtime (a Track A/B model's outputs)."""

    def __init__(self, onnx_path: str | Path):
        self.session = _session(onnx_path)
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, images: np.ndarray) -> dict[str, np.ndarray]:
        (output0,) = self.session.run(["output0"], {self.input_name: images.astype(np.float32)})
        return {"output0": output0}


class EfficientNMSPlanDouble:
    """DOUBLE of an end2end TensorRT plan: pre-NMS graph in ONNX Runtime + EfficientNMS NumPy model."""

    def __init__(self, end2end_path: str | Path):
        end2end = onnx.load(str(end2end_path))
        (node,) = [n for n in end2end.graph.node if n.op_type == "EfficientNMS_TRT"]
        self.attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        self.session = _session(pre_nms_model(end2end))
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, images: np.ndarray) -> dict[str, np.ndarray]:
        boxes, scores = self.session.run(["boxes", "scores"], {self.input_name: images.astype(np.float32)})
        a = self.attrs
        outputs = pp.efficient_nms(
            boxes, scores, conf=a["score_threshold"], iou=a["iou_threshold"], topk=a["max_output_boxes"],
            agnostic=bool(a["class_agnostic"]), box_coding=a["box_coding"],
        )
        return dict(zip(END2END_OUTPUTS, outputs))


class DecodeLetterboxDouble:
    """DOUBLE of Track D's DALI step: ``IMAGE_BYTES [B, n] UINT8`` (one encoded file per row) ->
    ``images [B, 3, S, S] FP32`` with OpenCV decoding and the pipeline's letterbox."""

    def __init__(self, imgsz: int):
        self.imgsz = imgsz

    def __call__(self, image_bytes: np.ndarray) -> dict[str, np.ndarray]:
        import cv2

        decoded = [cv2.imdecode(row, cv2.IMREAD_COLOR) for row in image_bytes]
        batch, _ = pp.letterbox_batch(decoded, self.imgsz)
        return {"images": batch}


class EncodedEnd2EndDouble:
    """DOUBLE of a Track D ensemble's I/O contract in one model: ``IMAGE_BYTES [B, n] UINT8`` ->
    the four end2end outputs (decode + letterbox double, then the EfficientNMS plan double)."""

    def __init__(self, decode: DecodeLetterboxDouble, detector: EfficientNMSPlanDouble):
        self.decode, self.detector = decode, detector

    def __call__(self, image_bytes: np.ndarray) -> dict[str, np.ndarray]:
        return self.detector(self.decode(image_bytes)["images"])


@dataclass(frozen=True)
class ScratchModels:
    track_a_onnx: Path
    end2end_onnx: Path
    names: list[str]
    imgsz: int
    topk: int


def build_scratch_models(workdir: Path, imgsz: int, conf: float, iou: float, topk: int,
                         agnostic: int) -> ScratchModels:
    """UNTRAINED yolo11n checkpoint -> Track A ONNX (fp32) -> end2end ONNX (EfficientNMS), in ``workdir``."""
    from yolo_triton.onnx_export import export_onnx
    from yolo_triton.scratch import make_scratch_checkpoint

    pt = make_scratch_checkpoint("yolo11n", workdir / "weights" / "yolo11n_untrained.pt", imgsz=imgsz)
    track_a = workdir / "onnx" / "track_a.onnx"
    export_onnx(pt, track_a, imgsz, "fp32")
    end2end = workdir / "onnx" / "end2end.onnx"
    onnx.save(add_nms(onnx.load(str(track_a)), "efficient", conf, iou, topk, agnostic), str(end2end))
    names = class_names(metadata(onnx.load(str(track_a), load_external_data=False)))
    return ScratchModels(track_a, end2end, names, imgsz, topk)


def libpython_dir() -> str:
    """The running interpreter's LIBDIR (pyenv keeps libpython there; the Python backend stub needs it)."""
    import sysconfig

    return sysconfig.get_config_var("LIBDIR") or ""


def prepend_ld_library_path(directory: str) -> None:
    current = os.environ.get("LD_LIBRARY_PATH", "")
    if directory and directory not in current.split(":"):
        os.environ["LD_LIBRARY_PATH"] = directory + (":" + current if current else "")
