"""Check the built PDF: no blank page, and (with --log) no LaTeX error in the log.

    python scripts/check_pdf.py book/_build/latex/fer-compression.pdf \
        --log book/_build/latex/fer-compression.log

`make pdf` runs it after the build. It prints the page count and exits with status 1
when a page is blank (naming the pages) or the LaTeX log has an error (a line starting
with "! "), 2 when the PDF cannot be read.

A page counts as blank when nothing is printed in its body: running heads and page
numbers (the top and bottom `--band` of the page, 8 % by default) do not count, so a
page left empty by LaTeX's \\cleardoublepage, which still has its header and footer, is
blank. The body is searched for words (``pdftotext -bbox``) and, where there is none,
for ink (the page rendered by ``pdftoppm``), so a page holding only a figure is not
blank. Needs poppler-utils (Debian: apt-get install poppler-utils).
"""

from __future__ import annotations

import argparse
import html
import re
import shutil
import subprocess
import sys
from pathlib import Path

BAND = 0.08  # the top and bottom fraction of a page where running heads are
INK = 224  # a grey level (0 black, 255 white) below which a pixel is ink
DPI = 20  # enough to see a line of text or a figure

_PAGE = re.compile(r'<page width="([\d.]+)" height="([\d.]+)">(.*?)</page>', re.S)
_WORD = re.compile(r'<word xMin="[\d.]+" yMin="([\d.]+)" xMax="[\d.]+" yMax="([\d.]+)">'
                   r"(.*?)</word>", re.S)


class PdfError(RuntimeError):
    """The PDF cannot be read (missing, damaged, or poppler-utils absent)."""


def _run(command: list[str]) -> bytes:
    if shutil.which(command[0]) is None:
        raise PdfError(f"{command[0]} not found: install poppler-utils")
    done = subprocess.run(command, capture_output=True, check=False)
    if done.returncode != 0:
        raise PdfError(f"{' '.join(command)} failed: "
                       f"{done.stderr.decode(errors='replace').strip()}")
    return done.stdout


def body_words(pdf: Path, band: float = BAND) -> list[list[str]]:
    """For each page, the words printed between the top and bottom bands."""
    text = _run(["pdftotext", "-bbox", str(pdf), "-"]).decode("utf-8", errors="replace")
    pages = []
    for _, height, content in _PAGE.findall(text):
        h = float(height)
        words = []
        for y_min, y_max, word in _WORD.findall(content):
            middle = (float(y_min) + float(y_max)) / 2
            if band * h <= middle <= (1 - band) * h and html.unescape(word).strip():
                words.append(html.unescape(word))
        pages.append(words)
    if not pages:
        raise PdfError(f"{pdf}: no page found")
    return pages


def has_ink(pdf: Path, page: int, band: float = BAND) -> bool:
    """Whether the page, rendered in grey, has a dark pixel between the bands."""
    image = _run(["pdftoppm", "-f", str(page), "-l", str(page), "-r", str(DPI), "-gray",
                  "-singlefile", str(pdf)])
    # A binary PGM: "P5", width, height, maxval, one whitespace byte, then the pixels.
    fields = re.match(rb"P5\s+(\d+)\s+(\d+)\s+(\d+)\s", image)
    if fields is None:
        raise PdfError(f"pdftoppm gave no greyscale image for page {page}")
    width, height, maxval = (int(v) for v in fields.groups())
    pixels = image[fields.end():]
    top, bottom = int(band * height), int((1 - band) * height)
    threshold = INK * maxval // 255
    body = pixels[top * width:bottom * width]
    return any(value < threshold for value in body)


def blank_pages(pdf: Path, band: float = BAND) -> tuple[int, list[int]]:
    """(page count, the 1-based numbers of the blank pages)."""
    words = body_words(pdf, band)
    blank = [number for number, page in enumerate(words, start=1)
             if not page and not has_ink(pdf, number, band)]
    return len(words), blank


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
        count, blank = blank_pages(args.pdf, args.band)
    except (PdfError, OSError) as error:
        print(f"check_pdf: {error}", file=sys.stderr)
        return 2
    print(f"check_pdf: {args.pdf}: {count} pages")
    if blank:
        failed = True
        print(f"check_pdf: blank page(s): {', '.join(map(str, blank))}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
