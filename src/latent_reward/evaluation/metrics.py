"""Metrics on held-out prompts, and bootstrap intervals that resample prompts (groups).

Global metrics (Pearson, Spearman, R^2, MAE) can come from prompt difficulty alone; the
within-prompt metrics (pairwise accuracy among responses to the same prompt, within-prompt
Spearman) cannot, which is why both are always reported.

Every interval resamples prompts with replacement: a resample is a weighting of the rows (a prompt
drawn k times counts k times), so each statistic is computed from weighted sums without copying.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import stats

from latent_reward.evaluation.groups import group_index
from latent_reward.evaluation.results import METRICS, Interval, Metric, Scores


def _constant(v: np.ndarray) -> bool:
    """No variation beyond float rounding (e.g. a prompt-level prediction minus its own prompt mean)."""
    return np.std(v) <= 1e-9 * max(1.0, float(np.max(np.abs(v))) if len(v) else 1.0)


def pearson(y: np.ndarray, p: np.ndarray) -> float:
    """Pearson r; 0 when either side does not vary."""
    if _constant(y) or _constant(p):
        return 0.0
    return float(np.corrcoef(y, p)[0, 1])


def spearman(y: np.ndarray, p: np.ndarray) -> float:
    """Spearman rho; 0 when either side does not vary."""
    if np.ptp(y) == 0 or np.ptp(p) == 0:
        return 0.0
    return float(stats.spearmanr(y, p).statistic)


def r2(y: np.ndarray, p: np.ndarray) -> float:
    """R^2 of predictions p against ratings y; 0 when y does not vary."""
    total = np.sum((y - y.mean()) ** 2)
    return float(1 - np.sum((y - p) ** 2) / total) if total > 0 else 0.0


def mae(y: np.ndarray, p: np.ndarray) -> float:
    """Mean absolute error of predictions p against ratings y."""
    return float(np.mean(np.abs(y - p)))


# Pairs of rows: (first rows, second rows, the prompt (group) index of each pair), each int [n_pairs], and the number of
# prompts. Every same-prompt pair (`within_pairs`), or the pairs a preference file records (one per record).
Pairs = tuple[np.ndarray, np.ndarray, np.ndarray, int]
_PAIR_CACHE: dict[bytes, Pairs] = {}


def within_pairs(groups: np.ndarray) -> Pairs:
    """Every pair of rows of the same group: (first rows, second rows, group of each pair), each int [n_pairs],
    and the number of groups.

    Groups in sorted order; cached per groups array, since every metric of every predictor on the
    same rows uses the same pairs.
    """
    groups = np.asarray(groups)
    key = groups.tobytes() + str(groups.dtype).encode()
    if key not in _PAIR_CACHE:
        names, index = group_index(groups)
        order = np.argsort(index, kind="stable")
        bounds = np.searchsorted(index[order], np.arange(len(names) + 1))
        first, second, owner = [], [], []
        for g in range(len(names)):
            rows = order[bounds[g] : bounds[g + 1]]
            a, b = np.triu_indices(len(rows), k=1)
            first.append(rows[a])
            second.append(rows[b])
            owner.append(np.full(len(a), g))
        empty = np.zeros(0, dtype=np.int64)
        pairs = (
            np.concatenate(first) if first else empty,
            np.concatenate(second) if second else empty,
            np.concatenate(owner) if owner else empty,
            len(names),
        )
        if len(_PAIR_CACHE) > 64:
            _PAIR_CACHE.clear()
        _PAIR_CACHE[key] = pairs
    return _PAIR_CACHE[key]


def pair_counts(
    y: np.ndarray, p: np.ndarray, groups: np.ndarray | None, pairs: Pairs | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Per group (sorted order): (correctly ordered pairs, pairs with different ratings), float64 [n_groups] each.
    Tied predictions count half; a pair with an unscored side (a NaN prediction) does not count. The pairs are every
    same-prompt pair of `groups`, or `pairs`."""
    if pairs is None:
        if groups is None:
            raise ValueError("the within-prompt pairs need the rows' groups (or the pairs themselves)")
        pairs = within_pairs(groups)
    first, second, owner, n_groups = pairs
    y, p = np.asarray(y, dtype=np.float64), np.asarray(p, dtype=np.float64)
    dy, dp = np.sign(y[first] - y[second]), np.sign(p[first] - p[second])
    rated = (dy != 0) & np.isfinite(dp)
    correct = np.where(rated, (dy == dp) + 0.5 * (dp == 0), 0.0)
    return np.bincount(owner, weights=correct, minlength=n_groups), np.bincount(
        owner, weights=rated, minlength=n_groups
    )


