"""Untrained checkpoints built from the architecture files inside ultralytics, for offline tests.

They are NOT trained weights and are named ``<arch>_untrained.pt``. Any task's architecture works
(``yolo11n``, ``yolo11n-seg``, ``yolo26n-pose``, ``yolo11n-obb``, ``yolo11n-cls``, ...): the task comes from
the yaml's head, the class names (and a pose model's keypoint names) from the dataset ultralytics trains
that task on (COCO, COCO-pose, DOTAv1, ImageNet) unless ``num_classes`` / ``kpt_shape`` say otherwise.

A freshly initialised network answers almost alike everywhere, which makes any comparison meaningless,
so deterministic steps give its outputs variety:

* BatchNorm statistics are recalibrated on real images (the sample images ultralytics ships, letterboxed,
  flipped and cropped, at the export size and at half of it);
* detection heads (every task but classify): the last class convolutions are rescaled so that scores
  spread out and, whatever the class count, a few dozen (320 px) to a few hundred (640 px) (anchor, class)
  pairs per image exceed 0.25;
* segment: the mask-coefficient convolutions are transformed (a linear map of their 32 outputs) so that
  ``sigmoid(coefficients @ prototypes)`` gives masks that follow the prototypes' image structure: neither
  empty nor full;
* pose: keypoint visibility logits are centred per keypoint, so confidences spread around 0.5;
* obb: angle logits are spread, so angles cover the head's range instead of one value;
* classify: the linear layer is rebuilt from the images' principal feature directions and scaled, so the
  softmax is far from uniform (top-1 around 0.5), differs between images, and the top-5 probabilities
  are clearly separated.

A fresh YOLO26/YOLOv10 head's one-to-one branch is a deep copy of its one-to-many branch; its
convolutions are re-initialised first, so the two differ as a trained model's do.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from yolo_triton.files import atomic_path

LOG = logging.getLogger(__name__)

TARGET_FRACTION_ABOVE = 2e-4   # share of (anchor, class) pairs of an 80-class head to lift above the score below
TARGET_CLASSES = 80            # (a head of nc classes: TARGET_FRACTION_ABOVE * 80 / nc, as many pairs per image)
TARGET_SCORE = 0.25
TOP_SCORE = 0.95               # the highest class score on any calibration image
# The dataset ultralytics trains each task on (cfg/datasets/*.yaml): default class count and names
TASK_DATASETS = {"detect": "coco.yaml", "segment": "coco.yaml", "pose": "coco-pose.yaml", "obb": "DOTAv1.yaml",
                 "classify": "ImageNet.yaml"}
KEYPOINT_LOGIT_SPREAD = 2.2    # pose: visibility logits' 5th/95th percentiles -> -/+ this (sigmoid 0.10 / 0.90)
ANGLE_LOGIT_SPREAD = 2.5       # obb: sigmoid angle logits' 5th/95th percentiles -> -/+ this
RAW_ANGLE_RANGE = (-0.4, 1.97)  # obb26 (raw radians): 5th/95th percentiles -> these (centred on pi/4)
CLASSIFY_TOP1 = 0.5            # classify: median top-1 probability over the calibration images
CLASSIFY_RANK = 12             # classify: principal feature directions the logits are made from
CLASSIFY_DRAWS = 512           # classify: random logit maps tried; the best separated top-5 is kept
CLASSIFY_TOP1_MAX = 0.95       # classify: ... of those where no calibration image's top-1 exceeds this
CLASSIFY_TOP5_MIN = 1e-3       # classify: ... and every image's 5th probability reaches this
MASK_LOGIT_SCALE = 3.0         # segment: median |mask logit| after the transform (crisp masks, no ties at 0.5)


def sample_images() -> list[Path]:
    from ultralytics.utils import ASSETS

    return sorted(Path(ASSETS).glob("*.jpg"))


def _calibration_batch(imgsz: int, task: str = "detect") -> torch.Tensor:
    """The sample images, plus flipped and cropped views (8 images), preprocessed as ultralytics' predictor
    does for ``task``: letterboxed, or for classify resized and centre-cropped."""
    import cv2
    from ultralytics.data.augment import LetterBox, classify_transforms
    from PIL import Image

    crop = classify_transforms(imgsz) if task == "classify" else None
    views = []
    for path in sample_images():
        image = cv2.imread(str(path))
        h, w = image.shape[:2]
        for view in (image, image[:, ::-1], image[: h // 2], image[:, w // 3:]):
            view = np.ascontiguousarray(view)
            if crop is not None:
                views.append(crop(Image.fromarray(view[..., ::-1].copy())).numpy())
                continue
            boxed = LetterBox(new_shape=(imgsz, imgsz), auto=False)(image=view)
            views.append(boxed[..., ::-1].transpose(2, 0, 1) / 255.0)
    return torch.from_numpy(np.stack(views).astype(np.float32))


# ---- what to capture: the last convolutions of each head branch -------------------------------------
def _branches(head, name: str) -> list:
    """``head.<name>`` and, when present, ``head.one2one_<name>`` (the NMS-free branch)."""
    return [b for b in (getattr(head, name, None), getattr(head, f"one2one_{name}", None)) if b is not None]


def _class_conv_groups(head) -> list[list[torch.nn.Conv2d]]:
    """The last class convolutions, one group per head (one-to-many, and one-to-one if present)."""
    return [[seq[-1] for seq in branch] for branch in _branches(head, "cv3")]


def _extra_conv_groups(head) -> list[list[torch.nn.Conv2d]]:
    """The last convolutions of the task's extra values (mask coefficients, keypoints, angle), per branch."""
    if type(head).__name__ == "Pose26":
        return [list(branch) for branch in _branches(head, "cv4_kpts")]
    return [[seq[-1] for seq in branch] for branch in _branches(head, "cv4")]


