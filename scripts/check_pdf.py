"""Check the built PDF: no blank page, no mostly empty page inside a chapter, and (with
--log) no LaTeX error in the log.

    python scripts/check_pdf.py book/_build/latex/fer-compression.pdf \
        --log book/_build/latex/fer-compression.log

`make pdf` runs it after the build. It prints the page count and the chapters found, and
exits with status 1 when a page is blank or mostly empty inside a chapter (naming the
pages) or the LaTeX log has an error (a line starting with "! "), 2 when the PDF cannot
be read.

Only a page's body counts: running heads and page numbers, in the top and bottom
`--band` of the page (8 % of its height by default), do not. The body's content is found
in two ways, and both count:

* words: their boxes, from ``pdftotext -bbox``;
* ink: the page rendered in grey at 20 dpi (``pdftoppm -gray -r 20``, every page in one
  run); a pixel row with a pixel darker than grey level 224 is inked. A figure has no
  words but has ink, so a page holding a figure is not empty; and text counts even
  where no font renders it.

A page is **blank** when its body has neither words nor ink: a page left empty by
LaTeX's \\cleardoublepage, which still has its header and footer, is blank.

A page is **mostly empty** when its content, from the top of its first word or inked
row to the bottom of its last, spans less than a fifth of the body's height: more than
`--max-empty` (80 %) of the body is empty. Space inside that span counts as filled (a
figure's white margins, the gap between a paragraph and a float at the bottom), so what
this measures is a page whose content stops early or starts late: the page before a
figure, table or code block that did not fit, or a chapter's last page. The latter is
allowed. A mostly empty page fails unless it ends a chapter: it is the document's last
page, or the next page starts a chapter. Chapter starts are the pages of the PDF
outline's top-level entries (the bookmarks hyperref writes for each \\chapter, read
with ``pdftohtml -xml``) and, for a PDF without bookmarks, the pages whose body begins
with the word "CHAPTER" (the heading of a Sphinx chapter, fncychap's Bjarne style).

Needs poppler-utils (Debian: apt-get install poppler-utils).
"""

from __future__ import annotations

import argparse
import html
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

BAND = 0.08  # the top and bottom fraction of a page where running heads are
MAX_EMPTY = 0.80  # a page with more of its body empty is mostly empty
INK = 224  # a grey level (0 black, 255 white) below which a pixel is ink
DPI = 20  # enough to see a line of text or a figure
HEADING = "CHAPTER"  # the first word of a Sphinx chapter's first page (fncychap Bjarne)

_PAGE = re.compile(r'<page width="([\d.]+)" height="([\d.]+)">(.*?)</page>', re.S)
_WORD = re.compile(r'<word xMin="([\d.]+)" yMin="([\d.]+)" xMax="[\d.]+" yMax="([\d.]+)">'
                   r"(.*?)</word>", re.S)
_PGM = re.compile(rb"P5\s+(\d+)\s+(\d+)\s+(\d+)\s")
_OUTLINE_TAG = re.compile(r'<(/?)outline>|<item page="(\d+)"')


class PdfError(RuntimeError):
    """The PDF cannot be read (missing, damaged, or poppler-utils absent)."""


@dataclass(frozen=True)
class Page:
    """A page's body content, as fractions of the page height from its top.

    ``words``: (top, left, text) of each word in the body; ``text`` the words' extent
    (top, bottom) and ``ink`` the inked rows' extent, None when there are none.
    """

    number: int
    words: tuple[tuple[float, float, str], ...]
    text: tuple[float, float] | None
    ink: tuple[float, float] | None

    @property
    def blank(self) -> bool:
        return self.text is None and self.ink is None

    def empty(self, band: float = BAND) -> float:
        """The fraction of the body's height outside the content's extent (1.0: blank)."""
        spans = [span for span in (self.text, self.ink) if span is not None]
        if not spans:
            return 1.0
        top = min(span[0] for span in spans)
        bottom = max(span[1] for span in spans)
        return max(0.0, 1.0 - (bottom - top) / (1 - 2 * band))

    @property
    def first_word(self) -> str:
        return min(self.words)[2] if self.words else ""


def _run(command: list[str]) -> bytes:
    if shutil.which(command[0]) is None:
        raise PdfError(f"{command[0]} not found: install poppler-utils")
    done = subprocess.run(command, capture_output=True, check=False)
    if done.returncode != 0:
        raise PdfError(f"{' '.join(command)} failed: "
                       f"{done.stderr.decode(errors='replace').strip()}")
    return done.stdout


def body_words(pdf: Path, band: float = BAND) -> list[list[tuple[float, float, float, str]]]:
    """For each page, (top, bottom, left, text) of each word in the body, as fractions
    of the page height (left: of its width)."""
    text = _run(["pdftotext", "-bbox", str(pdf), "-"]).decode("utf-8", errors="replace")
    pages = []
    for width, height, content in _PAGE.findall(text):
        w, h = float(width), float(height)
        words = []
        for x_min, y_min, y_max, word in _WORD.findall(content):
            top, bottom = float(y_min) / h, float(y_max) / h
            word = html.unescape(word).strip()
            if band <= (top + bottom) / 2 <= 1 - band and word:
                words.append((top, bottom, float(x_min) / w, word))
        pages.append(words)
    if not pages:
        raise PdfError(f"{pdf}: no page found")
    return pages


