"""Serving benchmark: the track comparison on the user's own Triton, measured the way clients see it.

For each served track of a model, found from the server's repository index and configs

    ``<name>`` (A: ONNX, client NMS), ``<name>_trt`` (B: TensorRT, client NMS), ``<name>_end2end`` (end2end
    ONNX), ``<name>_trt_end2end`` (C: TensorRT end2end), ``<name>_ensemble`` (D: JPEG bytes -> DALI -> C),

and for each cell of a grid (concurrency x images per request), ``C`` closed-loop clients (threads, spread
over ``processes`` worker processes when one Python process cannot keep a GPU busy) send real images,
cycled, through the SAME code path users call: ``yolo_triton.client.infer`` (letterbox, one request over
HTTP or gRPC, NMS where the track needs it, boxes mapped back to the original pixels; Track D sends the
files' JPEG bytes). Each client first makes ``warmup`` untimed calls; then the server's statistics are
read, all clients start together and run for a fixed duration or a fixed number of calls, and the
statistics are read again. Tracks take turns at each grid point (a change of load on the machines hits
them alike). Per cell:

* images/s (images answered / wall time of the window) and latency p50/p90/p99 of one ``infer`` call;
* the split of a call (means): client pre (letterbox), server (the round trip as the client sees it:
  serialisation, network, queue, compute), client post (decoding, NMS, mapping back), from
  ``yolo_triton.client.round_trips``;
* the server's own figures for the same window (``/v2/models/<m>/stats`` deltas, for an ensemble also
  each composing model): requests, inferences, executions, queue and compute time per request, and the
  batch sizes actually executed, which show whether dynamic batching happened.

Tensors travel in the requests (``shared_memory="none"``) or, for clients on the server's machine, through
shared memory regions that each client registers once and reuses (``"system"``: /dev/shm; ``"cuda"``:
GPU memory; yolo_triton.client.SharedMemory); the outputs say which (``settings.shared_memory``).

Outputs: a Markdown table, a JSON file and a PNG plot (images/s against p50 latency, one line per track).
Library use (``scripts/bench_serving.py`` is the command line)::

    with open_client("127.0.0.1:8001", "grpc") as client:
        tracks = discover_tracks(client, "yolov11_small")
    result = run_benchmark(Settings(url="127.0.0.1:8001", protocol="grpc", tracks=tracks, ...))
"""
from __future__ import annotations

import argparse
import json
import logging
import multiprocessing as mp
import os
import platform
import queue
import signal
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from yolo_triton import client as yc
from yolo_triton.files import atomic_path, atomic_write_text
from yolo_triton.timing import cpu_model

LOG = logging.getLogger("bench_serving")

# (track id, model-name suffix, label, the client kind the track's model must have)
TRACKS = (
    ("A", "", "Track A: ONNX, client NMS", yc.KIND_OUTPUT0),
    ("B", "_trt", "Track B: TensorRT, client NMS", yc.KIND_OUTPUT0),
    ("end2end", "_end2end", "end2end ONNX (NMS in the graph)", yc.KIND_END2END),
    ("C", "_trt_end2end", "Track C: TensorRT end2end", yc.KIND_END2END),
    ("D", "_ensemble", "Track D: JPEG bytes, DALI, end2end", yc.KIND_ENCODED),
)
TRACK_IDS = tuple(t[0] for t in TRACKS)
WARMUP_TIMEOUT_S = 600.0  # a first request may build engines or caches
STATS_SETTLE_S = 10.0  # the server updates its statistics just after the responses go out


class BenchError(Exception):
    """A failure with a one-line cause (server not there, model not served, bad setting)."""


@dataclass(frozen=True)
class Track:
    track: str  # one of TRACK_IDS, or the user's own label
    label: str
    model: str
    served: yc.ServedModel

    @property
    def stats_models(self) -> tuple[str, ...]:
        """Whose statistics to read: the model, and for an ensemble also its steps."""
        return (self.model, *self.served.steps)


@dataclass
class Settings:
    url: str
    protocol: str
    tracks: list[Track]
    images: list[Path]
    concurrency: Sequence[int] = (1, 2, 4)
    batch: Sequence[int] = (1,)  # images per infer() call
    seconds: float | None = 10.0  # fixed duration per cell ...
    requests: int | None = None  # ... or a fixed number of infer() calls per cell (then seconds is None)
    warmup: int = 2  # untimed infer() calls per client before the window
    processes: int = 1  # worker processes the clients are spread over (threads inside each)
    nms_mode: str | None = None  # Track A/B client NMS (default: yolo_triton.client.default_mode())
    shared_memory: str = "none"  # how tensors travel: one of yolo_triton.client.SHARED_MEMORY_MODES
    progress: bool = True


# --------------------------------------------------------------------------------------------------
# The server: connection, repository index, tracks, statistics
# --------------------------------------------------------------------------------------------------
def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0]}" if text else type(err).__name__