@torch.no_grad()
def _capture(model, modules, batches: list[torch.Tensor], inputs: bool = False) -> list[torch.Tensor]:
    """Per batch, the outputs (``inputs``: the first inputs) of ``modules`` as ``[images, channels, positions]``
    (positions of all modules concatenated: every anchor of every level for a head's per-level convolutions)."""
    captured = []
    hooks = [m.register_forward_hook(lambda _m, i, out: captured.append(i[0] if inputs else out)) for m in modules]
    per_batch = []
    try:
        for images in batches:
            captured.clear()
            model(images)
            per_batch.append(torch.cat([out.flatten(2) if out.dim() > 2 else out[..., None] for out in captured], 2))
    finally:
        for hook in hooks:
            hook.remove()
    return per_batch


def _affine(convs, channels, scale: torch.Tensor, shift: torch.Tensor, offset: torch.Tensor) -> None:
    """``y[ch] -> (y[ch] - shift) * scale + offset`` for the output channels ``channels`` of each conv/linear."""
    for conv in convs:
        conv.weight[channels] *= scale.view(-1, *([1] * (conv.weight.dim() - 1)))
        conv.bias[channels] = (conv.bias[channels] - shift) * scale + offset


@torch.no_grad()
def _rescale_group(model, convs: list[torch.nn.Conv2d], batches: list[torch.Tensor]) -> None:
    """Affine-rescale one head's class logits (weights and bias of its last convolutions)."""
    captured = _capture(model, convs, batches)
    fraction = min(TARGET_FRACTION_ABOVE * TARGET_CLASSES / captured[0].shape[1], 0.05)
    per_image = [rows for out in captured for rows in out.flatten(1)]  # one row per image: all its logits here
    # Two points fix the affine map: the typical image's top `fraction` quantile (median over the
    # calibration images) goes to TARGET_SCORE, the highest logit of any image to TOP_SCORE, so no
    # image saturates (ties at 1.0 would make every comparison ambiguous).
    quantile = float(torch.stack([torch.quantile(rows, 1 - fraction) for rows in per_image]).median())
    highest = float(max(rows.max() for rows in per_image))
    low, high = (float(np.log(p / (1 - p))) for p in (TARGET_SCORE, TOP_SCORE))
    scale = (high - low) / max(highest - quantile, 1e-6)
    for conv in convs:
        conv.weight.mul_(scale)
        conv.bias.copy_((conv.bias - quantile) * scale + low)


