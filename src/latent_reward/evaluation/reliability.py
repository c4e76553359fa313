"""How reliable a prompt's mean rating is, and the ceiling that puts on predicting it.

- Responses to a prompt exchangeable (samples of one policy): the one-way ICC(1).
- Responses that carry a role (chosen / rejected: chosen is the best of several) or a generator: a
  two-way model, rating = prompt + factor + error, with the factor fixed, and its consistency ICC,
  ICC(C,1) = var(prompt) / (var(prompt) + var(error)) (McGraw & Wong 1996; Shrout & Fleiss's ICC(3,1)).
  The one-way ICC counts the factor's systematic effect (the chosen-rejected gap) as noise.
- The mean of k responses has reliability k ICC / (1 + (k - 1) ICC) (Spearman-Brown), k the harmonic
  mean of responses per prompt (the error variance of a prompt mean is var(error) / k_g on average); a
  predictor of the prompt's true mean correlates with the observed mean at most sqrt(reliability).

Hand-written: no library here fits the two-way model on unbalanced, incomplete tables (each prompt answered
by a few of many generators) and resamples prompts cheaply. The factor's effects are estimated within
prompts (the fixed-effects least squares fit); with them removed, the one-way ANOVA of the prompts gives
the between-prompt mean square, and the two-way residual gives the error mean square. On a complete,
balanced table this is exactly ICC(C,1) = (MSR - MSE) / (MSR + (k - 1) MSE).
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np

from latent_reward.evaluation.groups import group_index
from latent_reward.evaluation.metrics import quantile_interval
from latent_reward.evaluation.results import Interval, Result

# A single value or an array of them (the resamples): the Spearman-Brown formula applies to both elementwise.
FloatOrArray = TypeVar("FloatOrArray", float, np.ndarray)

ONE_WAY = "ICC(1), one-way: the responses to a prompt are exchangeable"


class Reliability(Result):
    """The right intraclass correlation of the rating by prompt and what it implies for the prompt's mean rating."""

    model: str  # which ICC and why
    factor: str | None = None  # the fixed factor: "role" or "generator"; None for the one-way model
    icc: Interval
    responses_per_prompt: float  # k: the harmonic mean of responses per prompt
    mean_reliability: Interval  # of a prompt's mean of k ratings (Spearman-Brown)
    r_ceiling: Interval  # sqrt(mean_reliability): the most a predictor of the true prompt mean can correlate with it


def _prompt_sums(y: np.ndarray, groups: np.ndarray, factor: np.ndarray | None):
    """Per prompt: responses, mean rating, mean factor indicator row [G, C], and the within-prompt cross-products
    of the centered indicators [G, C, C], with the centered ratings [G, C], and the centered ratings' squares [G]."""
    _, index = group_index(groups)
    n_groups = int(index.max()) + 1
    counts = np.bincount(index, minlength=n_groups).astype(np.float64)
    means = np.bincount(index, weights=y, minlength=n_groups) / counts
    centered_y = y - means[index]
    if factor is None:
        dummies = np.zeros((len(y), 0))
    else:
        _, levels = np.unique(factor, return_inverse=True)
        dummies = np.eye(levels.max() + 1)[levels]
    indicator_means = np.zeros((n_groups, dummies.shape[1]))
    np.add.at(indicator_means, index, dummies)
    indicator_means /= counts[:, None]
    centered_d = dummies - indicator_means[index]
    cross = np.zeros((n_groups, dummies.shape[1], dummies.shape[1]))
    np.add.at(cross, index, centered_d[:, :, None] * centered_d[:, None, :])
    cross_y = np.zeros((n_groups, dummies.shape[1]))
    np.add.at(cross_y, index, centered_d * centered_y[:, None])
    squares = np.bincount(index, weights=centered_y**2, minlength=n_groups)
    return counts, means, indicator_means, cross, cross_y, squares


