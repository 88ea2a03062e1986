"""Track D letterbox as a DALI pipeline: encoded image bytes -> ultralytics' network input.

ONE definition for every device. ``letterbox_graph(..., device="cpu")`` runs here in CI (CPU
operators, no CUDA); ``device="gpu"`` decodes with nvJPEG (``"mixed"``) and resizes/pads on the GPU.
The Triton model's ``1/dali.py`` is this file's source, verbatim, plus a short footer that applies
``@nvidia.dali.plugin.triton.autoserialize`` (see :func:`autoserialize_source`), so the pipeline the
server builds is the one the tests run. That is why this module imports nothing but DALI.

Arithmetic (ultralytics ``LetterBox(new_shape=(S, S), auto=False, scaleup=True, center=True)``,
https://github.com/ultralytics/ultralytics/blob/main/ultralytics/data/augment.py), computed per sample
in float64 from the image's own shape:

* ``r = min(S / h, S / w)``; ``new_w, new_h = max(round(w * r), 1), max(round(h * r), 1)`` with
  Python's round-half-to-even (``floor(x + 0.5)`` corrected on exact ties);
* resize to exactly ``(new_h, new_w)``, bilinear, ``antialias=False`` (what ``cv2.INTER_LINEAR`` does);
* pad to ``S x S`` with 114 in uint8, top/left = ``floor(d / 2)`` = ultralytics' ``round(d/2 - 0.1)``
  (``fn.crop`` centred window, ``rounding="truncate"``);
* HWC -> CHW, uint8 -> float32, ``/ 255`` (decoder ``output_type=RGB``: grey and RGBA become RGB);
  with ``input_dtype="uint8"`` (INPUT_DTYPE=uint8: the detector casts and divides itself) the CHW
  pixels stay uint8, without the ``/ 255``.

Outputs: ``images [3, S, S] float32`` (or uint8) and ``letterbox [5] float64 = (ratio, pad_x, pad_y, orig_h,
orig_w)``, the fields of ``postprocess.LetterboxInfo``, so a client maps boxes back without the image.
"""
from __future__ import annotations

import nvidia.dali.fn as fn
import nvidia.dali.math as dmath
import nvidia.dali.types as types
from nvidia.dali import pipeline_def

INPUT_NAME = "encoded"  # fn.external_source name == the Triton input name (dali_backend rule)
OUTPUT_NAMES = ("images", "letterbox")  # Triton matches DALI outputs to config outputs by position
LETTERBOX_FIELDS = ("ratio", "pad_x", "pad_y", "orig_h", "orig_w")
PAD_VALUE = 114
DEVICES = ("cpu", "gpu")
INPUT_DTYPES = ("float32", "uint8")  # what the detector's image input takes (INPUT_DTYPE)


def check_args(imgsz: int, device: str, input_dtype: str = "float32") -> None:
    if device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {device!r}")
    if input_dtype not in INPUT_DTYPES:
        raise ValueError(f"INPUT_DTYPE={input_dtype} is not one of {', '.join(INPUT_DTYPES)}")
    # The letterbox itself works at any size; the detector's stride is checked against its checkpoint at
    # export (the options rule on imgsz and stride) and the ensemble checks that both steps use the same size.
    if int(imgsz) != imgsz or imgsz <= 0:
        raise ValueError(f"imgsz must be a positive integer, got {imgsz}")


def _round_half_even(x):
    """Python's ``round`` on a float64 DALI node: ``floor(x + 0.5)``, minus 1 on an exact tie to an odd value."""
    f = dmath.floor(x + 0.5)
    tie = (f - x) == 0.5
    odd = (f - 2.0 * dmath.floor(f * 0.5)) == 1.0
    return f - fn.cast(tie & odd, dtype=types.FLOAT64)


def images_dtype(input_dtype: str):
    """The DALI type of the ``images`` output for the detector's INPUT_DTYPE."""
    return types.UINT8 if input_dtype == "uint8" else types.FLOAT