def _spread_channels(model, convs, channels, batches, low: float, high: float) -> None:
    """Map each of ``channels``' 5th/95th percentiles (over images and anchors) to ``low``/``high``."""
    values = torch.cat([out[:, channels].transpose(0, 1).flatten(1) for out in _capture(model, convs, batches)], 1)
    q05, q95 = (torch.quantile(values, q, dim=1) for q in (0.05, 0.95))
    scale = (high - low) / torch.clamp(q95 - q05, min=1e-6)
    _affine(convs, channels, scale, q05, torch.full_like(q05, low))


@torch.no_grad()
def _vary_keypoints(model, head, batches) -> None:
    """Pose: each keypoint's visibility logit spread around 0 (confidence around 0.5)."""
    nkpt, ndim = head.kpt_shape
    if ndim != 3:
        return
    channels = list(range(2, nkpt * ndim, ndim))
    for convs in _extra_conv_groups(head):
        _spread_channels(model, convs, channels, batches, -KEYPOINT_LOGIT_SPREAD, KEYPOINT_LOGIT_SPREAD)


@torch.no_grad()
def _vary_angles(model, head, batches) -> None:
    """OBB: angle logits spread over the sigmoid's range (OBB), raw angles over [-0.4, 1.97] rad (OBB26)."""
    low, high = RAW_ANGLE_RANGE if type(head).__name__ == "OBB26" else (-ANGLE_LOGIT_SPREAD, ANGLE_LOGIT_SPREAD)
    for convs in _extra_conv_groups(head):
        _spread_channels(model, convs, [0], batches, low, high)


def _mask_fractions(coeffs: torch.Tensor, protos: torch.Tensor) -> torch.Tensor:
    """Share of positive mask logits per (image, anchor): ``coeffs [N, nm, A]``, ``protos [N, nm, P]``."""
    return (torch.einsum("nka,nkp->nap", coeffs, protos) > 0).float().mean(2)


@torch.no_grad()
def _vary_masks(model, head, batches) -> None:
    """Segment: transform each branch's mask-coefficient outputs ``c -> s * (M c + b)`` with
    ``M = I - (1 - alpha) u u^T`` (``u``: the prototypes' mean direction) and ``b`` along ``u``, so that every
    anchor's mask is ``c . (p(x) - mean)`` plus a small offset: it follows the prototypes' spatial structure
    instead of being all on or all off. ``alpha`` is chosen on the calibration images (most masks between
    10 % and 90 % of the image); ``s`` makes the logits crisp."""
    generator = torch.Generator().manual_seed(0)
    protos = _capture(model, [head.proto], batches)  # [N, nm, P] per batch
    mean = torch.cat([p.transpose(1, 2).reshape(-1, p.shape[1]) for p in protos]).mean(0)  # [nm]
    u = mean / mean.norm()
    # a fixed subset of pixels and anchors keeps the search small at any image size
    protos = [p[:, :, torch.randperm(p.shape[2], generator=generator)[:2048]] for p in protos]
    for convs in _extra_conv_groups(head):
        coeffs = _capture(model, convs, batches)
        coeffs = [c[:, :, torch.randperm(c.shape[2], generator=generator)[:512]] for c in coeffs]
        offset = float(torch.cat([torch.einsum("nka,k->na", c, mean).flatten() for c in coeffs]).mean())

        def transformed(alpha: float):
            matrix = torch.eye(len(u)) - (1 - alpha) * torch.outer(u, u)
            bias = -alpha * offset * u / mean.norm()
            return matrix, bias, [torch.einsum("jk,nka->nja", matrix, c) + bias[None, :, None] for c in coeffs]

        best = None
        for alpha in (1.0, 0.5, 0.25, 0.1, 0.05, 0.02, 0.01, 0.0):
            matrix, bias, moved = transformed(alpha)
            fractions = torch.cat([_mask_fractions(c, p).flatten() for c, p in zip(moved, protos)])
            good = float(((fractions > 0.1) & (fractions < 0.9)).float().mean())
            if best is None or good > best[0]:
                best = (good, alpha, matrix, bias, moved)
        good, alpha, matrix, bias, moved = best
        logits = torch.cat([torch.einsum("nka,nkp->nap", c, p).flatten() for c, p in zip(moved, protos)])
        scale = MASK_LOGIT_SCALE / max(float(logits.abs().median()), 1e-6)
        for conv in convs:
            weight = conv.weight.flatten(1)
            conv.weight.copy_((scale * matrix @ weight).view_as(conv.weight))
            conv.bias.copy_(scale * (matrix @ conv.bias + bias))
        LOG.debug("mask coefficients: alpha %.2f, %.0f%% of masks cover 10-90%% of the image", alpha, 100 * good)


