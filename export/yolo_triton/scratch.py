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

LOG = logging.getLogger(__name__)

TARGET_FRACTION_ABOVE = 5e-4   # share of (anchor, class) pairs to lift above the score below
TARGET_SCORE = 0.25
LOGIT_SPREAD = 2.5             # std of the class logits after rescaling


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


def _class_convs(head) -> list[torch.nn.Conv2d]:
    convs = [seq[-1] for seq in head.cv3]
    if getattr(head, "one2one_cv3", None) is not None:
        convs += [seq[-1] for seq in head.one2one_cv3]
    return convs


@torch.no_grad()
def vary_outputs(model, imgsz: int) -> None:
    """Recalibrate BatchNorm on real images, then rescale the class convolutions."""
    torch.manual_seed(0)
    images = _calibration_batch(imgsz)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # cumulative average over the calibration passes
    model.train()
    model(images)
    model.eval()
    head = model.model[-1]
    convs = _class_convs(head)
    logits = []
    hooks = [conv.register_forward_hook(lambda _m, _i, out: logits.append(out.flatten())) for conv in convs]
    model(images)
    for hook in hooks:
        hook.remove()
    flat = torch.cat(logits)
    scale = LOGIT_SPREAD / float(flat.std())
    shifted = (flat - flat.mean()) * scale
    target_logit = float(np.log(TARGET_SCORE / (1 - TARGET_SCORE)))
    offset = target_logit - float(torch.quantile(shifted[:: max(1, shifted.numel() // 2_000_000)], 1 - TARGET_FRACTION_ABOVE))
    mean = float(flat.mean())
    for conv in convs:
        conv.weight.mul_(scale)
        conv.bias.copy_((conv.bias - mean) * scale + offset)


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
    tmp = out_path.with_name(out_path.name + ".tmp")
    torch.save(checkpoint, tmp)
    tmp.replace(out_path)
    return out_path
