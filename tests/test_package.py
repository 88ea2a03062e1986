"""yolo_triton is an installed package: every command imports it without touching sys.path."""
from __future__ import annotations

import ast
import importlib.metadata
import os
import subprocess
import sys


from conftest import REPO, skip_unless_ci

COMMANDS = sorted(path for path in [*REPO.glob("export/*.py"), *REPO.glob("dali/*.py"), *REPO.glob("scripts/*.py")]
                  if 'if __name__ == "__main__":' in path.read_text())  # helpers beside them are not commands


def _edits_sys_path(tree: ast.AST) -> list[int]:
    """Line numbers of ``sys.path.insert/append/extend(...)`` calls and ``sys.path = ...`` assignments."""
    lines = []
    for node in ast.walk(tree):
        target = None
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            target = node.func.value if node.func.attr in ("insert", "append", "extend") else None
        elif isinstance(node, (ast.Assign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            target = next((t for t in targets if isinstance(t, ast.Attribute)), None)
        if isinstance(target, ast.Attribute) and target.attr == "path" and getattr(target.value, "id", "") == "sys":
            lines.append(node.lineno)
    return sorted(lines)


def test_the_checker_sees_a_sys_path_edit():
    assert _edits_sys_path(ast.parse("import sys\nsys.path.insert(0, 'x')\nsys.path += ['y']\n")) == [2, 3]
    assert _edits_sys_path(ast.parse("import sys\nprint(sys.path)\n")) == []


def test_no_file_edits_sys_path():
    tracked = subprocess.run(["git", "-C", str(REPO), "ls-files", "*.py"], capture_output=True, text=True,
                             check=True).stdout.split()
    offenders = {path: lines for path in tracked if (lines := _edits_sys_path(ast.parse((REPO / path).read_text())))}
    assert offenders == {}


def test_every_command_runs_from_the_installed_package():
    """``--help`` of every command, from another directory and without PYTHONPATH: only the install."""
    try:
        dist = importlib.metadata.distribution("yolo-triton")
    except importlib.metadata.PackageNotFoundError:
        skip_unless_ci("yolo_triton is not installed in this venv: make setup (pip install -e . --no-deps)")
    assert dist.version
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    procs = {path: subprocess.Popen([sys.executable, str(path), "--help"], cwd="/", env=env, text=True,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE) for path in COMMANDS}
    failed = {}
    for path, proc in procs.items():
        out, err = proc.communicate(timeout=300)
        if proc.returncode != 0 or "usage:" not in out:
            failed[str(path.relative_to(REPO))] = err.strip().splitlines()[-1:] or out[:200]
    assert failed == {}