@contextmanager
def open_client(url: str, protocol: str) -> Iterator[object]:
    """A live ``tritonclient`` client (closed on exit), or BenchError when no server answers at ``url``."""
    client = yc.connect(url, protocol)
    try:
        try:
            live = client.is_server_live()
        except Exception as err:  # connection refused, DNS, gRPC UNAVAILABLE, ...
            raise BenchError(f"no Triton server answers at {url} ({protocol}): {_first_line(err)}; start one "
                             "(docker compose up -d, or make bench-serving-local) or set TRITON_URL=host:port"
                             ) from None
        if not live:
            raise BenchError(f"the Triton server at {url} ({protocol}) is not live")
        yield client
    finally:
        client.close()


def repository_index(client) -> dict[str, dict]:
    """``{model: {"state": ..., "reason": ...}}`` from the server's repository index (HTTP or gRPC)."""
    admin = yc.admin_kwargs(client)  # the index is model-repository API: locked on a published server
    if type(client).__module__.startswith("tritonclient.grpc"):
        entries = client.get_model_repository_index(as_json=True, **admin).get("models", [])
    else:
        entries = client.get_model_repository_index(**admin)
    return {e["name"]: e for e in entries}


def discover_tracks(client, name: str, wanted: Sequence[str] | None = None, url: str = "") -> list[Track]:
    """The READY tracks of ``name`` on the server (``wanted``: a subset of TRACK_IDS, all when None).

    A wanted track that is in the repository but not READY, or that is not there at all, is a BenchError
    when asked for by id; with ``wanted=None`` only the READY ones are taken (at least one must be)."""
    index = repository_index(client)
    unknown = set(wanted or ()) - set(TRACK_IDS)
    if unknown:
        raise BenchError(f"unknown track(s) {sorted(unknown)}; choose from {list(TRACK_IDS)}")
    tracks, missing = [], []
    for track_id, suffix, label, kind in TRACKS:
        if wanted is not None and track_id not in wanted:
            continue
        model = f"{name}{suffix}"
        entry = index.get(model)
        state = (entry or {}).get("state", "")
        if state != "READY":
            missing.append(f"{model} ({state or 'not in the repository'}"
                           f"{': ' + entry['reason'] if entry and entry.get('reason') else ''})")
            continue
        tracks.append(_track(client, track_id, label, model, kind))
    where = f" at {url}" if url else ""
    if wanted is not None and missing:
        raise BenchError(f"not served{where}: {'; '.join(missing)}")
    if not tracks:
        names = [f"{name}{t[1]}" for t in TRACKS]
        raise BenchError(f"model '{name}' is not served{where}: none of {names} is READY "
                         f"(the server has: {', '.join(sorted(index)) or 'no models'})")
    return tracks


def explicit_track(client, label: str, model: str, url: str = "") -> Track:
    """A track given as ``LABEL=MODEL`` (any served model; its kind read from its config)."""
    entry = repository_index(client).get(model)
    if entry is None or entry.get("state") != "READY":
        state = "not in the repository" if entry is None else f"{entry.get('state')}: {entry.get('reason', '')}"
        raise BenchError(f"model '{model}' is not served at {url or 'the server'} ({state.strip(': ')})")
    return _track(client, label, label, model, None)


def _track(client, track_id: str, label: str, model: str, kind: str | None) -> Track:
    try:
        served = yc.describe_model(client, model)
    except yc.ClientError as err:
        raise BenchError(str(err)) from None
    if kind is not None and served.kind != kind:
        raise BenchError(f"'{model}' is served as a {served.kind} model; track {track_id} expects {kind}")
    if served.kind == yc.KIND_ENCODED and served.imgsz is None and yc.LETTERBOX_OUTPUT not in served.outputs:
        raise BenchError(f"cannot tell the input size of '{model}' to map boxes back (no visible step)")
    return Track(track_id, label, model, served)


def server_metadata(client) -> dict:
    meta = client.get_server_metadata()
    if isinstance(meta, dict):
        return {"name": meta.get("name"), "version": meta.get("version")}
    return {"name": meta.name, "version": meta.version}


def model_stats(client, model: str) -> dict:
    """Cumulative statistics of ``model`` (all versions summed), from ``/v2/models/<m>/stats``."""
    if type(client).__module__.startswith("tritonclient.grpc"):
        raw = client.get_inference_statistics(model_name=model, as_json=True)
    else:
        raw = client.get_inference_statistics(model_name=model)
    out = {"requests": 0, "inferences": 0, "executions": 0, "queue_ns": 0, "compute_ns": 0, "success_ns": 0,
           "batches": {}}
    for entry in raw.get("model_stats", []):
        stats = entry.get("inference_stats", {})
        out["inferences"] += int(entry.get("inference_count", 0))
        out["executions"] += int(entry.get("execution_count", 0))
        out["requests"] += int(stats.get("success", {}).get("count", 0))
        out["success_ns"] += int(stats.get("success", {}).get("ns", 0))
        out["queue_ns"] += int(stats.get("queue", {}).get("ns", 0))
        out["compute_ns"] += sum(int(stats.get(k, {}).get("ns", 0))
                                 for k in ("compute_input", "compute_infer", "compute_output"))
        for batch in entry.get("batch_stats", []):
            size = int(batch["batch_size"])
            out["batches"][size] = out["batches"].get(size, 0) + int(batch.get("compute_infer", {}).get("count", 0))
    return out


