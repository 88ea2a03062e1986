"""A real ``tritonserver`` on this machine: the one PyPI's ``nvidia-pytriton`` ships (2.51, r24.10).

Used by ``make demo``, the serving benchmark and the tests, so that what they serve goes through the
real server core (config parsing, dynamic batching, ensembles, HTTP/gRPC) and, where one is found,
Triton's real ONNX Runtime backend. The server is started with the model-control flags of the
``triton-api`` service in ``docker-compose.yml`` (read from that file, so the two cannot drift) and
bound to 127.0.0.1 on free ports.

Backends: the Python backend comes with the wheel. The ONNX Runtime backend does not; one built for
this server (``libtriton_onnxruntime.so``, see the build notes in ``shared/triton/README.md`` of the
workplace this project is developed in) is looked up in ``$YOLO_TRITON_ORT_BACKEND``, then
``../shared/triton/backends/onnxruntime`` beside the repository. It needs exactly the onnxruntime
release it was built against (1.24.2, the version requirements.txt pins): its symbols are versioned.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from yolo_triton.settings import ADMIN_KEY_ENV, admin_headers

LOG = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
COMPOSE_SERVICE = "triton-api"
# The service's entrypoint: adds the restricted-API flags when TRITON_ADMIN_KEY is set (or refuses to start
# when published beyond loopback without one)
COMPOSE_ENTRYPOINT = REPO / "scripts" / "triton_entrypoint.sh"
ORT_BACKEND_ENV = "YOLO_TRITON_ORT_BACKEND"
ORT_BACKEND_LIB = "libtriton_onnxruntime.so"
ORT_LIBRARY = "libonnxruntime.so.1"  # the name the backend's RUNPATH ($ORIGIN) resolves
# Flags of the compose command that name paths or addresses of the container; replaced here.
_PLACE_FLAGS = ("--model-repository", "--http-address", "--grpc-address", "--http-port", "--grpc-port",
                "--metrics-port", "--backend-directory")


class ServerError(RuntimeError):
    """The server could not be found, started or reached; the message says which and what to do."""


class NoServerHere(ServerError):
    """No tritonserver, or no ONNX Runtime backend for it, on this machine: nothing can be served here
    (a server that exists but crashes or is not live in time is a ServerError, a failure)."""


def _purelib() -> Path:
    return Path(sysconfig.get_paths()["purelib"])


def tritonserver_dir() -> Path:
    """``pytriton/tritonserver`` of the running interpreter's environment."""
    try:
        import pytriton
    except ImportError:
        raise NoServerHere("nvidia-pytriton is not installed (make setup installs it): no tritonserver here") from None
    server = Path(pytriton.__file__).parent / "tritonserver"
    if not (server / "bin" / "tritonserver").is_file():
        raise NoServerHere(f"{server}/bin/tritonserver not found (nvidia-pytriton without its server?)")
    return server


def find_onnxruntime_backend() -> Path | None:
    """The directory holding ``libtriton_onnxruntime.so`` for this server, or None."""
    candidates = []
    if os.environ.get(ORT_BACKEND_ENV):
        candidates.append(Path(os.environ[ORT_BACKEND_ENV]))
    candidates.append(REPO.parent / "shared" / "triton" / "backends" / "onnxruntime")
    for path in candidates:
        if (path / ORT_BACKEND_LIB).is_file():
            return path
    return None


def onnxruntime_library() -> Path:
    """The venv's ``libonnxruntime.so.<version>`` (the backend needs exactly the one it was built for)."""
    import onnxruntime

    capi = Path(onnxruntime.__file__).parent / "capi"
    found = sorted(capi.glob("libonnxruntime.so.*"))
    if not found:
        raise NoServerHere(f"no libonnxruntime.so.* in {capi}: the ONNX Runtime backend cannot run here")
    return found[0]


def assemble_backends(dest: Path, onnxruntime_backend: Path | None) -> Path:
    """A ``--backend-directory``: the wheel's Python backend (+ the stub for this Python) and, when
    given, the ONNX Runtime backend linked to this environment's onnxruntime."""
    server = tritonserver_dir()
    python_dir = dest / "python"
    python_dir.mkdir(parents=True, exist_ok=True)
    for item in (server / "backends" / "python").iterdir():
        if item.is_file():
            shutil.copy2(item, python_dir / item.name)
    stub = server / "python_backend_stubs" / f"{sys.version_info.major}.{sys.version_info.minor}" / \
        "triton_python_backend_stub"
    shutil.copy2(stub, python_dir / stub.name)
    if onnxruntime_backend is not None:
        ort_dir = dest / "onnxruntime"
        ort_dir.mkdir(exist_ok=True)
        shutil.copy2(onnxruntime_backend / ORT_BACKEND_LIB, ort_dir / ORT_BACKEND_LIB)
        link = ort_dir / ORT_LIBRARY
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(onnxruntime_library())
    return dest