def _top1_scales(logits: torch.Tensor, target: float) -> torch.Tensor:
    """Per draw, the factor that gives ``logits [draws, images, nc]`` a median top-1 softmax probability of
    ``target`` (over the images)."""
    low, high = torch.full((len(logits), 1, 1), 1e-3), torch.full((len(logits), 1, 1), 1e4)
    for _ in range(40):  # bisection: the top-1 probability grows with the factor
        scale = (low * high).sqrt()
        top1 = (logits * scale).softmax(2).amax(2).median(1).values[:, None, None]
        low, high = torch.where(top1 < target, scale, low), torch.where(top1 < target, high, scale)
    return (low * high).sqrt()


@torch.no_grad()
def _vary_class_probabilities(model, head, batches) -> None:
    """Classify: the linear layer becomes ``logits = s * R z(x)``, where ``z`` are the pooled features' first
    CLASSIFY_RANK principal coordinates over the calibration images, whitened (so every image's logits have
    a similar magnitude, instead of a few images saturating and the rest staying uniform), ``R`` a random
    ``[nc, rank]`` matrix and ``s`` the scale that gives a median top-1 of CLASSIFY_TOP1. Of CLASSIFY_DRAWS
    draws of ``R`` that saturate no calibration image (CLASSIFY_TOP1_MAX, CLASSIFY_TOP5_MIN), the one whose
    top-5 probabilities are best separated on the calibration images is kept."""
    features = torch.cat([f[:, :, 0] for f in _capture(model, [head.linear], batches, inputs=True)])  # [N, c]
    mean = features.mean(0)
    centred = features - mean
    _, _, basis = torch.linalg.svd(centred, full_matrices=False)
    basis = basis[: min(CLASSIFY_RANK, len(features) - 1)]
    std = (centred @ basis.T).std(0)
    whiten = basis / std[:, None]  # [rank, c]: features -> whitened principal coordinates
    coords = centred @ whiten.T
    generator = torch.Generator().manual_seed(0)
    mixings = torch.randn(CLASSIFY_DRAWS, head.linear.out_features, len(basis), generator=generator)
    logits = coords @ mixings.transpose(1, 2)  # [draws, images, nc]
    scales = _top1_scales(logits, CLASSIFY_TOP1)
    top5 = (logits * scales).softmax(2).topk(5, 2).values  # [draws, images, 5]
    # an image that saturates has ranks 2-5 that are noise: such draws are out
    usable = (top5[..., 0].amax(1) <= CLASSIFY_TOP1_MAX) & (top5[..., 4].amin(1) >= CLASSIFY_TOP5_MIN)
    if not bool(usable.any()):
        raise RuntimeError("no random logit map keeps every calibration image's top-5 unsaturated")
    ratios = (top5[..., :4] / top5[..., 1:]).flatten(1).amin(1)  # the closest neighbours in any image's top 5
    draw = int(torch.where(usable, ratios, torch.zeros_like(ratios)).argmax())
    best = (float(ratios[draw]), float(scales[draw]) * mixings[draw] @ whiten)
    separation, weight = best
    head.linear.weight.copy_(weight)
    head.linear.bias.copy_(-weight @ mean)
    LOG.debug("classify: top-5 neighbours differ by a factor >= %.3f on the calibration images", separation)


