"""One build, one place: `make book` and the README's `jupyter-book build book/` write the
same site, book/_build/html, from one execution cache, book/_build/.jupyter_cache.

jupyter-book 1 builds into ``<--path-output>/_build/``; without ``--path-output``, into
``<the folder where it found _config.yml>/_build/``, looking in the source folder and
then its parents. The configuration is ``_config.yml`` at the repository root, and
``book/_config.yml`` is a symlink to it, so jupyter-book finds it in book/ and both
commands build into book/_build/ (myst-nb keeps jupyter-cache beside ``html/``). Without
the symlink the typed command found the root's file and built a second site, executing
every chapter again, into ./_build/.

The commands are read from the Makefile's ``book`` and ``pdf`` rules and from the
README's "Two commands" section, so the tests follow what readers and ``make`` run:

* their output and cache folders, resolved by jupyter-book's own ``build`` command (its
  Sphinx run replaced by a recorder), are book/_build/html and book/_build/.jupyter_cache;
* a throwaway one-page book laid out like this repository (the configuration at its
  root, book/'s links copied from this repository's) is built with the Makefile's
  command, then with the README's: the second build executes nothing (its code cell
  counts its runs in a file) and leaves no ./_build; a third, re-reading every page
  (``--all``), takes the page's outputs from the same jupyter-cache.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

jupyter_book = pytest.importorskip("jupyter_book")

REPO = Path(__file__).resolve().parents[1]
BOOK = REPO / "book"
SITE = BOOK / "_build" / "html"
CACHE = BOOK / "_build" / ".jupyter_cache"
JUPYTER_BOOK = Path(sys.executable).with_name("jupyter-book")


def _build_args(line: str) -> list[str]:
    """The arguments after ``jupyter-book build`` on a command line."""
    words = shlex.split(line.split(" #", 1)[0])
    start = next(i for i, word in enumerate(words) if word.endswith("jupyter-book"))
    assert words[start + 1] == "build", line
    return words[start + 2:]


def makefile_build(rule: str) -> list[str]:
    """The ``jupyter-book build`` arguments of a Makefile rule's recipe."""
    text = (REPO / "Makefile").read_text()
    match = re.search(rf"^{rule}:.*\n((?:\t.*\n|#.*\n)*)", text, re.M)
    assert match, f"no `{rule}` rule in the Makefile"
    recipe = match.group(1).replace("\\\n", " ")
    lines = [line for line in recipe.splitlines() if "jupyter-book build" in line]
    assert len(lines) == 1, f"`make {rule}` should run jupyter-book build once: {lines}"
    return _build_args(lines[0])


def readme_build() -> list[str]:
    """The arguments of the ``jupyter-book build`` command in README's "Two commands"."""
    text = (REPO / "README.md").read_text()
    section = text.split("## Two commands", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines()
             if line.strip().startswith("jupyter-book build")]
    assert len(lines) == 1, "README's Two commands should give one `jupyter-book build`"
    return _build_args(lines[0])


