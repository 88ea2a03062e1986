"""Track A: ultralytics' own ONNX export, then a fixed image size, simplification and precision.

The graph keeps a dynamic batch dimension and a fixed ``imgsz`` (so anchors fold to constants and
TensorRT gets one clean profile axis). Precision:

* ``fp32``: the exported graph as is.
* ``fp16``: NVIDIA ModelOpt AutoCast mixed precision with FP32 inputs and outputs. TensorRT 11 has
  no ``--fp16``/``BuilderFlag.FP16``; precision lives in the graph and strongly typed builds keep it.
* ``int8``: explicit Q/DQ quantization with calibration images (``yolo_triton.int8``).

``input_dtype="uint8"`` (INPUT_DTYPE) then makes the image input UINT8, cast and divided by 255 inside
the graph (``yolo_triton.input_uint8``), after the precision step; the end2end graphs made from this
file inherit it. ``output_dtype="float16"`` (OUTPUT_DTYPE) casts the float32 outputs to FP16 as the graph's
last nodes (``yolo_triton.output_dtype``: halves ``output0``'s bytes; what it rounds depends on the precision);
the end2end surgery removes those casts again.

Every task (``checkpoint.inspect``) exports the outputs ultralytics exports for it: ``output0``
``[B, 4+nc+extra, anchors]`` for detect, segment (extra: 32 mask coefficients; plus the prototypes
``output1`` ``[B, 32, S/4, S/4]``), pose (extra: K x 2|3 keypoint values) and obb (extra: the angle);
``output0`` ``[B, nc]`` softmax probabilities for classify. ``one2one`` (NMS=free, a YOLO26/v10 head of
any task) exports the NMS-free head instead: ``output0`` ``[B, topk, 6+extra]`` (segment: + ``output1``).
The ONNX metadata keeps ultralytics' own (task, names, stride, kpt_shape, kpt_names, ...) and adds the
pipeline's (precision, head, input_dtype, output_dtype, one2one, and ``batch_pad`` when padded).

Image size: IMGSZ applies to every task, classify included (one setting for the graph, the plans'
profiles and the DALI preprocessing). A classifier is usually trained at 224 px; exporting it at
another size is allowed (its head pools globally) and logged as a warning naming its training size.
"""
from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import onnx

from yolo_triton import checkpoint as ckpt
from yolo_triton.batch_pad import pad_batch
from yolo_triton.errors import StepError
from yolo_triton.files import atomic_path
from yolo_triton.input_uint8 import check_input_dtype, uint8_input
from yolo_triton.onnx_io import metadata, model_io, set_metadata
from yolo_triton.options import check_options
from yolo_triton.output_dtype import check_output_dtype, float16_outputs

LOG = logging.getLogger(__name__)

PRECISIONS = ("fp32", "fp16", "int8")


def fix_image_size(model: onnx.ModelProto, imgsz: int) -> None:
    """Pin the input's height and width to ``imgsz``; the batch dim stays symbolic."""
    (image_input,) = [i for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}]
    dims = image_input.type.tensor_type.shape.dim
    if len(dims) != 4:
        raise StepError(f"expected a 4-D image input, got rank {len(dims)} for '{image_input.name}'")
    dims[0].Clear()
    dims[0].dim_param = "batch"
    for axis in (2, 3):
        dims[axis].Clear()
        dims[axis].dim_value = imgsz
    for output in model.graph.output:
        out_dims = output.type.tensor_type.shape.dim
        for axis, dim in enumerate(out_dims):
            if axis > 0 and dim.HasField("dim_param"):
                dim.Clear()  # re-inferred as a number by simplification
        if out_dims:
            out_dims[0].Clear()
            out_dims[0].dim_param = "batch"


def simplify(model: onnx.ModelProto) -> onnx.ModelProto:
    import onnxslim

    return onnxslim.slim(model)


def to_fp16_mixed(model: onnx.ModelProto, workdir: Path) -> onnx.ModelProto:
    """ModelOpt AutoCast FP16 with FP32 I/O; nodes whose values overflow FP16 stay FP32."""
    from modelopt.onnx.autocast import convert_to_mixed_precision

    if not LOG.isEnabledFor(logging.DEBUG):
        logging.getLogger("modelopt").setLevel(logging.WARNING)

    src = workdir / "fp32_for_autocast.onnx"
    onnx.save(model, str(src))
    return convert_to_mixed_precision(onnx_path=str(src), low_precision_type="fp16", keep_io_types=True)


def ultralytics_onnx(yolo, imgsz: int, one2one: bool, topk: int | None) -> onnx.ModelProto:
    """Run ultralytics' exporter on ``yolo`` (loaded from a link inside a temporary directory, so the
    exported file lands there and nothing is written beside the user's .pt).

    ``one2one`` selects the NMS-free one-to-one head (ultralytics ``nms=False``) with ``max_det=topk``;
    otherwise ``nms=None`` keeps the one-to-many head (``output0`` ``[B, 4+nc+extra, anchors]``; classify:
    ``[B, nc]``; segment adds ``output1``).
    """
    extra = {"max_det": topk} if one2one else {}
    exported = yolo.export(
        format="onnx", imgsz=imgsz, dynamic=True, simplify=True, batch=1, half=False,
        nms=False if one2one else None, verbose=False, **extra,
    )
    return onnx.load(str(exported))


