"""book/_ext/parallel_execution.py: chapters executed side by side land in the execution
cache exactly where myst-nb looks, so the build that follows executes none of them."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import SimpleNamespace

import pytest

EXT = Path(__file__).resolve().parents[1] / "book" / "_ext" / "parallel_execution.py"
pytest.importorskip("myst_nb")
_spec = importlib.util.spec_from_file_location("parallel_execution", EXT)
parallel_execution = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(parallel_execution)

FRONT_MATTER = """---
jupytext:
  text_representation:
    extension: .md
    format_name: myst
kernelspec:
  display_name: Python 3
  language: python
  name: python3
---

# A chapter

```{code-cell} ipython3
%s
```
"""


def fake_app(folder: Path):
    """What the extension reads of Sphinx: the source folder and myst's two configs."""
    from jupyter_cache import get_cache
    from myst_nb.core.config import NbParserConfig
    from myst_parser.config.main import MdParserConfig

    config = NbParserConfig(execution_mode="cache", execution_cache_path=str(folder / "c"))
    app = SimpleNamespace(srcdir=str(folder),
                          env=SimpleNamespace(myst_config=MdParserConfig(),
                                              mystnb_config=config))
    return app, get_cache(config.execution_cache_path)


def test_an_executed_chapter_is_found_where_myst_nb_looks(tmp_path):
    (tmp_path / "chapter.md").write_text(FRONT_MATTER % "import os\nprint(6 * 7)")
    (tmp_path / "glossary.md").write_text("# Plain Markdown\n\nNo code here.\n")
    app, cache = fake_app(tmp_path)
    todo = parallel_execution.chapters_to_execute(app, cache)
    assert [path.name for path, _ in todo] == ["chapter.md"]  # plain Markdown is no chapter

    path, notebook = todo[0]
    executed, seconds, error = parallel_execution.execute_chapter(
        notebook, str(tmp_path), 120, False, 1)
    assert error is None and seconds > 0
    parallel_execution.store_chapter(cache, path, executed, seconds)

    assert parallel_execution.chapters_to_execute(app, cache) == []
    # myst-nb's own lookup (NotebookClientCache) on a fresh read of the source:
    fresh = parallel_execution.read_chapter(path, app.env.myst_config, app.env.mystnb_config)
    record = cache.match_cache_notebook(fresh)
    assert record.data["execution_seconds"] == pytest.approx(seconds)
    _, merged = cache.merge_match_into_notebook(fresh)
    code = [cell for cell in merged.cells if cell.cell_type == "code"]
    assert code[0].outputs[0]["text"] == "42\n"


def test_a_failing_chapter_reports_its_error_and_stays_out_of_the_cache(tmp_path):
    (tmp_path / "broken.md").write_text(FRONT_MATTER % "raise ValueError('no results/')")
    app, cache = fake_app(tmp_path)
    [(path, notebook)] = parallel_execution.chapters_to_execute(app, cache)
    _, _, error = parallel_execution.execute_chapter(notebook, str(tmp_path), 120, False, 1)
    assert "no results/" in error
    # The extension stores nothing for it: myst-nb executes it again and reports it.
    assert [p.name for p, _ in parallel_execution.chapters_to_execute(app, cache)] == [
        "broken.md"]
