"""Model versions for A/B rollouts: numbered version folders, their sidecars, and which ones Triton serves.

A model folder of the repository holds numbered versions beside each other::

    models/<name>/config.pbtxt        one config for every version (generated from version 1's artefact)
    models/<name>/labels.txt
    models/<name>/<N>/model.onnx      the artefact of version N
    models/<name>/<N>/version.json    its sidecar: checkpoint + SHA-256, every setting, validation, date
    models/<name>/rollout.json        what make promote / make rollback served, in order (rollback undoes)

Versions share the config, so they must share inputs, outputs (dtypes, dims) and class names:
:func:`check_compatible` refuses any other before it reaches the repository. A version, once written, is
never rebuilt (``make version VERSION=next`` writes a new one).

Which versions Triton serves is the config's ``version_policy``: ``latest { num_versions: KEEP_VERSIONS }``
as the config step writes it, or ``specific { versions: [...] }`` once :func:`promote` pinned it. Promote
N serves N as the newest (the default of a request without a version) plus, with KEEP_VERSIONS > 1, the
next older versions for A/B; nothing newer than N. The change reaches the running Triton through
explicit model control (``POST /v2/repository/models/<name>/load``): Triton loads the new versions before
it unloads the old ones, and when the load fails it keeps serving what it served; the config file is
then put back, so that a restart serves the same. A version whose validation failed, or whose artefact
changed since its sidecar was written, is refused unless forced.
"""
from __future__ import annotations

import hashlib
import json
import logging
import tempfile
import urllib.error
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from yolo_triton import triton_config as tc
from yolo_triton.errors import StepError
from yolo_triton.files import atomic_path, atomic_write_text
from yolo_triton.settings import ADMIN_KEY_ENV, CONFIG_FILE, LABELS_FILE, ONNX_FILE, PLAN_FILE, admin_headers

LOG = logging.getLogger("versions")

SIDECAR = "version.json"
ROLLOUT = "rollout.json"
MODEL_FILES = (ONNX_FILE, PLAN_FILE)


# --------------------------------------------------------------------------------------------------
# The folders
# --------------------------------------------------------------------------------------------------
def version_numbers(model_dir: str | Path) -> list[int]:
    """The numbered version folders of ``model_dir`` that hold a model file, ascending."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        return []
    found = [int(p.name) for p in model_dir.iterdir()
             if p.is_dir() and p.name.isdigit() and any((p / f).is_file() for f in MODEL_FILES)]
    return sorted(found)


def next_version(model_dir: str | Path) -> int:
    """One more than the highest numbered folder (any numbered folder counts, even an empty one)."""
    model_dir = Path(model_dir)
    numbers = [int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit()] \
        if model_dir.is_dir() else []
    return max(numbers, default=0) + 1


def parse_version(value: str | int) -> int:
    text = str(value).strip()
    if not text.isdigit() or int(text) < 1:
        raise StepError(f"VERSION={value!r} is not a version number >= 1 (or 'next' when building)")
    return int(text)


def sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def model_file(version_dir: Path) -> Path:
    for name in MODEL_FILES:
        if (version_dir / name).is_file():
            return version_dir / name
    raise StepError(f"{version_dir} holds no {' or '.join(MODEL_FILES)}")


def read_sidecar(version_dir: str | Path) -> dict | None:
    path = Path(version_dir) / SIDECAR
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise StepError(f"{path} is not JSON ({err}); rewrite it with make version or remove it") from None


# --------------------------------------------------------------------------------------------------
# Adding a version
# --------------------------------------------------------------------------------------------------
def _io_signature(inputs, outputs) -> list[tuple]:
    return [(t.name, t.dtype, tuple(t.shape[1:])) for t in (*inputs, *outputs)]


def check_compatible(artefact: Path, model_dir: Path) -> None:
    """Refuse an ONNX artefact that the model's config.pbtxt / labels.txt cannot serve (other tensors,
    dims or classes): one config serves every version of a model."""
    from yolo_triton.onnx_io import class_names, onnx_io, onnx_metadata

    config_path = model_dir / CONFIG_FILE
    if not config_path.is_file():
        raise StepError(f"{config_path} not found: build version 1 and its config first "
                        f"(make {config_path})")
    config = tc.parse_config(config_path)
    try:
        inputs, outputs = onnx_io(artefact)
    except Exception as err:  # onnx raises DecodeError and friends for a damaged file
        raise StepError(f"{artefact} is not a readable ONNX file ({type(err).__name__})") from None
    served = [(t.name, tc.numpy_dtype(t.data_type), tuple(t.dims)) for t in (*config.input, *config.output)]
    ours = _io_signature(inputs, outputs)
    if sorted(ours) != sorted(served):
        raise StepError(f"{artefact}: inputs/outputs {ours} differ from {config_path}'s {served}; the versions of "
                        f"one model share its config, so export this checkpoint under a name of its own")
    labels_path = model_dir / LABELS_FILE
    if labels_path.is_file():
        labels = [line.strip() for line in labels_path.read_text().splitlines() if line.strip()]
        names = class_names(onnx_metadata(artefact))
        if names != labels:
            raise StepError(f"{artefact}: class names differ from {labels_path} ({len(names)} vs {len(labels)} "
                            "classes, or other names); export this checkpoint under a name of its own")


@contextmanager
def validation_view(name: str, artefact: Path, checkpoint: Path) -> Iterator[tuple[Path, Path]]:
    """A temporary ``models/<name>/1/model.onnx`` + ``weights/<name>.pt`` made of links, so that
    :func:`yolo_triton.validate.validate` checks any version's artefact against its own checkpoint."""
    with tempfile.TemporaryDirectory(prefix="version-validate-") as tmp:
        models, weights = Path(tmp) / "models", Path(tmp) / "weights"
        (models / name / "1").mkdir(parents=True)
        weights.mkdir()
        (models / name / "1" / artefact.name).symlink_to(artefact.resolve())
        (weights / f"{name}.pt").symlink_to(checkpoint.resolve())
        yield models, weights


