"""The book tells one story: one way to choose the submission, numbers only through the
formatter, captioned figures with alt text, and the README naming the same model.

These tests read the chapters' sources and the committed, executed notebooks.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
jupytext = pytest.importorskip("jupytext")

REPO = Path(__file__).resolve().parents[1]
BOOK = REPO / "book"
NOTEBOOKS = sorted(p for p in BOOK.glob("*.ipynb"))
SOURCES = sorted(p for p in BOOK.glob("*.md") if p.with_suffix(".ipynb").exists())
# Chapters that state which model we submit: each must ask fer_lib.submission.
NAME_THE_SUBMISSION = ("intro", "q1_architecture", "results")
# A float with five or more decimals in an output is a number nobody formatted.
RAW_FLOAT = re.compile(r"(?<![\w.])-?\d+\.\d{5,}(?![\w.])")
PLACEHOLDERS = re.compile(r"\b(None|NaN|nan|not run|TODO|TBD|placeholder)\b")
# Ways of picking a model that bypass fer_lib.report's one way of choosing.
SELECTION = re.compile(r"val_acc.*(idxmax|nlargest|sort_values|\.max\(\))|"
                       r"(idxmax|nlargest|sort_values).*val_acc")


def code_cells(path: Path) -> list:
    return [c for c in jupytext.read(path).cells if c.cell_type == "code"]


def text_outputs(cell) -> list[str]:
    texts = []
    for output in cell.get("outputs", []):
        if output.get("output_type") == "stream":
            texts.append(output.get("text", ""))
        for mime, value in output.get("data", {}).items():
            if mime in ("text/plain", "text/html", "text/latex", "text/markdown"):
                texts.append(value if isinstance(value, str) else "".join(value))
    return texts


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_no_chapter_chooses_a_model_another_way(source):
    offending = [line.strip() for cell in code_cells(source) for line in cell.source.splitlines()
                 if SELECTION.search(line)]
    assert not offending, (f"{source.name} selects a model itself; use "
                           f"fer_lib.report.submission or best_run: {offending}")


@pytest.mark.parametrize("name", NAME_THE_SUBMISSION)
def test_chapters_that_name_the_submission_ask_for_it(name):
    code = "\n".join(c.source for c in code_cells(BOOK / f"{name}.md"))
    assert re.search(r"\bsubmission\((STRONG_BUDGET|budget|TINY_BUDGET)", code), (
        f"{name}.md must name our submission through fer_lib.submission(budget)")


def test_readme_names_the_same_submission():
    from fer_lib import submission

    readme = (REPO / "README.md").read_text()
    assert "fer_lib.submission(225_000)" in readme
    chosen = submission(225_000)
    assert f"`{chosen.run}` at {chosen.precision}" in readme, (
        f"README.md must name the current submission, `{chosen.run}` at {chosen.precision}")


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_outputs_have_no_raw_floats_or_placeholders(notebook):
    nb = nbformat.read(notebook, as_version=4)
    found = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        for text in text_outputs(cell):
            found += [f"cell {index}: {m.group(0)!r}" for m in RAW_FLOAT.finditer(text)]
            found += [f"cell {index}: {m.group(0)!r}" for m in PLACEHOLDERS.finditer(text)]
    assert not found, f"{notebook.name}: format numbers with fer_lib.report.fmt: {found[:10]}"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_figure_has_a_caption_and_alt_text(notebook):
    nb = nbformat.read(notebook, as_version=4)
    missing = []
    for index, cell in enumerate(nb.cells):
        images = [o for o in cell.get("outputs", []) if "image/png" in o.get("data", {})]
        if cell.cell_type != "code" or not images:
            continue
        meta = cell.metadata.get("mystnb", {})
        if not meta.get("figure", {}).get("caption") or not meta.get("image", {}).get("alt"):
            missing.append(index)
    assert not missing, f"{notebook.name}: figure cells {missing} lack a caption or alt text"


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_prose_uses_glue_not_format_specs(source):
    """Numbers reach the prose formatted once, by fmt: no ``{glue:text}`x:.3f``` specs."""
    specs = re.findall(r"\{glue:text\}`[^`]*:[^`]*`", source.read_text())
    assert not specs, f"{source.name}: format in the code cell with fmt(): {specs}"


# ----------------------------------------------------------------------------- one value per fact
def glued_values(cell) -> list[tuple[str, str]]:
    """``(name, text)`` of every value a cell glues (glue's text/plain record)."""
    out = []
    for output in cell.get("outputs", []):
        name = output.get("metadata", {}).get("scrapbook", {}).get("name")
        if name:
            out.append((name, "".join(output["data"].get(
                "application/papermill.record/text/plain", ""))))
    return out


def glued(path: Path) -> dict[str, str]:
    """Every value a notebook glues, by name."""
    return dict(pair for cell in nbformat.read(path, as_version=4).cells
                for pair in glued_values(cell))


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_every_glue_reference_is_glued_by_its_notebook(source):
    """A ``{glue:text}`name``` whose name the executed notebook never glued renders as a
    warning and an empty gap in the HTML and the PDF."""
    names = set(re.findall(r"\{glue(?::\w+)?\}`([^`]+)`", source.read_text()))
    missing = sorted(names - set(glued(source.with_suffix(".ipynb"))))
    assert not missing, f"{source.name} refers to values its notebook does not glue: {missing}"


def test_every_effect_quoted_in_two_chapters_has_one_value():
    """An effect the book quotes (glued as ``fx_<fact>``, e.g. ``fx_kd_100k``: the KD
    effect on the 100k student) reads the same in every chapter that quotes it: each
    comes from one function of fer_lib.report, never recomputed in a chapter."""
    seen: dict[str, dict[str, str]] = {}
    for notebook in NOTEBOOKS:
        for name, value in glued(notebook).items():
            if name.startswith("fx_"):
                seen.setdefault(name, {})[notebook.stem] = value
    assert any(name.startswith("fx_kd_") for name in seen), "no chapter glues a KD effect"
    differing = {name: where for name, where in seen.items() if len(set(where.values())) > 1}
    assert not differing, f"one fact, several values: {differing}"


# ----------------------------------------------------------------------------- no plumbing
# Bookkeeping that must not reach the page, and sentences that read as templates with
# slots (the lecturer's review found each of them printed).
PLUMBING = re.compile(r"\bglue\(|^\s*assert\s", re.MULTILINE)
TEMPLATE_PHRASES = ("still missing: none", "missing (generated", "gave a higher private "
                    "accuracy at:", "significant (McNemar, 5 % level) at:",
                    "The cells still missing are in the list above", "distilled from "
                    "teacher-ensemble", "(no CPU time;", ": none.", "Stored slimming runs:")
HIDDEN = {"remove-cell", "remove-input", "hide-input"}


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_plumbing_or_template_prose_on_the_page(notebook):
    """Code a reader sees (cells not removed or hidden) teaches, it does not glue or
    assert; no output, glued value or sentence of the chapter is a template with slots."""
    problems = []
    nb = nbformat.read(notebook, as_version=4)
    for cell in nb.cells:
        shown = not HIDDEN & set(cell.metadata.get("tags", []))
        if cell.cell_type == "code" and shown and PLUMBING.search(cell.source):
            problems.append(f"shown code: {cell.source.strip().splitlines()[0]}")
        texts = (text_outputs(cell) if cell.cell_type == "code" else [cell.source])
        texts += [v for k, v in glued_values(cell)]
        for text in texts:
            problems += [f"template: {p!r}" for p in TEMPLATE_PHRASES if p in text]
    assert not problems, "\n".join(problems)



# ----------------------------------------------------------------------------- written prose
# Glue carries numbers, names and short phrases; a sentence is written in the markdown.
MAX_GLUED_WORDS = 12
# What is stored or still to run belongs to the appendix that says how to reproduce it.
BUILD_STATUS = ("still missing", "listed as missing", "not run yet", "are stored",
                "not stored yet", "not yet stored", "not done yet", "not yet run",
                "still running", "has not finished")
APPENDIX = "reproducing"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_glued_values_are_short_phrases_not_sentences(notebook):
    long = {name: text for name, text in glued(notebook).items()
            if len(text.strip("'\"").split()) > MAX_GLUED_WORDS}
    assert not long, f"{notebook.name} glues sentences (write them in the markdown): {long}"


@pytest.mark.parametrize("notebook", [n for n in NOTEBOOKS if n.stem != APPENDIX],
                         ids=lambda p: p.stem)
def test_teaching_chapters_say_nothing_of_build_status(notebook):
    text = " ".join(cell.source for cell in nbformat.read(notebook, as_version=4).cells
                    if cell.cell_type == "markdown").lower()
    found = [phrase for phrase in BUILD_STATUS if phrase in text]
    assert not found, f"{notebook.name}: {found} (the {APPENDIX} appendix says that)"