def stats_delta(before: dict, after: dict) -> dict:
    """What the server did between two ``model_stats`` readings (times per request in ms)."""
    requests = after["requests"] - before["requests"]
    inferences = after["inferences"] - before["inferences"]
    executions = after["executions"] - before["executions"]
    batches = {s: after["batches"][s] - before["batches"].get(s, 0) for s in sorted(after["batches"])}
    batches = {s: n for s, n in batches.items() if n}

    def per_request(key: str) -> float | None:
        return round((after[key] - before[key]) / requests / 1e6, 3) if requests else None

    return {"requests": requests, "inferences": inferences, "executions": executions,
            "batch_sizes": {str(s): n for s, n in batches.items()},
            "mean_batch": round(inferences / executions, 2) if executions else None,
            "queue_ms": per_request("queue_ns"), "compute_ms": per_request("compute_ns"),
            "request_ms": per_request("success_ns")}


# --------------------------------------------------------------------------------------------------
# Clients: closed loops in threads (and worker processes)
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Job:
    """What a worker needs (picklable: sent to worker processes)."""

    url: str
    protocol: str
    served: yc.ServedModel
    images: tuple[str, ...]
    batch: int
    warmup: int
    seconds: float | None
    quotas: tuple[int, ...]  # per client (count mode); empty in duration mode
    first_client: int  # index of this worker's first client (for image offsets)
    nms_mode: str | None
    shared_memory: str = "none"


def _load_images(paths: Sequence[str]) -> tuple[list[np.ndarray], list[bytes]]:
    images, encoded = [], []
    for path in paths:
        images.append(yc.read_image(Path(path)))
        encoded.append(Path(path).read_bytes())
    return images, encoded


def _client_loop(job: _Job, index: int, images, encoded, barrier, stop, counter, records: list, errors: list) -> None:
    """One closed-loop client: warm-up, wait for the start, then call infer() back to back. With shared
    memory the client registers its regions once, before the warm-up, and removes them when it ends."""
    client = None
    regions = None
    try:
        client = yc.connect(job.url, job.protocol)
        if job.shared_memory != "none":
            regions = yc.SharedMemory(client, job.served, job.shared_memory, batch=job.batch)
            regions.open()
        n = len(images)
        position = (job.first_client + index) * job.batch  # clients start at different images

        def call() -> tuple:
            nonlocal position
            picks = [(position + k) % n for k in range(job.batch)]
            position += job.batch
            start = time.perf_counter()
            with yc.round_trips() as stamps:
                found = yc.infer(client, job.served, [images[i] for i in picks], mode=job.nms_mode,
                                 encoded=[encoded[i] for i in picks], shared_memory=regions)
            end = time.perf_counter()
            server = sum(b - a for a, b in stamps)
            pre = stamps[0][0] - start if stamps else 0.0
            return (start, end, pre, server, end - start - pre - server, len(stamps), len(picks),
                    sum(len(d) for d in found))

        for _ in range(job.warmup):
            if stop.is_set():
                return
            call()
        barrier.wait()  # warm-up done everywhere; the parent reads the server's statistics
        barrier.wait()  # ... and starts the window
        quota = job.quotas[index] if job.quotas else None
        deadline = time.perf_counter() + job.seconds if job.seconds is not None else None
        done = 0
        while not stop.is_set():
            if quota is not None and done >= quota:
                break
            if deadline is not None and time.perf_counter() >= deadline:
                break
            records.append(call())
            done += 1
            with counter.get_lock():
                counter.value += 1
    except threading.BrokenBarrierError:
        pass  # another client failed or the run was interrupted: its error (if any) is reported
    except Exception as err:  # noqa: BLE001 - reported as the cell's error, one line
        errors.append(_first_line(err))
        stop.set()
        barrier.abort()
    finally:
        try:
            if regions is not None:
                regions.close()  # unregistered from the server and removed from /dev/shm before the client goes
        finally:
            if client is not None:
                client.close()


def _run_clients(job: _Job, clients: int, barrier, stop, counter) -> tuple[list, list]:
    """``clients`` closed loops in threads of this process; (records, errors) once all have ended."""
    images, encoded = _load_images(job.images)
    records: list = []
    errors: list = []
    threads = [threading.Thread(target=_client_loop, name=f"bench-client-{job.first_client + k}",
                                args=(job, k, images, encoded, barrier, stop, counter, records, errors))
               for k in range(clients)]
    for thread in threads:
        thread.start()
    try:
        for thread in threads:
            while thread.is_alive():
                thread.join(timeout=0.2)
    finally:  # interrupted: make every client leave its loop, then wait for each
        if any(t.is_alive() for t in threads):
            stop.set()
            barrier.abort()
            for thread in threads:
                thread.join()
    return records, errors


