"""Refresh the committed notebooks: pair each chapter's .md with its .ipynb and execute it.

    python scripts/execute_notebooks.py [CHAPTER ...]     (`make notebooks`)

The .md files are the sources. Each chapter is written to its .ipynb by jupytext and
executed there (working directory book/, this environment's kernel) **without the data
set**, as most readers first meet the book, so that nbval compares a reader's outputs
with the committed ones in either world. Outputs of the cells tagged ``sample-faces``
are dropped: faces from FER2013 are never committed.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import jupytext
import nbformat
import yaml
from nbclient import NotebookClient

REPO = Path(__file__).resolve().parents[1]
BOOK = REPO / "book"
FACES_TAG = "sample-faces"


def chapters() -> list[str]:
    """The table of contents' notebooks: pages whose .md has a jupytext header with a
    kernel (the references page is plain markdown and has nothing to execute)."""
    toc = yaml.safe_load((REPO / "_toc.yml").read_text())
    names = [toc["root"]] + [entry["file"] for entry in toc.get("chapters", [])]
    return [name for name in names if is_notebook(BOOK / f"{name}.md")]


def is_notebook(source: Path) -> bool:
    text = source.read_text()
    header = text.split("---", 2)[1] if text.startswith("---") else ""
    return "kernelspec:" in header


def execute(name: str) -> None:
    notebook = jupytext.read(BOOK / f"{name}.md")
    keep_cell_ids(notebook, BOOK / f"{name}.ipynb")
    notebook.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python",
                                       "name": "python3"}
    NotebookClient(notebook, timeout=1200, kernel_name="python3",
                   resources={"metadata": {"path": str(BOOK)}}).execute()
    for cell in notebook.cells:
        cell.metadata.pop("execution", None)  # timestamps: noise in every diff
        if FACES_TAG in cell.metadata.get("tags", []):
            cell.outputs = []
    notebook.metadata.get("jupytext", {}).pop("text_representation", None)
    nbformat.write(notebook, BOOK / f"{name}.ipynb")
    print(f"executed book/{name}.ipynb", flush=True)


def keep_cell_ids(notebook, committed: Path) -> None:
    """Reuse the committed notebook's cell ids where the cells line up, so a refresh
    changes only what changed."""
    if not committed.exists():
        return
    old = nbformat.read(committed, as_version=4).cells
    for cell, before in zip(notebook.cells, old, strict=False):
        if cell.cell_type == before.cell_type and "id" in before:
            cell["id"] = before["id"]


def main(names: list[str]) -> None:
    # No data: the committed outputs are what a clone without FER2013 shows.
    for var in ("FER2013_PATH",):
        os.environ.pop(var, None)
    for name in names or chapters():
        execute(name)


if __name__ == "__main__":
    main(sys.argv[1:])