def resolve(args: list[str], monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """(output folder, execution cache) of ``jupyter-book build ARGS`` run in the repo.

    jupyter-book's own ``build`` command works out the paths; its Sphinx run (and the
    PDF's latexmk after it) are replaced by a recorder. The cache is myst-nb's rule: the
    configured ``execute.cache``, else ``.jupyter_cache`` beside the output folder.
    """
    from click.testing import CliRunner
    from jupyter_book import sphinx
    from jupyter_book.cli import main as cli
    from jupyter_book.config import yaml_to_sphinx

    calls = []

    def record(sourcedir, outputdir, **kwargs):
        calls.append((Path(outputdir), kwargs))
        return 0

    monkeypatch.chdir(REPO)
    monkeypatch.setattr(sphinx, "build_sphinx", record)
    monkeypatch.setattr(cli, "builder_specific_actions", lambda *a, **k: None)
    done = CliRunner().invoke(cli.main, ["build", *args])
    assert done.exit_code == 0, done.output
    [(output, kwargs)] = calls
    config = yaml.safe_load(Path(kwargs["path_config"]).read_text())
    cache = yaml_to_sphinx(config)[0].get("nb_execution_cache_path")
    return output.resolve(), (Path(cache) if cache else output.parent / ".jupyter_cache")


def test_the_config_is_found_in_book_as_a_link_to_the_top_level_one():
    link = BOOK / "_config.yml"
    assert link.is_symlink(), "book/_config.yml must link to ../_config.yml (see _config.yml)"
    assert os.readlink(link) == "../_config.yml"
    assert link.resolve() == (REPO / "_config.yml").resolve()


def test_the_local_extensions_are_found_from_book():
    """local_extensions' folders are relative to the folder where the config is found."""
    from jupyter_book.cli.main import find_config_path

    folder, found = find_config_path(BOOK)
    assert found and folder == BOOK
    config = yaml.safe_load((BOOK / "_config.yml").read_text())
    extensions = config["sphinx"]["local_extensions"]
    for name, path in extensions.items():
        assert (folder / path / f"{name}.py").is_file(), f"{name}: {folder / path}"


def test_make_book_and_the_typed_command_build_into_one_place(monkeypatch):
    make_book = resolve(makefile_build("book"), monkeypatch)
    typed = resolve(readme_build(), monkeypatch)
    assert make_book == typed == (SITE, CACHE)


def test_make_pdf_shares_the_folder_and_the_cache(monkeypatch):
    output, cache = resolve(makefile_build("pdf"), monkeypatch)
    assert (output, cache) == (BOOK / "_build" / "latex", CACHE)


def test_make_clean_removes_both_places():
    text = (REPO / "Makefile").read_text()
    recipe = re.search(r"^clean:.*\n((?:\t.*\n)*)", text, re.M).group(1)
    removed = set(shlex.split(recipe.replace("rm -rf", " ")))
    assert {"book/_build", "_build"} <= removed


# The throwaway book: one page whose only code cell appends a line to a file per run.
PAGE = """---
jupytext:
  text_representation:
    extension: .md
    format_name: myst
kernelspec:
  display_name: Python 3
  language: python
  name: python3
---

# A page

```{{code-cell}} ipython3
with open({runs!r}, "a") as runs:
    print("executed", file=runs)
```
"""


def _throwaway_book(root: Path, runs: Path) -> None:
    """This repository's layout, its execution settings, and a one-page book."""
    config = yaml.safe_load((REPO / "_config.yml").read_text())
    small = {key: config[key] for key in ("only_build_toc_files", "exclude_patterns",
                                          "execute")}
    small["title"] = "Throwaway"
    (root / "_config.yml").write_text(yaml.safe_dump(small))
    (root / "_toc.yml").write_text("format: jb-book\nroot: intro\n")
    (root / "book").mkdir()
    (root / "book" / "intro.md").write_text(PAGE.format(runs=str(runs)))
    for name in ("_config.yml", "_toc.yml"):  # the links, as this repository has them
        ours = BOOK / name
        if ours.is_symlink():
            (root / "book" / name).symlink_to(os.readlink(ours))
        elif ours.exists():
            shutil.copy(ours, root / "book" / name)


def _build(root: Path, args: list[str]) -> str:
    done = subprocess.run([str(JUPYTER_BOOK), "build", *args], cwd=root,
                          capture_output=True, text=True, timeout=300, check=False)
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-3000:]
    return log


# Three builds of a one-page book (a kernel each): slow. CI runs it (make test-all) and
# checks the same on the real book (.ci/run: the typed build after make book).
@pytest.mark.slow
@pytest.mark.skipif(not JUPYTER_BOOK.exists(), reason=f"{JUPYTER_BOOK} not installed")
def test_the_typed_build_after_make_book_executes_nothing(tmp_path):
    root, runs = tmp_path / "repo", tmp_path / "runs.txt"
    root.mkdir()
    _throwaway_book(root, runs)

    first = _build(root, makefile_build("book"))
    assert runs.read_text().count("executed") == 1, first[-3000:]
    second = _build(root, readme_build())
    assert runs.read_text().count("executed") == 1, (
        "the README's command executed the page again after `make book`:\n" + second[-3000:])
    site = root / "book" / "_build" / "html"
    assert f"Output Path: {site}" in first and f"Output Path: {site}" in second
    assert (site / "index.html").is_file()
    assert not (root / "_build").exists(), "a second build folder at the root"
    # Re-reading every page (as book/_ext/book_inputs.py makes Sphinx do when results/
    # changed, though it drops the cache then) takes the outputs from the one cache.
    third = _build(root, [*readme_build(), "--all"])
    assert runs.read_text().count("executed") == 1, third[-3000:]
    assert "Using cached notebook" in third, third[-3000:]
