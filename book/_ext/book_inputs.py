"""Rebuild the chapters whenever what they read changes: results/ or the data set.

Jupyter Book re-executes a chapter only when its code changes (the jupyter-cache is keyed
on the code) and Sphinx re-reads a page only when its source changes. The chapters'
outputs also depend on two things neither sees: the committed results in ``results/``
and whether FER2013 is at hand (the sample faces). Without this extension a reader who
pulls new results, or gets the data set and rebuilds as the book tells them to, would
get the old pages; so would anyone rebuilding after a build that failed.

On every build this extension fingerprints those inputs (the content of every file in
``results/``, the data source :func:`fer_lib.data.resolve_path` finds, or its absence)
and compares with the fingerprints stored by the last *successful* build: one for the
execution cache (shared by the HTML and PDF builds), one per builder for Sphinx's pages.
If the first differs, it drops the execution cache; if the second does, Sphinx re-reads
every page. It works the same for ``make book`` and for a plain
``jupyter-book build book/``.

Registered in ``_config.yml`` under ``sphinx: local_extensions``.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Any

from sphinx.application import Sphinx
from sphinx.util import logging

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "results"
STAMP = ".book-inputs"  # in book/_build/, beside the execution cache; + "-<builder>"


def fingerprint() -> str:
    """sha256 over results/ (paths and contents) and the data source's identity."""
    digest = hashlib.sha256()
    for path in sorted(p for p in RESULTS.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(RESULTS)).encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    from fer_lib.data import resolve_path

    try:
        source = resolve_path()
        stat = source.stat()
        data = f"{source.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    except FileNotFoundError:
        data = "no data"
    digest.update(data.encode())
    return digest.hexdigest()


def _build_dir(app: Sphinx) -> Path:
    """book/_build: the parent of the html/ (or latex/) output folder."""
    return Path(app.outdir).parent


def _cache_dir(app: Sphinx) -> Path:
    configured = getattr(app.config, "nb_execution_cache_path", "") or ""
    return Path(configured) if configured else _build_dir(app) / ".jupyter_cache"


def _stamps(app: Sphinx) -> tuple[Path, Path]:
    """(execution cache's stamp, this builder's pages' stamp)."""
    build = _build_dir(app)
    return build / STAMP, build / f"{STAMP}-{app.builder.name}"


def _read(stamp: Path) -> str | None:
    return stamp.read_text().strip() if stamp.exists() else None


def check_inputs(app: Sphinx) -> None:
    """``builder-inited``: drop the execution cache and the pages' state if stale."""
    current = fingerprint()
    app.env.book_inputs = current
    cache_stamp, pages_stamp = _stamps(app)
    if _read(cache_stamp) != current:
        cache = _cache_dir(app)
        if cache.exists():
            shutil.rmtree(cache)
            logger.info("book_inputs: results/ or the data set changed since the last "
                        "successful build: the chapters are executed again")
    app.env.book_inputs_changed = _read(pages_stamp) != current


def outdated(app: Sphinx, env: Any, added: set, changed: set, removed: set) -> list[str]:
    """``env-get-outdated``: every page, when the inputs changed."""
    if getattr(app.env, "book_inputs_changed", False):
        return sorted(env.found_docs - added - changed - removed)
    return []


def remember(app: Sphinx, exception: Exception | None) -> None:
    """``build-finished``: store the fingerprint only after a build without a warning
    (with ``--keep-going`` a failed chapter is a warning, not an exception)."""
    if exception is None and getattr(app, "_warncount", 0) == 0:
        for stamp in _stamps(app):
            stamp.write_text(app.env.book_inputs + "\n")


def setup(app: Sphinx) -> dict[str, Any]:
    # Before myst-nb opens the execution cache (its builder-inited handler).
    app.connect("builder-inited", check_inputs, priority=100)
    app.connect("env-get-outdated", outdated)
    app.connect("build-finished", remember)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
