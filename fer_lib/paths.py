"""Where the project's folders are: ``results/``, ``runs/`` and ``data/``.

They follow the working directory, not the installed package, so a non-editable
install reads and writes the project a command runs in, never site-packages:

* ``$FER_RESULTS_DIR`` and ``$FER_RUNS_DIR`` set them explicitly;
* otherwise the project root is ``$FER_PROJECT_DIR``, else the nearest folder, from the
  working directory upwards, that holds a ``results/`` folder (so the book's chapters,
  which run in ``book/``, find the repository's), else the working directory itself.

Each is looked up when called, so a process that changes directory follows it.
"""

from __future__ import annotations

import os
from pathlib import Path


def project_root() -> Path:
    """The folder holding ``results/``, ``runs/`` and ``data/`` (see the module doc)."""
    explicit = os.environ.get("FER_PROJECT_DIR", "").strip()
    if explicit:
        return Path(explicit).expanduser().resolve()
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / "results").is_dir():
            return folder
    return here


def _explicit(variable: str) -> Path | None:
    value = os.environ.get(variable, "").strip()
    return Path(value).expanduser().resolve() if value else None


def results_dir() -> Path:
    """Committed, content-keyed results: ``$FER_RESULTS_DIR`` or ``<root>/results``."""
    return _explicit("FER_RESULTS_DIR") or project_root() / "results"


def existing_results_dir() -> Path:
    """`results_dir`, which must be a folder: for commands that choose among the stored
    runs, which would otherwise find none and blame the runs, not the folder.

    Raises FileNotFoundError naming where it looked and how to point at a results folder.
    """
    folder = results_dir()
    if folder.is_dir():
        return folder
    if _explicit("FER_RESULTS_DIR"):
        raise FileNotFoundError(f"no results folder: $FER_RESULTS_DIR is {folder}; point it "
                                "at the project's results/ folder, or unset it and run fer "
                                "from the project root")
    looked = (f"$FER_PROJECT_DIR has none ({folder})" if _explicit("FER_PROJECT_DIR")
              else f"looked in {Path.cwd().resolve()} and the folders above it")
    raise FileNotFoundError(f"no results folder: {looked}; run fer from the project root (the "
                            "folder holding results/) or set FER_RESULTS_DIR=/path/to/results")


def runs_dir() -> Path:
    """Checkpoints and logs of runs in progress (never committed): ``$FER_RUNS_DIR`` or
    ``<root>/runs``."""
    return _explicit("FER_RUNS_DIR") or project_root() / "runs"


def committed_runs_dir() -> Path:
    """``runs/`` as a fresh clone has it: a temporary folder of links to the files of
    ``runs/`` that git tracks (the checkpoints of unfinished runs, committed between
    working sessions). What one machine has only locally, a soft-label store or a run in
    progress, is left out, so that what the book says is still to run is the same for
    every reader. Not a git checkout (or no git): `runs_dir` itself."""
    import subprocess
    import tempfile

    runs = runs_dir()
    try:
        listed = subprocess.run(["git", "-C", str(runs.parent), "ls-files", "-z", "--",
                                 runs.name], capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return runs
    view = Path(tempfile.mkdtemp(prefix="fer-committed-runs-"))
    for name in filter(None, listed.decode().split("\0")):
        link = view / Path(name).relative_to(runs.name)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(runs.parent / name)
    return view


def data_dir() -> Path:
    """Where FER2013 is looked for when ``$FER2013_PATH`` is unset: ``<root>/data``."""
    return project_root() / "data"
