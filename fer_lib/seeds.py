"""Recipes compared over seeds: each group's runs (one per seed) against a baseline's.

A one-seed difference between two recipes is within what seeds alone spread, so the
book compares recipes over seeds, with Welch's test (`stats.welch`) of the means, and
quotes each difference as an `Effect` (the difference of the printed means).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .formatting import NBSP, Effect, fmt, mean_sd


@dataclass
class SeedComparison:
    """Groups of seeds of one recipe each, against a baseline group (`compare_seeds`).

    stored: the stored runs of each group; effects[(group, split)]: the mean of `group`
    minus the baseline's mean (an `Effect`); tests[(group, split)]: Welch's test over the
    seeds (`stats.welch`), or None while a group has fewer than two stored seeds;
    complete: every named run is stored; accuracies[run][split]: its accuracy (a fraction),
    or any value `compare_values` was given.
    """

    groups: dict[str, list[str]]
    baseline: str
    splits: tuple[str, ...]
    stored: dict[str, list[str]]
    effects: dict
    tests: dict
    accuracies: dict

    @property
    def complete(self) -> bool:
        return all(len(self.stored[g]) == len(names) for g, names in self.groups.items())

    def spread(self, group: str, split: str) -> str:
        """Mean ± standard deviation over the stored seeds, unbroken ("missing" if none)."""
        values = self._values(group, split)
        sd = float(np.std(values, ddof=1)) if len(values) > 1 else math.nan
        return mean_sd(self.mean(group, split), sd, len(values))

    def difference(self, group: str, split: str) -> str:
        """The printed difference from the baseline with Welch's p, or "–"."""
        test = self.tests[(group, split)]
        if test is None or test["p"] != test["p"]:
            return "–"
        return f"{self.effects[(group, split)].text} (p{NBSP}={NBSP}{fmt(test['p'], 'p')})"

    def table(self) -> pd.DataFrame:
        """One row per split: each group's spread, and each other group minus baseline."""
        out = {"split": list(self.splits)}
        for group, names in self.groups.items():
            out[f"{group} ({len(self.stored[group])} of {len(names)} seeds)"] = [
                self.spread(group, s) for s in self.splits]
        for group in self.groups:
            if group != self.baseline:
                out[f"{group} − {self.baseline} (Welch)"] = [
                    self.difference(group, s) for s in self.splits]
        return pd.DataFrame(out)

    def holm_tests(self, split: str = "val") -> dict | None:
        """Every other group against the baseline on `split`, one family of tests:
        {group: (Effect, Welch p after Holm's correction)}; None until every run is stored."""
        from .stats import holm

        if not self.complete:
            return None
        others = [g for g in self.groups if g != self.baseline]
        adjusted = holm([self.tests[(g, split)]["p"] for g in others])
        return {g: (self.effects[(g, split)], float(p))
                for g, p in zip(others, adjusted, strict=True)}

    def mean(self, group: str, split: str) -> float:
        """The unrounded mean over `group`'s stored seeds (NaN if none)."""
        values = self._values(group, split)
        return float(np.mean(values)) if values else math.nan

    def _values(self, group: str, split: str) -> list[float]:
        return [self.accuracies[n][split] for n in self.stored[group]]


def compare_values(groups: dict[str, list[str]], baseline: str,
                   values: dict[str, dict[str, float]], keys: tuple[str, ...]
                   ) -> SeedComparison:
    """`report.compare_seeds` on any per-run numbers: ``values[run][key]`` (a run absent from
    `values` is missing), one Welch test per other group and key. The comparison's
    ``splits`` are the `keys` (``accuracies`` holds the values)."""
    from .stats import welch

    if baseline not in groups:
        raise KeyError(f"baseline {baseline!r} is not one of the groups {list(groups)}")
    stored = {g: [n for n in names if n in values] for g, names in groups.items()}
    kept = {n: {k: float(values[n][k]) for k in keys} for names in stored.values() for n in names}
    effects, tests = {}, {}
    for group in groups:
        for key in keys:
            a = [kept[n][key] for n in stored[group]]
            b = [kept[n][key] for n in stored[baseline]]
            effects[(group, key)] = Effect(float(np.mean(a)), float(np.mean(b))) \
                if a and b else None
            tests[(group, key)] = welch(a, b) if len(a) > 1 and len(b) > 1 else None
    return SeedComparison(groups, baseline, tuple(keys), stored, effects, tests, kept)
