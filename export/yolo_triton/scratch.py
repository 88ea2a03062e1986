"""Untrained checkpoints built from the architecture files inside ultralytics, for offline tests.

They are NOT trained weights and are named ``<arch>_untrained.pt``. A freshly initialised detector
scores every anchor almost alike, which makes any comparison meaningless, so two deterministic
steps give its outputs variety: BatchNorm statistics are recalibrated on real images (the sample
images ultralytics ships), and the last class convolutions are rescaled so that scores spread out and
a few hundred (anchor, class) pairs per image exceed 0.25.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from yolo_triton.files import atomic_path

LOG = logging.getLogger(__name__)

TARGET_FRACTION_ABOVE = 2e-4   # share of (anchor, class) pairs to lift above the score below
TARGET_SCORE = 0.25
TOP_SCORE = 0.95               # the highest class score on any calibration image


def sample_images() -> list[Path]:
    from ultralytics.utils import ASSETS

    return sorted(Path(ASSETS).glob("*.jpg"))


def _calibration_batch(imgsz: int) -> torch.Tensor:
    """The sample images letterboxed, plus flipped and cropped views (8 images)."""
    import cv2
    from ultralytics.data.augment import LetterBox

    views = []
    for path in sample_images():
        image = cv2.imread(str(path))
        h, w = image.shape[:2]
        for view in (image, image[:, ::-1], image[: h // 2], image[:, w // 3:]):
            boxed = LetterBox(new_shape=(imgsz, imgsz), auto=False)(image=np.ascontiguousarray(view))
            views.append(boxed[..., ::-1].transpose(2, 0, 1) / 255.0)
    return torch.from_numpy(np.stack(views).astype(np.float32))


def _class_conv_groups(head) -> list[list[torch.nn.Conv2d]]:
    """The last class convolutions, one group per head (one-to-many, and one-to-one if present)."""
    groups = [[seq[-1] for seq in head.cv3]]
    if getattr(head, "one2one_cv3", None) is not None:
        groups.append([seq[-1] for seq in head.one2one_cv3])
    return groups


@torch.no_grad()
def _rescale_group(model, convs: list[torch.nn.Conv2d], batches: list[torch.Tensor]) -> None:
    """Affine-rescale one head's class logits (weights and bias of its last convolutions)."""
    captured = []
    hooks = [conv.register_forward_hook(lambda _m, _i, out: captured.append(out.flatten(1))) for conv in convs]
    per_image = []
    for images in batches:
        captured.clear()
        model(images)
        per_image.append(torch.cat(captured, dim=1))  # [images, all logits of this head]
    for hook in hooks:
        hook.remove()
    # Two points fix the affine map: the typical image's top TARGET_FRACTION_ABOVE quantile (median over
    # the calibration images) goes to TARGET_SCORE, the highest logit of any image to TOP_SCORE, so no
    # image saturates (ties at 1.0 would make every comparison ambiguous).
    quantile = float(torch.cat([torch.quantile(rows, 1 - TARGET_FRACTION_ABOVE, dim=1) for rows in per_image]).median())
    highest = float(max(rows.max() for rows in per_image))
    low, high = (float(np.log(p / (1 - p))) for p in (TARGET_SCORE, TOP_SCORE))
    scale = (high - low) / max(highest - quantile, 1e-6)
    mean, offset = quantile, low
    for conv in convs:
        conv.weight.mul_(scale)
        conv.bias.copy_((conv.bias - mean) * scale + offset)


@torch.no_grad()
def vary_outputs(model, imgsz: int) -> None:
    """Recalibrate BatchNorm on real images, then rescale each head's class convolutions, using the
    images at ``imgsz`` and at half of it (tests run small inputs)."""
    torch.manual_seed(0)
    head = model.model[-1]
    # A fresh head's one-to-one branch is a deep copy of the one-to-many branch; trained ones differ.
    for branch in (getattr(head, "one2one_cv2", None), getattr(head, "one2one_cv3", None)):
        for module in branch.modules() if branch is not None else ():
            if isinstance(module, torch.nn.Conv2d):
                module.reset_parameters()
    batches = [_calibration_batch(imgsz), _calibration_batch(max(64, imgsz // 64 * 32))]
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # cumulative average over the calibration passes
    model.train()
    for images in batches:
        model(images)
    model.eval()
    for convs in _class_conv_groups(model.model[-1]):
        _rescale_group(model, convs, batches)


def coco_names() -> dict[int, str]:
    import yaml
    from ultralytics.utils import ROOT

    return yaml.safe_load((Path(ROOT) / "cfg/datasets/coco.yaml").read_text())["names"]


def make_scratch_checkpoint(arch: str, out_path: str | Path, num_classes: int | None = None,
                            imgsz: int = 640) -> Path:
    """Write an untrained, output-varied checkpoint for ``arch`` (e.g. ``yolo11n``, ``yolo26n``, ``yolov10n``)."""
    import ultralytics
    from ultralytics.nn.tasks import DetectionModel

    torch.manual_seed(0)
    cfg = f"{arch}.yaml"
    model = DetectionModel(cfg=cfg, nc=num_classes, verbose=False)
    nc = model.model[-1].nc
    names = coco_names() if nc == 80 else {i: f"class_{i}" for i in range(nc)}
    model.names = names
    vary_outputs(model, imgsz)
    model.args = {"task": "detect", "imgsz": imgsz}
    checkpoint = {
        "model": model,
        "train_args": {"task": "detect", "imgsz": imgsz, "model": cfg},
        "version": ultralytics.__version__,
        "untrained": True,
        "description": f"UNTRAINED scratch checkpoint from {cfg} (random init, BN recalibrated): not trained weights",
    }
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_path) as tmp:
        torch.save(checkpoint, tmp)
    return out_path
