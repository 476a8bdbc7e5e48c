"""Packaging: environment.yml cannot drift from pyproject.toml; the CLI is declared.

Design: environment.yml holds no second list of packages. Its pip section installs
this package with the book and test extras (``-e .[book,test]``), so every runtime
dependency and extra comes from pyproject.toml. These tests pin that design down.
"""

from __future__ import annotations

import re
import sys
from importlib import metadata
from pathlib import Path

import pytest
import yaml

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    tomllib = pytest.importorskip("tomli")

REPO_ROOT = Path(__file__).resolve().parents[1]
EXTRAS = {"book", "test"}
# Conda-level entries that are the interpreter and installer, not project packages.
TOOLING = {"python", "pip"}


def _name(requirement: str) -> str:
    """The normalized distribution name of a requirement string (PEP 503)."""
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    assert match, f"cannot parse requirement {requirement!r}"
    return re.sub(r"[-_.]+", "-", match[1]).lower()


@pytest.fixture(scope="module")
def pyproject() -> dict:
    with open(REPO_ROOT / "pyproject.toml", "rb") as handle:
        return tomllib.load(handle)


@pytest.fixture(scope="module")
def environment() -> dict:
    return yaml.safe_load((REPO_ROOT / "environment.yml").read_text())


def _split_environment(environment: dict) -> tuple[list[str], list[str]]:
    """(conda entries, pip entries) of environment.yml."""
    conda, pip = [], []
    for entry in environment["dependencies"]:
        if isinstance(entry, dict):
            pip += entry["pip"]
        else:
            conda.append(entry)
    return conda, pip


def _editable_extras(pip_entries: list[str]) -> set[str]:
    """Extras of the ``-e .[...]`` entry that installs this project."""
    editable = [e for e in pip_entries if re.fullmatch(r"-e \.(\[[\w,\s-]*\])?", e.strip())]
    assert len(editable) == 1, f"expected one '-e .[book,test]' pip entry, got {pip_entries}"
    inside = re.search(r"\[(.*)\]", editable[0])
    return {x.strip() for x in inside[1].split(",")} if inside else set()


def test_environment_installs_the_project_with_book_and_test_extras(environment, pyproject):
    _, pip = _split_environment(environment)
    extras = _editable_extras(pip)
    assert extras == EXTRAS
    declared = pyproject["project"]["optional-dependencies"]
    assert all(declared.get(extra) for extra in extras), "an extra is missing or empty"
    assert pyproject["project"]["dependencies"], "no runtime dependencies declared"


def test_environment_lists_no_second_copy_of_dependencies(environment):
    conda, pip = _split_environment(environment)
    others = [e for e in pip if not e.strip().startswith("-e")]
    assert others == [], f"pin these in pyproject.toml instead: {others}"
    assert {_name(e) for e in conda} <= TOOLING, f"conda entries beyond {TOOLING}: {conda}"


def test_environment_python_satisfies_requires_python(environment, pyproject):
    conda, _ = _split_environment(environment)
    assert environment["name"] == "fer-hw8"
    (python,) = [e for e in conda if _name(e) == "python"]
    version = tuple(int(x) for x in python.split("=")[-1].split("."))
    minimum = re.fullmatch(r">=\s*(\d+)\.(\d+)", pyproject["project"]["requires-python"])
    assert minimum, "requires-python is expected to be a plain lower bound"
    assert version >= (int(minimum[1]), int(minimum[2]))


def test_makefile_installs_the_same_extras(environment):
    """make venv installs what environment.yml does, plus the cluster extra (so the Ray
    backend's test runs in CI; conda users add it by hand, as environment.yml says)."""
    makefile = (REPO_ROOT / "Makefile").read_text()
    installed = re.search(r'-e "\.\[([\w,]+)\]"', makefile)
    assert installed, "the Makefile installs no extras"
    extras = set(installed[1].split(","))
    assert extras == _editable_extras(_split_environment(environment)[1]) | {"cluster"}
    assert "cluster" in (REPO_ROOT / "environment.yml").read_text()
    for target in ("book", "test", "venv"):
        assert re.search(rf"^{target}:", makefile, re.MULTILINE), f"no `{target}` target"


def test_fer_console_script_is_declared(pyproject):
    assert pyproject["project"]["scripts"]["fer"] == "fer_lib.cli:main"


def test_installed_fer_console_script_matches(pyproject):
    try:
        entry_points = metadata.distribution("fer-lib").entry_points
    except metadata.PackageNotFoundError:
        pytest.skip("fer-lib is not installed (make venv runs pip install -e .)")
    (fer,) = [ep for ep in entry_points if ep.group == "console_scripts" and ep.name == "fer"]
    assert fer.value == pyproject["project"]["scripts"]["fer"]
