"""The library stays readable: one concept per module, short functions, one-way imports.

Limits from the house style: no module of fer_lib over 450 lines, no function over 60;
data flows one way through seven layers (foundation -> data -> models -> training ->
experiments -> analysis -> interface, `LAYERS`), so a low layer never imports a high one,
and fer_lib has no import circle, imports inside functions included.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

LIBRARY = Path(__file__).resolve().parents[1] / "fer_lib"
MODULES = sorted(LIBRARY.glob("*.py"))
MAX_MODULE_LINES = 450
MAX_FUNCTION_LINES = 60
# Every module of fer_lib in its layer, lowest first: a module imports only modules of
# its own layer or a lower one (imports inside functions count), and no two modules import
# each other, directly or round a longer circle (`test_no_import_circle`).
LAYERS = {
    "foundation": {"paths", "errors", "formatting", "stats", "seeds", "averaging",
                   "fastkernels", "hw8_predict", "peer_models"},
    "data": {"readers", "datacheck", "datacache", "data"},
    "models": {"models", "config", "checkpoint", "quantize", "qat", "augment", "optim",
               "fastpath", "distill", "prune", "sparsity", "evaluate", "deploy", "hw8_folder",
               "int8", "records", "experiment_spec"},
    "training": {"train", "softlabels", "prune_runs", "catalogue", "store", "targets"},
    "experiments": {"experiments", "cluster", "rescoring", "plan"},
    "analysis": {"distill_study", "report", "timings", "design", "plots", "diagrams", "homework",
                 "coursework", "__init__"},
    "interface": {"cli"},
}
LAYER_OF = {name: rank for rank, names in enumerate(LAYERS.values()) for name in names}
@pytest.mark.parametrize("module", MODULES, ids=lambda p: p.name)
def test_module_is_short(module):
    lines = len(module.read_text().splitlines())
    assert lines <= MAX_MODULE_LINES, f"{module.name}: {lines} lines; split it by concept"


@pytest.mark.parametrize("module", MODULES, ids=lambda p: p.name)
def test_functions_are_short(module):
    tree = ast.parse(module.read_text())
    long = [f"{node.name} ({node.end_lineno - node.lineno + 1} lines)"
            for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]
    assert not long, f"{module.name}: {', '.join(long)}"


def _imported_library_modules(module: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(module.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            names |= {node.module.split(".")[0]} if node.module else {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("fer_lib"):
            rest = node.module.split(".")[1:]
            names |= {rest[0]} if rest else {a.name for a in node.names}
    return names


def _import_graph() -> dict[str, set[str]]:
    names = {m.stem for m in MODULES}
    return {m.stem: (_imported_library_modules(m) & names) - {m.stem} for m in MODULES}


def test_every_module_has_one_layer():
    placed = [name for names in LAYERS.values() for name in names]
    assert len(placed) == len(set(placed)), "a module sits in two layers"
    assert set(placed) == {m.stem for m in MODULES}, (
        f"unplaced: {sorted({m.stem for m in MODULES} - set(placed))}, "
        f"gone: {sorted(set(placed) - {m.stem for m in MODULES})}")


@pytest.mark.parametrize("module", MODULES, ids=lambda p: p.name)
def test_data_flows_one_way(module):
    higher = {name for name in _import_graph()[module.stem]
              if LAYER_OF.get(name, -1) > LAYER_OF.get(module.stem, -1)}
    assert not higher, f"fer_lib/{module.name} imports {sorted(higher)}, which sit above it"


def test_no_import_circle():
    """Depth-first search over the import graph; a module met again on the current path
    closes a circle, which the message spells out."""
    graph, done, path = _import_graph(), set(), []

    def visit(name):
        if name in path:
            circle = path[path.index(name):] + [name]
            pytest.fail(f"import circle: {' -> '.join(circle)}")
        if name in done:
            return
        path.append(name)
        for imported in sorted(graph[name]):
            visit(imported)
        path.pop()
        done.add(name)

    for name in sorted(graph):
        visit(name)