def ink_extents(pdf: Path, band: float = BAND) -> list[tuple[float, float] | None]:
    """For each page, (top, bottom) of the inked pixel rows in the body, as fractions of
    the page height, or None: every page rendered in grey by one pdftoppm run."""
    data = _run(["pdftoppm", "-r", str(DPI), "-gray", str(pdf)])
    extents, offset = [], 0
    while offset < len(data):
        fields = _PGM.match(data, offset)
        if fields is None:
            raise PdfError(f"pdftoppm gave no greyscale image for page {len(extents) + 1}")
        width, height, maxval = (int(v) for v in fields.groups())
        start = fields.end()
        pixels = data[start:start + width * height]
        offset = start + width * height
        threshold = INK * maxval // 255
        inked = [row for row in range(int(band * height), int((1 - band) * height))
                 if min(pixels[row * width:(row + 1) * width]) < threshold]
        extents.append((inked[0] / height, (inked[-1] + 1) / height) if inked else None)
    return extents


def outline_pages(pdf: Path) -> list[int]:
    """The pages of the PDF outline's top-level entries (chapters), [] without one."""
    xml = _run(["pdftohtml", "-xml", "-stdout", "-i", "-q", str(pdf)])
    text = xml.decode("utf-8", errors="replace")
    pages, depth = [], 0
    for tag in _OUTLINE_TAG.finditer(text):
        closing, page = tag.groups()
        if page is not None:
            if depth == 1:
                pages.append(int(page))
        else:
            depth += -1 if closing else 1
    return pages


def read_pages(pdf: Path, band: float = BAND) -> list[Page]:
    words = body_words(pdf, band)
    ink = ink_extents(pdf, band)
    if len(ink) != len(words):
        raise PdfError(f"{pdf}: pdftotext read {len(words)} pages, pdftoppm {len(ink)}")
    pages = []
    for number, (page_words, page_ink) in enumerate(zip(words, ink, strict=True), start=1):
        extent = ((min(w[0] for w in page_words), max(w[1] for w in page_words))
                  if page_words else None)
        pages.append(Page(number, tuple((w[0], w[2], w[3]) for w in page_words),
                          extent, page_ink))
    return pages


def chapter_starts(pdf: Path, pages: list[Page]) -> set[int]:
    """Pages that start a chapter: the outline's top-level entries, and pages whose
    body begins with the word CHAPTER."""
    starts = set(outline_pages(pdf))
    return starts | {page.number for page in pages if page.first_word == HEADING}


def blank_pages(pdf: Path, band: float = BAND) -> tuple[int, list[int]]:
    """(page count, the 1-based numbers of the blank pages)."""
    pages = read_pages(pdf, band)
    return len(pages), [page.number for page in pages if page.blank]


def mostly_empty_pages(pages: list[Page], starts: set[int], max_empty: float = MAX_EMPTY,
                       band: float = BAND) -> list[tuple[int, float]]:
    """(page, empty fraction) of each page, not blank, more than ``max_empty`` empty and
    not the last page of a chapter (the document's last page, or before a chapter start)."""
    return [(page.number, page.empty(band)) for page in pages
            if not page.blank and page.empty(band) > max_empty
            and page.number != len(pages) and page.number + 1 not in starts]


def latex_errors(log: Path) -> list[str]:
    """The error lines ("! ...") of a LaTeX log, each with the line after it."""
    lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
    return [" ".join(lines[i:i + 2]).strip() for i, line in enumerate(lines)
            if line.startswith("! ")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pdf", type=Path)
    parser.add_argument("--log", type=Path, help="the LaTeX log to search for errors")
    parser.add_argument("--band", type=float, default=BAND,
                        help="fraction of the page height, at the top and at the bottom, "
                             "where running heads are ignored (default %(default)s)")
    parser.add_argument("--max-empty", type=float, default=MAX_EMPTY,
                        help="fraction of a page's body that may be empty, except on a "
                             "chapter's last page (default %(default)s)")
    args = parser.parse_args(argv)
    failed = False
    if args.log is not None:
        if not args.log.exists():
            print(f"check_pdf: {args.log} not found", file=sys.stderr)
            return 2
        errors = latex_errors(args.log)
        if errors:
            failed = True
            print(f"check_pdf: {len(errors)} LaTeX error(s) in {args.log}:", file=sys.stderr)
            for error in errors[:10]:
                print(f"  {error}", file=sys.stderr)
    try:
        pages = read_pages(args.pdf, args.band)
        starts = chapter_starts(args.pdf, pages)
    except (PdfError, OSError) as error:
        print(f"check_pdf: {error}", file=sys.stderr)
        return 2
    print(f"check_pdf: {args.pdf}: {len(pages)} pages, chapters start on pages "
          f"{', '.join(map(str, sorted(starts))) or '(none found)'}")
    blank = [page.number for page in pages if page.blank]
    if blank:
        failed = True
        print(f"check_pdf: blank page(s): {', '.join(map(str, blank))}", file=sys.stderr)
    empty = mostly_empty_pages(pages, starts, args.max_empty, args.band)
    if empty:
        failed = True
        listed = ", ".join(f"{number} ({fraction:.0%} empty)" for number, fraction in empty)
        print(f"check_pdf: mostly empty page(s) inside a chapter (over {args.max_empty:.0%} "
              f"of the body empty, and not before a chapter start): {listed}",
              file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
