"""scripts/check_pdf.py, the check `make pdf` runs on the built PDF, on PDFs made here."""

from __future__ import annotations

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
    not (shutil.which("pdftotext") and shutil.which("pdftoppm")),
    reason="pdftotext and pdftoppm (poppler-utils) are not installed")


def _page(kind: str) -> Figure:
    """A letter-size page: 'text', 'blank', 'heads' (running heads only) or 'figure'."""
    fig = Figure(figsize=(8.5, 11))
    if kind == "text":
        fig.text(0.1, 0.7, "Chapter 1. Some body text.", fontsize=12)
    elif kind == "heads":
        fig.text(0.1, 0.96, "Model compression on FER2013", fontsize=10)
        fig.text(0.1, 0.03, "2        CONTENTS", fontsize=10)
    elif kind == "figure":  # ink and no text
        ax = fig.add_axes((0.2, 0.3, 0.6, 0.4))
        ax.plot([0, 1, 2], [0, 1, 0], linewidth=4, color="black")
        ax.set_axis_off()
    return fig


def make_pdf(path: Path, kinds: list[str]) -> Path:
    with matplotlib.rc_context({"pdf.fonttype": 42}), PdfPages(path) as pdf:
        for kind in kinds:
            pdf.savefig(_page(kind))
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