def run_validation(name: str, artefact: Path, checkpoint: Path, images: Path | None, settings,
                   report_path: Path | None = None) -> dict:
    """``make validate``'s check of this version's artefact against its checkpoint; returns the sidecar's
    ``validation`` entry (the full report goes to ``report_path`` when given)."""
    from yolo_triton.validate import format_table, validate

    with validation_view(name, artefact, checkpoint) as (models, weights):
        report = validate(name, models, weights, images, settings)
    print(format_table(report))
    if report_path is not None:
        atomic_write_text(report_path, json.dumps(report, indent=2, default=float) + "\n")
    checked = [f for f in report["formats"] if f["status"] != "skipped" and f["name"] != "pytorch"]  # the reference
    return {"run": True, "passed": bool(report["passed"]), "report": str(report_path) if report_path else None,
            "images": len(report["images"]), "settings": report["settings"],
            "formats": {f["name"]: f["status"] for f in checked},
            "failures": [n for f in checked for n in f["notes"]][:10]}


def sidecar_record(name: str, version: int, artefact: Path, checkpoint: Path, settings: dict[str, str],
                   validation: dict | None) -> dict:
    return {
        "model": name,
        "version": version,
        "artefact": artefact.name,
        "artefact_sha256": sha256(artefact),
        "checkpoint": str(checkpoint),
        "checkpoint_sha256": sha256(checkpoint),
        "settings": dict(sorted(settings.items())),
        "validation": validation or {"run": False, "passed": None},
        "built": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def add_version(models_dir: Path, name: str, version: int, source: Path, checkpoint: Path,
                settings: dict[str, str], validate_settings=None, images: Path | None = None,
                report_path: Path | None = None) -> dict:
    """Put ``source`` (an exported artefact) into ``models/<name>/<version>/`` with its sidecar.

    Checks first (compatible with the model's config, not already a different version), validates when
    ``validate_settings`` is given, then copies the file (temp name + rename) and writes the sidecar; a
    failure leaves no new folder behind. For version 1, ``source`` is already in place."""
    model_dir = Path(models_dir) / name
    version_dir = model_dir / str(version)
    target = version_dir / source.name
    if not source.is_file():
        raise StepError(f"artefact not found: {source}")
    if not checkpoint.is_file():
        raise StepError(f"checkpoint not found: {checkpoint}")
    in_place = target.exists() and target.resolve() == source.resolve()
    if target.exists() and not in_place:
        raise StepError(f"{target} exists: a version is never rebuilt; make version MODEL={name} VERSION=next "
                        "writes a new one")
    if source.suffix == ".onnx":
        check_compatible(source, model_dir)
    validation = None
    if validate_settings is not None:
        validation = run_validation(name, source, checkpoint, images, validate_settings, report_path)
    record = sidecar_record(name, version, source, checkpoint, settings, validation)
    if version > 1:
        pin_served_versions(model_dir)
    if not in_place:
        with atomic_path(target) as tmp:  # removes the version folder again if the copy fails
            tmp.write_bytes(source.read_bytes())
    try:
        atomic_write_text(version_dir / SIDECAR, json.dumps(record, indent=2) + "\n")
    except BaseException:
        if not in_place:
            target.unlink(missing_ok=True)
            version_dir.rmdir()
        raise
    status = "not run" if validation is None else ("PASSED" if validation["passed"] else "FAILED")
    LOG.info("version %d of %s: %s (checkpoint %s sha256 %s), validation %s", version, name, target, checkpoint,
             record["checkpoint_sha256"][:12], status)
    if validation is not None and not validation["passed"]:
        LOG.warning("version %d of %s FAILED validation: make promote refuses it (FORCE=1 overrides)", version, name)
    return record


def pin_served_versions(model_dir: Path) -> None:
    """Before a new version folder appears: turn a ``latest`` policy into ``specific`` with exactly the
    versions it serves now, so that the new version goes live only through ``make promote`` (its checks),
    never by a restart or a reload picking up the newest folder."""
    config_path = model_dir / CONFIG_FILE
    config = tc.parse_config(config_path)
    policy = tc.version_policy(config)
    if "specific" in policy:
        return
    served = served_versions(policy, version_numbers(model_dir))
    if served:
        tc.write_model_config(model_dir, tc.apply_version_policy(config, {"specific": served}))
        LOG.info("%s: version_policy %s -> specific %s (what is served now): a new version goes live only "
                 "through make promote", config_path, policy, served)


# --------------------------------------------------------------------------------------------------
# Serving: policy, checks, the running Triton
# --------------------------------------------------------------------------------------------------
def newest_served(policy: dict, present: list[int]) -> int | None:
    """The version a request without a version reaches: the highest one the policy serves."""
    if "specific" in policy:
        served = [v for v in policy["specific"] if v in present]
    elif "latest" in policy:
        served = present[-policy["latest"]:]
    else:
        served = present
    return max(served, default=None)


def served_versions(policy: dict, present: list[int]) -> list[int]:
    if "specific" in policy:
        return sorted(v for v in policy["specific"] if v in present)
    if "latest" in policy:
        return present[-policy["latest"]:]
    return list(present)


def refusal(model_dir: Path, version: int) -> str | None:
    """Why ``version`` must not be served without FORCE=1, or None: validation failed, or the artefact
    is not the one its sidecar recorded. A version without a sidecar (built before versions existed)
    passes with a warning: nothing is known against it."""
    version_dir = model_dir / str(version)
    record = read_sidecar(version_dir)
    if record is None:
        LOG.warning("version %d of %s has no %s (not built with make version): not validated", version,
                    model_dir.name, SIDECAR)
        return None
    validation = record.get("validation") or {}
    if validation.get("run") and not validation.get("passed"):
        first = (validation.get("failures") or ["see its report"])[0]
        return f"version {version} of {model_dir.name} failed validation ({first})"
    artefact = version_dir / record.get("artefact", ONNX_FILE)
    if not artefact.is_file():
        return f"{artefact} is missing"
    if sha256(artefact) != record.get("artefact_sha256"):
        return f"{artefact} changed since {SIDECAR} was written (SHA-256 differs)"
    if not validation.get("run"):
        LOG.warning("version %d of %s was not validated (make version VALIDATE=0)", version, model_dir.name)
    return None


def check_loadable(model_dir: Path, version: int) -> None:
    """Refuse (even with FORCE=1) an ONNX version Triton cannot load: unreadable, I/O other than the config's,
    or refused by ONNX Runtime. Triton (r24.10) keeps a version whose load failed in its repository index
    as UNAVAILABLE until that version loads, so with ``--strict-readiness=true`` the whole server would
    report not ready until a restart. A TensorRT plan is not checked here (only the server's GPU can)."""
    artefact = model_dir / str(version) / ONNX_FILE
    if not artefact.is_file():
        return
    why = None
    try:
        check_compatible(artefact, model_dir)
    except StepError as err:
        why = str(err)
    if why is None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        options.log_severity_level = 3
        try:
            ort.InferenceSession(str(artefact), options, providers=["CPUExecutionProvider"])
        except Exception as err:  # noqa: BLE001 - onnxruntime raises its own Fail/InvalidGraph/... types
            why = f"{artefact}: ONNX Runtime cannot load it ({str(err).strip().splitlines()[0][:200]})"
    if why:
        raise StepError(f"version {version} of {model_dir.name}: Triton cannot load it: {why}; refused before "
                        "anything changed (a failed load would leave the server not ready until a restart), "
                        "and FORCE=1 does not skip this check")


def promote_policy(version: int, present: list[int], keep: int, usable=lambda v: True) -> dict:
    """``specific``: ``version`` plus the next older usable versions, ``keep`` in all (never a newer one,
    so ``version`` is what a request without a version gets)."""
    older = [v for v in sorted(present, reverse=True) if v < version and usable(v)]
    return {"specific": sorted([version, *older[:max(int(keep), 1) - 1]])}


class Triton:
    """The running server's HTTP endpoint (``host:port``): model control and readiness. ``admin_key``
    (None: ``$TRITON_ADMIN_KEY``) goes with every call as the ``admin-key`` header: a server published
    beyond loopback answers its model-repository API (index, load) only with it (docker-compose.yml)."""

    def __init__(self, url: str, timeout: float = 300.0, admin_key: str | None = None):
        self.base = "http://" + url.removeprefix("http://").rstrip("/")
        self.timeout = timeout
        self.headers = admin_headers("http", admin_key)

    def _call(self, path: str, body: dict | None = None) -> tuple[int, str]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method="GET" if body is None else "POST",
                                         headers={"Content-Type": "application/json", **self.headers})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return response.status, response.read().decode(errors="replace")
        except urllib.error.HTTPError as err:
            text = err.read().decode(errors="replace")
            if err.code == 403 and "restricted" in text:
                raise StepError(f"{self.base}{path}: Triton refused it (HTTP 403, {_error_text(text)}): its admin "
                                f"API is locked; set {ADMIN_KEY_ENV} to the server's key"
                                f"{' (the one sent is not it)' if self.headers else ''}") from None
            return err.code, text
        except OSError as err:
            raise StepError(f"no Triton at {self.base} ({err}); start it (docker compose up -d triton-api) or "
                            "set TRITON_HTTP=host:port") from None

    def live(self) -> bool:
        return self._call("/v2/health/live")[0] == 200

    def ready_versions(self, model: str) -> list[int]:
        status, body = self._call("/v2/repository/index", {})
        if status != 200:
            raise StepError(f"{self.base}: repository index answered HTTP {status}: {body[:200]}")
        return sorted(int(e["version"]) for e in json.loads(body)
                      if e.get("name") == model and e.get("state") == "READY" and str(e.get("version", "")).isdigit())

    def ready(self) -> bool:
        """``/v2/health/ready`` (with ``--strict-readiness=true``: every version in the index loaded)."""
        return self._call("/v2/health/ready")[0] == 200

    def failed_versions(self, model: str) -> list[int]:
        """Versions of ``model`` the index lists as not loaded for another reason than an unload."""
        status, body = self._call("/v2/repository/index", {})
        if status != 200:
            return []
        return sorted(int(e["version"]) for e in json.loads(body) if e.get("name") == model
                      and e.get("state") != "READY" and e.get("reason", "unloaded") != "unloaded"
                      and str(e.get("version", "")).isdigit())

    def load(self, model: str) -> tuple[bool, str]:
        status, body = self._call(f"/v2/repository/models/{model}/load", {})
        if status == 200:
            return True, ""
        try:
            return False, json.loads(body).get("error", body)
        except json.JSONDecodeError:
            return False, body


