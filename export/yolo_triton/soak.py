"""A bounded soak: several tracks under concurrent load while things go wrong on a schedule (``make soak``).

N client threads (:class:`yolo_triton.client.ResilientClient`, the CLI's retry semantics) send real
images in a loop to every soaked track, and EVERY answer is compared with a reference computed once per
(track, image) on the freshly started server before the clock starts, with make validate's comparison
(:func:`yolo_triton.validate.compare_detections`, the precision's score tolerance, IoU >= 0.9 matching):
a difference is a **wrong answer** (the soak fails on one). Meanwhile, at fixed fractions of the run:

* ``reload``: the end2end model's file is rewritten as a re-export does (temp file + rename, same
  bytes) and ``make reload`` (``POST /v2/repository/models/<m>/load``) loads it into the running server;
* ``promote`` then ``rollback``: version 2 of the Track A model (a re-export of the same checkpoint,
  added with :func:`yolo_triton.versions.add_version`) is served with :func:`versions.promote`, then
  :func:`versions.rollback` goes back; the server must answer ready after each;
* ``broken model``: a model folder whose ``model.onnx`` is not ONNX is loaded next to the good ones (the
  load must fail, the good models must keep answering), then unloaded and removed;
* ``restart``: the server is SIGKILLed and started again on the same ports (only when the soak started
  it); the clients wait (readiness-gated) and resend; the time from the new process to ready is recorded;
* all along, one more thread sends malformed requests (wrong dtype, wrong shape, a batch over the
  model's max, an empty tensor; for Track D also truncated JPEG bytes and bytes that are no image): each
  must be refused by the server with that request's error and does not count as a wrong answer.

Readiness (``/v2/health/ready``, strict) is checked after every fault. The report (JSON + a PNG
timeline) holds requests by outcome and cause, wrong answers, p50/p99 latency per phase, the restart
time, and the server's RSS (with its Python-backend stubs) at the start and the end against a bound.
Every loop is bounded in time and count and stops by itself.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from yolo_triton import client as yc
from yolo_triton import postprocess as pp
from yolo_triton import triton_server as ts
from yolo_triton import validate as vd
from yolo_triton import versions as vs
from yolo_triton.files import atomic_path, atomic_write_text
from yolo_triton.settings import CONFIG_FILE, ONNX_FILE, defaults

LOG = logging.getLogger("soak")

REPO = Path(__file__).resolve().parents[2]
DEFAULT_SECONDS = 120.0
DEFAULT_CLIENTS = 4
BROKEN_MODEL = "soak_broken_model"
# When each fault starts, as a fraction of the run (in this order).
SCHEDULE = (("reload", 0.12), ("promote", 0.24), ("rollback", 0.36), ("broken model", 0.48), ("restart", 0.62))
MALFORMED_PERIOD_S = 0.5  # one malformed request every this many seconds
# Server memory: the end may exceed the start by at most this fraction of the start plus this many MiB
# (a restarted server starts from scratch; a leak per request would show as growth over the run).
RSS_GROWTH_FRACTION = 0.5
RSS_GROWTH_MIB = 64.0
MAX_REQUESTS_PER_CLIENT_PER_S = 200  # a hard cap on every loop's count, besides its deadline
TRACK_SUFFIXES = {"A": "", "end2end": "_end2end", "D": "_ensemble"}
# The DALI step's error for a batch it could not run: DALI's own message (a batch it could not decode),
# and the CPU stand-in's prefix (its empty-input check). A good image never fails there by itself.
DALI_STEP_ERRORS = ("Critical error in pipeline", "DALI stand-in:")


class SoakError(Exception):
    """The soak could not be set up (one line)."""


@dataclass
class SoakSettings:
    seconds: float = DEFAULT_SECONDS
    clients: int = DEFAULT_CLIENTS
    protocol: str = "grpc"
    policy: yc.RetryPolicy = field(default_factory=lambda: yc.RetryPolicy(timeout_s=60.0, retries=20, budget_s=60.0,
                                                                          backoff_s=0.2, backoff_max_s=2.0))
    malformed_period_s: float = MALFORMED_PERIOD_S
    rss_growth_fraction: float = RSS_GROWTH_FRACTION
    rss_growth_mib: float = RSS_GROWTH_MIB
    use_make: bool = True  # the reload goes through `make reload` (else the same POST from here)


@dataclass
class Target:
    """What is soaked: the server's URLs, the tracks (label -> model), and what the faults need."""

    http_url: str
    url: str  # the clients' protocol
    tracks: dict[str, str]
    models_dir: Path | None = None  # the served repository (local): reload, versions, broken model
    server: ts.RunningServer | None = None  # started here: kill and restart possible
    version_model: str | None = None  # Track A model with a version 2 for promote/rollback
    reload_model: str | None = None
    checkpoint: Path | None = None


