"""Metrics on held-out groups, and bootstrap intervals that resample prompts (groups).

Global metrics (Pearson, Spearman, R^2, MAE) can come from prompt difficulty alone; the
within-prompt metrics (pairwise accuracy among responses to the same prompt, within-prompt
Spearman) cannot, which is why both are always reported.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats


def pearson(y: np.ndarray, p: np.ndarray) -> float:
    if np.std(y) == 0 or np.std(p) == 0:
        return 0.0
    return float(np.corrcoef(y, p)[0, 1])


def spearman(y: np.ndarray, p: np.ndarray) -> float:
    if np.ptp(y) == 0 or np.ptp(p) == 0:
        return 0.0
    return float(stats.spearmanr(y, p).statistic)


def r2(y: np.ndarray, p: np.ndarray) -> float:
    total = np.sum((y - y.mean()) ** 2)
    return float(1 - np.sum((y - p) ** 2) / total) if total > 0 else 0.0


def mae(y: np.ndarray, p: np.ndarray) -> float:
    return float(np.mean(np.abs(y - p)))


def _group_index(groups: np.ndarray) -> tuple[np.ndarray, int]:
    _, index = np.unique(groups, return_inverse=True)
    return index, int(index.max()) + 1 if len(index) else 0


def pair_counts(y: np.ndarray, p: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per group: (correctly ordered pairs, pairs with different ratings). Tied predictions count half."""
    index, n_groups = _group_index(groups)
    correct, total = np.zeros(n_groups), np.zeros(n_groups)
    order = np.argsort(index, kind="stable")
    bounds = np.searchsorted(index[order], np.arange(n_groups + 1))
    for g in range(n_groups):
        rows = order[bounds[g] : bounds[g + 1]]
        if len(rows) < 2:
            continue
        dy = np.sign(y[rows][:, None] - y[rows][None, :])
        dp = np.sign(p[rows][:, None] - p[rows][None, :])
        upper = np.triu(np.ones_like(dy, dtype=bool), k=1) & (dy != 0)
        total[g] = upper.sum()
        correct[g] = (dy[upper] == dp[upper]).sum() + 0.5 * (dp[upper] == 0).sum()
    return correct, total


def within_prompt_accuracy(y: np.ndarray, p: np.ndarray, groups: np.ndarray) -> float:
    """Fraction of same-prompt response pairs with different ratings that the predictions order correctly.

    For chosen/rejected pair data this is the pair accuracy.
    """
    correct, total = pair_counts(y, p, groups)
    return float(correct.sum() / total.sum()) if total.sum() else float("nan")


def within_prompt_spearman(y: np.ndarray, p: np.ndarray, groups: np.ndarray, min_size: int = 3) -> float:
    """Mean Spearman rho within prompts that have >= min_size responses with varying ratings."""
    values = []
    for group in np.unique(groups):
        rows = groups == group
        if rows.sum() >= min_size and np.ptp(y[rows]) > 0 and np.ptp(p[rows]) > 0:
            values.append(stats.spearmanr(y[rows], p[rows]).statistic)
    return float(np.mean(values)) if values else float("nan")


METRICS = {"pearson": pearson, "spearman": spearman, "r2": r2, "mae": mae}


def all_metrics(y: np.ndarray, p: np.ndarray, groups: np.ndarray) -> dict[str, float]:
    y, p = np.asarray(y, dtype=np.float64), np.asarray(p, dtype=np.float64)
    values = {name: fn(y, p) for name, fn in METRICS.items()}
    values["within_acc"] = within_prompt_accuracy(y, p, groups)
    values["within_spearman"] = within_prompt_spearman(y, p, groups)
    return values


@dataclass(frozen=True)
class Interval:
    value: float
    low: float
    high: float

    def as_dict(self) -> dict[str, float]:
        return {"value": self.value, "low": self.low, "high": self.high}


def bootstrap_counts(groups: np.ndarray, n_boot: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Row weights [n_boot, n_rows] from resampling groups with replacement, and the group index."""
    index, n_groups = _group_index(groups)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_groups, size=(n_boot, n_groups))
    group_weights = np.stack([np.bincount(d, minlength=n_groups) for d in draws]).astype(np.float64)
    return group_weights[:, index], group_weights


def bootstrap_ci(y: np.ndarray, p: np.ndarray, groups: np.ndarray, n_boot: int = 1000, seed: int = 0,
                 level: float = 0.95) -> dict[str, Interval]:
    """95% intervals for Pearson r, R^2, MAE and within-prompt accuracy, resampling prompts.

    Each resample is a weighted version of the test rows (a group drawn k times counts k times),
    so every statistic is computed from weighted sums without copying data.
    """
    y, p = np.asarray(y, dtype=np.float64), np.asarray(p, dtype=np.float64)
    weights, group_weights = bootstrap_counts(groups, n_boot, seed)
    n = weights.sum(1)

    def wmean(v):
        return weights @ v / n

    my, mp = wmean(y), wmean(p)
    cov = wmean(y * p) - my * mp
    vy, vp = wmean(y * y) - my**2, wmean(p * p) - mp**2
    with np.errstate(invalid="ignore", divide="ignore"):
        samples = {
            "pearson": cov / np.sqrt(vy * vp),
            "r2": 1 - wmean((y - p) ** 2) / vy,
            "mae": wmean(np.abs(y - p)),
        }
        correct, total = pair_counts(y, p, groups)
        if total.sum():
            samples["within_acc"] = (group_weights @ correct) / (group_weights @ total)
    point = {"pearson": pearson(y, p), "r2": r2(y, p), "mae": mae(y, p)}
    if total.sum():
        point["within_acc"] = float(correct.sum() / total.sum())
    alpha = (1 - level) / 2
    intervals = {}
    for name, values in samples.items():
        finite = values[np.isfinite(values)]  # a resample can be degenerate (one rating, no pairs)
        low, high = (np.quantile(finite, [alpha, 1 - alpha]) if finite.size else (np.nan, np.nan))
        intervals[name] = Interval(point[name], float(low), float(high))
    return intervals


def partial_correlation(y: np.ndarray, p: np.ndarray, control: np.ndarray) -> float:
    """Correlation of p with y after regressing the control (e.g. length) out of both."""
    design = np.column_stack([np.ones_like(control, dtype=np.float64), control])

    def residual(v):
        coef, *_ = np.linalg.lstsq(design, v, rcond=None)
        return v - design @ coef

    return pearson(residual(np.asarray(y, dtype=np.float64)), residual(np.asarray(p, dtype=np.float64)))
