"""Every ``make <target>`` that an error message or hint suggests names a target the Makefile has."""
from __future__ import annotations

import ast
import re
import subprocess

from conftest import REPO

SOURCES = sorted([*REPO.glob("export/*.py"), *REPO.glob("export/yolo_triton/*.py"), *REPO.glob("scripts/*.py"),
                  *REPO.glob("dali/*.py")])
# "make [VAR=value ...] target [target ...]" inside a string constant; goals are lower-case words
HINT = re.compile(r"\bmake ((?:[A-Z_]+=\S* )*)((?:[a-z][a-z0-9-]*(?: |$))+)")
NOT_GOALS = {"then", "and", "or", "over", "the", "every", "timing", "exit", "with", "it", "for", "to", "a", "sure",
             "installs", "refuses", "wall", "failed", "wrote"}  # prose after a real goal ("make setup installs it")


def suggested_goals(text: str) -> set[str]:
    goals = set()
    for match in HINT.finditer(text):
        words = match.group(2).split()
        for word in words:
            if word in NOT_GOALS:
                break
            goals.add(word)
    return goals


def strings_of(path) -> list[str]:
    tree = ast.parse(path.read_text())
    texts = [node.value for node in ast.walk(tree) if isinstance(node, ast.Constant) and isinstance(node.value, str)]
    texts += ["".join(part.value for part in node.values if isinstance(part, ast.Constant))
              for node in ast.walk(tree) if isinstance(node, ast.JoinedStr)]
    return texts


def makefile_targets() -> set[str]:
    database = subprocess.run(["make", "-C", str(REPO), "-pRrq", "-f", "Makefile", "__no_such_goal__"],
                              capture_output=True, text=True).stdout
    return {line.split(":", 1)[0] for line in database.splitlines()
            if re.match(r"^[a-z][a-z0-9-]*:", line) and not line.startswith("#")}


def test_the_hint_reader_finds_goals():
    assert suggested_goals("run make check-plans REMOVE_STALE=1 then make engines") == {"check-plans", "engines"}
    assert suggested_goals("(make onnx PRECISION=fp32)") == {"onnx"}
    assert suggested_goals("rebuild it: make check-plans engines") == {"check-plans", "engines"}


def test_every_suggested_make_target_exists():
    targets = makefile_targets()
    assert {"onnx", "trt", "check-plans", "scratch", "download"} <= targets  # the reader sees the Makefile
    missing = {f"{path.relative_to(REPO)}: make {goal}" for path in SOURCES for text in strings_of(path)
               for goal in suggested_goals(text) if goal not in targets}
    assert sorted(missing) == []