@dataclass
class Record:
    t: float  # seconds since the start, when the answer (or error) came
    track: str
    kind: str  # "image" or the malformed kind
    outcome: str  # correct, wrong, rejected (malformed, refused as it must), error, accepted (malformed, not refused)
    cause: str = ""
    latency_ms: float = 0.0
    status: str = ""


@dataclass
class Event:
    name: str
    start: float
    end: float = 0.0
    ok: bool = False
    detail: str = ""
    ready_after: bool | None = None
    extra: dict = field(default_factory=dict)


# --------------------------------------------------------------------------------------------------
# Setting up: the tracks, version 2, the references
# --------------------------------------------------------------------------------------------------
def served_tracks(http_url: str, base: str, wanted: tuple[str, ...] = tuple(TRACK_SUFFIXES)) -> dict[str, str]:
    """The soakable tracks of ``base`` the server has READY (label -> model name)."""
    triton = vs.Triton(http_url, timeout=30)
    ready = {name for name in (f"{base}{s}" for s in TRACK_SUFFIXES.values()) if triton.ready_versions(name)}
    tracks = {label: f"{base}{TRACK_SUFFIXES[label]}" for label in wanted if f"{base}{TRACK_SUFFIXES[label]}" in ready}
    if not tracks:
        raise SoakError(f"no track of '{base}' is READY on {http_url} (looked for {', '.join(wanted)})")
    return tracks


def add_second_version(models_dir: Path, name: str, checkpoint: Path) -> None:
    """Version 2 of ``name``: a re-export of the same checkpoint (the same file), with its sidecar; the
    config is pinned to version 1 (what versions.add_version does), so promote has something to do."""
    model_dir = models_dir / name
    if 2 in vs.version_numbers(model_dir):
        return
    staged = models_dir.parent / f"{name}_v2_staged" / ONNX_FILE
    staged.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(model_dir / "1" / ONNX_FILE, staged)
    try:
        vs.add_version(models_dir, name, 2, staged, checkpoint, {"soak": "re-export of version 1"})
    finally:
        shutil.rmtree(staged.parent, ignore_errors=True)


def compare(reference: pp.Detections, answer: pp.Detections, conf: float, topk: int, score_tol: float,
            iou: float) -> list[str]:
    """make validate's comparison of one image's detections: [] when the same within the tolerance."""
    return vd.compare_detections([reference], [answer], conf, topk, score_tol, iou)["failures"]


def precision_tolerance(models_dir: Path | None, model: str) -> float:
    """The score tolerance of the model's precision (validate.TOLERANCES; FP32 when unknown)."""
    precision = "fp32"
    if models_dir is not None:
        onnx = models_dir / model / "1" / ONNX_FILE
        if onnx.is_file():
            import onnx as onnx_lib

            meta = {p.key: p.value for p in onnx_lib.load(str(onnx), load_external_data=False).metadata_props}
            precision = vd.precision_of(meta)
    return vd.TOLERANCES[precision][1]


# --------------------------------------------------------------------------------------------------
# Malformed requests
# --------------------------------------------------------------------------------------------------
def malformed_kinds(served: yc.ServedModel) -> list[str]:
    kinds = ["wrong dtype", "wrong shape", "oversized batch", "empty"]
    if served.kind == yc.KIND_ENCODED:
        kinds += ["truncated jpeg", "not an image"]
    return kinds


