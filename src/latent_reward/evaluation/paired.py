"""Paired inference: is predictor A better than predictor B on the same prompts?

Two tools, both clustered by prompt:
- a paired bootstrap interval of metric(A) - metric(B): both scored on the same resampled prompts;
- a paired permutation test (approximate randomization): under the null that A and B are
  exchangeable, swapping their predictions for a random half of the prompts leaves the metric
  difference's distribution unchanged.
And a permutation null for controls: the real statistic against its distribution when ratings are shuffled.
"""

from __future__ import annotations

import numpy as np

from latent_reward.evaluation.groups import group_index
from latent_reward.evaluation.metrics import Pairs, Resampler, all_metrics, pair_counts, quantile_interval
from latent_reward.evaluation.results import HEADLINE_METRICS, Metric, NullTest, PairedDifference


def paired_differences(
    y: np.ndarray,
    p_a: np.ndarray,
    p_b: np.ndarray,
    resampler: Resampler,
    metrics: tuple[Metric, ...] = HEADLINE_METRICS,
    n_permutations: int = 1000,
    seed: int = 0,
) -> dict[Metric, PairedDifference]:
    """metric(A) - metric(B) with a paired bootstrap interval and a paired permutation p-value, per metric."""
    groups = resampler.groups
    points_a, points_b = all_metrics(y, p_a, groups), all_metrics(y, p_b, groups)
    samples_a, samples_b = resampler.samples(y, p_a), resampler.samples(y, p_b)
    out = {}
    for metric in metrics:
        if metric not in samples_a or metric not in samples_b:
            continue
        point = points_a[metric] - points_b[metric]
        differences = samples_a[metric] - samples_b[metric]
        p_value = permutation_p_value(y, p_a, p_b, groups, metric, n_permutations, seed)
        out[metric] = PairedDifference(
            metric=metric,
            difference=quantile_interval(point, differences),
            p_value=p_value,
            n_permutations=n_permutations,
            equivalence=quantile_interval(point, differences, level=0.90),
        )
    return out


def permutation_p_value(
    y: np.ndarray,
    p_a: np.ndarray,
    p_b: np.ndarray,
    groups: np.ndarray,
    metric: Metric,
    n_permutations: int = 1000,
    seed: int = 0,
) -> float | None:
    """Two-sided p-value of metric(A) - metric(B) when A's and B's predictions are swapped prompt by prompt."""
    y, p_a, p_b = (np.asarray(v, dtype=np.float64) for v in (y, p_a, p_b))
    _, index = group_index(groups)
    n_groups = int(index.max()) + 1
    swaps = np.random.default_rng(seed).random((n_permutations, n_groups)) < 0.5
    if metric == "within_acc":
        correct_a, total = pair_counts(y, p_a, groups)
        correct_b, _ = pair_counts(y, p_b, groups)
        return _flip_p_value(correct_a - correct_b, total, swaps)
    if metric == "pearson":
        # z-scored first: swapping then exchanges two predictions on one scale (r does not depend on the scale)
        p_a, p_b = (p_a - p_a.mean()) / (p_a.std() or 1.0), (p_b - p_b.mean()) / (p_b.std() or 1.0)
        observed = _corr(y, p_a[None])[0] - _corr(y, p_b[None])[0]
        rows = swaps[:, index]
        null = _corr(y, np.where(rows, p_b, p_a)) - _corr(y, np.where(rows, p_a, p_b))
        return float((1 + np.sum(np.abs(null) >= abs(observed) - 1e-12)) / (1 + n_permutations))
    raise ValueError(f"no permutation test for {metric}")


def _flip_p_value(contribution: np.ndarray, total: np.ndarray, swaps: np.ndarray) -> float | None:
    """Two-sided p of a difference in pair accuracy whose per-prompt contributions (A's correct pairs minus B's) are
    `contribution` [G] over `total` [G] pairs: swapping A and B in a prompt flips the sign of its contribution."""
    if not total.sum():
        return None
    observed = contribution.sum() / total.sum()
    null = np.where(swaps, -contribution, contribution).sum(1) / total.sum()
    return float((1 + np.sum(np.abs(null) >= abs(observed) - 1e-12)) / (1 + len(swaps)))


def paired_pair_difference(
    y: np.ndarray,
    p_a: np.ndarray,
    p_b: np.ndarray,
    pairs: Pairs,
    group_weights: np.ndarray,
    n_permutations: int = 1000,
    seed: int = 0,
) -> PairedDifference:
    """Pair accuracy of A minus B over the given pairs that both scored (a NaN prediction leaves a pair unscored), with
    a paired bootstrap interval (`group_weights` [B, G]: prompt resamples) and a paired permutation p (prompt swaps)."""
    first, second, owner, n_groups = pairs
    both = np.isfinite(p_a[first]) & np.isfinite(p_a[second]) & np.isfinite(p_b[first]) & np.isfinite(p_b[second])
    shared = (first[both], second[both], owner[both], n_groups)
    (correct_a, total), (correct_b, _) = pair_counts(y, p_a, None, shared), pair_counts(y, p_b, None, shared)
    swaps = np.random.default_rng(seed).random((n_permutations, n_groups)) < 0.5
    point = (correct_a.sum() - correct_b.sum()) / total.sum() if total.sum() else np.nan
    with np.errstate(invalid="ignore", divide="ignore"):
        samples = (group_weights @ (correct_a - correct_b)) / (group_weights @ total)
    return PairedDifference(
        metric="within_acc",
        difference=quantile_interval(point, samples),
        p_value=_flip_p_value(correct_a - correct_b, total, swaps),
    )


def _corr(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Pearson r of y [n] with each row of p [k, n]."""
    yc = y - y.mean()
    pc = p - p.mean(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (pc @ yc) / np.sqrt((pc**2).sum(1) * (yc**2).sum())


def null_test(metric: str, observed: float, null: np.ndarray) -> NullTest:
    """The observed value against a permutation null (e.g. probes trained on shuffled ratings)."""
    null = np.asarray(null, dtype=np.float64)
    null = null[np.isfinite(null)]
    if not null.size or not np.isfinite(observed):
        return NullTest(
            metric=metric,
            observed=None,
            null_mean=None,
            null_low=None,
            null_high=None,
            p_value=None,
            n_permutations=int(null.size),
        )
    low, high = np.quantile(null, [0.025, 0.975])
    return NullTest(
        metric=metric,
        observed=float(observed),
        null_mean=float(null.mean()),
        null_low=float(low),
        null_high=float(high),
        p_value=float((1 + np.sum(null >= observed)) / (1 + null.size)),
        n_permutations=int(null.size),
    )
