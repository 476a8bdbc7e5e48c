"""scripts/check_pdf.py, the check `make pdf` runs on the built PDF, on PDFs made here.

The PDFs are letter-size pages drawn by matplotlib; a chapter starts where a page's body
begins with "CHAPTER" (Sphinx's heading) or where a top-level bookmark points, added
here to matplotlib's PDF as an incremental update (`add_outline`).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
from matplotlib.backends.backend_pdf import PdfPages  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "check_pdf.py"

pytestmark = pytest.mark.skipif(
    not all(shutil.which(tool) for tool in ("pdftotext", "pdftoppm", "pdftohtml")),
    reason="pdftotext, pdftoppm and pdftohtml (poppler-utils) are not installed")

LINE = 0.025  # the distance between two lines of text, as a fraction of the page height


def _lines(fig: Figure, top: float, bottom: float, words: str = "Some body text") -> None:
    y = top
    while y >= bottom:
        fig.text(0.1, y, f"{words}, at {y:.3f} of the page.", fontsize=11)
        y -= LINE


def _figure(fig: Figure, bottom: float, height: float) -> None:
    ax = fig.add_axes((0.2, bottom, 0.6, height))
    ax.plot([0, 1, 2], [0, 1, 0], linewidth=4, color="black")
    ax.set_axis_off()


def _page(kind: str) -> Figure:
    """A letter-size page (y from the bottom; the body is 0.08 to 0.92):

    'text': full of text; 'short': three lines at the top (91 % of the body empty);
    'half': text down to the middle; 'chapter': a chapter's first page ("CHAPTER TWO",
    then text); 'figure': a figure, no text; 'captioned': a figure and a one-line
    caption; 'heads': running heads only; 'blank'.
    """
    fig = Figure(figsize=(8.5, 11))
    if kind == "text":
        _lines(fig, 0.89, 0.11)
    elif kind == "short":
        _lines(fig, 0.89, 0.84, "The end of a section")
    elif kind == "half":
        _lines(fig, 0.89, 0.55)
    elif kind == "chapter":
        fig.text(0.8, 0.89, "CHAPTER", fontsize=12)
        fig.text(0.8, 0.86, "TWO", fontsize=16)
        fig.text(0.1, 0.80, "Distillation", fontsize=20)
        _lines(fig, 0.75, 0.11)
    elif kind == "heads":
        fig.text(0.1, 0.96, "Model compression on FER2013", fontsize=10)
        fig.text(0.1, 0.03, "2        CONTENTS", fontsize=10)
    elif kind == "figure":  # ink and no text
        _figure(fig, 0.3, 0.4)
    elif kind == "captioned":  # the words span one line, the ink most of the body
        _figure(fig, 0.25, 0.6)
        fig.text(0.2, 0.2, "Figure 3: accuracy against parameters.", fontsize=11)
    return fig


def make_pdf(path: Path, kinds: list[str]) -> Path:
    with matplotlib.rc_context({"pdf.fonttype": 42}), PdfPages(path) as pdf:
        for kind in kinds:
            pdf.savefig(_page(kind))
    return path


def add_outline(path: Path, chapters: list[int]) -> Path:
    """Append top-level bookmarks (as hyperref writes for chapters) pointing at the given
    1-based pages, with a child bookmark under each, to matplotlib's PDF."""
    data = path.read_bytes()
    catalog = re.search(rb"(\d+) 0 obj\s*<<\s*/Type\s*/Catalog\s*/Pages\s+(\d+) 0 R\s*>>", data)
    kids = re.search(rb"/Type\s*/Pages\s*/Kids\s*\[([^\]]*)\]", data).group(1)
    pages = [int(n) for n in re.findall(rb"(\d+) 0 R", kids)]
    size = int(re.search(rb"/Size (\d+)", data).group(1))
    previous = int(re.findall(rb"startxref\s+(\d+)", data)[-1])
    root = size  # the outline; then, per chapter, its entry and its child's
    entries = [root + 1 + 2 * i for i in range(len(chapters))]
    objects = {root: f"<< /Type /Outlines /First {entries[0]} 0 R /Last {entries[-1]} 0 R "
                     f"/Count {len(chapters)} >>"}
    for i, (entry, page) in enumerate(zip(entries, chapters, strict=True)):
        links = (f" /Prev {entries[i - 1]} 0 R" if i else "") + (
            f" /Next {entries[i + 1]} 0 R" if i + 1 < len(entries) else "")
        objects[entry] = (f"<< /Title (Chapter {i + 1}) /Parent {root} 0 R{links} "
                          f"/First {entry + 1} 0 R /Last {entry + 1} 0 R /Count 1 "
                          f"/Dest [{pages[page - 1]} 0 R /XYZ null null null] >>")
        objects[entry + 1] = (f"<< /Title (Section {i + 1}.1) /Parent {entry} 0 R "
                              f"/Dest [{pages[min(page, len(pages) - 1)]} 0 R /Fit] >>")
    number = int(catalog.group(1))
    objects[number] = f"<< /Type /Catalog /Pages {catalog.group(2).decode()} 0 R " \
                      f"/Outlines {root} 0 R >>"
    update, offsets = b"\n", {}
    for obj, body in objects.items():
        offsets[obj] = len(data) + len(update)
        update += f"{obj} 0 obj\n{body}\nendobj\n".encode()
    xref = len(data) + len(update)
    update += f"xref\n{number} 1\n{offsets[number]:010d} 00000 n \n".encode()
    update += f"{root} {len(objects) - 1}\n".encode()
    for obj in range(root, root + len(objects) - 1):
        update += f"{offsets[obj]:010d} 00000 n \n".encode()
    update += (f"trailer\n<< /Size {root + len(objects) - 1} /Root {number} 0 R "
               f"/Prev {previous} >>\nstartxref\n{xref}\n%%EOF\n").encode()
    path.write_bytes(data + update)
    return path


