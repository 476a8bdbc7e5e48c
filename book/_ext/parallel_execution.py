"""Execute the chapters that need it side by side, one per core, before Sphinx reads them.

myst-nb, in ``execute_notebooks: cache`` mode, executes a chapter when Sphinx reads it:
one chapter after the other, each in its own kernel. A chapter spends most of its 7-17 s
in one Python process (imports, reading results/, drawing figures), so on two cores one
of them idles while the other works. This extension runs first: it reads every chapter
the way myst-nb will (its own reader), asks the execution cache whether its code is
there, and executes the missing ones in a pool of processes, one chapter per core; each
result goes into the cache exactly as myst-nb would put it (same notebook, same record,
same ``execution_seconds``). When Sphinx then reads the chapters, myst-nb finds them all
in the cache and executes nothing.

Nothing else changes. A chapter that fails here is left out of the cache, so myst-nb
executes it again itself and reports the error as it always does. With one core, or a
single chapter to run, this extension does nothing. The kernels run one thread each
(``OMP_NUM_THREADS``): two kernels of two threads on two cores wait more than they work,
and the chapters print the same either way (nbval checks their outputs under ``make
test``, which runs one thread per worker too).

Registered in ``_config.yml`` under ``sphinx: local_extensions``, after
``book_inputs`` (which empties the cache when results/ or the data set changed).
"""

from __future__ import annotations

import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from sphinx.application import Sphinx
from sphinx.util import logging

logger = logging.getLogger(__name__)

# myst-nb's reader for a MyST Markdown notebook records itself under this name.
MYST_READ_DATA = {"name": "myst_nb_md", "type": "plugin"}


def available_cores() -> int:
    """The cores this process may run on (the affinity mask, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def read_chapter(path: Path, md_config: Any, nb_config: Any) -> Any | None:
    """The notebook myst-nb makes of `path`, or None when the file is plain Markdown."""
    from myst_nb.core.read import create_nb_reader

    text = path.read_text(encoding="utf-8")
    reader = create_nb_reader(str(path), md_config, nb_config, text)
    return None if reader is None else reader.read(text)


def execute_chapter(notebook: Any, cwd: str, timeout: int | None, allow_errors: bool,
                    threads: int) -> tuple[Any, float, str | None]:
    """Run in a worker: (the executed notebook, seconds, the error's text or None)."""
    from jupyter_cache.executors.utils import single_nb_execution

    os.environ["OMP_NUM_THREADS"] = str(threads)  # the kernel inherits it
    result = single_nb_execution(notebook, cwd=cwd, allow_errors=allow_errors,
                                 timeout=timeout, meta_override=True)
    error = None if result.err is None else (result.exc_string or repr(result.err))
    return notebook, result.time, error


def chapters_to_execute(app: Sphinx, cache: Any) -> list[tuple[Path, Any]]:
    """(path, notebook) of every chapter whose code the execution cache lacks."""
    md_config, nb_config = app.env.myst_config, app.env.mystnb_config
    todo = []
    for path in sorted(Path(app.srcdir).glob("*.md")):
        notebook = read_chapter(path, md_config, nb_config)
        # A chapter that overrides myst-nb's settings in its metadata is left to myst-nb.
        if notebook is None or nb_config.metadata_key in notebook.metadata:
            continue
        try:
            cache.match_cache_notebook(notebook)
        except KeyError:
            todo.append((path, notebook))
    return todo


def store_chapter(cache: Any, path: Path, executed: Any, seconds: float) -> None:
    """Put an executed chapter in the cache as myst-nb does after executing it."""
    from jupyter_cache.base import CacheBundleIn

    record = cache.add_nb_to_project(str(path), read_data=MYST_READ_DATA)
    cache.cache_notebook_bundle(
        CacheBundleIn(executed, record.uri, data={"execution_seconds": seconds}),
        check_validity=False, overwrite=True)


def execute_in_parallel(app: Sphinx) -> None:
    """``builder-inited``, after myst-nb's configuration: fill the execution cache."""
    nb_config = getattr(app.env, "mystnb_config", None)
    if nb_config is None or nb_config.execution_mode != "cache":
        return
    from jupyter_cache import get_cache

    cache = get_cache(nb_config.execution_cache_path)
    todo = chapters_to_execute(app, cache)
    workers = min(len(todo), available_cores())
    if workers < 2:
        return
    threads = max(1, available_cores() // workers)
    logger.info(f"parallel_execution: {len(todo)} chapters on {workers} processes")
    started = time.perf_counter()
    # spawn, not fork: Sphinx's process holds open files and loggers a kernel must not share.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        futures = {path: pool.submit(execute_chapter, notebook, str(path.parent),
                                     nb_config.execution_timeout,
                                     nb_config.execution_allow_errors, threads)
                   for path, notebook in todo}
        for path, future in futures.items():
            executed, seconds, error = future.result()
            if error is not None:
                logger.info(f"parallel_execution: {path.name} failed; myst-nb runs it again")
                continue
            store_chapter(cache, path, executed, seconds)
    logger.info(f"parallel_execution: done in {time.perf_counter() - started:.1f} s")


def setup(app: Sphinx) -> dict[str, Any]:
    # After book_inputs (priority 100) and myst-nb's configuration (the default, 500).
    app.connect("builder-inited", execute_in_parallel, priority=900)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