def _icc(weights: np.ndarray, sums) -> np.ndarray:
    """ICC for each row of prompt weights [B, G] (a prompt drawn w times counts w times); NaN where undefined."""
    counts, means, indicator_means, cross, cross_y, squares = sums
    a = np.einsum("bg,gij->bij", weights, cross)
    b = np.einsum("bg,gi->bi", weights, cross_y)
    effects = np.einsum("bij,bj->bi", np.linalg.pinv(a, hermitian=True), b) if a.shape[1] else b
    rank = np.linalg.matrix_rank(a, hermitian=True) if a.shape[1] else np.zeros(len(weights))
    residual = weights @ squares - np.einsum("bi,bi->b", b, effects)
    adjusted = means[None] - np.einsum("gi,bi->bg", indicator_means, effects)  # prompt means with the factor removed
    n, g = weights @ counts, weights.sum(1)
    grand = np.einsum("bg,bg->b", weights * counts, adjusted) / n
    between = np.einsum("bg,bg->b", weights * counts, (adjusted - grand[:, None]) ** 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        msb, mse = between / (g - 1), residual / (n - g - rank)
        k0 = (n - weights @ counts**2 / n) / (g - 1)
        denominator = msb + (k0 - 1) * mse
        values = (msb - mse) / denominator
    return np.where((g >= 2) & (n - g - rank > 0) & (denominator > 0), values, np.nan)


def icc(y: np.ndarray, groups: np.ndarray, factor: np.ndarray | None = None) -> float:
    """ICC(1) of y by prompt (factor None), or ICC(C,1) with `factor` (a label per row) fixed."""
    sums = _prompt_sums(np.asarray(y, dtype=np.float64), np.asarray(groups), factor)
    return float(_icc(np.ones((1, len(sums[0]))), sums)[0])


def spearman_brown(value: FloatOrArray, k: float) -> FloatOrArray:
    """Reliability of the mean of k ratings whose single-rating reliability (ICC) is `value`."""
    return k * value / (1 + (k - 1) * value)


def reliability(
    y: np.ndarray,
    groups: np.ndarray,
    factor: np.ndarray | None = None,
    factor_name: str | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> Reliability:
    """The ICC (two-way with `factor` fixed, or one-way), the prompt mean's reliability and the ceiling on r it
    implies, each with a 95% interval from resampling prompts."""
    y, groups = np.asarray(y, dtype=np.float64), np.asarray(groups)
    sums = _prompt_sums(y, groups, factor)
    counts = sums[0]
    draws = np.random.default_rng(seed).integers(0, len(counts), size=(n_boot, len(counts)))
    weights = np.stack([np.bincount(d, minlength=len(counts)) for d in draws]).astype(np.float64)
    point, samples = float(_icc(np.ones((1, len(counts))), sums)[0]), _icc(weights, sums)
    k = float(1 / np.mean(1 / counts))
    mean_point, mean_samples = spearman_brown(point, k), spearman_brown(samples, k)
    model = ONE_WAY if factor is None else f"ICC(C,1), two-way with the response's {factor_name} fixed (consistency)"
    return Reliability(
        model=model,
        factor=factor_name if factor is not None else None,
        icc=quantile_interval(point, samples),
        responses_per_prompt=k,
        mean_reliability=quantile_interval(mean_point, mean_samples),
        r_ceiling=quantile_interval(float(_ceiling(mean_point)), _ceiling(mean_samples)),
    )


def _ceiling(mean_reliability: FloatOrArray) -> np.ndarray:
    """sqrt of the reliability (a negative estimate caps r at 0)."""
    return np.sqrt(np.clip(mean_reliability, 0.0, 1.0))


def fixed_factor(meta: list[dict]) -> tuple[str | None, np.ndarray | None]:
    """The factor the rows carry that makes responses to a prompt not exchangeable: their role (chosen / rejected)
    when every row has one, else their generator when every row names one and there are two or more; else none."""
    for key, name in (("side", "role"), ("generator", "generator")):
        values = [m.get(key) for m in meta]
        if values and all(isinstance(v, str) and v for v in values) and len(set(values)) >= 2:
            return name, np.array(values)
    return None, None
