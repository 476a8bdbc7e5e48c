"""The library stays readable: one concept per module, short functions, one-way imports.

Limits from the house style: no module of fer_lib over 450 lines, no function over 60;
data flows one way (data -> models/train -> quantize/evaluate -> experiments -> results
-> plots -> book), so the low layers never import the high ones.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

LIBRARY = Path(__file__).resolve().parents[1] / "fer_lib"
MODULES = sorted(LIBRARY.glob("*.py"))
MAX_MODULE_LINES = 450
MAX_FUNCTION_LINES = 60
# Module -> library modules it must never import (they sit above it in the data flow).
LOWER_THAN = {
    "data": {"train", "experiments", "store", "catalogue", "evaluate", "quantize", "cli"},
    "readers": {"data", "train", "experiments", "store", "evaluate", "cli"},
    "models": {"data", "train", "experiments", "store", "evaluate", "quantize", "cli"},
    "train": {"experiments", "store", "catalogue", "cli", "quantize"},
    "evaluate": {"train", "experiments", "store", "catalogue", "cli"},
    "quantize": {"train", "evaluate", "experiments", "store", "catalogue", "cli"},
    "store": {"experiments", "cli", "plots"},
    "experiments": {"cli", "plots"},
    "experiment_spec": {"catalogue", "store", "experiments", "train", "cli"},
    "int8": {"train", "experiments", "store", "catalogue", "cli"},
    "targets": {"experiments", "cli", "plots"},
    "qat": {"train", "experiments", "store", "catalogue", "evaluate", "cli"},
}


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


@pytest.mark.parametrize("name", sorted(LOWER_THAN))
def test_data_flows_one_way(name):
    imported = _imported_library_modules(LIBRARY / f"{name}.py")
    assert not imported & LOWER_THAN[name], (
        f"fer_lib/{name}.py imports {sorted(imported & LOWER_THAN[name])}, which sit above it")