def compose_server_flags(compose_file: Path = COMPOSE_FILE, service: str = COMPOSE_SERVICE) -> list[str]:
    """The ``tritonserver`` flags of the compose service, less those naming container paths/ports."""
    import yaml

    command = yaml.safe_load(compose_file.read_text())["services"][service]["command"]
    if not command or command[0] != "tritonserver":
        raise ServerError(f"{compose_file}: service {service} does not run tritonserver: {command}")
    return [arg for arg in command[1:] if not arg.startswith(_PLACE_FLAGS)]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_environment() -> dict[str, str]:
    """Environment for the server and the Python-backend stub (see shared/triton/README.md): the
    interpreter's own libpython and the wheel's bundled libraries first; this venv's ``python3``
    first on PATH (the stub takes its ``sys.prefix`` from it, and needs numpy < 2)."""
    env = dict(os.environ)
    libdirs = [sysconfig.get_config_var("LIBDIR"), str(_purelib() / "nvidia_pytriton.libs")]
    env["LD_LIBRARY_PATH"] = os.pathsep.join([*libdirs, *filter(None, [env.get("LD_LIBRARY_PATH")])])
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def _get(url: str, timeout: float = 2.0, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def _post(url: str, body: dict | None = None, timeout: float = 120.0,
          headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    data = json.dumps(body or {}).encode()
    request = urllib.request.Request(url, data=data, method="POST",
                                     headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


@dataclass
class RunningServer:
    """A started ``tritonserver``; ``stop()`` ends it (also used as a context manager)."""

    process: subprocess.Popen
    http_port: int
    grpc_port: int
    log_path: Path
    flags: list[str] = field(default_factory=list)
    admin_key: str | None = None  # sent with the index and load calls (a server started with admin_key)
    metrics_port: int = 0
    model_repository: Path | None = None
    backends: Path | None = None

    @property
    def http_url(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def url(self, protocol: str) -> str:
        return self.http_url if protocol == "http" else self.grpc_url

    def log(self) -> str:
        return self.log_path.read_bytes().decode(errors="replace") if self.log_path.exists() else ""

    def live(self) -> bool:
        try:
            return _get(f"http://{self.http_url}/v2/health/live")[0] == 200
        except OSError:
            return False

    def ready(self) -> bool:
        """``/v2/health/ready``: with ``--strict-readiness=true`` only when every model loaded."""
        try:
            return _get(f"http://{self.http_url}/v2/health/ready")[0] == 200
        except OSError:
            return False

    def model_states(self) -> dict[str, dict]:
        """``{name: {"state": ..., "reason": ..., "version": ...}}`` from the repository index."""
        status, body = _post(f"http://{self.http_url}/v2/repository/index", {}, timeout=10,
                             headers=admin_headers("http", self.admin_key or ""))
        if status != 200:
            raise ServerError(f"repository index answered HTTP {status}: {body[:200]!r}")
        return {entry["name"]: entry for entry in json.loads(body)}

    def load(self, model: str) -> tuple[int, str]:
        status, body = _post(f"http://{self.http_url}/v2/repository/models/{model}/load",
                             headers=admin_headers("http", self.admin_key or ""))
        return status, body.decode(errors="replace")

    def kill(self) -> None:
        """SIGKILL the server (a crash: nothing is cleaned up) and reap it; its Python-backend stubs
        notice their parent is gone and end themselves."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()

    def rss_bytes(self) -> int:
        """Resident memory of the server and its child processes (backend stubs), from /proc."""
        return sum(_rss(pid) for pid in [self.process.pid, *_children(self.process.pid)])

    def stop(self, timeout: float = 20.0) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> "RunningServer":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _rss(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except (OSError, ValueError):
        return []


NO_SERVER_EXIT = 3  # exit status of a command whose local server cannot start HERE (no tritonserver / backend)


def local_server_exit(run, log: logging.Logger, failures: tuple[type[BaseException], ...] = ()) -> int:
    """Run ``run()`` (a command that starts a local server) and map how it ends to its exit status, one
    line each: ``failures`` and a server that crashed or was not live in time -> 1; no tritonserver or
    backend here -> NO_SERVER_EXIT (only that may be reported as "not served here"); Ctrl-C/SIGTERM -> 130
    (the server was stopped by the ``with`` blocks that started it)."""
    try:
        return run()
    except failures as err:
        log.error("error: %s", err)
        return 1
    except NoServerHere as err:
        log.error("error: %s", str(err).splitlines()[0])
        return NO_SERVER_EXIT
    except ServerError as err:  # it exists but crashed, or was not live in time: a failure
        log.error("error: %s", err)
        return 1
    except KeyboardInterrupt:
        log.error("interrupted; the server was stopped")
        return 130


def restart_server(server: RunningServer, timeout: float = 180.0) -> RunningServer:
    """Start the (stopped or killed) ``server`` again: same repository, flags, backends and ports; the
    log goes on in the same file. Returns once live and loaded, as :func:`start_server`."""
    if server.process.poll() is None:
        raise ServerError(f"tritonserver (pid {server.process.pid}) is still running; stop or kill it first")
    return start_server(server.model_repository, server.log_path.parent, server.flags, timeout=timeout,
                        admin_key=server.admin_key, ports=(server.http_port, server.grpc_port, server.metrics_port),
                        backends=server.backends)


def start_server(model_repository: Path, workdir: Path, flags: list[str] | None = None,
                 onnxruntime_backend: Path | None | str = "auto", timeout: float = 180.0,
                 admin_key: str | None = None, ports: tuple[int, int, int] | None = None,
                 backends: Path | None = None) -> RunningServer:
    """Start tritonserver on ``model_repository`` with ``flags`` (default: the compose service's) on
    free 127.0.0.1 ports (or ``ports``: HTTP, gRPC, metrics); return once it is live and has finished
    loading (``/v2/repository/index`` shows no model still LOADING), whether or not every model loaded:
    callers read the states. ``backends``: an already assembled backend directory.

    ``admin_key``: start it as compose does when the ports are published beyond loopback, through the
    service's entrypoint (``scripts/triton_entrypoint.sh``, TRITON_BIND=0.0.0.0 and TRITON_ADMIN_KEY
    given to it; the server itself still listens on 127.0.0.1 only): the admin endpoints then need the key."""
    workdir.mkdir(parents=True, exist_ok=True)
    if backends is None:
        if onnxruntime_backend == "auto":
            onnxruntime_backend = find_onnxruntime_backend()
        backends = assemble_backends(workdir / "backends", onnxruntime_backend)
    flags = compose_server_flags() if flags is None else list(flags)
    http_port, grpc_port, metrics_port = ports or (free_port(), free_port(), free_port())
    launcher = [] if admin_key is None else ["bash", str(COMPOSE_ENTRYPOINT)]
    argv = [*launcher, str(tritonserver_dir() / "bin" / "tritonserver"), f"--model-repository={model_repository}",
            f"--backend-directory={backends}", "--http-address=127.0.0.1", f"--http-port={http_port}",
            "--grpc-address=127.0.0.1", f"--grpc-port={grpc_port}", "--allow-metrics=false",
            f"--metrics-port={metrics_port}", *flags]
    log_path = workdir / "tritonserver.log"
    LOG.info("starting %s", " ".join(argv))
    env = server_environment()
    env.pop(ADMIN_KEY_ENV, None)
    if admin_key is not None:
        env.update({ADMIN_KEY_ENV: admin_key, "TRITON_BIND": "0.0.0.0"})
    with open(log_path, "ab" if ports else "wb") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    server = RunningServer(process, http_port, grpc_port, log_path, flags, admin_key=admin_key,
                           metrics_port=metrics_port, model_repository=Path(model_repository), backends=backends)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise ServerError(f"tritonserver exited with {process.returncode}; last log lines:\n"
                                  + "\n".join(server.log().splitlines()[-15:]))
            if server.live():
                states = server.model_states()
                if not any(s.get("state") in ("LOADING", "UNLOADING") for s in states.values()):
                    return server
            time.sleep(0.5)
        raise ServerError(f"tritonserver not live/loaded within {timeout:.0f} s; log: {log_path}")
    except BaseException:
        server.stop()
        raise
