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


def test_the_readouts_within_prompt_baselines_are_fitted_on_features_centered_per_prompt():
    """Each baseline's within-prompt fit (compared with the within-prompt probe) is, fold by fold, the probes' ridge on
    its features minus their prompt means and the ratings minus theirs, on the multi-response prompts of the other
    folds, exactly as the within-prompt probe reads states centered per prompt (experiments/targets.py)."""
    from types import SimpleNamespace

    from latent_reward.evaluation.baselines import TextData, length_features
    from latent_reward.evaluation.groups import center_within_groups
    from latent_reward.evaluation.results import LENGTH
    from latent_reward.experiments.readout import WithinProbe, _baseline_predictions
    from latent_reward.experiments.targets import Target
    from latent_reward.probes import RidgeProbe

    rng = np.random.default_rng(0)
    sizes = [1 if g % 7 == 0 else 3 for g in range(40)]  # some prompts have one response: no within-prompt rows
    groups = np.concatenate([[f"p{g:02d}"] * size for g, size in enumerate(sizes)])
    base = np.repeat(rng.integers(5, 200, len(sizes)), sizes)  # a prompt-level part of the length
    extra = rng.integers(0, 30, len(groups))
    responses = ["word " * int(b + e) for b, e in zip(base, extra)]
    y = extra + rng.normal(size=len(groups)) * 3 + np.repeat(rng.normal(size=len(sizes)) * 10, sizes)
    multi = np.repeat(np.array(sizes) > 1, sizes)
    folds = np.repeat(np.arange(len(sizes)) % 5, sizes)
    yc = center_within_groups(y[multi], groups[multi])
    target = Target("rating-within-prompt", yc, groups[multi], multi, within=True)
    within = WithinProbe(target=target, fit=None, multi=multi)
    data = TextData(y=y, groups=groups, prompts=[f"question {g}" for g in groups], responses=responses,
                    generators=[None] * len(y))
    masks = {"train": folds < 3, "val": folds == 3, "test": folds == 4}
    fit = SimpleNamespace(plan=SimpleNamespace(masks=masks))
    found = _baseline_predictions(data, fit, folds, within)[LENGTH].within
    x = length_features(responses)[multi]
    xc, g, f = center_within_groups(x, groups[multi]), groups[multi], folds[multi]
    for k in range(5):
        probe = RidgeProbe().fit(xc[f != k], yc[f != k], g[f != k])
        np.testing.assert_allclose(found[multi][f == k], probe.predict(xc[f == k]), rtol=1e-8, atol=1e-8)
