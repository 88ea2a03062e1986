"""The package's layers (ARCHITECTURE.md): settings and layout -> artefact steps -> operation.

Every import between yolo_triton modules, deferred ones inside functions included, goes to the same
layer or a lower one, and the module graph has no cycle. A new module must be given a layer here.
"""
from __future__ import annotations

import ast
from pathlib import Path

from conftest import REPO

PACKAGE = REPO / "export" / "yolo_triton"
LAYERS = {
    # 0: settings and layout, and the plain helpers every step shares
    "__init__": 0, "settings": 0, "errors": 0, "files": 0, "cli": 0, "onnx_io": 0, "postprocess": 0,
    "options": 0, "output_dtype": 0, "task_base": 0, "tasks": 0, "task_detect": 0, "task_segment": 0, "task_pose": 0, "task_obb": 0,
    "task_classify": 0,
    # 1: artefact steps (checkpoint -> ONNX -> NMS surgery -> engine -> configs -> DALI and ensembles)
    "checkpoint": 1, "onnx_export": 1, "int8": 1, "scratch": 1, "nms_graph": 1, "nms_onnx": 1, "batch_pad": 1,
    "engine": 1, "engine_trtexec": 1, "engine_python": 1, "engine_build": 1, "engine_fleet": 1, "triton_config": 1,
    "dali_pipeline": 1, "ensemble": 1, "input_uint8": 1,
    # 2: operating the result
    "validate": 2, "client": 2, "timing": 2, "triton_server": 2, "versions": 2, "ab_compare": 2,
    "bench_serving": 2, "soak": 2, "validate_tasks": 2,
}


def imports_of(path: Path) -> set[str]:
    """yolo_triton modules that ``path`` imports, at module level or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "yolo_triton":
                found |= {alias.name for alias in node.names}
            elif node.module.startswith("yolo_triton."):
                found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("yolo_triton.")}
    return found


def graph() -> dict[str, set[str]]:
    return {path.stem: imports_of(path) for path in sorted(PACKAGE.glob("*.py"))}


def test_every_module_has_a_layer():
    assert sorted(set(graph()) - set(LAYERS)) == []


def test_nothing_imports_from_a_higher_layer():
    upward = [f"{module} (layer {LAYERS[module]}) imports {target} (layer {LAYERS.get(target)})"
              for module, targets in graph().items() for target in sorted(targets)
              if LAYERS.get(target, 99) > LAYERS[module]]
    assert upward == []


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = 2
        stack.pop()
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_cycle_finder_finds_one():
    assert find_cycle({"engine": {"engine_python"}, "engine_python": {"engine"}}) == \
        ["engine", "engine_python", "engine"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycles():
    assert find_cycle(graph()) is None