def check(*args: Path | str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)],
                          capture_output=True, text=True, check=False)


def test_a_pdf_without_blank_pages_passes(tmp_path):
    done = check(make_pdf(tmp_path / "ok.pdf", ["text", "figure", "text"]))
    assert done.returncode == 0, done.stderr
    assert "3 pages" in done.stdout


def test_blank_pages_fail_and_are_named(tmp_path):
    done = check(make_pdf(tmp_path / "blank.pdf", ["text", "blank", "text", "heads"]))
    assert done.returncode == 1
    assert "4 pages" in done.stdout
    assert "blank page(s): 2, 4" in done.stderr
    assert "mostly empty" not in done.stderr  # a blank page is named once


def _empty_pages(done: subprocess.CompletedProcess) -> list[int]:
    """The pages named as mostly empty."""
    line = next((line for line in done.stderr.splitlines() if "mostly empty" in line), "")
    return [int(n) for n in re.findall(r"(\d+) \(\d+% empty\)", line)]


def test_a_mostly_empty_page_inside_a_chapter_fails(tmp_path):
    done = check(make_pdf(tmp_path / "gap.pdf", ["text", "short", "text"]))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "mostly empty page(s) inside a chapter" in done.stderr
    assert re.search(r": 2 \(9\d% empty\)", done.stderr), done.stderr
    assert _empty_pages(done) == [2]


def test_a_chapters_short_last_page_passes(tmp_path):
    """Page 2 ends chapter 1 (page 3 begins with CHAPTER); page 5 ends the document."""
    done = check(make_pdf(tmp_path / "ends.pdf",
                          ["chapter", "short", "chapter", "text", "short"]))
    assert done.returncode == 0, done.stderr
    assert "5 pages, chapters start on pages 1, 3" in done.stdout


def test_chapter_starts_are_read_from_the_bookmarks(tmp_path):
    kinds = ["text", "short", "text", "short", "text"]
    assert _empty_pages(check(make_pdf(tmp_path / "none.pdf", kinds))) == [2, 4]
    done = check(add_outline(make_pdf(tmp_path / "two.pdf", kinds), [1, 3]))
    assert "chapters start on pages 1, 3" in done.stdout
    assert done.returncode == 1 and _empty_pages(done) == [4], done.stderr
    done = check(add_outline(make_pdf(tmp_path / "three.pdf", kinds), [1, 3, 5]))
    assert done.returncode == 0, done.stderr


def test_a_page_holding_a_figure_is_not_empty(tmp_path):
    """A figure with a one-line caption, and a figure alone: ink counts, not only words."""
    done = check(make_pdf(tmp_path / "figures.pdf", ["text", "captioned", "figure", "text"]))
    assert done.returncode == 0, done.stderr


def test_the_empty_fraction_and_its_threshold(tmp_path):
    pdf = make_pdf(tmp_path / "half.pdf", ["text", "half", "text"])
    assert check(pdf).returncode == 0
    done = check(pdf, "--max-empty", "0.5")
    assert done.returncode == 1
    assert re.search(r": 2 \([56]\d% empty\)", done.stderr), done.stderr


def test_latex_errors_in_the_log_fail(tmp_path):
    pdf = make_pdf(tmp_path / "ok.pdf", ["text"])
    log = tmp_path / "book.log"
    log.write_text("(./book.tex\n! Undefined control sequence.\nl.12 \\foo\n)\n")
    done = check(pdf, "--log", log)
    assert done.returncode == 1
    assert "Undefined control sequence" in done.stderr
    log.write_text("(./book.tex\nOverfull \\hbox (1.0pt too wide)\n)\n")
    assert check(pdf, "--log", log).returncode == 0


def test_an_unreadable_pdf_is_an_error(tmp_path):
    bad = tmp_path / "bad.pdf"
    bad.write_text("not a pdf")
    done = check(bad)
    assert done.returncode == 2
    assert "check_pdf:" in done.stderr