def _error_text(body: str) -> str:
    try:
        return str(json.loads(body).get("error", body))
    except (json.JSONDecodeError, AttributeError):
        return body


def read_rollout(model_dir: Path) -> list[dict]:
    path = model_dir / ROLLOUT
    return json.loads(path.read_text())["history"] if path.is_file() else []


def write_rollout(model_dir: Path, history: list[dict]) -> None:
    atomic_write_text(model_dir / ROLLOUT, json.dumps({"history": history}, indent=2) + "\n")


@dataclass
class Outcome:
    model: str
    policy: dict
    newest: int | None
    ready: list[int]


def serve_policy(models_dir: Path, name: str, policy: dict, triton: Triton | None, action: str,
                 force: bool = False, history: list[dict] | None = None) -> Outcome:
    """Write ``policy`` into the model's config and (unless ``triton`` is None) load it into the running
    server; on a refused load put the old config back, make sure the old versions still serve, raise.
    Every version the policy serves passes :func:`refusal` first (``force`` skips those checks)."""
    model_dir = Path(models_dir) / name
    config_path = model_dir / CONFIG_FILE
    if not config_path.is_file():
        raise StepError(f"{config_path} not found (is MODELS_DIR={models_dir} the served repository?)")
    present = version_numbers(model_dir)
    wanted = served_versions(policy, present)
    missing = sorted(set(policy.get("specific", [])) - set(present))
    if missing or not wanted:
        raise StepError(f"{name} has versions {present}; cannot serve {policy} (missing {missing or 'all'})")
    for version in [] if force else wanted:
        why = refusal(model_dir, version)
        if why:
            raise StepError(f"{why}: refused; FORCE=1 serves it anyway")
    if force:
        LOG.warning("FORCE=1: validation and SHA-256 checks skipped for versions %s", wanted)
    old_text = config_path.read_text()
    old_policy = tc.version_policy(tc.parse_config(config_path))
    before = None
    if triton is not None:
        if not triton.live():
            raise StepError(f"Triton at {triton.base} is not live; config.pbtxt not changed")
        before = triton.ready_versions(name)
        LOG.info("%s: Triton serves versions %s now", name, before)
    for version in wanted:  # even forced: a version Triton cannot load would leave the server not ready
        if before is None or version not in before:
            check_loadable(model_dir, version)
    if history is None:  # promote: the history so far, starting with what was served before the first one
        history = read_rollout(model_dir) or [{"action": "initial", "policy": old_policy, "date": _now()}]
    config = tc.apply_version_policy(tc.parse_config(config_path), policy)
    tc.write_model_config(model_dir, config)
    LOG.info("%s: %s -> version_policy %s (newest served: %s)", config_path, old_policy, policy,
             newest_served(policy, present))
    ready: list[int] = []
    if triton is not None:
        try:
            ok, error = triton.load(name)
            ready = triton.ready_versions(name)
        except BaseException as err:  # no answer (transport error, timeout, Ctrl-C): put the file back
            atomic_write_text(config_path, old_text)
            unknown = (f"config.pbtxt restored to version_policy {old_policy}; Triton may still load {policy}: "
                       f"make versions MODEL={name} shows what it serves")
            if isinstance(err, Exception):
                raise StepError(f"no answer from Triton to loading {name} ({str(err).splitlines()[0]}); "
                                f"{unknown}") from None
            LOG.error("interrupted before Triton answered the load of %s: %s", name, unknown)
            raise
        if not ok or not set(wanted) <= set(ready):
            atomic_write_text(config_path, old_text)
            reloaded = ""
            if not set(before) <= set(ready):  # Triton keeps the old versions on a failed load; if not, reload them
                triton.load(name)
                ready = triton.ready_versions(name)
                reloaded = " after loading the restored config again"
            first = (error or f"versions {sorted(set(wanted) - set(ready))} not ready").strip().splitlines()[0]
            stuck = triton.failed_versions(name)
            unready = "" if not stuck or triton.ready() else (
                f"; Triton keeps {name} versions {stuck} in its index as UNAVAILABLE (a failed version's record "
                "is replaced only by a successful load of that version), so with --strict-readiness=true it "
                "reports not ready until it restarts (docker compose restart triton-api)")
            raise StepError(f"Triton did not load {name} {policy}: {first}; config.pbtxt restored, "
                            f"Triton serves versions {ready}{reloaded}{unready}")
        LOG.info("%s: Triton serves versions %s now (a request without a version gets %s)", name, ready, max(ready))
    write_rollout(model_dir, [*history, {"action": action, "policy": policy, "date": _now(),
                                         "forced": bool(force)}])
    return Outcome(name, policy, newest_served(policy, present), ready)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def promote(models_dir: Path, name: str, version: str | int, keep: int, triton: Triton | None,
            force: bool = False) -> Outcome:
    """Serve ``version`` as the newest (``latest``: back to ``latest { num_versions: keep }``)."""
    model_dir = Path(models_dir) / name
    if str(version) == "latest":
        return serve_policy(models_dir, name, {"latest": max(int(keep), 1)}, triton, "promote latest", force)
    number = parse_version(version)
    present = version_numbers(model_dir)
    if number not in present:
        raise StepError(f"{name} has no version {number} (versions: {present or 'none'} under {model_dir})")
    usable = lambda v: refusal(model_dir, v) is None  # noqa: E731 - older versions kept for A/B must pass too
    policy = promote_policy(number, present, keep, usable)
    return serve_policy(models_dir, name, policy, triton, f"promote {number}", force)


def rollback(models_dir: Path, name: str, triton: Triton | None, force: bool = False) -> Outcome:
    """Undo the last promote/rollback: serve the policy recorded before it in ``rollout.json``."""
    model_dir = Path(models_dir) / name
    history = read_rollout(model_dir)
    if len(history) < 2:
        raise StepError(f"nothing to roll back for {name}: no earlier promote in {model_dir / ROLLOUT}; "
                        "make promote MODEL=... VERSION=N serves a version of your choice")
    previous = history[-2]
    outcome = serve_policy(models_dir, name, previous["policy"], triton, "rollback", force, history=history[:-2])
    return outcome