def _worker_process(job: _Job, clients: int, barrier, stop, counter, results) -> None:
    """A worker process: Ctrl-C is the parent's to handle (it sets ``stop``); SIGTERM (the parent's last
    resort) unwinds the clients, so that their shared memory regions are removed."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def terminated(signum, frame):
        raise SystemExit(143)

    signal.signal(signal.SIGTERM, terminated)
    try:
        records, errors = _run_clients(job, clients, barrier, stop, counter)
    except Exception as err:  # noqa: BLE001 - e.g. an image that does not decode
        records, errors = [], [_first_line(err)]
        stop.set()
        barrier.abort()
    results.put((records, errors))


@contextmanager
def _sigint_ignored():
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if k < total % parts else 0) for k in range(parts)]


class _Bar:
    """A one-line progress bar per cell on stderr (redrawn in place on a terminal)."""

    def __init__(self, title: str, total: float, unit: str, enabled: bool):
        self.title, self.total, self.unit, self.enabled = title, total, unit, enabled
        self.tty = enabled and sys.stderr.isatty()
        self.last = 0.0

    def update(self, done: float, rate: float, force: bool = False) -> None:
        if not self.enabled or not (self.tty or force):
            return
        now = time.monotonic()
        if not force and now - self.last < 0.2:
            return
        self.last = now
        frac = min(done / self.total, 1.0) if self.total else 1.0
        bar = "#" * int(frac * 24) + "." * (24 - int(frac * 24))
        shown = f"{done:.0f}/{self.total:.0f} {self.unit}" if self.unit == "calls" else f"{done:.1f}/{self.total:.0f} s"
        line = f"{self.title} [{bar}] {shown} {rate:8.1f} img/s"
        sys.stderr.write(("\r" if self.tty else "") + line + ("" if self.tty and not force else "\n"))
        sys.stderr.flush()

    def finish(self, done: float, rate: float) -> None:
        if self.enabled:
            self.update(done, rate, force=True)
            if self.tty:
                sys.stderr.write("\n")
                sys.stderr.flush()


def run_cell(settings: Settings, track: Track, concurrency: int, batch: int, stats_client) -> dict:
    """One cell: ``concurrency`` clients, ``batch`` images per call; the measured figures."""
    processes = max(1, min(settings.processes, concurrency))
    per_process = _split(concurrency, processes)
    quotas = _split(settings.requests, concurrency) if settings.requests is not None else []
    if settings.requests is not None and settings.requests < concurrency:
        raise BenchError(f"--requests {settings.requests} < concurrency {concurrency}: every client needs one")
    if track.served.max_batch > 0 and batch > track.served.max_batch and track.served.kind != yc.KIND_ENCODED:
        LOG.warning("%s: %d images per call > max_batch %d: the client splits each call into several requests",
                    track.model, batch, track.served.max_batch)
    threaded = processes == 1
    ctx = None if threaded else mp.get_context("spawn")
    barrier = threading.Barrier(concurrency + 1) if threaded else ctx.Barrier(concurrency + 1)
    stop = threading.Event() if threaded else ctx.Event()
    counter = mp.Value("q", 0) if threaded else ctx.Value("q", 0)
    jobs, first = [], 0
    for count in per_process:
        jobs.append(_Job(settings.url, settings.protocol, track.served, tuple(map(str, settings.images)), batch,
                         settings.warmup, settings.seconds if settings.requests is None else None,
                         tuple(quotas[first:first + count]) if quotas else (), first, settings.nms_mode,
                         settings.shared_memory))
        first += count
    title = f"{track.track:>7} {track.model} c={concurrency} b={batch}"
    unit, total = ("calls", settings.requests) if settings.requests is not None else ("s", settings.seconds)
    bar = _Bar(title, total, unit, settings.progress)
    records: list = []
    errors: list = []
    outcome: dict = {}
    workers: list = []
    results_queue = None

    def collect(part) -> None:
        records.extend(part[0])
        errors.extend(part[1])

    baseline = {m: model_stats(stats_client, m) for m in track.stats_models}  # before the warm-up
    try:
        if threaded:
            runner_out: dict = {}

            def runner() -> None:
                try:
                    runner_out["result"] = _run_clients(jobs[0], per_process[0], barrier, stop, counter)
                except Exception as err:  # noqa: BLE001 - e.g. an image that does not decode
                    runner_out["result"] = ([], [_first_line(err)])
                    stop.set()
                    barrier.abort()

            workers.append(threading.Thread(target=runner, name="bench-clients"))
            workers[0].start()
        else:
            results_queue = ctx.Queue()
            with _sigint_ignored():  # the workers inherit SIG_IGN: Ctrl-C is the parent's to handle
                for job, count in zip(jobs, per_process):
                    workers.append(ctx.Process(target=_worker_process, daemon=True,
                                               args=(job, count, barrier, stop, counter, results_queue)))
                    workers[-1].start()
        try:  # warm-up done everywhere -> statistics before -> start
            barrier.wait(timeout=WARMUP_TIMEOUT_S)
            warm_images = concurrency * settings.warmup * batch
            outcome["before"] = _counted_stats(stats_client, track.stats_models, baseline, warm_images,
                                               warm_images if track.served.kind == yc.KIND_ENCODED else
                                               concurrency * settings.warmup)
            barrier.wait(timeout=WARMUP_TIMEOUT_S)
            outcome["start"] = time.perf_counter()
        except threading.BrokenBarrierError:
            stop.set()  # a client failed during warm-up (its error is collected below), or a timeout
        received = 0
        while True:
            start = outcome.get("start")
            if start is not None:
                elapsed = time.perf_counter() - start
                bar.update(counter.value if unit == "calls" else min(elapsed, total),
                           counter.value * batch / elapsed if elapsed > 0 else 0.0)
            if threaded:
                workers[0].join(timeout=0.1)
                if not workers[0].is_alive():
                    collect(runner_out.get("result", ([], ["the clients ended without a result"])))
                    break
                continue
            try:
                collect(results_queue.get(timeout=0.1))
                received += 1
            except queue.Empty:
                if not any(w.is_alive() for w in workers):
                    try:  # a last result still in the pipe
                        collect(results_queue.get(timeout=1.0))
                        received += 1
                    except queue.Empty:
                        pass
                    if received < len(workers):
                        errors.append(f"{len(workers) - received} worker process(es) ended without a result")
                    break
            if received == len(workers):
                break
        for worker in workers:
            worker.join(timeout=30)
    except BaseException:  # Ctrl-C, SIGTERM: every client leaves its loop; nothing is left running
        stop.set()
        barrier.abort()
        for worker in workers:
            worker.join(timeout=30)
            if isinstance(worker, mp.process.BaseProcess) and worker.is_alive():
                worker.terminate()
                worker.join()
        raise
    finally:
        if results_queue is not None:
            results_queue.close()
            results_queue.cancel_join_thread()
    end = max((r[1] for r in records), default=time.perf_counter())
    identity = {"track": track.track, "label": track.label, "model": track.model, "kind": track.served.kind,
                "concurrency": concurrency, "batch": batch, "processes": processes}
    if errors or "before" not in outcome:  # the cell failed: said in its row; the grid goes on
        error = errors[0] if errors else "the clients did not start"
        bar.finish(len(records) if unit == "calls" else 0.0, 0.0)
        LOG.error("%s c=%d b=%d failed after %d call(s): %s", track.model, concurrency, batch, len(records), error)
        return {**identity, "error": error, "calls": len(records)}
    images = sum(r[6] for r in records)
    round_trips = sum(r[5] for r in records)
    after = _counted_stats(stats_client, track.stats_models, outcome["before"], images, round_trips)
    server = {m: stats_delta(outcome["before"][m], after[m]) for m in track.stats_models}
    wall = end - outcome["start"]
    cell = summarise(records, wall)
    bar.finish(cell["calls"] if unit == "calls" else min(wall, total), cell["images_per_s"])
    cell.update({**identity, "round_trips": round_trips, "server": server})
    return cell


def _counted_stats(client, models: Sequence[str], baseline: dict, images: int, requests: int) -> dict:
    """Statistics of ``models`` once they have counted ``images`` more inferences (each model, also in
    its executed batch sizes) and ``requests`` more successful requests (the first model) than
    ``baseline``: the server updates its counters just after the responses go out, not all at once.
    After STATS_SETTLE_S whatever is there."""
    deadline = time.monotonic() + STATS_SETTLE_S

    def counted(m: str, now: dict) -> bool:
        then = baseline[m]
        batched = sum(s * (n - then["batches"].get(s, 0)) for s, n in now["batches"].items())
        return now["inferences"] - then["inferences"] >= images and (batched >= images or not now["batches"])

    while True:
        now = {m: model_stats(client, m) for m in models}
        if (all(counted(m, now[m]) for m in models) and now[models[0]]["requests"] - baseline[models[0]]["requests"]
                >= requests) or time.monotonic() > deadline:
            return now
        time.sleep(0.05)


def summarise(records: Sequence[tuple], wall: float) -> dict:
    """Throughput and latency of one cell's ``infer`` calls (records of ``_client_loop``)."""
    calls = len(records)
    images = sum(r[6] for r in records)
    lat = np.array([r[1] - r[0] for r in records]) * 1e3
    split = np.array([r[2:5] for r in records]).reshape(-1, 3) * 1e3

    def pct(q: float) -> float | None:
        return round(float(np.percentile(lat, q)), 3) if calls else None

    return {"calls": calls, "images": images, "wall_s": round(wall, 4),
            "images_per_s": round(images / wall, 2) if wall > 0 else 0.0,
            "calls_per_s": round(calls / wall, 2) if wall > 0 else 0.0,
            "latency_ms": {"p50": pct(50), "p90": pct(90), "p99": pct(99),
                           "mean": round(float(lat.mean()), 3) if calls else None,
                           "max": round(float(lat.max()), 3) if calls else None},
            "split_ms": {k: round(float(v), 3) for k, v in zip(("pre", "server", "post"), split.mean(axis=0))}
            if calls else {"pre": None, "server": None, "post": None},
            "detections_per_image": round(sum(r[7] for r in records) / images, 2) if images else None}


