"""Checking the DALI letterbox against ultralytics' ``LetterBox``: sample images, reference, histograms.

Shared by ``tests/test_dali_letterbox.py`` (CPU operators, CI) and ``scripts/bench_dali_gpu.py`` (GPU
operators, device machine), so both report the same numbers the same way. Not part of the library: only
checks use it. The reference is ultralytics' own ``LetterBox``; without ultralytics a comparison is
refused unless the caller names the NumPy port (``postprocess.letterbox``) as its reference.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from yolo_triton.postprocess import letterbox as numpy_letterbox

try:  # the reference itself
    from ultralytics.data.augment import LetterBox
except ImportError:  # pragma: no cover - a machine without ultralytics
    LetterBox = None

REFERENCES = ("ultralytics", "numpy")  # ultralytics.data.augment.LetterBox, or postprocess.letterbox (its port)


def ultralytics_assets() -> Path | None:
    try:
        import ultralytics
    except ImportError:
        return None
    return Path(ultralytics.__file__).parent / "assets"


def sample_images(out_dir: str | Path, sources: dict[str, np.ndarray] | None = None) -> dict[str, Path]:
    """Write the check set under ``out_dir``: the two ultralytics samples as JPEG and PNG, odd landscape and
    portrait sizes, a tiny image, a grey and an RGBA PNG. Returns ``{name: path}``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if sources is None:
        assets = ultralytics_assets()
        sources = {stem: cv2.imread(str(assets / f"{stem}.jpg")) for stem in ("bus", "zidane")}
    bus, zidane = sources["bus"], sources["zidane"]
    images = {
        "bus": bus,  # 810x1080 portrait
        "zidane": zidane,  # 1280x720 landscape
        "odd_landscape_811x457": cv2.resize(zidane, (811, 457), interpolation=cv2.INTER_AREA),
        "odd_portrait_333x517": cv2.resize(bus, (333, 517), interpolation=cv2.INTER_AREA),
        "square_1001": cv2.resize(bus, (1001, 1001), interpolation=cv2.INTER_AREA),
        "tiny_7x5": cv2.resize(zidane, (7, 5), interpolation=cv2.INTER_AREA),  # upscaled x91
        "thin_1500x3": cv2.resize(zidane, (1500, 3), interpolation=cv2.INTER_AREA),  # new_h = max(round(1.28), 1)
    }
    paths: dict[str, Path] = {}
    for name, img in images.items():
        for ext in (".jpg", ".png"):
            path = out_dir / f"{name}{ext}"
            cv2.imwrite(str(path), img)
            paths[f"{name}{ext}"] = path
    grey = out_dir / "grey_zidane.png"
    cv2.imwrite(str(grey), cv2.cvtColor(images["odd_landscape_811x457"], cv2.COLOR_BGR2GRAY))
    paths[grey.name] = grey
    rgba = out_dir / "rgba_bus.png"
    bgra = cv2.cvtColor(images["odd_portrait_333x517"], cv2.COLOR_BGR2BGRA)
    bgra[..., 3] = np.linspace(0, 255, bgra.shape[1], dtype=np.uint8)[None, :]  # alpha must not leak in
    cv2.imwrite(str(rgba), bgra)
    paths[rgba.name] = rgba
    return paths


def reference(path: str | Path, imgsz: int, which: str = "ultralytics") -> np.ndarray:
    """Ultralytics' preprocessing of the file: ``cv2.imread`` (BGR), ``LetterBox``, BGR->RGB, CHW, ``/255``.

    ``which="numpy"`` uses the NumPy port in ``postprocess`` instead, and says so by being asked for; with
    ``"ultralytics"`` and no ultralytics installed this raises rather than compare a letterbox with itself.
    """
    if which not in REFERENCES:
        raise ValueError(f"reference must be one of {REFERENCES}, got {which!r}")
    if which == "ultralytics" and LetterBox is None:
        raise RuntimeError("ultralytics is not installed, so its LetterBox (the reference) is missing: install "
                           "requirements.txt, or name the NumPy port as the reference (--reference numpy)")
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f"OpenCV cannot decode {path}")
    if which == "numpy":
        return numpy_letterbox(bgr, imgsz)[0]
    padded = LetterBox(new_shape=(imgsz, imgsz), auto=False, scale_fill=False, scaleup=True, center=True)(image=bgr)
    chw = np.ascontiguousarray(padded[..., ::-1].transpose(2, 0, 1))
    return chw.astype(np.float32) / np.float32(255.0)


def grey_levels(chw_float: np.ndarray) -> np.ndarray:
    return np.rint(np.asarray(chw_float, np.float32) * 255.0).astype(np.int16)


def diff_histogram(a: np.ndarray, b: np.ndarray) -> dict[int, int]:
    """``{|difference in grey levels|: pixel-channel count}`` between two ``[3, S, S]`` float images."""
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch {a.shape} vs {b.shape}")
    counts = np.bincount(np.abs(grey_levels(a) - grey_levels(b)).ravel())
    return {int(level): int(n) for level, n in enumerate(counts) if n}


def merge(histograms) -> dict[int, int]:
    total: dict[int, int] = {}
    for hist in histograms:
        for level, n in hist.items():
            total[level] = total.get(level, 0) + n
    return dict(sorted(total.items()))


def run_pipeline(pipe, encoded: list[np.ndarray], input_name: str) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Feed one batch of encoded images to a built pipeline; return per-sample ``images`` and ``letterbox``."""
    pipe.feed_input(input_name, encoded)
    images, letterbox = pipe.run()
    if hasattr(images, "as_cpu"):
        images = images.as_cpu()
    return [np.array(images[i]) for i in range(len(encoded))], [np.array(letterbox[i]) for i in range(len(encoded))]
