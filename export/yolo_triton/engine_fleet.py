"""TensorRT engine step, GPUs of one host: which GPUs build, which plans a fleet needs, and the locks that
keep ``make -j`` safe (bottom layer beside :mod:`yolo_triton.engine`; imports nothing of the builders).

* **Inventory.** ``nvidia-smi --query-gpu=index,uuid,name,compute_cap`` lists the GPUs; ``GPUS=0,2``
  chooses some by nvidia-smi index (default: all of them).
* **Plans per capability.** A plan runs only on the compute capability that built it. When the chosen
  GPUs have several capabilities, one plan is built per capability on a GPU of that capability: the
  capability of the first chosen GPU gets ``model.plan`` (the Make target, Triton's default file name),
  every other one ``model_sm<XY>.plan`` beside it; the config's ``cc_model_filenames`` maps each
  capability (``"8.0"``) to its file. ``HW_COMPAT=ampere+`` builds one portable ``model.plan`` instead.
* **One build per GPU.** A build holds an exclusive ``flock`` on ``<lock dir>/gpu-<uuid>.lock`` for as
  long as it runs; a build waits until a GPU of the capability it needs is free, so ``make -j`` can
  start any number of builds and each GPU still runs one at a time.
* **Timing caches** are shared by the builds of one GPU model and are only read and updated under
  ``lockf`` on ``<cache>.lock``, the lock file and call TensorRT's own samples and trtexec use for the
  same file (``shared/utils/fileLock.cpp``), see :func:`cache_lock`.
"""
from __future__ import annotations

import fcntl
import logging
import os
import re
import subprocess
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from yolo_triton.errors import StepError

log = logging.getLogger(__name__)

HW_COMPAT_LEVELS = ("none", "ampere+")  # HW_COMPAT: TensorRT hardware compatibility of the plan
AMPERE = (8, 0)  # ampere+ plans run on compute capability 8.0 and newer (TensorRT: "Ampere and newer GPUs")
SMI_QUERY = ["nvidia-smi", "--query-gpu=index,uuid,name,compute_cap", "--format=csv,noheader"]


@dataclass(frozen=True)
class Gpu:
    """One GPU as nvidia-smi lists it (``index`` is nvidia-smi's, i.e. PCI bus order)."""

    index: int
    uuid: str
    name: str
    compute_capability: str  # "9.0"

    @property
    def lock_name(self) -> str:
        key = re.sub(r"[^A-Za-z0-9-]+", "-", self.uuid).strip("-") or f"index{self.index}"
        return f"gpu-{key}.lock"


@dataclass(frozen=True)
class PlanTarget:
    """One plan file to build and the GPUs that may build it."""

    plan: Path
    compute_capability: str | None  # None: a portable (HW_COMPAT) plan, any chosen GPU builds it
    gpus: tuple[Gpu, ...]


def cc_tuple(cc: str) -> tuple[int, int]:
    match = re.fullmatch(r"\s*(\d+)\.(\d+)\s*", str(cc))
    if not match:
        raise StepError(f"not a compute capability: {cc!r} (expected e.g. 8.9)")
    return int(match.group(1)), int(match.group(2))


def sm_tag(cc: str) -> str:
    """``"8.9"`` -> ``"sm89"``."""
    major, minor = cc_tuple(cc)
    return f"sm{major}{minor}"


def parse_smi(text: str) -> list[Gpu]:
    """Rows of ``index, uuid, name, compute_cap`` (names may hold commas: split from both ends)."""
    gpus = []
    for line in text.strip().splitlines():
        if not line.strip():
            continue
        index, uuid, rest = (part.strip() for part in line.split(",", 2))
        name, cc = (part.strip() for part in rest.rsplit(",", 1))
        cc_tuple(cc)
        gpus.append(Gpu(int(index), uuid, name, cc))
    return gpus


def list_gpus(run=subprocess.run) -> list[Gpu]:
    """Every GPU nvidia-smi lists, or [] when there is no nvidia-smi (or it fails)."""
    try:
        out = run(SMI_QUERY, capture_output=True, text=True, timeout=30, check=True).stdout
        return parse_smi(out)
    except (OSError, subprocess.SubprocessError, ValueError, StepError) as err:
        log.debug("nvidia-smi gave no GPU list: %s", err)
        return []