# --------------------------------------------------------------------------------------------------
# The grid, and what is written
# --------------------------------------------------------------------------------------------------
def machine() -> dict:
    return {"cpu": cpu_model(), "cpus": os.cpu_count(), "system": f"{platform.system()} {platform.release()}",
            "python": platform.python_version(), "host": platform.node(), "load_average": _load_average()}


def _load_average() -> list[float] | None:
    """1/5/15-minute load averages: how busy the client's machine was (other work skews the figures)."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def run_benchmark(settings: Settings, note: str = "", on_cell=None) -> dict:
    """Every track x concurrency x batch; ``on_cell(result)`` after each cell (partial results)."""
    if not settings.tracks:
        raise BenchError("no tracks to measure")
    if not settings.images:
        raise BenchError("no images")
    if (settings.seconds is None) == (settings.requests is None):
        raise BenchError("give either a duration (seconds) or a number of calls (requests) per cell")
    if any(c < 1 for c in settings.concurrency) or any(b < 1 for b in settings.batch):
        raise BenchError("concurrency and images per request must be >= 1")
    if settings.shared_memory not in yc.SHARED_MEMORY_MODES:
        raise BenchError(f"shared memory must be one of {list(yc.SHARED_MEMORY_MODES)}, got {settings.shared_memory!r}")
    if settings.shared_memory == "cuda":
        try:
            yc.check_cuda_shared_memory()  # before any request
        except yc.ClientError as err:
            raise BenchError(str(err)) from None
    with open_client(settings.url, settings.protocol) as client:
        result = {"tool": "yolo_triton.bench_serving", "note": note, "machine": machine(),
                  "server": {"url": settings.url, "protocol": settings.protocol, **server_metadata(client)},
                  "settings": {"concurrency": list(settings.concurrency), "batch": list(settings.batch),
                               "seconds": settings.seconds, "requests": settings.requests,
                               "warmup": settings.warmup, "processes": settings.processes,
                               "nms_mode": settings.nms_mode or yc.default_mode(),
                               "shared_memory": settings.shared_memory,
                               "images": [Path(p).name for p in settings.images]},
                  "tracks": [{"track": t.track, "label": t.label, "model": t.model, "kind": t.served.kind,
                              "imgsz": t.served.imgsz, "max_batch": t.served.max_batch,
                              "steps": list(t.served.steps)} for t in settings.tracks],
                  "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "cells": []}
        # Tracks take turns at each grid point, so that a change of load on the machines hits them alike;
        # the cells are listed track by track.
        rank = {(t.track, t.model): k for k, t in enumerate(settings.tracks)}
        for batch in settings.batch:
            for concurrency in settings.concurrency:
                for track in settings.tracks:
                    result["cells"].append(run_cell(settings, track, concurrency, batch, client))
                    result["cells"].sort(key=lambda c: (rank[c["track"], c["model"]], c["batch"], c["concurrency"]))
                    if on_cell is not None:
                        on_cell(result)
    result["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    result["machine"]["load_average_end"] = _load_average()
    return result


def _fmt(value, digits: int = 1) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def comparison_table(result: dict) -> str:
    """The seed's "Track Comparison" shape, one row per track (and images per request): its best
    throughput and where it was reached, latency alone (lowest concurrency) and at that point, the
    client/server split there, and the largest batch the server executed."""
    head = ("| Track | Model | Images/request | Best images/s (concurrency) | Latency p50 alone / at best (ms) "
            "| Client pre / server / client post at best (ms) | Largest batch executed |")
    lines = [head, "|---|---|---:|---:|---:|---:|---:|"]
    groups: dict[tuple, list] = {}
    for cell in (c for c in result["cells"] if "error" not in c):
        groups.setdefault((cell["label"], cell["model"], cell["batch"]), []).append(cell)
    for (label, model, batch), cells in groups.items():
        best = max(cells, key=lambda c: c["images_per_s"])
        alone = min(cells, key=lambda c: c["concurrency"])
        split = best["split_ms"]
        largest = max((int(size) for stats in best["server"].values() for size in stats["batch_sizes"]), default=None)
        lines.append(f"| {label} | {model} | {batch} | {_fmt(best['images_per_s'])} ({best['concurrency']}) "
                     f"| {_fmt(alone['latency_ms']['p50'])} / {_fmt(best['latency_ms']['p50'])} "
                     f"| {_fmt(split['pre'])} / {_fmt(split['server'])} / {_fmt(split['post'])} "
                     f"| {largest if largest is not None else '–'} |")
    return "\n".join(lines) + "\n"


TRANSFER = {"none": "in the requests and responses (no shared memory)",
            "system": "through system shared memory (/dev/shm) registered by each client",
            "cuda": "through CUDA shared memory (GPU) registered by each client"}


def transfer(result: dict) -> str:
    """How the tensors travelled, in words (results written before the setting existed: in the requests)."""
    settings = result.get("settings", {})
    mode = settings.get("shared_memory", "none")
    return f"{result['server']['protocol']}, tensors {TRANSFER.get(mode, mode)}"


def markdown(result: dict) -> str:
    """What <out>.md holds: how the tensors travelled, the comparison per track, then every cell."""
    return (f"Transfer: {transfer(result)}.\n\n"
            f"**Track comparison**\n\n{comparison_table(result)}\n**Every cell**\n\n{markdown_table(result)}")


def markdown_table(result: dict) -> str:
    """Every cell: one row each, with the client split and the server's own figures."""
    head = ("| Track | Model | Concurrency | Images/request | Images/s | Latency p50 / p90 / p99 (ms) "
            "| Client pre / server / client post (ms) | Server queue / compute (ms/request) "
            "| Batch sizes executed (size×count) |")
    lines = [head, "|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for cell in result["cells"]:
        if "error" in cell:
            lines.append(f"| {cell['label']} | {cell['model']} | {cell['concurrency']} | {cell['batch']} "
                         f"| failed: {cell['error'].replace('|', '/')} | | | | |")
            continue
        lat, split = cell["latency_ms"], cell["split_ms"]
        own = cell["server"][cell["model"]]
        batches = ", ".join(f"{s}×{n}" for s, n in own["batch_sizes"].items()) or "–"
        steps = [m for m in cell["server"] if m != cell["model"]]
        for step in steps:  # an ensemble's steps batch on their own
            b = ", ".join(f"{s}×{n}" for s, n in cell["server"][step]["batch_sizes"].items()) or "–"
            batches += f"; {step}: {b}"
        lines.append(f"| {cell['label']} | {cell['model']} | {cell['concurrency']} | {cell['batch']} "
                     f"| {_fmt(cell['images_per_s'])} | {_fmt(lat['p50'])} / {_fmt(lat['p90'])} / {_fmt(lat['p99'])} "
                     f"| {_fmt(split['pre'])} / {_fmt(split['server'])} / {_fmt(split['post'])} "
                     f"| {_fmt(own['queue_ms'])} / {_fmt(own['compute_ms'])} | {batches} |")
    return "\n".join(lines) + "\n"


def plot(result: dict, path: Path) -> Path:
    """Images/s against p50 latency, one line per track (and images per request), concurrency marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=100)
    series: dict[tuple, list] = {}
    for cell in (c for c in result["cells"] if "error" not in c):
        series.setdefault((cell["label"], cell["batch"]), []).append(cell)
    many_batches = len({c["batch"] for c in result["cells"]}) > 1
    for (label, batch), cells in series.items():
        cells = sorted(cells, key=lambda c: c["concurrency"])
        x = [c["latency_ms"]["p50"] for c in cells]
        y = [c["images_per_s"] for c in cells]
        name = f"{label}, {batch}/request" if many_batches else label
        ax.plot(x, y, marker="o", label=name)
        for c, xi, yi in zip(cells, x, y):
            ax.annotate(f"c={c['concurrency']}", (xi, yi), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set_xlabel("latency p50 per request (ms)")
    ax.set_ylabel("images/s")
    server = result["server"]
    mode = result.get("settings", {}).get("shared_memory", "none")
    ax.set_title(f"Serving: {server.get('name', 'triton')} {server.get('version', '')} over {server['protocol']}"
                 f"{'' if mode == 'none' else f', {mode} shared memory'}"
                 f"{' (' + result['note'] + ')' if result.get('note') else ''}", fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path


def write_outputs(result: dict, json_path: Path | None, markdown_path: Path | None, plot_path: Path | None) -> None:
    if json_path is not None:
        atomic_write_text(json_path, json.dumps(result, indent=1) + "\n")
    if markdown_path is not None:
        atomic_write_text(markdown_path, markdown(result))
    if plot_path is not None and any("error" not in c for c in result["cells"]):
        plot(result, plot_path)


# --------------------------------------------------------------------------------------------------
# Command line (scripts/bench_serving.py, make bench-serving)
# --------------------------------------------------------------------------------------------------
def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench_serving.py",
                                     description="Serving benchmark of a model's tracks on a running Triton, "
                                                 "through yolo_triton.client (pre, server, post).")
    parser.add_argument("--url", default=None, help="host:port of the server (default 127.0.0.1:8000 for http, "
                                                    ":8001 for grpc)")
    parser.add_argument("--protocol", choices=yc.PROTOCOLS, default="grpc")
    parser.add_argument("--model", help="the model's base name: its tracks <name>, <name>_trt, <name>_end2end, "
                                        "<name>_trt_end2end, <name>_ensemble are found on the server")
    parser.add_argument("--tracks", nargs="+", choices=TRACK_IDS, help="only these tracks (each must be served)")
    parser.add_argument("--track", action="append", default=[], metavar="LABEL=MODEL",
                        help="an explicit served model to measure (repeatable; instead of or besides --model)")
    parser.add_argument("--images", nargs="+", default=None, help="files or folders, cycled (default: "
                                                                  "ultralytics' sample images)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--batch", type=int, nargs="+", default=[1], help="images per request (per infer call)")
    window = parser.add_mutually_exclusive_group()
    window.add_argument("--seconds", type=float, default=None, help="duration of each cell (default 10)")
    window.add_argument("--requests", type=int, default=None, help="infer calls per cell, instead of a duration")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls per client before each cell")
    parser.add_argument("--processes", type=int, default=1, help="worker processes the clients are spread over "
                                                                 "(a GPU server needs several to be kept busy)")
    parser.add_argument("--nms-mode", default=None, help="client NMS of Tracks A/B (default: NMS of defaults.mk)")
    parser.add_argument("--shared-memory", choices=yc.SHARED_MEMORY_MODES, default="none",
                        help="tensors through shared memory: system (/dev/shm; clients on the server's machine) or "
                             "cuda (GPU memory; the server on this machine's GPU 0); default %(default)s")
    parser.add_argument("--note", default="", help="a description of the machine, kept in the outputs")
    parser.add_argument("--out", type=Path, default=Path("results/bench_serving"),
                        help="output stem: <out>.json, <out>.md, <out>.png (default %(default)s)")
    parser.add_argument("--no-plot", action="store_true")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    if not args.model and not args.track:
        parser.error("give --model NAME (its tracks are found on the server) or --track LABEL=MODEL")
    if args.seconds is None and args.requests is None:
        args.seconds = 10.0
    return args


def settings_from_args(args: argparse.Namespace, client) -> Settings:
    url = args.url or yc.default_url(args.protocol)
    tracks = discover_tracks(client, args.model, args.tracks, url) if args.model else []
    for item in args.track:
        label, sep, model = item.partition("=")
        if not sep or not label or not model:
            raise BenchError(f"--track {item!r}: expected LABEL=MODEL")
        tracks.append(explicit_track(client, label, model, url))
    try:
        images = yc.image_paths(args.images or [yc.sample_images_dir()])
        _load_images(images)  # every image decodes (and is read) before any client starts
    except yc.ClientError as err:
        raise BenchError(str(err)) from None
    if args.processes < 1 or args.warmup < 0 or (args.requests is not None and args.requests < 1) \
            or (args.seconds is not None and args.seconds <= 0):
        raise BenchError("--processes and --requests must be >= 1, --warmup >= 0, --seconds > 0")
    return Settings(url=url, protocol=args.protocol, tracks=tracks, images=images, concurrency=args.concurrency,
                    batch=args.batch, seconds=args.seconds, requests=args.requests, warmup=args.warmup,
                    processes=args.processes, nms_mode=args.nms_mode, shared_memory=args.shared_memory,
                    progress=not args.quiet)


def main(argv=None) -> int:
    """0 done; 1 a one-line error (server or model not there, a failed request); 130 interrupted."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[bench_serving] %(message)s", stream=sys.stderr)
    url = args.url or yc.default_url(args.protocol)
    out = args.out
    paths = (out.with_suffix(".json"), out.with_suffix(".md"), None if args.no_plot else out.with_suffix(".png"))

    def terminated(signum, frame):  # make, docker stop and kill send SIGTERM: stop as for Ctrl-C
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, terminated) if threading.current_thread() is threading.main_thread() \
        else None
    finished = [0]  # cells written to the JSON so far
    try:
        if args.shared_memory == "cuda":
            try:
                yc.check_cuda_shared_memory()  # one line, before anything is sent
            except yc.ClientError as err:
                raise BenchError(str(err)) from None
        with open_client(url, args.protocol) as client:
            settings = settings_from_args(args, client)
        shared = "" if args.shared_memory == "none" else f" + {args.shared_memory} shared memory"
        LOG.info("%s over %s%s at %s: %s; concurrency %s, images/request %s, %s per cell, %d image(s)",
                 "tracks", args.protocol, shared, url, ", ".join(f"{t.track}={t.model}" for t in settings.tracks),
                 list(settings.concurrency), list(settings.batch),
                 f"{settings.requests} calls" if settings.requests else f"{settings.seconds:g} s", len(settings.images))
        paths[0].unlink(missing_ok=True)  # a JSON of an earlier run must not pass for this one's cells

        def on_cell(partial: dict) -> None:
            write_outputs(partial, paths[0], None, None)
            finished[0] = len(partial["cells"])

        result = run_benchmark(settings, note=args.note, on_cell=on_cell)
        write_outputs(result, *paths)
        failed = [c for c in result["cells"] if "error" in c]
        if failed:
            sys.stdout.write(markdown(result))
            raise BenchError(f"{len(failed)} of {len(result['cells'])} cell(s) failed, first {failed[0]['model']} "
                             f"c={failed[0]['concurrency']}: {failed[0]['error']} (rows and {paths[0]} say which)")
    except BenchError as err:
        print(f"[bench_serving] error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("[bench_serving] interrupted: clients stopped; " + (
            f"the {finished[0]} cells measured so far are in {paths[0]}" if finished[0]
            else "no cell finished, no JSON written"), file=sys.stderr)
        return 130
    except Exception as err:  # tritonclient's InferenceServerException, connection errors, ...
        print(f"[bench_serving] error: {_first_line(err)} (server {url}, {args.protocol})", file=sys.stderr)
        return 1
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    sys.stdout.write(markdown(result))
    LOG.info("wrote %s", ", ".join(str(p) for p in paths if p is not None))
    return 0