def export_onnx(
    pt_path: str | Path,
    out_path: str | Path,
    imgsz: int,
    precision: str,
    calib_dir: str | Path | None = None,
    one2one: bool = False,
    topk: int | None = None,
    input_dtype: str = "float32",
    batch_pad: int | None = None,
    output_dtype: str = "float32",
) -> dict[str, str]:
    """Export ``pt_path`` to ``out_path`` atomically; returns the ONNX metadata written. ``batch_pad``: the
    graph runs every execution at that batch (:func:`yolo_triton.batch_pad.pad_batch`), the last step."""
    if precision not in PRECISIONS:
        raise StepError(f"PRECISION={precision} is not one of {', '.join(PRECISIONS)}")
    check_input_dtype(input_dtype)
    check_output_dtype(output_dtype)
    if output_dtype != "float32" and one2one:
        raise StepError("OUTPUT_DTYPE=float16 is for Track A's raw head; the one-to-one export feeds the "
                        "end2end surgery and stays float32")
    nms = "free" if one2one else None  # Make asks for the one-to-one head only for NMS=free
    check_options(precision=precision, calib_dir=calib_dir or "", nms=nms)
    pt_path, out_path = Path(pt_path), Path(out_path)
    if not pt_path.is_file():
        ckpt.load_yolo(pt_path)  # raises the one-line 'checkpoint not found'
    # The work happens outside the model repository; only the finished file goes in (atomic_path).
    with tempfile.TemporaryDirectory(prefix="yolo-triton-export-") as tmp:
        workdir = Path(tmp)
        link = workdir / "model.pt"
        link.symlink_to(pt_path.resolve())
        yolo = ckpt.load_yolo(link, shown_as=pt_path)
        info = ckpt.inspect(yolo, pt_path)
        try:  # what the checkpoint says, against the settings: before anything is exported
            check_options(precision=precision, calib_dir=calib_dir or "", nms=nms, imgsz=imgsz, stride=info.stride,
                          has_one2one_head=info.has_one2one_head, task=info.task)
        except StepError as err:
            raise StepError(f"{pt_path} ({info.head} head): {err}") from None
        trained_at = train_imgsz(yolo)
        if info.task == "classify" and trained_at and trained_at != imgsz:
            LOG.warning("%s is a classifier trained at %d px, exported at IMGSZ=%d (every task uses IMGSZ; "
                        "make IMGSZ=%d ... serves it at its training size)", pt_path, trained_at, imgsz, trained_at)
        model = ultralytics_onnx(yolo, imgsz, one2one, topk)
        meta = metadata(model)
        fix_image_size(model, imgsz)
        model = simplify(model)
        if precision == "fp16":
            model = to_fp16_mixed(model, workdir)
        elif precision == "int8":
            from yolo_triton import int8

            fp32_path = workdir / "fp32.onnx"
            onnx.save(model, str(fp32_path))
            model = int8.quantize_onnx(fp32_path, calib_dir, imgsz)
        if input_dtype == "uint8":  # after the precision step: the Cast and the / 255 stay float32
            model = uint8_input(model)
        if output_dtype == "float16":  # the last nodes: whatever the precision step kept float32 is rounded
            model = float16_outputs(model)
        meta.update(
            imgsz=str([imgsz, imgsz]), precision=precision, head=info.head, source=pt_path.name,
            one2one=str(one2one), input_dtype=input_dtype, output_dtype=output_dtype,
        )
        set_metadata(model, meta)
        if batch_pad:
            model = pad_batch(model, batch_pad)
            meta = metadata(model)
            LOG.info("padded to batch %d: every execution runs [%d, 3, %d, %d] (ORT_BATCHING=pad)",
                     batch_pad, batch_pad, imgsz, imgsz)
        with atomic_path(out_path) as tmp_out:
            onnx.save(model, str(tmp_out))
    LOG.info("wrote %s (%.1f MB, %s, imgsz %d, input %s, task %s, head %s%s)", out_path, out_path.stat().st_size / 1e6,
             precision, imgsz, input_dtype, info.task, info.head, ", one-to-one" if one2one else "")
    for spec in model_io(model)[1]:
        LOG.info("  output %-8s %-8s %s", spec.name, spec.dtype, list(spec.shape))
    return meta


def train_imgsz(yolo) -> int | None:
    """The image size a checkpoint was trained at (its ``train_args``), when it says so as one number."""
    args = (getattr(yolo, "ckpt", None) or {}).get("train_args") or {}
    size = args.get("imgsz") if isinstance(args, dict) else None
    if isinstance(size, (list, tuple)) and len(set(size)) == 1:
        size = size[0]
    return int(size) if isinstance(size, int) and size > 0 else None