def malformed_request(client: yc.ResilientClient, served: yc.ServedModel, kind: str, jpeg: bytes):
    """Send one malformed request of ``kind`` to ``served`` (raises what the server answers)."""
    module = yc._protocol_module(client)
    batch = served.max_batch if served.max_batch > 0 else 1
    if served.kind == yc.KIND_ENCODED:
        good = np.frombuffer(jpeg, np.uint8)[None]
        data = {"wrong dtype": good.astype(np.int32), "wrong shape": np.repeat(good[:, None, :], 2, axis=1),
                "oversized batch": np.repeat(good, batch + 1, axis=0), "empty": np.zeros((1, 0), np.uint8),
                "truncated jpeg": good[:, : max(len(jpeg) // 3, 1)],
                "not an image": np.frombuffer(b"this is not an image, just text " * 64, np.uint8)[None]}[kind]
    else:
        s = served.imgsz
        dtype = np.uint8 if served.input_dtype == "UINT8" else np.float32
        data = {"wrong dtype": np.zeros((1, 3, s, s), np.float64 if dtype is np.float32 else np.float32),
                "wrong shape": np.zeros((1, 3, s // 2, s), dtype),
                "oversized batch": np.zeros((batch + 1, 3, s, s), dtype),
                "empty": np.zeros((0, 3, s, s), dtype)}[kind]
    wire = {np.dtype(np.float64): "FP64", np.dtype(np.float32): "FP32", np.dtype(np.uint8): "UINT8",
            np.dtype(np.int32): "INT32"}[data.dtype]
    tensor = module.InferInput(served.input_name, list(data.shape), wire)
    tensor.set_data_from_numpy(np.ascontiguousarray(data))
    return client.infer(served.name, [tensor])


# --------------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------------
class Soak:
    def __init__(self, target: Target, settings: SoakSettings, images: list[Path],
                 restart: Callable[[ts.RunningServer], ts.RunningServer] = ts.restart_server):
        if not images:
            raise SoakError("no images to send")
        self.target, self.settings, self.restart_fn = target, settings, restart
        self.paths = images
        self.frames = [yc.read_image(p) for p in images]
        self.jpegs = [p.read_bytes() for p in images]
        d = defaults()
        self.conf, self.iou, self.topk = float(d["CONF"]), float(d["IOU"]), int(d["TOPK"])
        self.records: list[Record] = []
        self.events: list[Event] = []
        self.rss: list[tuple[float, int]] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.t0 = 0.0
        self.killed_pid: int | None = None  # the process the restart fault killed (its end is planned)
        self.died: list[int] = []
        self.client_stats: dict[str, float] = {}  # the ResilientClients' attempts, retries, outages, summed
        self.served: dict[str, yc.ServedModel] = {}
        self.references: dict[tuple[str, int], pp.Detections] = {}
        self.tolerance: dict[str, float] = {}

    # -- helpers -----------------------------------------------------------------------------------
    def now(self) -> float:
        return time.monotonic() - self.t0

    def record(self, rec: Record) -> None:
        with self.lock:
            self.records.append(rec)

    def client(self) -> yc.ResilientClient:
        return yc.ResilientClient(self.target.url, self.settings.protocol, self.settings.policy)

    def close(self, client: yc.ResilientClient) -> None:
        client.close()
        with self.lock:
            for key, value in client.stats.items():
                self.client_stats[key] = round(self.client_stats.get(key, 0) + value, 3)

    def triton(self) -> vs.Triton:
        return vs.Triton(self.target.http_url, timeout=120)

    def server_rss(self) -> int | None:
        server = self.target.server
        return server.rss_bytes() if server is not None and server.process.poll() is None else None

    def wait_ready(self, timeout: float = 120.0, models_only: bool = False) -> float | None:
        """Seconds until /v2/health/ready answers 200 (``models_only``: until every soaked model is READY;
        None: not within ``timeout``)."""
        start = time.monotonic()
        while time.monotonic() - start < timeout and not self.stop.is_set():
            try:
                triton = self.triton()
                if all(triton.ready_versions(m) for m in self.target.tracks.values()) if models_only \
                        else triton.ready():
                    return time.monotonic() - start
            except Exception:  # noqa: BLE001 - not up yet
                pass
            time.sleep(0.05)
        return None

    # -- set-up ------------------------------------------------------------------------------------
    def prepare(self) -> None:
        """Describe every track and compute the reference answer of every (track, image)."""
        with self.client() as client:
            for label, model in self.target.tracks.items():
                served = yc.describe_model(client, model)
                self.served[label] = served
                self.tolerance[label] = precision_tolerance(self.target.models_dir, model if label != "D"
                                                            else model.removesuffix("_ensemble") + "_end2end")
                for index, frame in enumerate(self.frames):
                    encoded = [self.jpegs[index]] if served.kind == yc.KIND_ENCODED else None
                    (self.references[(label, index)],) = yc.infer(client, served, [frame], self.conf, self.iou,
                                                                  self.topk, encoded=encoded)
        LOG.info("references: %d tracks x %d images (%s)", len(self.served), len(self.frames),
                 ", ".join(f"{k} {v.name}" for k, v in self.served.items()))

    # -- the loops ---------------------------------------------------------------------------------
    def client_loop(self, number: int, deadline: float) -> None:
        labels = list(self.served)
        cap = int(MAX_REQUESTS_PER_CLIENT_PER_S * self.settings.seconds) + 100
        client = self.client()
        try:
            for i in range(cap):
                if self.stop.is_set() or time.monotonic() >= deadline:
                    break
                label = labels[(i + number) % len(labels)]
                index = (i // len(labels) + number) % len(self.frames)
                served = self.served[label]
                encoded = [self.jpegs[index]] if served.kind == yc.KIND_ENCODED else None
                start = time.perf_counter()
                try:
                    (answer,) = yc.infer(client, served, [self.frames[index]], self.conf, self.iou, self.topk,
                                         encoded=encoded)
                except Exception as err:  # noqa: BLE001 - every failure is a counted outcome
                    cause = "batch-mate of a malformed request" if collateral(err) else yc.failure_cause(err)
                    self.record(Record(self.now(), label, "image", "collateral" if collateral(err) else "error",
                                       cause, (time.perf_counter() - start) * 1e3, _status(err)))
                    LOG.warning("client %d: %s request failed: %s", number, label, _line(err))
                    continue
                failures = compare(self.references[(label, index)], answer, self.conf, self.topk,
                                   self.tolerance[label], self.iou)
                self.record(Record(self.now(), label, "image", "wrong" if failures else "correct",
                                   "; ".join(failures[:2]), (time.perf_counter() - start) * 1e3))
                if failures:
                    LOG.error("WRONG answer from %s for %s: %s", label, self.paths[index].name, failures[0])
        finally:
            self.close(client)

    def malformed_loop(self, deadline: float) -> None:
        plan = [(label, kind) for label, served in self.served.items() for kind in malformed_kinds(served)]
        cap = int(self.settings.seconds / self.settings.malformed_period_s) + 10
        client = self.client()
        try:
            for i in range(cap):
                if self.stop.wait(self.settings.malformed_period_s) or time.monotonic() >= deadline:
                    break
                label, kind = plan[i % len(plan)]
                start = time.perf_counter()
                try:
                    malformed_request(client, self.served[label], kind, self.jpegs[i % len(self.jpegs)])
                except Exception as err:  # noqa: BLE001 - the expected path
                    cause = yc.failure_cause(err)
                    # refused by the server for that request: a 4xx / INVALID_ARG, or (Track D's decode
                    # failures) the backend's own error for the request; not a connection, timeout, give-up
                    outcome = "rejected" if server_answered(err) and cause in ("invalid", "other") else "error"
                    self.record(Record(self.now(), label, kind, outcome, cause, (time.perf_counter() - start) * 1e3,
                                       _status(err)))
                    continue
                self.record(Record(self.now(), label, kind, "accepted", "not refused",
                                   (time.perf_counter() - start) * 1e3))
                LOG.error("malformed request (%s) to %s was NOT refused", kind, label)
        finally:
            self.close(client)

    def rss_loop(self, deadline: float) -> None:
        """RSS once a second; also notices a server process that ended without the soak killing it."""
        for _ in range(int(self.settings.seconds) + 60):
            server = self.target.server
            if server is not None and server.process.poll() is not None and server.process.pid != self.killed_pid \
                    and server.process.pid not in self.died:
                self.died.append(server.process.pid)
                tail = [line for line in server.log().splitlines()  # not Triton's I/W lines: the crash
                        if not (line[:1] in "IW" and line[1:5].isdigit())][-3:]
                event = Event("server died", self.now(), self.now(), False,
                              f"pid {server.process.pid} ended by itself (exit {server.process.returncode}): "
                              + " | ".join(tail)[:300], extra={"unplanned": True})
                with self.lock:
                    self.events.append(event)
                LOG.error("the server died by itself: %s", event.detail)
            rss = self.server_rss()
            if rss:
                with self.lock:
                    self.rss.append((self.now(), rss))
            if self.stop.wait(1.0) or time.monotonic() >= deadline:
                break

    # -- the faults --------------------------------------------------------------------------------
    def fault_reload(self, event: Event) -> None:
        model = self.target.reload_model
        onnx = self.target.models_dir / model / "1" / ONNX_FILE
        data = onnx.read_bytes()
        with atomic_path(onnx) as tmp:  # what a re-export does: a new file renamed over the old one
            tmp.write_bytes(data)
        if self.settings.use_make:
            done = subprocess.run(["make", "--no-print-directory", "-C", str(REPO), "reload", f"MODEL={model}",
                                   f"TRITON_HTTP={self.target.http_url}"], capture_output=True, text=True,
                                  timeout=300)
            ok, why = done.returncode == 0, (done.stderr.strip() or done.stdout.strip())[-300:]
        else:
            ok, why = self.triton().load(model)
        event.ok, event.detail = ok, f"make reload MODEL={model}" + ("" if ok else f": {why}")

    def fault_promote(self, event: Event) -> None:
        outcome = vs.promote(self.target.models_dir, self.target.version_model, 2, 1, self.triton())
        event.ok = 2 in outcome.ready
        event.detail = f"promote {self.target.version_model} version 2: Triton serves {outcome.ready}"

    def fault_rollback(self, event: Event) -> None:
        outcome = vs.rollback(self.target.models_dir, self.target.version_model, self.triton())
        event.ok = outcome.ready == [1]
        event.detail = f"rollback {self.target.version_model}: Triton serves {outcome.ready}"

    def fault_broken(self, event: Event) -> None:
        folder = self.target.models_dir / BROKEN_MODEL
        good = self.target.models_dir / self.target.tracks[next(iter(self.target.tracks))]
        (folder / "1").mkdir(parents=True, exist_ok=True)
        text = (good / CONFIG_FILE).read_text()
        name_line = next(line for line in text.splitlines() if line.startswith("name:"))
        atomic_write_text(folder / CONFIG_FILE, text.replace(name_line, f'name: "{BROKEN_MODEL}"'))
        (folder / "1" / ONNX_FILE).write_bytes(b"this is not an ONNX model\n" * 100)
        triton = self.triton()
        loaded, error = triton.load(BROKEN_MODEL)
        others_ready = all(triton.ready_versions(m) for m in self.target.tracks.values())
        event.extra["load_refused"] = not loaded
        event.extra["error"] = (error or "").strip().splitlines()[0][:200] if error else ""
        event.extra["server_ready_while_broken"] = triton.ready()
        event.extra["other_models_ready"] = others_ready
        # clean up as a user would: remove the folder, then a load (a repository poll) drops it from the
        # index. Triton 2.51 still reports the server not ready until a restart (strict readiness keeps the
        # failed load's record); every other model stays READY and answering, which is what is checked.
        shutil.rmtree(folder, ignore_errors=True)
        triton.load(BROKEN_MODEL)
        event.extra["in_index_after_cleanup"] = BROKEN_MODEL in {e.get("name") for e in _index(triton)}
        event.extra["server_ready_after_cleanup"] = triton.ready()
        event.ok = (not loaded) and others_ready
        event.detail = (f"load of {BROKEN_MODEL} refused ({event.extra['error'][:120]}); other models ready: "
                        f"{others_ready}; server ready while it was there: {event.extra['server_ready_while_broken']}")

    def fault_restart(self, event: Event) -> None:
        server = self.target.server
        if server is None:
            event.ok, event.detail = False, "skipped: the server was not started by the soak (TRITON_URL)"
            event.extra["skipped"] = True
            return
        event.extra["rss_before_kill_mib"] = round(server.rss_bytes() / 2**20, 1)
        self.killed_pid = server.process.pid
        server.kill()
        killed = time.monotonic()
        event.extra["pid_killed"] = server.process.pid
        self.target.server = self.restart_fn(server)
        ready = self.wait_ready()
        event.extra["restart_to_ready_s"] = None if ready is None else round(time.monotonic() - killed, 3)
        event.ok = ready is not None
        event.detail = (f"SIGKILL pid {server.process.pid}, started again on the same ports (pid "
                        f"{self.target.server.process.pid}); ready {event.extra['restart_to_ready_s']} s after the kill")

    def run_fault(self, name: str) -> Event:
        event = Event(name, self.now())
        with self.lock:
            self.events.append(event)
        LOG.info("fault at %.1f s: %s", event.start, name)
        method = {"reload": self.fault_reload, "promote": self.fault_promote, "rollback": self.fault_rollback,
                  "broken model": self.fault_broken, "restart": self.fault_restart}[name]
        try:
            method(event)
        except Exception as err:  # noqa: BLE001 - a fault that failed is reported, the soak goes on
            event.ok, event.detail = False, f"{type(err).__name__}: {_line(err)}"
        if not event.extra.get("skipped"):
            waited = self.wait_ready(60.0, models_only=name == "broken model")
            event.ready_after = waited is not None
            event.ok = event.ok and event.ready_after
        event.end = self.now()
        LOG.info("  %s: %s (%s; ready after: %s)", name, "ok" if event.ok else "FAILED", event.detail,
                 event.ready_after)
        return event

    def faults_loop(self, deadline: float) -> None:
        for name, fraction in SCHEDULE:
            at = self.t0 + fraction * self.settings.seconds
            if self.stop.wait(max(at - time.monotonic(), 0)) or time.monotonic() >= deadline:
                break
            if name != "restart" and self.target.models_dir is None:
                with self.lock:
                    self.events.append(Event(name, self.now(), self.now(), False,
                                             "skipped: no local repository (TRITON_URL)", extra={"skipped": True}))
                continue
            self.run_fault(name)

    # -- everything --------------------------------------------------------------------------------
    def run(self) -> dict:
        self.prepare()
        rss_start = self.server_rss()
        self.t0 = time.monotonic()
        deadline = self.t0 + self.settings.seconds
        hard = deadline + self.settings.policy.budget_s + 120  # no thread outlives this
        threads = [threading.Thread(target=self.client_loop, args=(n, deadline), name=f"soak-client-{n}", daemon=True)
                   for n in range(self.settings.clients)]
        threads += [threading.Thread(target=self.malformed_loop, args=(deadline,), name="soak-malformed", daemon=True),
                    threading.Thread(target=self.rss_loop, args=(deadline,), name="soak-rss", daemon=True)]
        faults = threading.Thread(target=self.faults_loop, args=(deadline,), name="soak-faults", daemon=True)
        for thread in [*threads, faults]:
            thread.start()
        try:
            faults.join(max(hard - time.monotonic(), 0))
            for thread in threads:
                thread.join(max(hard - time.monotonic(), 0))
        finally:
            self.stop.set()
            for thread in [*threads, faults]:
                thread.join(5)
        stuck = [t.name for t in [*threads, faults] if t.is_alive()]
        elapsed = self.now()
        rss_end = self.server_rss()
        return self.summary(elapsed, rss_start, rss_end, stuck)

    def summary(self, elapsed: float, rss_start: int | None, rss_end: int | None, stuck: list[str]) -> dict:
        records = sorted(self.records, key=lambda r: r.t)
        images = [r for r in records if r.kind == "image"]
        malformed = [r for r in records if r.kind != "image"]
        by_outcome: dict[str, int] = {}
        by_cause: dict[str, int] = {}
        for r in records:
            key = f"{'image' if r.kind == 'image' else 'malformed'} {r.outcome}"
            by_outcome[key] = by_outcome.get(key, 0) + 1
            if r.outcome != "correct":
                cause = f"{r.track} {r.kind}: {r.outcome} ({r.cause}{', ' + r.status if r.status else ''})"
                by_cause[cause] = by_cause.get(cause, 0) + 1
        phases = self.phases(images, elapsed)
        rss = self.rss_summary(rss_start, rss_end)
        wrong = sum(1 for r in images if r.outcome == "wrong")
        collateral_count = sum(1 for r in images if r.outcome == "collateral")
        unexpected = sum(1 for r in records if r.outcome in ("error", "accepted"))
        restart = next((e for e in self.events if e.name == "restart"), None)
        faults_ok = all(e.ok for e in self.events if not e.extra.get("skipped")) and \
            {e.name for e in self.events} == {name for name, _ in SCHEDULE}  # "server died" fails it too
        report = {
            "seconds": round(elapsed, 2), "settings": {**asdict(self.settings), "policy": asdict(self.settings.policy)},
            "tracks": {label: s.name for label, s in self.served.items()},
            "images": [str(p) for p in self.paths],
            "requests": {"total": len(records), "images": len(images), "malformed": len(malformed),
                         "by_outcome": dict(sorted(by_outcome.items())), "by_cause": dict(sorted(by_cause.items()))},
            "wrong_answers": wrong, "unexpected_errors": unexpected,
            "collateral_failures": collateral_count,
            "collateral_note": "good Track D images refused because they shared a dynamic batch with an image "
                               "the DALI step could not decode (the whole batch fails); counted apart, not wrong",
            "malformed_by_kind": _malformed_table(malformed),
            "phases": phases, "faults": [asdict(e) for e in self.events],
            "restart_to_ready_s": restart.extra.get("restart_to_ready_s") if restart else None,
            "server_rss": rss, "rss_timeline": [(round(t, 2), _mib(v)) for t, v in self.rss],
            "stuck_threads": stuck, "machine": _machine(),
            "client_retries": dict(self.client_stats),  # load and malformed-request clients, after the references
        }
        report["passed"] = (wrong == 0 and unexpected == 0 and faults_ok and not stuck
                            and rss["within_bound"] is not False)
        report["timeline"] = timeline(records, self.events, elapsed)
        return report

    def rss_summary(self, loaded: int | None, end: int | None) -> dict:
        """RSS of the server + its Python-backend stubs. ``start`` is the highest sample of the fault-free
        first phase: the server warmed up under this load (ONNX Runtime's arenas grow with the batch sizes
        the dynamic batcher forms); ``loaded`` (models loaded, no load yet) is reported beside it. Bound:
        the first process's peak until the SIGKILL (growth across reload, promote/rollback, broken model)
        and the end (the restarted process under the same load) within start x (1 + F) + M MiB."""
        first_fault = min((e.start for e in self.events), default=float("inf"))
        killed_at = next((e.start for e in self.events if e.name == "restart" and not e.extra.get("skipped")),
                         float("inf"))
        steady = [v for t, v in self.rss if t < first_fault]
        before_kill = [v for t, v in self.rss if t < killed_at]
        start = max(steady) if steady else loaded
        fraction, mib = self.settings.rss_growth_fraction, self.settings.rss_growth_mib
        out = {"loaded_mib": _mib(loaded), "start_mib": _mib(start), "end_mib": _mib(end),
               "peak_mib": _mib(max((v for _, v in self.rss), default=None)),
               "peak_before_kill_mib": _mib(max(before_kill, default=None)),
               "bound": f"peak before the kill and end <= start x {1 + fraction:g} + {mib:g} MiB (start: the highest "
                        "sample of the fault-free first phase; server + Python-backend stubs)"}
        if start and end:
            limit = start * (1 + fraction) + mib * 2**20
            out["limit_mib"] = _mib(limit)
            out["within_bound"] = end <= limit and max(before_kill, default=0) <= limit
        else:
            out["within_bound"] = None  # not measured (a server not started here)
        return out

    def phases(self, images: list[Record], elapsed: float) -> list[dict]:
        marks = [("steady", 0.0)] + [(e.name, e.start) for e in sorted(self.events, key=lambda e: e.start)
                                     if not e.extra.get("skipped")]
        rows = []
        for i, (name, start) in enumerate(marks):
            end = marks[i + 1][1] if i + 1 < len(marks) else elapsed
            inside = [r for r in images if start <= r.t < end]
            ok = [r.latency_ms for r in inside if r.outcome == "correct"]
            rows.append({"phase": name if i == 0 else f"from {name}", "start_s": round(start, 2),
                         "end_s": round(end, 2), "answers": len(inside),
                         "images_per_s": round(len(ok) / (end - start), 2) if end > start else None,
                         "p50_ms": round(float(np.percentile(ok, 50)), 1) if ok else None,
                         "p99_ms": round(float(np.percentile(ok, 99)), 1) if ok else None,
                         "wrong": sum(1 for r in inside if r.outcome == "wrong"),
                         "errors": sum(1 for r in inside if r.outcome in ("error", "collateral"))})
        return rows


def timeline(records: list[Record], events: list[Event], elapsed: float) -> dict:
    """Per second: correct answers, wrong answers, refused malformed requests, unexpected errors."""
    seconds = int(np.ceil(max(elapsed, 1.0)))
    series = {key: [0] * seconds for key in ("correct", "wrong", "rejected", "error")}
    for r in records:
        key = "error" if r.outcome in ("accepted", "collateral") else r.outcome
        series[key][min(int(r.t), seconds - 1)] += 1
    return {"second": list(range(seconds)), **series,
            "faults": [{"name": e.name, "start": round(e.start, 2), "end": round(e.end, 2), "ok": e.ok}
                       for e in events]}


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tl = report["timeline"]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 6), sharex=True, gridspec_kw={"height_ratios": [3, 2]})
    top.plot(tl["second"], tl["correct"], label="correct answers / s", color="tab:green")
    top.plot(tl["second"], tl["wrong"], label="wrong answers / s", color="tab:red")
    bottom.bar(tl["second"], tl["rejected"], label="malformed, refused / s", color="tab:gray")
    bottom.bar(tl["second"], tl["error"], bottom=tl["rejected"], label="errors / s", color="tab:orange")
    for fault in tl["faults"]:
        for axis in (top, bottom):
            axis.axvspan(fault["start"], max(fault["end"], fault["start"] + 0.3), color="tab:blue" if fault["ok"]
                         else "tab:red", alpha=0.15)
        top.annotate(fault["name"], (fault["start"], 1), xycoords=("data", "axes fraction"), rotation=90,
                     va="top", fontsize=8)
    top.set_ylabel("answers / s")
    bottom.set_ylabel("requests / s")
    bottom.set_xlabel("seconds since start")
    top.legend(loc="lower left", fontsize=8)
    bottom.legend(loc="upper left", fontsize=8)
    top.set_title(f"soak: {', '.join(report['tracks'].values())}; {report['requests']['images']} answers, "
                  f"{report['wrong_answers']} wrong; faults shaded (red: failed)", fontsize=9)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)


def write_report(report: dict, out: Path) -> tuple[Path, Path]:
    """``<out>.json`` and ``<out>.png``."""
    json_path, png_path = out.with_suffix(".json"), out.with_suffix(".png")
    json_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(json_path, json.dumps(report, indent=2) + "\n")
    plot(report, png_path)
    return json_path, png_path


def format_summary(report: dict) -> str:
    lines = [f"soak {report['seconds']} s, {report['settings']['clients']} clients, tracks "
             f"{', '.join(f'{k}={v}' for k, v in report['tracks'].items())}",
             f"requests: {report['requests']['total']} ({report['requests']['images']} images, "
             f"{report['requests']['malformed']} malformed); by outcome: {report['requests']['by_outcome']}",
             f"WRONG ANSWERS: {report['wrong_answers']}; unexpected errors: {report['unexpected_errors']}; "
             f"Track D images failed with a malformed batch-mate: {report['collateral_failures']}"]
    for cause, count in report["requests"]["by_cause"].items():
        lines.append(f"  {count:>5}  {cause}")
    for row in report["phases"]:
        lines.append(f"  phase {row['phase']:<16} {row['start_s']:>6.1f}-{row['end_s']:<6.1f} s  "
                     f"{row['answers']:>5} answers  {row['images_per_s'] or 0:>6.1f}/s  p50 {row['p50_ms']} ms  "
                     f"p99 {row['p99_ms']} ms  wrong {row['wrong']}  errors {row['errors']}")
    for fault in report["faults"]:
        state = "skipped" if fault["extra"].get("skipped") else "ok" if fault["ok"] else "FAILED"
        lines.append(f"  fault {fault['name']:<13} at {fault['start']:>6.1f} s: {state}; "
                     f"{fault['detail']}; ready after: {fault['ready_after']}")
    rss = report["server_rss"]
    lines.append(f"restart to ready: {report['restart_to_ready_s']} s; server RSS loaded {rss['loaded_mib']} MiB, "
                 f"start (warm) {rss['start_mib']} MiB, peak before the kill {rss['peak_before_kill_mib']} MiB, end "
                 f"{rss['end_mib']} MiB (limit {rss.get('limit_mib')} MiB): within bound: {rss['within_bound']}")
    lines.append("PASSED" if report["passed"] else "FAILED")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
def _malformed_table(records: list[Record]) -> dict:
    table: dict[str, dict] = {}
    for r in records:
        row = table.setdefault(f"{r.track} {r.kind}", {"sent": 0, "rejected": 0, "statuses": []})
        row["sent"] += 1
        row["rejected"] += r.outcome == "rejected"
        if r.status and r.status not in row["statuses"]:
            row["statuses"].append(r.status)
    return dict(sorted(table.items()))


def server_answered(err: BaseException) -> bool:
    """The server's own answer to the request (not a connection failure, a timeout or a client give-up)."""
    from tritonclient.utils import InferenceServerException

    return isinstance(err, InferenceServerException) and not yc.retryable(err) and \
        yc.failure_cause(err) not in ("timeout", "restricted")


def collateral(err: BaseException) -> bool:
    """A good Track D image refused because the dynamic batcher put it in one batch with an image the DALI
    step could not decode: the DALI step (the stand-in here; the DALI backend fails a batch as a whole as
    well) answers every request of a failed batch with the same error."""
    return server_answered(err) and any(marker in str(err) for marker in DALI_STEP_ERRORS)


def _status(err: BaseException) -> str:
    status = getattr(err, "status", None)
    return str(status() or "") if callable(status) else type(err).__name__


def _line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:200] if text else type(err).__name__


def _index(triton: vs.Triton) -> list[dict]:
    status, body = triton._call("/v2/repository/index", {})
    return json.loads(body) if status == 200 else []


def _mib(value) -> float | None:
    return None if value is None else round(value / 2**20, 1)


def _machine() -> dict:
    return {"cpus": os.cpu_count(), "loadavg": [round(v, 2) for v in os.getloadavg()]}
