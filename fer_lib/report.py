"""The book's layer: read ``results/`` once and answer what the chapters ask.

Every chapter gets its numbers here, so no two chapters can disagree:

- `precision_table()`: every stored run at every precision it was scored at (bytes,
  val/public/private accuracy), the table the frontier and the submission are read from;
- `submission(budget)`: the homework submission under a byte budget, chosen one way
  (a MobileNet, best validation accuracy; never public or private accuracy);
- `seed_table()`: means and spreads over seeds; `welch()` and `mcnemar()`: the tests;
- `missing_runs()`: catalogue runs without a stored result;
- `fmt()`: the one formatter for accuracies, bytes, parameters and times, and `Table`:
  a table that renders as HTML in the web book and as a real LaTeX table in the PDF.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from . import catalogue
from .quantize import PRECISIONS, STRONG_BUDGET
from .store import find_result

# The homework requires a MobileNet: only these families may be the submission.
MOBILENET_FAMILIES = ("mobilenet_v1", "mobilenet_v2")
PRECISION_COLUMNS = ("run", "group", "family", "kd", "seed", "params", "flops", "precision",
                     "bytes", "val_acc", "public_acc", "private_acc", "reported")


# ----------------------------------------------------------------------------- formatting
def fmt(value, kind: str) -> str:
    """The book's one number formatter.

    kind: ``acc`` (a fraction -> "63.7 %"), ``pp`` (a difference of fractions -> "+1.2
    points"), ``bytes`` (-> "209,715 B"), ``params`` (-> "199.7k", "1.00M", "950"),
    ``int`` (-> "28,709"), ``ms`` (-> "3.96 ms"), ``x`` (a ratio -> "12.3×"), ``p`` (a
    p-value -> "0.031", "< 0.001"). None and NaN give "–".
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    formats = {
        "acc": lambda v: f"{100 * v:.1f} %",
        "pp": lambda v: f"{100 * v:+.1f} points",
        "bytes": lambda v: f"{int(round(v)):,} B",
        "int": lambda v: f"{int(round(v)):,}",
        "params": _params,
        "ms": lambda v: f"{v:.3g} ms" if v < 100 else f"{v:,.0f} ms",
        "x": lambda v: f"{v:.1f}×" if v < 100 else f"{v:,.0f}×",
        "p": lambda v: "< 0.001" if v < 0.001 else f"{v:.3f}",
    }
    if kind not in formats:
        raise ValueError(f"fmt: unknown kind {kind!r}; known: {', '.join(formats)}")
    return formats[kind](float(value))


def _params(v: float) -> str:
    if v >= 999_500:
        return f"{v / 1e6:.2f}M"
    return f"{v / 1e3:.1f}k" if v >= 1000 else f"{v:.0f}"


@dataclass
class Table:
    """A table of already formatted cells that renders as HTML and as a LaTeX table.

    Jupyter Book's HTML shows `_repr_html_`; its PDF (Sphinx's LaTeX builder) prefers
    `_repr_latex_`, so tables are typeset, not printed as text. `index` is shown as the
    first column when `show_index`.
    """

    frame: pd.DataFrame
    show_index: bool = False

    def _repr_html_(self) -> str:
        return self.frame.to_html(index=self.show_index, escape=True, border=0,
                                  classes="dataframe fer-table")

    def _repr_latex_(self) -> str:
        frame = self.frame.astype(str).map(_latex_escape)
        frame.columns = [_latex_escape(str(c)) for c in frame.columns]
        if self.show_index:
            frame.index = [_latex_escape(str(i)) for i in frame.index]
        ncols = len(frame.columns) + (1 if self.show_index else 0)
        body = frame.to_latex(index=self.show_index, escape=False,
                              column_format="l" * ncols)
        # A small font and a box at most the text width: wide tables shrink, never overflow.
        return ("\\begin{center}\\small\\resizebox{\\ifdim\\width>\\linewidth\\linewidth"
                "\\else\\width\\fi}{!}{%\n" + body + "}\\end{center}\n")

    def __repr__(self) -> str:
        return self.frame.to_string(index=self.show_index)


_LATEX_SPECIALS = {"&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
                   "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                   "\\": r"\textbackslash{}", "×": r"$\times$", "–": "--", "±": r"$\pm$",
                   "≤": r"$\leq$", "→": r"$\rightarrow$"}


def _latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIALS.get(ch, ch) for ch in text)