def within_prompt_accuracy(y: np.ndarray, p: np.ndarray, groups: np.ndarray) -> float:
    """Fraction of same-prompt response pairs with different ratings that the predictions order correctly.

    For chosen/rejected pair data this is the pair accuracy.
    """
    correct, total = pair_counts(y, p, groups)
    return float(correct.sum() / total.sum()) if total.sum() else float("nan")


def group_ranks(v: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Each value's rank among its group's values (1-based, ties get their average rank: scipy's rankdata per group),
    float64 [n], for every group at once. Hand-written because scipy ranks one array at a time, and a Python loop over
    thousands of prompts dominated the analysis' time."""
    v = np.asarray(v, dtype=np.float64)
    order = np.lexsort((v, index))
    sorted_index, sorted_v = index[order], v[order]
    ordinal = np.arange(len(v)) - np.searchsorted(sorted_index, sorted_index, side="left") + 1.0
    new_run = np.ones(len(v), dtype=bool)
    new_run[1:] = (sorted_index[1:] != sorted_index[:-1]) | (sorted_v[1:] != sorted_v[:-1])
    run = np.cumsum(new_run) - 1
    ranks = np.empty(len(v))
    ranks[order] = (np.bincount(run, weights=ordinal) / np.bincount(run))[run]
    return ranks


def group_spearman(y: np.ndarray, p: np.ndarray, groups: np.ndarray, min_size: int = 3) -> np.ndarray:
    """Per group (sorted order), float64 [n_groups]: Spearman rho of predictions with ratings, NaN where undefined
    (fewer than `min_size` responses, or no variation in either). Pearson r of the within-group ranks, all groups at
    once."""
    names, index = group_index(groups)
    n_groups = len(names)
    y, p = np.asarray(y, dtype=np.float64), np.asarray(p, dtype=np.float64)

    def sums(v: np.ndarray) -> np.ndarray:
        return np.bincount(index, weights=v, minlength=n_groups)

    sizes = np.bincount(index, minlength=n_groups)
    ry, rp = group_ranks(y, index), group_ranks(p, index)
    cy, cp = ry - (sums(ry) / np.maximum(sizes, 1))[index], rp - (sums(rp) / np.maximum(sizes, 1))[index]
    vy, vp = sums(cy * cy), sums(cp * cp)
    missing = np.bincount(index, weights=~(np.isfinite(y) & np.isfinite(p)), minlength=n_groups) > 0
    defined = (sizes >= min_size) & (vy > 1e-9) & (vp > 1e-9) & ~missing  # a NaN leaves its group's rho undefined
    values = np.full(n_groups, np.nan)
    values[defined] = sums(cy * cp)[defined] / np.sqrt(vy[defined] * vp[defined])
    return values


def within_prompt_spearman(y: np.ndarray, p: np.ndarray, groups: np.ndarray, min_size: int = 3) -> float:
    """Mean Spearman rho within prompts that have >= min_size responses with varying ratings."""
    values = group_spearman(y, p, groups, min_size)
    return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")


POINT_METRICS: dict[Metric, Callable[[np.ndarray, np.ndarray], float]] = {
    "pearson": pearson,
    "spearman": spearman,
    "r2": r2,
    "mae": mae,
}


def metric(name: Metric, y: np.ndarray, p: np.ndarray, groups: np.ndarray) -> float:
    """One metric by name (cheaper than all_metrics when only one is needed)."""
    y, p = np.asarray(y, dtype=np.float64), np.asarray(p, dtype=np.float64)
    if name in POINT_METRICS:
        return POINT_METRICS[name](y, p)
    return within_prompt_accuracy(y, p, groups) if name == "within_acc" else within_prompt_spearman(y, p, groups)


def all_metrics(y: np.ndarray, p: np.ndarray, groups: np.ndarray) -> dict[Metric, float]:
    """Every metric by name (pearson, spearman, r2, mae, within_acc, within_spearman) for y, p, groups, all [n]."""
    y, p = np.asarray(y, dtype=np.float64), np.asarray(p, dtype=np.float64)
    values = {name: fn(y, p) for name, fn in POINT_METRICS.items()}
    values["within_acc"] = within_prompt_accuracy(y, p, groups)
    values["within_spearman"] = within_prompt_spearman(y, p, groups)
    return values


def bootstrap_counts(groups: np.ndarray, n_boot: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Row weights [n_boot, n_rows] from resampling groups with replacement, and the group weights [n_boot,
    n_groups]."""
    _, index = group_index(groups)
    n_groups = int(index.max()) + 1 if len(index) else 0
    draws = np.random.default_rng(seed).integers(0, n_groups, size=(n_boot, n_groups))
    group_weights = np.stack([np.bincount(d, minlength=n_groups) for d in draws]).astype(np.float64)
    return group_weights[:, index], group_weights


@dataclass(frozen=True)
class Resampler:
    """One set of prompt resamples, shared by every predictor scored on the same rows (so differences are paired)."""

    groups: np.ndarray
    weights: np.ndarray  # [n_boot, n]
    group_weights: np.ndarray  # [n_boot, n_groups]

    @classmethod
    def make(cls, groups: np.ndarray, n_boot: int = 1000, seed: int = 0) -> Resampler:
        """A Resampler of `n_boot` seeded prompt resamples of `groups` [n]."""
        weights, group_weights = bootstrap_counts(np.asarray(groups), n_boot, seed)
        return cls(np.asarray(groups), weights, group_weights)

    def samples(self, y: np.ndarray, p: np.ndarray) -> dict[Metric, np.ndarray]:
        """Each metric's value in every resample: name -> [n_boot]."""
        y, p = np.asarray(y, dtype=np.float64), np.asarray(p, dtype=np.float64)
        weights = self.weights
        n = weights.sum(1)

        def wmean(v):
            return weights @ v / n

        my, mp = wmean(y), wmean(p)
        vy, vp = wmean(y * y) - my**2, wmean(p * p) - mp**2
        with np.errstate(invalid="ignore", divide="ignore"):
            out: dict[Metric, np.ndarray] = {
                "pearson": (wmean(y * p) - my * mp) / np.sqrt(vy * vp),
                "r2": 1 - wmean((y - p) ** 2) / vy,
                "mae": wmean(np.abs(y - p)),
            }
            correct, total = pair_counts(y, p, self.groups)
            if total.sum():
                out["within_acc"] = (self.group_weights @ correct) / (self.group_weights @ total)
            per_group = group_spearman(y, p, self.groups)
            defined = np.isfinite(per_group)
            if defined.any():
                out["within_spearman"] = (self.group_weights @ np.where(defined, per_group, 0)) / (
                    self.group_weights @ defined
                )
            out["spearman"] = self._weighted_spearman(y, p)
        return out

    def _weighted_spearman(self, y: np.ndarray, p: np.ndarray) -> np.ndarray:
        """Spearman rho in each resample, from ranks of the full set (a close, cheap approximation)."""
        ry, rp = stats.rankdata(y), stats.rankdata(p)
        weights = self.weights
        n = weights.sum(1)
        my, mp = weights @ ry / n, weights @ rp / n
        cov = weights @ (ry * rp) / n - my * mp
        return cov / np.sqrt((weights @ (ry * ry) / n - my**2) * (weights @ (rp * rp) / n - mp**2))


def quantile_interval(point: float, samples: np.ndarray, level: float = 0.95) -> Interval:
    """`point` with the central `level` interval of the finite `samples`; no interval when none is finite."""
    finite = samples[np.isfinite(samples)]  # a resample can be degenerate (one rating, no pairs)
    if not finite.size or not np.isfinite(point):
        return Interval.of(point)
    alpha = (1 - level) / 2
    low, high = np.quantile(finite, [alpha, 1 - alpha])
    return Interval.of(point, low, high)


def score(
    y: np.ndarray,
    p: np.ndarray,
    groups: np.ndarray,
    n_boot: int = 1000,
    seed: int = 0,
    resampler: Resampler | None = None,
) -> Scores:
    """Every metric with its 95% prompt-bootstrap interval. A correlation with a side that does not vary (a prediction
    that is the same for every row, such as a prompt-level state's deviation from its prompt's mean) is undefined:
    not applicable (no value), not 0."""
    y, p, groups = np.asarray(y, dtype=np.float64), np.asarray(p, dtype=np.float64), np.asarray(groups)
    resampler = resampler or Resampler.make(groups, n_boot, seed)
    points = all_metrics(y, p, groups)
    samples = resampler.samples(y, p)
    _, total = pair_counts(y, p, groups)
    intervals = {
        name: quantile_interval(points[name], samples[name]) if name in samples else Interval.of(points[name])
        for name in points
    }
    if _constant(y) or _constant(p):
        intervals["pearson"] = intervals["spearman"] = Interval()
    return Scores(n_examples=len(y), n_prompts=len(np.unique(groups)), n_pairs=int(total.sum()), **intervals)


def bootstrap_ci(
    y: np.ndarray, p: np.ndarray, groups: np.ndarray, n_boot: int = 1000, seed: int = 0
) -> dict[Metric, Interval]:
    """The intervals of `score` as a dict: metric name -> Interval (only the metrics defined on these rows)."""
    scores = score(y, p, groups, n_boot, seed)
    return {name: scores.metric(name) for name in METRICS if scores.metric(name).low is not None}


def partial_correlation(y: np.ndarray, p: np.ndarray, controls: np.ndarray) -> float:
    """Correlation of p with y after regressing the controls ([n] or [n, k], e.g. length and text statistics) out of
    both."""
    controls = np.asarray(controls, dtype=np.float64).reshape(len(y), -1)
    design = np.column_stack([np.ones(len(y)), controls])

    def residual(v):
        coef, *_ = np.linalg.lstsq(design, v, rcond=None)
        return v - design @ coef

    return pearson(residual(np.asarray(y, dtype=np.float64)), residual(np.asarray(p, dtype=np.float64)))


def icc1(y: np.ndarray, groups: np.ndarray) -> float:
    """ANOVA intraclass correlation ICC(1) = (MSB - MSW) / (MSB + (k0 - 1) MSW): the share of the rating's
    variance that lies between prompts, corrected for the chance spread of group means (the raw
    between-group share is about (G - 1) / (N - 1) even with no prompt effect). k0 is the usual
    average group size for unbalanced groups. Can be negative when there is no prompt effect."""
    y = np.asarray(y, dtype=np.float64)
    _, index = group_index(groups)
    counts = np.bincount(index)
    n, g = len(y), len(counts)
    if g < 2 or n <= g:
        return float("nan")
    means = np.bincount(index, weights=y) / counts
    msb = np.sum(counts * (means - y.mean()) ** 2) / (g - 1)
    msw = np.sum((y - means[index]) ** 2) / (n - g)
    k0 = (n - np.sum(counts**2) / n) / (g - 1)
    denominator = msb + (k0 - 1) * msw
    return float((msb - msw) / denominator) if denominator > 0 else float("nan")


def icc1_interval(y: np.ndarray, groups: np.ndarray, n_boot: int = 1000, seed: int = 0) -> Interval:
    """ICC(1) with a 95% interval from resampling prompts (each drawn prompt keeps all its responses)."""
    y, groups = np.asarray(y, dtype=np.float64), np.asarray(groups)
    names, index = group_index(groups)
    rows_of = [np.flatnonzero(index == g) for g in range(len(names))]
    rng = np.random.default_rng(seed)
    samples = np.empty(n_boot)
    for b in range(n_boot):
        drawn = rng.integers(0, len(names), len(names))
        rows = np.concatenate([rows_of[g] for g in drawn])
        labels = np.repeat(np.arange(len(drawn)), [len(rows_of[g]) for g in drawn])
        samples[b] = icc1(y[rows], labels)
    return quantile_interval(icc1(y, groups), samples)


def length_matched_accuracy(
    y: np.ndarray,
    p: np.ndarray,
    groups: np.ndarray | None,
    lengths: np.ndarray,
    resampler: Resampler,
    tolerance: float = 0.1,
    pairs: Pairs | None = None,
) -> tuple[Interval, int]:
    """Within-prompt accuracy over the pairs (every same-prompt pair, or `pairs`) whose lengths differ by less than
    `tolerance` (relative to the longer one): length cannot order these pairs. Returns the interval and the number of
    such pairs."""
    if pairs is None:
        if groups is None:
            raise ValueError("the within-prompt pairs need the rows' groups (or the pairs themselves)")
        pairs = within_pairs(groups)
    first, second, owner, n_groups = pairs
    lengths = np.asarray(lengths, dtype=np.float64)
    longer = np.maximum(lengths[first], lengths[second])
    matched = np.abs(lengths[first] - lengths[second]) < tolerance * np.maximum(longer, 1)
    correct, total = pair_counts(y, p, None, (first[matched], second[matched], owner[matched], n_groups))
    if not total.sum():
        return Interval(), 0
    with np.errstate(invalid="ignore", divide="ignore"):
        samples = (resampler.group_weights @ correct) / (resampler.group_weights @ total)
    return quantile_interval(correct.sum() / total.sum(), samples), int(total.sum())