def choose_gpus(gpus: list[Gpu], spec: str) -> list[Gpu]:
    """``GPUS``: empty or ``all`` -> every GPU; ``0,2`` -> those nvidia-smi indices, in that order."""
    spec = (spec or "").strip()
    if spec in ("", "all"):
        return list(gpus)
    by_index = {g.index: g for g in gpus}
    chosen = []
    for part in spec.split(","):
        part = part.strip()
        if not part.isdigit():
            raise StepError(f"GPUS={spec!r}: {part!r} is not a GPU index; use e.g. GPUS=0,2 (nvidia-smi -L lists them)")
        if int(part) not in by_index:
            listed = ",".join(str(i) for i in sorted(by_index)) or "none"
            raise StepError(f"GPUS={spec!r}: GPU {part} is not on this machine (nvidia-smi lists {listed})")
        if by_index[int(part)] not in chosen:
            chosen.append(by_index[int(part)])
    return chosen


def plan_targets(plan: Path, gpus: list[Gpu], hw_compat: str = "none") -> list[PlanTarget]:
    """The plans one Make target builds: one per compute capability, or one portable plan.

    The capability of the first chosen GPU gets ``plan`` itself; each other one ``<stem>_sm<XY><suffix>``.
    """
    plan = Path(plan)
    if hw_compat not in HW_COMPAT_LEVELS:
        raise StepError(f"HW_COMPAT={hw_compat!r} must be one of {', '.join(HW_COMPAT_LEVELS)}")
    if hw_compat == "ampere+":
        old = [g for g in gpus if cc_tuple(g.compute_capability) < AMPERE]
        if old:
            raise StepError(f"HW_COMPAT=ampere+ plans run on compute capability 8.0 and newer; GPU {old[0].index} "
                            f"({old[0].name}) is sm {old[0].compute_capability}: leave it out with GPUS= or "
                            "build per capability (HW_COMPAT=none)")
        return [PlanTarget(plan, None, tuple(gpus))]
    groups: dict[str, list[Gpu]] = {}
    for gpu in gpus:
        groups.setdefault(gpu.compute_capability, []).append(gpu)
    targets = []
    for i, (cc, members) in enumerate(groups.items()):
        path = plan if i == 0 else plan.with_name(f"{plan.stem}_{sm_tag(cc)}{plan.suffix}")
        targets.append(PlanTarget(path, cc, tuple(members)))
    return targets


def cc_model_filenames(targets: list[PlanTarget]) -> dict[str, str]:
    """Triton's ``cc_model_filenames`` for a fleet: capability -> file name; empty for a single plan."""
    if len(targets) < 2:
        return {}
    return {t.compute_capability: t.plan.name for t in targets if t.compute_capability}


def sibling_plans(plan: Path) -> list[Path]:
    """Per-capability plans beside ``plan`` (``model_sm*.plan``), whatever fleet built them."""
    plan = Path(plan)
    return sorted(p for p in plan.parent.glob(f"{plan.stem}_sm*{plan.suffix}")
                  if re.fullmatch(rf"{re.escape(plan.stem)}_sm\d+{re.escape(plan.suffix)}", p.name))


# ---------------------------------------------------------------- locks


@contextmanager
def gpu_lock(gpus: tuple[Gpu, ...] | list[Gpu], lock_dir: Path, poll_s: float = 0.2,
             sleep: Callable[[float], None] = time.sleep) -> Iterator[Gpu]:
    """Hold the first free GPU of ``gpus`` (an exclusive flock per GPU); wait while all of them build.

    The lock is released when the block ends or the process dies (the kernel drops flocks), so a killed
    build never leaves a GPU locked.
    """
    if not gpus:
        raise StepError("no GPU to build on (GPUS chose none)")
    lock_dir = Path(lock_dir)
    lock_dir.mkdir(parents=True, exist_ok=True)
    waited = False
    while True:
        for gpu in gpus:
            fd = os.open(lock_dir / gpu.lock_name, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            try:
                yield gpu
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)
            return
        if not waited:
            log.info("waiting for a free GPU (%s busy with other builds)",
                     ", ".join(f"GPU {g.index}" for g in gpus))
            waited = True
        sleep(poll_s)


@contextmanager
def cache_lock(cache: Path) -> Iterator[None]:
    """Exclusive ``lockf`` on ``<cache>.lock``: what TensorRT's samples and trtexec take around reading and
    writing a timing cache file (``nvinfer1::utils::FileLock``), so we also exclude a trtexec started by hand
    on the same cache."""
    cache = Path(cache)
    cache.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(str(cache) + ".lock", os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX)
        yield
    finally:
        try:
            fcntl.lockf(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)


def read_bytes_or_empty(path: Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        return b""
