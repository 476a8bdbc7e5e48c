"""book/_ext/latex_output.py (the PDF's tables, hidden sources, one intro chapter) and
fer_lib.report.Table's LaTeX, which the PDF typesets."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from docutils import nodes

from fer_lib.report import Table

EXT = Path(__file__).resolve().parents[1] / "book" / "_ext" / "latex_output.py"
pytest.importorskip("sphinx")
_spec = importlib.util.spec_from_file_location("latex_output", EXT)
latex_output = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(latex_output)


def test_dataframe_html_becomes_the_same_latex_as_a_table():
    frame = pd.DataFrame({"run": ["a_b", "c"], "acc": ["63.7 %", "1.2×"]})
    html = frame.to_html(index=False)
    assert latex_output.html_table_to_latex(html) == Table(frame)._repr_latex_()


def test_html_headers_index_names_and_multiindex_columns():
    frame = pd.DataFrame([[1, 2]], index=pd.Index(["r"], name="name"),
                         columns=pd.MultiIndex.from_tuples([("acc", "val"), ("acc", "pub")]))
    latex = latex_output.html_table_to_latex(frame.to_html())
    assert "name & acc val & acc pub \\\\" in latex
    assert "r & 1 & 2 \\\\" in latex
    styler = pd.DataFrame({"a": [1.5]}).style.format("{:.2f}").set_table_styles(
        [{"selector": "td", "props": "color: red"}])
    styled = latex_output.html_table_to_latex(styler.to_html())
    assert "\\midrule\n0 & 1.50 \\\\\n\\bottomrule" in styled  # no CSS in the cells
    assert latex_output.html_table_to_latex("<p>no table</p>") is None


def _cell(hide_mode: str | None, output: bool = True) -> nodes.container:
    cell = nodes.container(nb_element="cell_code")
    if hide_mode:
        cell["hide_mode"] = hide_mode
    cell += nodes.container(nb_element="cell_code_source")
    if output:
        cell += nodes.container(nb_element="cell_code_output")
    return cell


@pytest.mark.parametrize("mode, kept", [(None, 2), ("output", 2), ("input", 1), ("all", 1)])
def test_hidden_sources_are_dropped(mode, kept):
    parent = nodes.section()
    cell = _cell(mode)
    parent += cell
    latex_output.drop_hidden_source(cell)
    assert len(cell.children) == kept
    assert all(c["nb_element"] == "cell_code_output" for c in cell.children) or kept == 2


def test_a_hidden_cell_without_output_disappears():
    parent = nodes.section()
    cell = _cell("input", output=False)
    parent += cell
    latex_output.drop_hidden_source(cell)
    assert cell not in parent.children


def test_a_latex_table_output_is_raw_latex_not_math():
    table = Table(pd.DataFrame({"a": ["1"]}))._repr_latex_()
    bundle = nodes.container(nb_element="mime_bundle")
    latex = nodes.container(mime_type="text/latex")
    latex += nodes.math_block(text=table)
    bundle += latex
    latex_output.typeset_tables(bundle)
    (raw,) = latex.children
    assert isinstance(raw, nodes.raw) and raw["format"] == "latex" and raw.astext() == table


def test_a_dataframe_bundle_gains_a_latex_table():
    html = pd.DataFrame({"a": [1]}).to_html()
    bundle = nodes.container(nb_element="mime_bundle")
    for mime, node in (("text/html", nodes.raw(text=html, format="html")),
                       ("text/plain", nodes.literal_block(text="   a\n0  1"))):
        container = nodes.container(mime_type=mime)
        container += node
        bundle += container
    latex_output.typeset_tables(bundle)
    latex = [c for c in bundle.children if c["mime_type"] == "text/latex"]
    assert len(latex) == 1 and "\\begin{tabular}" in latex[0].astext()


def test_the_root_page_is_one_chapter_followed_by_the_others():
    document = nodes.document(None, None)
    intro = nodes.section("", nodes.title(text="Intro"), nodes.section("", nodes.title(
        text="A section")))
    toc = nodes.compound(classes=["toctree-wrapper"])
    toc += nodes.section("", nodes.title(text="Chapter 2"))
    intro += toc
    document += intro
    latex_output.one_intro_chapter(document)
    (outer,) = document.children
    assert [type(c) for c in outer.children] == [nodes.title, nodes.section, nodes.compound]
    assert outer.children[1] is intro and toc not in intro.children
    latex_output.one_intro_chapter(document)  # idempotent
    assert document.children == [outer]


@pytest.mark.skipif(not shutil.which("xelatex"), reason="xelatex is not installed")
def test_table_latex_compiles(tmp_path):
    """Specials, a wide table (shrunk), an index with a name and a long table (pages)."""
    tables = [
        Table(pd.DataFrame({"run_1": ["a_b & c", "50 %"], "x": ["1.2×", "≤ 3 ± 1 → #4"],
                            "y": ["{~^\\$}", "two\nlines"]})),
        Table(pd.DataFrame({f"column {i}": ["a long cell value"] * 2 for i in range(15)})),
        Table(pd.DataFrame({"a": [1]}, index=pd.Index(["r"], name="name")), show_index=True),
        Table(pd.DataFrame({"n": range(Table.LONG_ROWS * 3)})),
    ]
    latex = [table._repr_latex_() for table in tables]
    assert "longtable" in latex[-1] and "longtable" not in latex[0]
    (tmp_path / "t.tex").write_text(
        "\\documentclass{article}\\usepackage{graphicx}\\usepackage{booktabs}"
        "\\usepackage{longtable}\\begin{document}\n" + "\n".join(latex) + "\\end{document}\n")
    done = subprocess.run(["xelatex", "-interaction=nonstopmode", "-halt-on-error", "t.tex"],
                          cwd=tmp_path, capture_output=True, text=True, check=False,
                          timeout=300)
    assert done.returncode == 0, done.stdout[-3000:]
