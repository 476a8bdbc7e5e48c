"""The book's words for numbers: `fmt`, the one formatter of accuracies, differences,
bytes, parameters and times; `Table`, a table that is HTML on the web and a LaTeX table in
the PDF; and small helpers that put counts and lists into English.

`Effect` is a difference of two accuracies as the book prints it. `fer_lib.report`
re-exports all of it: chapters import from there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

NBSP = "\u00a0"


def fmt(value, kind: str) -> str:
    """The book's one number formatter.

    kind: ``acc`` (a fraction -> "63.7 %"), ``share`` (a set fraction, as few digits as it
    has -> "10 %", "12.5 %"), ``pp`` (a difference of fractions -> "+1.2
    points"), ``bytes`` (-> "209,715 B"), ``params`` (-> "199.7k", "1.00M", "950"),
    ``int`` (-> "28,709"), ``ms`` (-> "3.96 ms"), ``x`` (a ratio -> "12.3×"), ``p`` (a
    p-value -> "0.031", "< 0.001"), ``num`` (a hyperparameter -> "0.1", "4 × 10⁻⁵"),
    ``nats`` (an entropy or KL divergence -> "0.190 nats").
    None and NaN give "–". A number and its unit are joined by a no-break space, so a
    narrow table cell or a line of prose never breaks between "63.7" and "%".
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    formats = {
        "acc": lambda v: f"{100 * v:.1f}{NBSP}%",
        "share": lambda v: f"{100 * v:.3g}{NBSP}%",
        "pp": lambda v: f"{100 * v:+.1f}{NBSP}points",
        "bytes": lambda v: f"{int(round(v)):,}{NBSP}B",
        "int": lambda v: f"{int(round(v)):,}",
        "params": _params,
        "ms": lambda v: (f"<{NBSP}0.01{NBSP}ms" if v < 0.01 else f"{v:.3g}{NBSP}ms" if v < 100
                         else f"{v:,.0f}{NBSP}ms"),
        "x": lambda v: f"{v:.1f}×" if v < 100 else f"{v:,.0f}×",
        "p": lambda v: "< 0.001" if v < 0.001 else f"{v:.3f}",
        "num": _number,
        "nats": lambda v: f"{v:.3f}{NBSP}nats",
    }
    if kind not in formats:
        raise ValueError(f"fmt: unknown kind {kind!r}; known: {', '.join(formats)}")
    return formats[kind](float(value))


def mean_sd(mean: float, sd: float, seeds: int, unit: bool = True) -> str:
    """A mean over seeds with its standard deviation: "63.2 % ± 0.4 points" (or "± 0.4"
    with unit=False, for a table whose header names the unit); the mean alone for one
    seed, "missing" for none. mean and sd are fractions; unbroken by no-break spaces."""
    if seeds == 0:
        return "missing"
    if seeds == 1:
        return fmt(mean, "acc")
    spread = fmt(sd, "pp").lstrip("+")
    return f"{fmt(mean, 'acc')}{NBSP}±{NBSP}{spread if unit else spread.split(NBSP)[0]}"


_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def _number(v: float) -> str:
    if v == 0 or 1e-2 <= abs(v) < 1e5:
        return f"{v:.4g}"
    mantissa, exponent = f"{v:.2e}".split("e")
    mantissa = mantissa.rstrip("0").rstrip(".")
    return f"{mantissa} × 10{str(int(exponent)).translate(_SUPERSCRIPT)}"


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

    #: Tables with more body rows than this are a longtable, which breaks across pages
    #: (a tabular cannot); shorter ones are shrunk to the text width when too wide.
    LONG_ROWS = 40

    def _repr_latex_(self) -> str:
        frame = self.frame.astype(str).map(_latex_escape)
        frame.columns = [_latex_label(c) for c in frame.columns]
        if self.show_index:
            names = [name for name in frame.index.names if name is not None]
            frame.index = pd.Index([_latex_label(i) for i in frame.index],
                                   name=_latex_label(tuple(names)) if names else None)
        ncols = len(frame.columns) + (1 if self.show_index else 0)
        long = len(frame) > self.LONG_ROWS
        body = frame.to_latex(index=self.show_index, escape=False,
                              column_format="l" * ncols, longtable=long)
        if long:
            # A longtable cannot be boxed: a smaller font and tighter columns instead.
            return ("{\\footnotesize\\setlength{\\tabcolsep}{4pt}%\n" + body + "}\n")
        # A small font and a box at most the text width: wide tables shrink, never overflow.
        return ("\\begin{center}\\small\\resizebox{\\ifdim\\width>\\linewidth\\linewidth"
                "\\else\\width\\fi}{!}{%\n" + body + "}\\end{center}\n")

    def __repr__(self) -> str:
        return self.frame.to_string(index=self.show_index)


_LATEX_SPECIALS = {"&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
                   "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                   "\\": r"\textbackslash{}", "×": r"$\times$", "–": "--", "±": r"$\pm$", NBSP: "~",
                   "≤": r"$\leq$", "≥": r"$\geq$", "→": r"$\rightarrow$",
                   # fmt's "4 × 10⁻⁵": superscripts as LaTeX, not glyphs a font may lack
                   **{sup: f"\\textsuperscript{{{plain}}}" for sup, plain
                      in zip("⁻⁰¹²³⁴⁵⁶⁷⁸⁹", "-0123456789", strict=True)}}


def _latex_escape(text: str) -> str:
    """Text for a LaTeX table cell: specials escaped, no line break (a cell is one line)."""
    return "".join(_LATEX_SPECIALS.get(ch, ch) for ch in " ".join(str(text).splitlines()))


def _latex_label(label) -> str:
    """A column or index label; the levels of a MultiIndex label joined by spaces."""
    if isinstance(label, tuple):
        label = " ".join(str(part) for part in label if str(part))
    return _latex_escape(str(label))


# ----------------------------------------------------------------------------- words
def join_words(items) -> str:
    """Items as an English list: "a", "a and b", "a, b and c" ("" for none)."""
    items = [str(item) for item in items]
    if len(items) < 2:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


_NUMBER_WORDS = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight",
                 "nine", "ten")


