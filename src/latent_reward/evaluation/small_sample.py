"""Intervals and tests for experiments on tens of prompts (steer: 20, conversation: 24, XSTest: 30).

At these sizes the percentile bootstrap of a mean undercovers: in simulation at n = 20 it covered 0.93 for normal
per-prompt values and 0.89 for skewed ones, because the bootstrap spread of a mean is too narrow by sqrt((n-1)/n) and
its quantiles ignore that the spread itself is estimated. BCa does not repair that for a mean (0.92 and 0.91 there);
the studentized bootstrap (bootstrap-t: resample t = (mean* - mean) / se*, not the mean) did (0.95 and 0.94). So:
- means of per-prompt values (a paired difference per prompt): `studentized_mean`;
- a steered direction minus a population of random directions, where prompts and directions are both sampled:
  `studentized_crossed`, the same with a standard error that has both parts;
- statistics without a simple standard error (a partial correlation over clustered rows): `bca` (scipy's BCa over
  prompt ids; its jackknife then leaves out one prompt at a time).
Tests: `sign_flip_p`, a paired permutation test on per-prompt differences; `detectable_effect`, the effect a test at
this standard error detects with a given power.

Hand-written parts: scipy has no studentized bootstrap, and its two-sided permutation p doubles the one-sided one
(floor 2 / (B + 1)) where the rest of this package counts |null| >= |observed| (floor 1 / (B + 1)).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
from scipy import stats

from latent_reward.evaluation.results import Interval


def _t_interval(point: float, se: float, t_samples: np.ndarray, level: float) -> Interval:
    """point - quantiles of t* times se: the bootstrap-t interval (t* from resamples with a positive se*)."""
    finite = t_samples[np.isfinite(t_samples)]
    if not finite.size:
        return Interval.of(point)
    alpha = (1 - level) / 2
    upper_t, lower_t = np.quantile(finite, [1 - alpha, alpha])
    return Interval.of(point, point - upper_t * se, point - lower_t * se)


def studentized_mean(
    values: np.ndarray, n_boot: int = 2000, seed: int = 0, level: float = 0.95
) -> tuple[Interval, float]:
    """The mean of per-prompt values (NaN left out) with its bootstrap-t interval, and its standard error
    sd / sqrt(n). Fewer than two values: no interval; values that do not vary: the interval is the point."""
    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    if not x.size:
        return Interval(), float("nan")
    point = float(x.mean())
    if x.size < 2:
        return Interval.of(point), float("nan")
    se = float(x.std(ddof=1) / np.sqrt(x.size))
    if se <= 1e-12 * max(1.0, abs(point)):
        return Interval.of(point, point, point), 0.0
    drawn = x[np.random.default_rng(seed).integers(0, x.size, size=(n_boot, x.size))]
    se_star = drawn.std(axis=1, ddof=1) / np.sqrt(x.size)
    with np.errstate(divide="ignore", invalid="ignore"):
        t_star = np.where(se_star > 0, (drawn.mean(axis=1) - point) / se_star, np.nan)
    return _t_interval(point, se, t_star, level), se


def studentized_crossed(
    values: np.ndarray, draws: np.ndarray, n_boot: int = 2000, seed: int = 0, level: float = 0.95
) -> tuple[Interval, float]:
    """mean over prompts of (values - the draws' mean), values [prompts], draws [k, prompts] (random directions),
    with a bootstrap-t interval that resamples prompts and draws together, and its standard error.

    The standard error has both parts: sqrt(var_p(d_p) / P + var_k(m_k) / K), d_p the per-prompt difference, m_k draw
    k's mean over prompts (the second part counts the between-direction spread again at 1 / (P K) of the first
    part's noise: slightly conservative). Prompts without a finite value in every row are left out."""
    values, draws = np.asarray(values, dtype=np.float64), np.atleast_2d(np.asarray(draws, dtype=np.float64))
    keep = np.isfinite(values) & np.isfinite(draws).all(axis=0)
    values, draws = values[keep], draws[:, keep]
    k, p = draws.shape
    if k < 2:
        return studentized_mean(values - draws.mean(axis=0) if k else values[:0], n_boot, seed, level)
    if p < 2:
        return (Interval.of(float((values - draws.mean(axis=0)).mean())) if p else Interval()), float("nan")

    def parts(v: np.ndarray, r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # v [..., P], r [..., K, P]
        d = v - r.mean(axis=-2)
        se = np.sqrt(d.var(axis=-1, ddof=1) / p + r.mean(axis=-1).var(axis=-1, ddof=1) / k)
        return d.mean(axis=-1), se

    point, se = (float(a) for a in parts(values, draws))
    if se <= 1e-12 * max(1.0, abs(point)):
        return Interval.of(point, point, point), 0.0
    rng = np.random.default_rng(seed)
    prompts, directions = rng.integers(0, p, size=(n_boot, p)), rng.integers(0, k, size=(n_boot, k))
    star, se_star = parts(values[prompts], draws[directions[:, :, None], prompts[:, None, :]])
    with np.errstate(divide="ignore", invalid="ignore"):
        t_star = np.where(se_star > 0, (star - point) / se_star, np.nan)
    return _t_interval(point, se, t_star, level), se


def bca(
    clusters: np.ndarray,
    statistic: Callable[[np.ndarray], float],
    n_boot: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> Interval:
    """statistic(the distinct clusters) with scipy's BCa interval over resampled clusters: `statistic` takes an
    array of cluster ids (with repeats) and computes from every row of each. No interval where it is undefined."""
    ids = np.unique(np.asarray(clusters))
    point = float(statistic(ids))
    if ids.size < 3 or not np.isfinite(point):
        return Interval.of(point)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a degenerate resample is reported as a NaN bound, handled below
        result = stats.bootstrap(
            (ids,),
            statistic,
            n_resamples=n_boot,
            method="BCa",
            vectorized=False,
            confidence_level=level,
            random_state=np.random.default_rng(seed),
        )
    return Interval.of(point, result.confidence_interval.low, result.confidence_interval.high)


def sign_flip_p(values: np.ndarray, n_permutations: int = 9999, seed: int = 0) -> float | None:
    """Two-sided paired permutation p of mean(values) = 0, per-prompt differences with their signs flipped at random:
    (1 + #|null mean| >= |observed|) / (1 + B), so its floor is 1 / (1 + B). NaN values are left out."""
    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    if not x.size:
        return None
    signs = np.where(np.random.default_rng(seed).random((n_permutations, x.size)) < 0.5, -1.0, 1.0)
    null = np.abs(signs @ x) / x.size
    observed = abs(float(x.mean()))
    return float((1 + np.sum(null >= observed - 1e-12 * max(1.0, observed))) / (1 + n_permutations))


def detectable_effect(se: float, df: float, level: float = 0.95, power: float = 0.8) -> float | None:
    """The smallest true effect a two-sided test at 1 - `level` detects with probability `power`, for an estimate with
    standard error `se` on `df` degrees of freedom: (t_{1 - alpha/2} + t_{power}) x se."""
    if not np.isfinite(se) or df < 1:
        return None
    return float((stats.t.ppf(1 - (1 - level) / 2, df) + stats.t.ppf(power, df)) * se)
