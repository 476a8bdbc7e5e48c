"""The book's notebooks: every chapter paired and in sync, no faces committed, numbers glued.

The `.md` files (MyST notebooks) are the sources and the `.ipynb` carry the outputs;
jupytext pairs them (jupytext.toml). These tests read files only: nothing executes.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
BOOK = REPO / "book"
FACES_TAG = "sample-faces"

jupytext = pytest.importorskip("jupytext")
nbformat = pytest.importorskip("nbformat")


def toc_files() -> list[str]:
    """Chapter names (no suffix) in _toc.yml order, the root first."""
    toc = yaml.safe_load((REPO / "_toc.yml").read_text())
    names = [toc["root"]]
    for entry in toc.get("chapters", []):
        names.append(entry["file"])
    return names


def is_notebook(name: str) -> bool:
    """Whether book/<name>.md is a MyST notebook (a jupytext header with a kernel), not a
    plain page such as the references, which has no code, no .ipynb and is not executed."""
    text = (BOOK / f"{name}.md").read_text()
    header = text.split("---", 2)[1] if text.startswith("---") else ""
    return "kernelspec:" in header


CHAPTERS = [name for name in toc_files() if (BOOK / f"{name}.md").exists() and is_notebook(name)]


def test_toc_symlink_points_to_top_level_toc():
    link = BOOK / "_toc.yml"
    assert link.is_symlink()
    assert os.readlink(link) == "../_toc.yml"
    assert link.resolve() == (REPO / "_toc.yml").resolve()


def test_toc_chapters_exist_as_markdown():
    missing = [name for name in toc_files() if not (BOOK / f"{name}.md").exists()]
    assert not missing, f"chapters in _toc.yml without a book/<name>.md: {missing}"


def test_references_page_is_plain_markdown_with_the_bibliography():
    """The references page lists the sources: a plain page (nothing to execute, no .ipynb)
    with the bibliography directive, last in the table of contents."""
    assert toc_files()[-1] == "references"
    assert not is_notebook("references")
    assert not (BOOK / "references.ipynb").exists()
    assert "```{bibliography}" in (BOOK / "references.md").read_text()


@pytest.mark.parametrize("name", CHAPTERS)
def test_chapter_has_paired_notebook(name):
    assert (BOOK / f"{name}.ipynb").exists(), f"book/{name}.md has no paired .ipynb"


def _code_sources(nb) -> list[str]:
    return [cell.source.strip() for cell in nb.cells]


@pytest.mark.parametrize("name", CHAPTERS)
def test_pair_in_sync(name):
    """Same cells, same sources, same tags in the .md and the .ipynb."""
    md, ipynb = BOOK / f"{name}.md", BOOK / f"{name}.ipynb"
    if not ipynb.exists():
        pytest.skip("no notebook (reported by test_chapter_has_paired_notebook)")
    a, b = jupytext.read(md), jupytext.read(ipynb)
    assert [c.cell_type for c in a.cells] == [c.cell_type for c in b.cells]
    assert _code_sources(a) == _code_sources(b), f"{name}: run `jupytext --sync book/{name}.md`"
    assert ([c.metadata.get("tags", []) for c in a.cells]
            == [c.metadata.get("tags", []) for c in b.cells])
    # jupytext's own diff agrees (it always exits 0, so its output is what counts).
    diff = subprocess.run([sys.executable, "-m", "jupytext", "--diff", str(md), str(ipynb)],
                          capture_output=True, text=True, cwd=REPO, check=False)
    assert diff.stdout.strip() == "", diff.stdout[-2000:]


@pytest.mark.parametrize("name", CHAPTERS)
def test_notebook_has_outputs_and_no_errors(name):
    ipynb = BOOK / f"{name}.ipynb"
    if not ipynb.exists():
        pytest.skip("no notebook")
    nb = nbformat.read(ipynb, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    errors = [o for c in code for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors, f"{name}.ipynb has error outputs"
    executed = [c for c in code if c.execution_count is not None]
    assert executed or not code, f"{name}.ipynb was committed without executing it"


def test_no_faces_committed():
    """The sample-faces cell exists, is skipped by nbval, and has no image output."""
    tagged = []
    for ipynb in sorted(BOOK.glob("*.ipynb")):
        nb = nbformat.read(ipynb, as_version=4)
        for cell in nb.cells:
            tags = cell.metadata.get("tags", [])
            if FACES_TAG in tags:
                tagged.append(ipynb.name)
                assert "nbval-skip" in tags, f"{ipynb.name}: faces cell must be nbval-skip"
                mimes = {m for o in cell.get("outputs", []) for m in o.get("data", {})}
                assert not mimes & {"image/png", "image/jpeg", "image/svg+xml",
                                     "application/pdf"}, (
                    f"{ipynb.name}: the sample-faces cell has image outputs; strip them")
    assert "data.ipynb" in tagged, "data.ipynb lost its sample-faces tag"


@pytest.mark.parametrize("name", CHAPTERS)
def test_chapter_glues_its_numbers(name):
    text = (BOOK / f"{name}.md").read_text()
    if "Placeholder" in text and "glue" not in text:
        pytest.skip("placeholder chapter")
    assert "glue(" in text and "{glue:" in text, f"{name}.md must put its numbers through glue"


def test_pytest_nbval_as_typed_checks_the_notebooks_and_the_tests():
    """`pytest --nbval` in the repo root (the design card's command) collects both."""
    done = subprocess.run([sys.executable, "-m", "pytest", "--nbval", "--collect-only", "-q",
                           "-p", "no:cacheprovider"], capture_output=True, text=True,
                          cwd=REPO, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    collected = done.stdout
    for name in CHAPTERS:
        assert f"book/{name}.ipynb::Cell 0" in collected, f"{name}.ipynb not collected"
    assert "tests/test_book.py::" in collected
    assert "book/_build/" not in collected, "notebooks of the built book must not be collected"


def test_nbval_uses_the_sanitizers_and_this_environment():
    import importlib.util

    spec = importlib.util.spec_from_file_location("book_conftest", BOOK / "conftest.py")
    conftest = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conftest)

    class Option:
        nbval_sanitize_with = None
        nbval_current_env = False

    class Config:
        option = Option()

    conftest.pytest_configure(Config)
    assert Path(Config.option.nbval_sanitize_with) == BOOK / "nbval-sanitize.cfg"
    assert Config.option.nbval_current_env is True