@torch.no_grad()
def vary_outputs(model, imgsz: int, task: str = "detect") -> None:
    """Recalibrate BatchNorm on real images, then give each output of ``task``'s head variety (module
    docstring), using the images at ``imgsz`` and at half of it (tests run small inputs)."""
    torch.manual_seed(0)
    head = model.model[-1]
    # A fresh head's one-to-one branch is a deep copy of the one-to-many branch; trained ones differ.
    for name in dir(head):
        branch = getattr(head, name, None) if name.startswith("one2one_") else None
        if isinstance(branch, torch.nn.Module):
            for module in branch.modules():
                if isinstance(module, torch.nn.Conv2d):
                    module.reset_parameters()
    batches = [_calibration_batch(size, task) for size in (imgsz, max(64, imgsz // 64 * 32))]
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # cumulative average over the calibration passes
    model.train()
    for images in batches:
        model(images)
    model.eval()
    if task == "classify":
        _vary_class_probabilities(model, head, batches)
        return
    for convs in _class_conv_groups(head):
        _rescale_group(model, convs, batches)
    if task == "segment":
        _vary_masks(model, head, batches)
    elif task == "pose":
        _vary_keypoints(model, head, batches)
    elif task == "obb":
        _vary_angles(model, head, batches)


# ---- the checkpoint -------------------------------------------------------------------------------
def dataset(task: str) -> dict:
    """ultralytics' dataset yaml of ``task`` (TASK_DATASETS): names, and for pose kpt_shape / kpt_names."""
    import yaml
    from ultralytics.utils import ROOT

    return yaml.safe_load((Path(ROOT) / "cfg/datasets" / TASK_DATASETS[task]).read_text())


def coco_names() -> dict[int, str]:
    return dataset("detect")["names"]


def arch_task(arch: str) -> str:
    """The task of an architecture (``yolo11n-seg`` -> ``segment``), from the head its yaml names."""
    from ultralytics.nn.tasks import guess_model_task, yaml_model_load

    try:
        cfg = yaml_model_load(f"{arch}.yaml")
    except FileNotFoundError:
        raise ValueError(f"no architecture '{arch}' in ultralytics (e.g. yolo11n, yolo11n-seg, yolo26n-pose, "
                         "yolo11n-obb, yolo11n-cls)") from None
    task = guess_model_task(cfg)
    if task not in TASK_DATASETS:
        raise ValueError(f"architecture '{arch}' is a {task} model; scratch checkpoints are for "
                         f"{', '.join(TASK_DATASETS)}")
    return task


def build_model(arch: str, task: str, num_classes: int | None, kpt_shape: tuple[int, int] | None):
    """The untrained ultralytics model of ``arch`` with its class names (and keypoint names)."""
    from ultralytics.nn import tasks as models

    data = dataset(task)
    nc = num_classes or len(data["names"])
    cfg = f"{arch}.yaml"
    if task == "pose":
        kpt_shape = [int(v) for v in (kpt_shape or data["kpt_shape"])]  # a list, as ultralytics reads it from yaml
        model = models.PoseModel(cfg=cfg, nc=nc, data_kpt_shape=kpt_shape, verbose=False)
        if list(kpt_shape) == list(data["kpt_shape"]) and nc == len(data["names"]) and data.get("kpt_names"):
            model.kpt_names = data["kpt_names"]
    else:
        if kpt_shape:
            raise ValueError(f"kpt_shape is for pose architectures, '{arch}' is a {task} model")
        model_class = {"detect": models.DetectionModel, "segment": models.SegmentationModel, "obb": models.OBBModel,
                       "classify": models.ClassificationModel}[task]
        model = model_class(cfg=cfg, nc=nc, verbose=False)
    model.names = {int(i): str(n) for i, n in data["names"].items()} if nc == len(data["names"]) else \
        {i: f"class_{i}" for i in range(nc)}
    return model


def make_scratch_checkpoint(arch: str, out_path: str | Path, num_classes: int | None = None,
                            imgsz: int = 640, kpt_shape: tuple[int, int] | None = None) -> Path:
    """Write an untrained, output-varied checkpoint for ``arch`` (e.g. ``yolo11n``, ``yolo26n-seg``,
    ``yolo11n-pose``, ``yolo11n-obb``, ``yolo11n-cls``); ``kpt_shape`` (pose): keypoints and values each."""
    import ultralytics

    torch.manual_seed(0)
    task = arch_task(arch)
    model = build_model(arch, task, num_classes, kpt_shape)
    vary_outputs(model, imgsz, task)
    model.args = {"task": task, "imgsz": imgsz}
    cfg = f"{arch}.yaml"
    checkpoint = {
        "model": model,
        "train_args": {"task": task, "imgsz": imgsz, "model": cfg},
        "version": ultralytics.__version__,
        "untrained": True,
        "description": f"UNTRAINED scratch checkpoint from {cfg} (random init, BN recalibrated): not trained weights",
    }
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_path) as tmp:
        torch.save(checkpoint, tmp)
    return out_path