def letterbox_graph(encoded, imgsz: int, device: str, input_dtype: str = "float32"):
    """Build the letterbox operators on ``encoded`` (a uint8 1-D DataNode); returns ``(images, letterbox)``."""
    check_args(imgsz, device, input_dtype)
    size = float(imgsz)
    # Shape of the encoded image (HWC, EXIF orientation applied like the decoder): a CPU operator on the
    # bytes, so the size arithmetic stays on the CPU for both devices.
    shape = fn.cast(fn.peek_image_shape(encoded), dtype=types.FLOAT64)
    orig_h, orig_w = shape[0], shape[1]
    ratio = dmath.min(size / orig_h, size / orig_w)
    new_w = dmath.max(_round_half_even(orig_w * ratio), 1.0)
    new_h = dmath.max(_round_half_even(orig_h * ratio), 1.0)
    pad_x = dmath.floor((size - new_w) * 0.5)
    pad_y = dmath.floor((size - new_h) * 0.5)

    image = fn.decoders.image(encoded, device="mixed" if device == "gpu" else "cpu", output_type=types.RGB)
    image = fn.resize(
        image,
        resize_x=fn.cast(new_w, dtype=types.FLOAT),
        resize_y=fn.cast(new_h, dtype=types.FLOAT),
        interp_type=types.INTERP_LINEAR,
        antialias=False,  # DALI's default True low-pass filters downscaling; cv2.INTER_LINEAR does not
    )
    image = fn.crop(
        image,
        crop=(size, size),
        crop_pos_x=0.5,
        crop_pos_y=0.5,
        out_of_bounds_policy="pad",
        fill_values=PAD_VALUE,  # in uint8, before normalisation
        rounding="truncate",  # anchor trunc(-d/2): top/left = floor(d/2), ultralytics' split
    )
    image = fn.transpose(image, perm=[2, 0, 1])  # HWC -> CHW
    if input_dtype == "float32":  # (uint8: the detector graph casts and divides, bit for bit the same)
        image = fn.cast(image, dtype=types.FLOAT) / 255.0  # float32 division, as the ultralytics predictor
    letterbox = fn.stack(ratio, pad_x, pad_y, orig_h, orig_w)
    return image, letterbox


def letterbox_pipeline(imgsz: int, device: str, batch_size: int, num_threads: int, device_id: int | None = None,
                       source=None, prefetch_queue_depth: int = 2, input_dtype: str = "float32"):
    """A pipeline (not built) whose external source is :data:`INPUT_NAME` (``device_id`` None = CPU only).

    ``source`` (a callable returning a batch, for benchmarks) replaces ``feed_input`` and lets DALI prefetch.
    """
    check_args(imgsz, device, input_dtype)
    if device == "gpu" and device_id is None:
        device_id = 0

    @pipeline_def(batch_size=batch_size, num_threads=num_threads, device_id=device_id,
                  prefetch_queue_depth=prefetch_queue_depth,
                  output_dtype=[images_dtype(input_dtype), types.FLOAT64], output_ndim=[3, 1])
    def _letterbox():
        encoded = fn.external_source(source=source, batch=True, device="cpu", name=INPUT_NAME,
                                     dtype=types.UINT8, ndim=1)
        return letterbox_graph(encoded, imgsz, device, input_dtype)

    return _letterbox()


AUTOSERIALIZE_FOOTER = '''

# ---- Triton entry point (generated by dali/create_dali_letterbox_pipeline.py; edit the generator) ----
from nvidia.dali.plugin.triton import autoserialize  # noqa: E402


@autoserialize
@pipeline_def(batch_size={max_batch}, num_threads={num_threads}, device_id={device_id},
              output_dtype=[images_dtype("{input_dtype}"), types.FLOAT64], output_ndim=[3, 1])
def yolo_letterbox_{imgsz}():
    encoded = fn.external_source(device="cpu", name=INPUT_NAME, dtype=types.UINT8, ndim=1)
    return letterbox_graph(encoded, {imgsz}, "{device}", "{input_dtype}")
'''


def autoserialize_source(imgsz: int, max_batch: int, num_threads: int, device: str = "gpu",
                         input_dtype: str = "float32") -> str:
    """The text of ``1/dali.py``: this module's source plus one ``@autoserialize`` pipeline."""
    import inspect
    import sys

    check_args(imgsz, device, input_dtype)
    source = inspect.getsource(sys.modules[__name__])
    return source + AUTOSERIALIZE_FOOTER.format(imgsz=int(imgsz), max_batch=int(max_batch),
                                                num_threads=int(num_threads), device=device, input_dtype=input_dtype,
                                                device_id=0 if device == "gpu" else None)
