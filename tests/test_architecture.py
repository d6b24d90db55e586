"""The layout of ARCHITECTURE.md, checked on the code's own imports (every import, also those inside
functions): data flows one way, no module imports a later stage, no two modules import each
other, and files and functions stay small enough to read."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from conftest import REPO

# Floors, lowest first: each package is one floor, so the folder names are the drawing. A module
# may import its own floor or a lower one.
LAYERS = [
    ("foundation", 0),  # config, data, metrics, models, generation, measurements, results schema
    ("training", 1),  # the training kit: methods, objectives, space, one trial, the pilot's curve
    ("baselines", 2),  # the candidates; the pilot is a fixed trial of the kit
    ("decision", 3),  # the verdict and its cautions
    ("tuner", 4),  # the study: storage, summary, study, export
    ("reports", 5),  # view model -> terminal and report.html
    ("advisor", 6),  # orchestration: task loading and checks, the pipeline, the scaffold, the schema
    ("service", 7),  # advise serve / worker / submit: runs the pipeline for others
    ("commands", 8),  # the advise command line: the one roof over the pipeline and the service
]
PACKAGES = tuple(p for p, _ in LAYERS)
MAX_FILE_LINES = 400
MAX_FUNCTION_LINES = 60
LONG_FILES: dict[str, str] = {}  # path -> why it may be longer
LONG_FUNCTIONS: dict[str, str] = {}  # "path:function" -> why it may be longer


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in sorted((REPO / pkg).rglob("*.py")) if (REPO / pkg).is_dir() else []:
            rel = path.relative_to(REPO).with_suffix("")
            parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
            out[".".join(parts)] = path
    return out


MODULES = _modules()


def layer(module: str) -> int:
    return dict(LAYERS)[module.split(".")[0]]


def imports(module: str) -> set[str]:
    """Project modules that ``module`` imports, anywhere in the file."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            names = [f"{base}.{a.name}" for a in node.names]
            if not all(n in MODULES for n in names):  # a name from the package itself (its __init__)
                names.append(base)
        for name in names:
            while name and name not in MODULES:
                name = name.rpartition(".")[0]
            if name and name != module:
                found.add(name)
    return found


GRAPH = {m: imports(m) for m in MODULES}


def test_every_module_has_a_floor():
    for m in MODULES:
        assert any(m == p or m.startswith(p + ".") for p, _ in LAYERS), f"{m} has no floor in LAYERS"


def test_no_module_imports_a_later_stage():
    upward = [f"{m} ({layer(m)}) imports {t} ({layer(t)})" for m, targets in GRAPH.items() for t in targets
              if layer(t) > layer(m)]
    assert upward == []


def cycles_of(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan)."""
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(v):  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            scc = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                scc.append(w)
                if w == v:
                    break
            if len(scc) > 1:
                cycles.append(sorted(scc))

    for v in graph:
        if v not in index:
            visit(v)
    return cycles


def test_no_import_cycles():
    assert cycles_of(GRAPH) == []


def test_no_package_imports_another_that_imports_it_back():
    """Folders are floors: the package graph (every import of every module) has no cycle, so a
    drawing of the folders shows the layers (tuner -> baselines -> tuner was one such cycle)."""
    packages = {p: set() for p in PACKAGES}
    for m, targets in GRAPH.items():
        packages[m.split(".")[0]] |= {t.split(".")[0] for t in targets} - {m.split(".")[0]}
    assert cycles_of(packages) == []
    assert cycles_of({"a": {"b"}, "b": {"a"}, "c": set()}) == [["a", "b"]]


def test_the_foundation_does_not_reach_up():
    for m, targets in GRAPH.items():
        if m.startswith("foundation"):
            assert all(t.startswith("foundation") for t in targets), (m, targets)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_files_and_functions_stay_readable(module):
    path = MODULES[module]
    rel = str(path.relative_to(REPO))
    lines = path.read_text(encoding="utf-8").count("\n")
    assert lines <= MAX_FILE_LINES or rel in LONG_FILES, f"{rel}: {lines} lines"
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            n = node.end_lineno - node.lineno + 1
            assert n <= MAX_FUNCTION_LINES or f"{rel}:{node.name}" in LONG_FUNCTIONS, f"{rel}:{node.name}: {n} lines"


def test_the_checker_sees_an_upward_import(tmp_path):
    """The layer check is not vacuous: a foundation module importing the pipeline is caught."""
    assert layer("foundation.config") < layer("advisor.pipeline")
    assert "foundation.taskfile" in GRAPH["advisor.tasks"]
    assert "training.trial" in GRAPH["baselines.finetune"] and layer("training.trial") < layer("baselines.finetune")
    assert layer("tuner.study") > layer("decision.verdict") > layer("baselines.rag")
