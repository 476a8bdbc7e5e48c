"""The PDF shows what a reader of the HTML book sees: no hidden code, real tables.

Jupyter Book's PDF goes through Sphinx's LaTeX builder, which prints every node of the
page. This extension acts for that builder only (the HTML is untouched) and makes four
changes to the assembled document, before myst-nb picks one output per mime bundle:

* **Hidden code is not printed.** A code cell tagged ``hide-input`` (or ``hide-cell``)
  shows its source only behind a toggle in the HTML; the PDF has no toggle, so the
  source is dropped and the outputs stay. (``remove-input``, ``remove-output`` and
  ``remove-cell`` are already left out of every format by myst-nb.)
* **Tables are typeset.** myst-nb renders a ``text/latex`` output as display math; an
  output that is a LaTeX table (``fer_lib.report.Table._repr_latex_``: a ``tabular`` or
  ``longtable``) becomes raw LaTeX instead.
* **DataFrames too.** An output with an HTML table (a pandas DataFrame's ``text/html``)
  and no ``text/latex`` gets one, converted from the HTML by the same code
  (``fer_lib.report.Table``), so the LaTeX builder's mime priority
  (``nb_mime_priority_overrides`` in ``_config.yml``: ``text/latex`` first) typesets it
  rather than printing the DataFrame's plain-text dump.
* **The introduction is one chapter.** Sphinx makes the root page's title the title of
  the PDF and its ``##`` sections chapters, one page each. The root page's content is
  wrapped so that it is chapter 1, its sections are sections, and the chapters of the
  table of contents follow it.

Registered in ``_config.yml`` under ``sphinx: local_extensions``.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import Any

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.transforms.post_transforms import SphinxPostTransform
from sphinx.util import logging

logger = logging.getLogger(__name__)

# Code cells whose source the HTML hides behind a toggle (myst-nb's hide_mode).
HIDDEN_SOURCE = {"input", "input+output", "all"}
# A text/latex output that is a table, not a formula.
LATEX_TABLE = re.compile(r"\\begin\{(tabular\*?|tabularx|longtable|table)\}")


def _nb(node: nodes.Node, element: str) -> bool:
    return isinstance(node, nodes.container) and node.get("nb_element") == element


class _HTMLTables(HTMLParser):
    """The cells of every ``<table>`` in an HTML string: header rows, body rows.

    Enough for pandas' ``DataFrame.to_html`` (and Styler) output: ``<th>`` and ``<td>``
    cells, ``colspan`` (the text repeats in each column) and ``rowspan`` (the rows below
    are empty, as pandas shows the groups of a MultiIndex),
    ``<thead>`` rows as the header; ``<style>`` and ``<script>`` are skipped.
    """

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tables: list[tuple[list[list[str]], list[list[str]]]] = []
        self._rows: list[tuple[bool, list[tuple[str, int, int]]]] | None = None
        self._row: list[tuple[str, int, int]] | None = None
        self._cell: list[str] | None = None
        self._span = (1, 1)
        self._in_head = False
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("style", "script"):
            self._skip += 1
        elif tag == "table":
            self._rows = []
        elif tag == "thead":
            self._in_head = True
        elif tag == "tr" and self._rows is not None:
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []
            values = dict(attrs)
            self._span = (_int(values.get("colspan")), _int(values.get("rowspan")))
        elif tag == "br" and self._cell is not None:
            self._cell.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("style", "script"):
            self._skip = max(0, self._skip - 1)
        elif tag in ("td", "th") and self._cell is not None and self._row is not None:
            text = " ".join("".join(self._cell).split())
            self._row.append((text, *self._span))
            self._cell = None
        elif tag == "tr" and self._row is not None and self._rows is not None:
            self._rows.append((self._in_head, self._row))
            self._row = None
        elif tag == "thead":
            self._in_head = False
        elif tag == "table" and self._rows is not None:
            grid = _grid([row for _, row in self._rows])
            rows = list(zip([in_head for in_head, _ in self._rows], grid, strict=True))
            head = [cells for in_head, cells in rows if in_head]
            body = [cells for in_head, cells in rows if not in_head]
            self.tables.append((head, body))
            self._rows = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None and not self._skip:
            self._cell.append(data)


def _int(value: str | None) -> int:
    try:
        return max(1, int(value or 1))
    except ValueError:
        return 1


def _grid(rows: list[list[tuple[str, int, int]]]) -> list[list[str]]:
    """Rows of (text, colspan, rowspan) cells as a rectangular grid of strings."""
    taken: dict[tuple[int, int], str] = {}
    grid: list[list[str]] = []
    for r, row in enumerate(rows):
        cells: list[str] = []
        c = 0
        for text, colspan, rowspan in row:
            while (r, c) in taken:
                cells.append(taken.pop((r, c)))
                c += 1
            for dc in range(colspan):
                cells.append(text)  # a header over several columns names each one
                for dr in range(1, rowspan):
                    taken[(r + dr, c + dc)] = ""
            c += colspan
        while (r, c) in taken:
            cells.append(taken.pop((r, c)))
            c += 1
        grid.append(cells)
    width = max((len(cells) for cells in grid), default=0)
    return [cells + [""] * (width - len(cells)) for cells in grid]


def html_table_to_latex(html: str) -> str | None:
    """The LaTeX of the HTML's tables (as ``fer_lib.report.Table`` typesets them), or None.

    Several header rows (a column MultiIndex, the index's name) are joined per column;
    repeated labels are allowed (pandas leaves the index columns' headers empty).
    """
    import pandas as pd

    from fer_lib.report import Table

    parser = _HTMLTables()
    parser.feed(html)
    parser.close()
    latex = []
    for head, body in parser.tables:
        if not head and body:
            head, body = body[:1], body[1:]
        if not head:
            continue
        columns = [" ".join(cell for cell in column if cell) for column in zip(*head, strict=True)]
        frame = pd.DataFrame(body, columns=columns) if body else pd.DataFrame(columns=columns)
        latex.append(Table(frame)._repr_latex_())
    return "\n".join(latex) if latex else None


class LatexOutputs(SphinxPostTransform):
    """For the LaTeX builder: drop hidden sources, typeset tables, one intro chapter."""

    builders = ("latex",)
    # Before myst-nb's SelectMimeType (priority 4) replaces the mime bundles.
    default_priority = 3

    def run(self, **kwargs: Any) -> None:
        for cell in list(self.document.findall(lambda n: _nb(n, "cell_code"))):
            drop_hidden_source(cell)
        for bundle in list(self.document.findall(lambda n: _nb(n, "mime_bundle"))):
            typeset_tables(bundle)
        if self.document.get("docname", self.env.docname) == self.config.root_doc:
            one_intro_chapter(self.document)


def drop_hidden_source(cell: nodes.container) -> None:
    """A cell whose source the HTML hides: no source; no cell if nothing is left."""
    if cell.get("hide_mode") not in HIDDEN_SOURCE:
        return
    for child in list(cell.children):
        if _nb(child, "cell_code_source"):
            cell.remove(child)
    if not any(_nb(child, "cell_code_output") for child in cell.children):
        cell.parent.remove(cell)


def typeset_tables(bundle: nodes.container) -> None:
    """Table outputs as raw LaTeX under ``text/latex``, added from HTML where missing."""
    by_type = {child.get("mime_type"): child for child in bundle.children
               if isinstance(child, nodes.container)}
    latex = by_type.get("text/latex")
    if latex is not None:
        text = latex.astext()
        if LATEX_TABLE.search(text):
            latex.children = []
            latex += nodes.raw("", text, format="latex", classes=["output", "text_latex"])
        return
    html = by_type.get("text/html")
    if html is None or "<table" not in html.astext():
        return
    converted = html_table_to_latex(html.astext())
    if converted is None:
        return
    container = nodes.container(mime_type="text/latex")
    container += nodes.raw("", converted, format="latex", classes=["output", "text_latex"])
    bundle += container


def one_intro_chapter(document: nodes.document) -> None:
    """Chapter 1 is the root page, with its sections; the other chapters follow it.

    Sphinx's LaTeX writer takes the first title of the document as the PDF's title and
    starts counting section levels below it, so the root page's ``##`` sections would be
    chapters. An outer section takes that first-title role; the root page's section (its
    own title, text and sections) becomes chapter 1, and the table of contents' chapters
    (the inlined toctree) move after it.
    """
    sections = [child for child in document.children if isinstance(child, nodes.section)]
    if not sections or sections[0].get("latex_output_wrapped"):
        return
    intro = sections[0]
    chapters = [node for node in intro.findall(nodes.compound)
                if "toctree-wrapper" in node.get("classes", [])]
    for node in chapters:
        node.parent.remove(node)
    title = intro.next_node(nodes.title)
    outer = nodes.section("", nodes.title("", title.astext() if title else ""),
                          latex_output_wrapped=True)
    document.replace(intro, outer)
    outer += intro
    outer.extend(chapters)


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_post_transform(LatexOutputs)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
