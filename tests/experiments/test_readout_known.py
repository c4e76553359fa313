"""Known answers for experiments/readout.py's partial correlation given the text statistics and its interval."""

import numpy as np
import pytest
from scipy import stats
from sklearn.linear_model import LinearRegression

from latent_reward.experiments.readout import _partial_interval


def _clustered(seed=0, n_prompts=40, per=5):
    """Rating and prediction share a prompt-level term (so rows of a prompt are correlated) and a length term that
    the controls (length and a noisy copy) explain."""
    rng = np.random.default_rng(seed)
    index = np.repeat(np.arange(n_prompts), per)
    groups = np.array([f"p{i:03d}" for i in index])
    length = rng.normal(size=len(index)) * 3
    controls = np.column_stack([length, length + rng.normal(size=len(index)), rng.normal(size=len(index))])
    shared = rng.normal(size=n_prompts)[index]
    y = shared + length + 0.8 * rng.normal(size=len(index))
    p = shared + 2 * length + 0.8 * rng.normal(size=len(index))
    return y, p, controls, groups, index


def _partial_r(y, p, controls):
    ry = y - LinearRegression().fit(controls, y).predict(controls)
    rp = p - LinearRegression().fit(controls, p).predict(controls)
    return stats.pearsonr(ry, rp).statistic


def test_partial_r_given_length_is_the_regression_residual_correlation_with_a_prompt_bootstrap_interval():
    y, p, controls, groups, index = _clustered()
    interval = _partial_interval(y, p, controls, groups, n_boot=500, seed=0)
    expected = _partial_r(y, p, controls)
    assert interval.value == pytest.approx(expected, abs=1e-10)
    assert abs(expected - stats.pearsonr(y, p).statistic) > 0.2  # the controls matter here
    # an independent prompt bootstrap (whole prompts with replacement, 2000 resamples) gives the same ends within
    # Monte Carlo error; a row bootstrap would give a clearly narrower interval on these clustered rows
    rng = np.random.default_rng(123)
    rows_of = [np.flatnonzero(index == g) for g in range(index.max() + 1)]

    def precision_r(rows):  # the same partial r from the inverse correlation matrix (fast, and a second closed form)
        inverse = np.linalg.inv(np.corrcoef(np.column_stack([y[rows], p[rows], controls[rows]]).T))
        return -inverse[0, 1] / np.sqrt(inverse[0, 0] * inverse[1, 1])

    assert precision_r(np.arange(len(y))) == pytest.approx(expected, abs=1e-10)

    def ends(draw_rows):
        values = [precision_r(draw_rows()) for _ in range(2000)]
        return np.quantile(values, [0.025, 0.975])

    prompt_low, prompt_high = ends(lambda: np.concatenate([rows_of[g] for g in rng.integers(0, len(rows_of), len(rows_of))]))
    row_low, row_high = ends(lambda: rng.integers(0, len(y), len(y)))
    assert (prompt_high - prompt_low) > 1.3 * (row_high - row_low)  # the case separates the two resampling schemes
    assert interval.low == pytest.approx(prompt_low, abs=0.03) and interval.high == pytest.approx(prompt_high, abs=0.03)