# ----------------------------------------------------------------------------- the runs
def precision_table(results_dir: str | os.PathLike | None = None) -> pd.DataFrame:
    """Every stored run at every precision it was scored at: one row per (run, precision).

    Columns `PRECISION_COLUMNS`; accuracies are fractions (flip TTA, float32 scoring of
    the weights at that precision), bytes the exported file's size. ``reported`` marks
    the precision the run's summary.csv row uses; ``kd`` whether it distilled.
    Ensembles, which have no weights of their own, appear once at fp32.
    """
    rows = []
    for exp in catalogue.experiments().values():
        result = find_result(exp, results_dir)
        if result is None:
            continue
        m = result.metrics
        by_precision = m.get("acc_by_precision") or {
            exp.precision: {s: m[f"{s}_acc"] for s in ("val", "public", "private")}}
        trained = exp.kind != "ensemble"
        for precision in PRECISIONS:
            if precision not in by_precision:
                continue
            acc = by_precision[precision]
            rows.append({"run": exp.name, "group": exp.group,
                         "family": exp.train.family if trained else "ensemble",
                         "kd": exp.teacher is not None, "seed": exp.train.seed,
                         "params": m["params"], "flops": m["flops"], "precision": precision,
                         "bytes": m["bytes"][precision], "val_acc": acc["val"],
                         "public_acc": acc["public"], "private_acc": acc["private"],
                         "reported": precision == exp.precision})
    return pd.DataFrame(rows, columns=list(PRECISION_COLUMNS))


@dataclass(frozen=True)
class Submission:
    """The run and precision submitted under `budget` bytes, with its numbers."""

    run: str
    family: str
    precision: str
    bytes: int
    params: int
    flops: int
    val_acc: float
    public_acc: float
    private_acc: float
    budget: int

    def result(self):
        """The stored result (`fer_lib.store.Result`)."""
        from .store import load_result

        return load_result(self.run)

    def model(self):
        """The model as submitted: the stored weights at `precision` (BN folded unless fp32)."""
        from .quantize import quantized_copy

        model = self.result().model()
        return model if self.precision == "fp32" else quantized_copy(model, self.precision)

    def to_dict(self) -> dict:
        return asdict(self)


def submission(budget_bytes: int = STRONG_BUDGET,
               table: pd.DataFrame | str | os.PathLike | None = None) -> Submission:
    """Our homework submission under `budget_bytes`: chosen on validation accuracy only.

    Among every stored run and precision (`precision_table()`, or `table`: a DataFrame
    or a CSV with its columns) it keeps the MobileNets (`MOBILENET_FAMILIES`: the
    homework requires one) whose model file has at most `budget_bytes` bytes, and returns
    the one with the best validation accuracy; ties go to fewer bytes, then to the run's
    name. Public and private accuracy are never looked at. Raises LookupError when no
    stored MobileNet fits.
    """
    if isinstance(budget_bytes, bool) or not isinstance(budget_bytes, (int, np.integer)) \
            or budget_bytes <= 0:
        raise ValueError(f"budget_bytes must be a positive whole number of bytes, "
                         f"got {budget_bytes!r}")
    if table is None:
        table = precision_table()
    elif isinstance(table, (str, Path)):
        table = pd.read_csv(table)
    missing = {"run", "family", "precision", "bytes", "val_acc"} - set(table.columns)
    if missing:
        raise ValueError(f"submission: the table lacks column(s) {sorted(missing)}")
    fits = table[table["family"].isin(MOBILENET_FAMILIES) & (table["bytes"] <= budget_bytes)
                 & table["val_acc"].notna()]
    if fits.empty:
        raise LookupError(f"no stored MobileNet run has a model file of at most "
                          f"{budget_bytes:,} bytes")
    # Accuracies are counts over the same validation images: round away float noise.
    order = fits.assign(_val=-fits["val_acc"].round(9)).sort_values(
        ["_val", "bytes", "run", "precision"], kind="stable")
    best = order.iloc[0]
    return Submission(run=str(best["run"]), family=str(best["family"]),
                      precision=str(best["precision"]), bytes=int(best["bytes"]),
                      params=int(best.get("params", 0)), flops=int(best.get("flops", 0)),
                      val_acc=float(best["val_acc"]),
                      public_acc=float(best.get("public_acc", float("nan"))),
                      private_acc=float(best.get("private_acc", float("nan"))),
                      budget=int(budget_bytes))