def number_word(n: int) -> str:
    """A small count as a word ("three"), larger ones as digits ("12", "1,024")."""
    return _NUMBER_WORDS[n] if 0 <= n < len(_NUMBER_WORDS) else fmt(n, "int")


# ----------------------------------------------------------------------------- differences
@dataclass(frozen=True)
class Effect:
    """One difference the book quotes, ``a - b`` of two accuracies (fractions).

    Every chapter that quotes an effect gets it from one function returning an `Effect`
    (`kd_effect`, `gap`) and prints `text`, so two chapters cannot quote one effect
    differently. `value` is the unrounded difference, for tests and verdicts; `text` is
    the difference of the two terms *as printed* (each rounded to the 0.1 point `fmt`
    shows), so a reader who subtracts the printed terms gets the printed difference
    (51.14 % - 48.65 % reads "51.1 % - 48.6 %" and "+2.5 points", never "+2.4").
    """

    a: float
    b: float

    @property
    def value(self) -> float:
        return self.a - self.b

    @property
    def text(self) -> str:
        return fmt(_as_printed(self.a) - _as_printed(self.b), "pp")

    @property
    def size(self) -> str:
        """`text` without its sign ("1.4 points"): for prose that says the direction."""
        return self.text.lstrip("+-−")


def _printed_tenths(fraction: float) -> int:
    """A fraction in the tenths of a point `fmt(.., "acc")` prints it to."""
    return round(1000 * fraction)


def _as_printed(fraction: float) -> float:
    """A fraction rounded as `fmt(.., "acc")` prints it (0.1 percentage point)."""
    return _printed_tenths(fraction) / 1000


def printed_sign(effect: Effect) -> int:
    """The sign (-1, 0, +1) of `effect` as printed: of the difference of its two terms
    rounded as `fmt` shows them, so a verdict ("raised", "lowered", "did not change")
    never contradicts the printed `effect.text` ("+0.0 points" is "did not change")."""
    tenths = _printed_tenths(effect.a) - _printed_tenths(effect.b)
    return (tenths > 0) - (tenths < 0)
