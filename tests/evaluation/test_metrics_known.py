"""Known answers for every statistic of evaluation/metrics.py: scipy, sklearn or a closed form, each computed
independently of the code under test (brute force over pairs, resamples built row by row)."""

from itertools import combinations

import numpy as np
import pytest
from scipy import stats
from sklearn.linear_model import LinearRegression
from sklearn.metrics import mean_absolute_error, r2_score

from latent_reward.evaluation.metrics import (
    Resampler,
    group_spearman,
    icc1,
    icc1_interval,
    length_matched_accuracy,
    partial_correlation,
    quantile_interval,
    score,
    within_prompt_accuracy,
    within_prompt_spearman,
)


def _brute_accuracy(y, p, groups, keep=lambda i, j: True):
    """Correct / rated over same-group pairs (i < j) with different ratings; tied predictions count half."""
    correct = total = 0.0
    for i, j in combinations(range(len(y)), 2):
        if groups[i] != groups[j] or y[i] == y[j] or not keep(i, j):
            continue
        total += 1
        if p[i] == p[j]:
            correct += 0.5
        elif (y[i] > y[j]) == (p[i] > p[j]):
            correct += 1
    return correct, total


def _unbalanced(seed=0, n_groups=9):
    """Ratings with ties (a 1-5 scale), predictions with ties, groups of sizes 1 to 6 in shuffled order with
    labels whose sorted order differs from their order of appearance."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 7, size=n_groups)
    sizes[0], sizes[1] = 2, 6  # at least one group too small for a Spearman and one large
    labels = np.array([f"g{(7 * g) % n_groups}" for g in range(n_groups)])
    groups = np.repeat(labels, sizes)
    order = rng.permutation(len(groups))
    groups = groups[order]
    y = rng.integers(1, 6, size=len(groups)).astype(float)
    p = np.round(y + rng.normal(size=len(groups)), 0)  # rounded: ties in the predictions too
    return y, p, groups


def _resample_rows(groups, group_weights_row):
    """The rows of one prompt resample, materialized: each sorted group repeated by its weight, each copy its own
    label."""
    names = np.unique(groups)
    rows, labels, copy = [], [], 0
    for g, count in enumerate(group_weights_row.astype(int)):
        for _ in range(count):
            members = np.flatnonzero(groups == names[g])
            rows.append(members)
            labels.append(np.full(len(members), copy))
            copy += 1
    return np.concatenate(rows), np.concatenate(labels)


def test_group_spearman_is_scipy_per_sorted_group_and_nan_where_undefined():
    y, p, groups = _unbalanced()
    y[groups == "g2"] = 3.0  # a group with no variation in the rating
    values = group_spearman(y, p, groups)
    names = np.unique(groups)
    assert len(values) == len(names)
    expected = []
    for name, value in zip(names, values):
        rows = groups == name
        if rows.sum() < 3 or np.ptp(y[rows]) == 0 or np.ptp(p[rows]) == 0:
            assert np.isnan(value), name
        else:
            expected.append(stats.spearmanr(y[rows], p[rows]).statistic)
            assert value == pytest.approx(expected[-1], abs=1e-12), name
    assert np.isnan(values[list(names).index("g2")])
    assert 2 <= len(expected) < len(names)  # some groups defined, some not
    assert within_prompt_spearman(y, p, groups) == pytest.approx(np.mean(expected), abs=1e-12)
    # min_size: with 6 required only the groups of 6 or more count
    large = [
        stats.spearmanr(y[groups == n], p[groups == n]).statistic
        for n in names
        if (groups == n).sum() >= 6 and np.ptp(y[groups == n]) > 0 and np.ptp(p[groups == n]) > 0
    ]
    assert within_prompt_spearman(y, p, groups, min_size=6) == pytest.approx(np.mean(large), abs=1e-12)


def test_within_prompt_spearman_by_hand():
    """Three prompts: a perfect ordering, a partial one (rho 1) and a reversed one with a tie (rho by hand from the
    ranks)."""
    y = np.array([1.0, 2.0, 3.0, 1.0, 2.0, 3.0, 1.0, 2.0, 3.0])
    p = np.array([0.1, 0.2, 0.3, 0.5, 0.5, 0.1, 1.0, 3.0, 2.0])
    groups = np.array(["b", "b", "b", "a", "a", "a", "c", "c", "c"])
    # prompt "a": ranks of y (1, 2, 3), of p (2.5, 2.5, 1): centred (-1, 0, 1) and (0.5, 0.5, -1):
    # r = (-0.5 + 0 - 1) / sqrt(2 * 1.5) = -1.5 / sqrt(3). Prompt "c": centred (-1, 0, 1) and (-1, 1, 0): 1 / 2.
    rho_a = -1.5 / np.sqrt(3)
    np.testing.assert_allclose(group_spearman(y, p, groups), [rho_a, 1.0, 0.5], atol=1e-12)
    assert within_prompt_spearman(y, p, groups) == pytest.approx((rho_a + 1.0 + 0.5) / 3, abs=1e-12)


def test_within_prompt_accuracy_matches_brute_force_with_ties_and_unbalanced_groups():
    y, p, groups = _unbalanced(seed=1, n_groups=12)
    correct, total = _brute_accuracy(y, p, groups)
    assert total > 20 and correct != total / 2
    assert within_prompt_accuracy(y, p, groups) == pytest.approx(correct / total, abs=1e-12)
    # reversing the predictions reverses every untied pair: the accuracy becomes 1 - accuracy
    assert within_prompt_accuracy(y, -p, groups) == pytest.approx(1 - correct / total, abs=1e-12)


def test_within_prompt_accuracy_by_hand():
    # prompt x: ratings 3, 1, 2 and predictions 0.9, 0.5, 0.1 -> pairs (3,1) right, (3,2) right, (1,2) wrong
    # prompt y: ratings 1, 1, 2 and predictions 0, 5, 5 -> (1,1) not rated, (1,2) right, (1,2) tied = 0.5
    y = np.array([3, 1, 2, 1, 1, 2], dtype=float)
    p = np.array([0.9, 0.5, 0.1, 0.0, 5.0, 5.0])
    groups = np.array(["x", "x", "x", "y", "y", "y"])
    assert within_prompt_accuracy(y, p, groups) == pytest.approx(3.5 / 5)
    assert score(y, p, groups, n_boot=10).n_pairs == 5


def test_resampler_draws_whole_prompts_uniformly_with_replacement():
    y, p, groups = _unbalanced(seed=2, n_groups=10)
    names, index = np.unique(groups, return_inverse=True)
    resampler = Resampler.make(groups, n_boot=4000, seed=3)
    w, gw = resampler.weights, resampler.group_weights
    assert w.shape == (4000, len(y)) and gw.shape == (4000, 10)
    # each resample draws as many prompts as there are, with replacement (integer counts, repeats happen)
    np.testing.assert_array_equal(gw.sum(1), 10)
    assert np.all(gw == np.round(gw)) and (gw.max(1) >= 2).mean() > 0.9
    # a row's weight is its prompt's count: whole prompts, never single responses
    np.testing.assert_array_equal(w, gw[:, index])
    # multinomial(10, 1/10 each): mean 1 and variance 0.9 per prompt, covariance -0.1 between prompts
    se = np.sqrt(0.9 / 4000)
    assert np.all(np.abs(gw.mean(0) - 1) < 4 * se), gw.mean(0)
    np.testing.assert_allclose(gw.var(0), 0.9, atol=0.1)
    assert np.cov(gw[:, 0], gw[:, 1])[0, 1] == pytest.approx(-0.1, abs=0.05)
    # seeded: the same seed gives the same resamples, another seed others
    np.testing.assert_array_equal(Resampler.make(groups, 4000, seed=3).group_weights, gw)
    assert not np.array_equal(Resampler.make(groups, 4000, seed=4).group_weights, gw)


def test_resampler_samples_equal_the_metrics_of_each_materialized_resample():
    rng = np.random.default_rng(4)
    groups = np.repeat([f"p{g:02d}" for g in range(15)], rng.integers(3, 6, size=15))
    y = rng.integers(1, 6, size=len(groups)).astype(float)
    p = y + rng.normal(size=len(groups))
    resampler = Resampler.make(groups, n_boot=25, seed=5)
    samples = resampler.samples(y, p)
    for b in range(25):
        rows, labels = _resample_rows(groups, resampler.group_weights[b])
        yb, pb = y[rows], p[rows]
        assert samples["pearson"][b] == pytest.approx(stats.pearsonr(yb, pb).statistic, abs=1e-10)
        assert samples["r2"][b] == pytest.approx(r2_score(yb, pb), abs=1e-10)
        assert samples["mae"][b] == pytest.approx(mean_absolute_error(yb, pb), abs=1e-10)
        correct, total = _brute_accuracy(yb, pb, labels)
        assert samples["within_acc"][b] == pytest.approx(correct / total, abs=1e-10)
        rhos = [
            stats.spearmanr(yb[labels == c], pb[labels == c]).statistic
            for c in np.unique(labels)
            if np.ptp(yb[labels == c]) > 0 and np.ptp(pb[labels == c]) > 0
        ]
        assert samples["within_spearman"][b] == pytest.approx(np.mean(rhos), abs=1e-10)
        # Spearman: the Pearson r of the full set's ranks over the resample's rows (the documented approximation) ...
        ry, rp = stats.rankdata(y)[rows], stats.rankdata(p)[rows]
        assert samples["spearman"][b] == pytest.approx(stats.pearsonr(ry, rp).statistic, abs=1e-10)
        # ... close to the resample's own Spearman rho
        assert samples["spearman"][b] == pytest.approx(stats.spearmanr(yb, pb).statistic, abs=0.03)


def test_score_intervals_are_the_quantiles_of_the_resamples():
    rng = np.random.default_rng(6)
    groups = np.repeat(np.arange(30).astype(str), 4)
    y = rng.normal(size=120)
    p = y + rng.normal(size=120)
    resampler = Resampler.make(groups, n_boot=200, seed=1)
    scores = score(y, p, groups, resampler=resampler)
    samples = resampler.samples(y, p)
    for name in ("pearson", "spearman", "r2", "mae", "within_acc", "within_spearman"):
        low, high = np.quantile(samples[name], [0.025, 0.975])
        interval = scores.metric(name)
        assert (interval.low, interval.high) == (pytest.approx(low), pytest.approx(high)), name
    assert scores.pearson.value == pytest.approx(stats.pearsonr(y, p).statistic)
    assert scores.n_examples == 120 and scores.n_prompts == 30 and scores.n_pairs == 30 * 6
    # NaN resamples are dropped before the quantiles
    interval = quantile_interval(0.5, np.array([np.nan, 0.0, 1.0, np.nan, 2.0, 3.0, 4.0]))
    assert (interval.low, interval.high) == (pytest.approx(0.1), pytest.approx(3.9))


def test_length_matched_accuracy_by_hand():
    """Pairs whose lengths differ by less than 10% of the longer length; the boundary pairs are decided by which length
    is the reference (the longer), and by the strict inequality."""
    lengths = np.array([100, 105, 200, 50, 55.5, 300, 10, 0, 0, 1000, 1001, 1002, 200, 180], dtype=float)
    groups = np.array(["a", "a", "a", "b", "b", "b", "c", "c", "c", "d", "d", "d", "e", "e"])
    y = np.array([1, 2, 3, 2, 1, 3, 1, 2, 3, 1, 2, 2, 1, 2], dtype=float)
    p = np.array([0.0, 1.0, 0.0, 0.0, 1.0, 9.0, 5.0, 5.0, 1.0, 3.0, 2.0, 7.0, 0.0, 1.0])
    # a: (100, 105) matched (5 < 10.5): right. (100, 200), (105, 200) not matched.
    # b: (50, 55.5) matched (5.5 < 5.55, the longer's 10%; not with the shorter's 5.0): y 2 > 1 but p 0 < 1: wrong.
    # c: (0, 0) matched (0 < 0.1 * max(0, 1)): y 2 < 3, p 5 > 1: wrong. (10, 0): 10 >= 1, not matched.
    # d: (1000, 1001) right? y 1 < 2, p 3 > 2: wrong. (1000, 1002): y 1 < 2, p 3 < 7: right. (1001, 1002) same rating.
    # e: (200, 180) differ by exactly 10% of the longer (20 = 0.1 * 200, exact in floating point): not matched.
    resampler = Resampler.make(groups, n_boot=300, seed=0)
    interval, n_pairs = length_matched_accuracy(y, p, groups, lengths, resampler)
    assert n_pairs == 5
    assert interval.value == pytest.approx(2 / 5)
    keep = lambda i, j: abs(lengths[i] - lengths[j]) < 0.1 * max(lengths[i], lengths[j], 1)  # noqa: E731
    correct, total = _brute_accuracy(y, p, groups, keep)
    assert (correct, total) == (2, 5)
    # the interval: the same accuracy on each materialized prompt resample
    values = []
    for b in range(300):
        rows, labels = _resample_rows(groups, resampler.group_weights[b])
        c, t = _brute_accuracy(y[rows], p[rows], labels, lambda i, j, rows=rows: keep(rows[i], rows[j]))
        values.append(c / t if t else np.nan)
    values = np.array(values)
    low, high = np.quantile(values[np.isfinite(values)], [0.025, 0.975])
    assert (interval.low, interval.high) == (pytest.approx(low), pytest.approx(high))
    # a looser tolerance admits more pairs: 20% matches (100, 105), (50, 55.5), (0, 0), d's two rated pairs and e's
    assert length_matched_accuracy(y, p, groups, lengths, resampler, tolerance=0.2)[1] == 6
    assert length_matched_accuracy(y, p, groups, lengths, resampler, tolerance=0.6)[1] == 8  # + (100, 200), (105, 200)


def test_length_matched_accuracy_with_no_matched_pair_is_empty():
    groups = np.array(["a", "a"])
    interval, n = length_matched_accuracy(
        np.array([1.0, 2.0]), np.array([1.0, 2.0]), groups, np.array([10.0, 100.0]), Resampler.make(groups, 10)
    )
    assert n == 0 and interval.value is None


def test_partial_correlation_equals_the_closed_form_and_regression_residuals():
    rng = np.random.default_rng(7)
    n = 400
    z = rng.normal(size=n)
    shared = rng.normal(size=n)
    y = 2.0 * z + shared + rng.normal(size=n)
    p = -1.0 * z + shared + 0.5 * rng.normal(size=n)
    # one control: r_yp.z = (r_yp - r_yz r_pz) / sqrt((1 - r_yz^2)(1 - r_pz^2))
    r = np.corrcoef([y, p, z])
    closed = (r[0, 1] - r[0, 2] * r[1, 2]) / np.sqrt((1 - r[0, 2] ** 2) * (1 - r[1, 2] ** 2))
    assert closed > 0.3 and abs(r[0, 1]) < closed - 0.2  # far from the raw r and from 0: a real test
    assert partial_correlation(y, p, z) == pytest.approx(closed, abs=1e-10)
    # several controls: the correlation of the residuals of sklearn's linear regression on them (with an intercept) ...
    controls = np.column_stack([z, z**2 + rng.normal(size=n), rng.normal(size=n) + 5])
    y = y + 1.5 * controls[:, 1]
    p = p - 0.7 * controls[:, 1] + 0.3 * controls[:, 2]
    ry = y - LinearRegression().fit(controls, y).predict(controls)
    rp = p - LinearRegression().fit(controls, p).predict(controls)
    expected = stats.pearsonr(ry, rp).statistic
    assert partial_correlation(y, p, controls) == pytest.approx(expected, abs=1e-10)
    # ... and -P_yp / sqrt(P_yy P_pp) from the inverse of the joint correlation matrix
    precision = np.linalg.inv(np.corrcoef(np.column_stack([y, p, controls]).T))
    assert expected == pytest.approx(-precision[0, 1] / np.sqrt(precision[0, 0] * precision[1, 1]), abs=1e-10)
    assert abs(expected - stats.pearsonr(y, p).statistic) > 0.2


def _anova_icc(y, groups):
    """ICC(1) from scipy's one-way ANOVA F: (F - 1) / (F + k0 - 1), k0 = (N - sum n_g^2 / N) / (G - 1)."""
    names = np.unique(groups)
    f = stats.f_oneway(*[y[groups == g] for g in names]).statistic
    sizes = np.array([(groups == g).sum() for g in names])
    k0 = (len(y) - np.sum(sizes**2) / len(y)) / (len(names) - 1)
    return (f - 1) / (f + k0 - 1)


def test_icc_equals_the_anova_formula_on_unbalanced_groups():
    rng = np.random.default_rng(8)
    sizes = np.array([2, 2, 3, 12, 20, 2, 5, 30])  # very unbalanced: k0 (~8.6) is far from the mean size (9.5)
    groups = np.repeat(np.arange(len(sizes)), sizes)
    y = rng.normal(size=len(sizes))[groups] * 1.5 + rng.normal(size=len(groups))
    assert icc1(y, groups) == pytest.approx(_anova_icc(y, groups), abs=1e-10)
    # balanced by hand: two groups of two, means 1 and 3 (grand mean 2): MSB = 2 * 2 * 1 / 1 = 4,
    # MSW = (4 * 1) / (4 - 2) = 2, k0 = 2: ICC = (4 - 2) / (4 + (2 - 1) * 2) = 1 / 3
    assert icc1(np.array([0.0, 2.0, 2.0, 4.0]), np.array([0, 0, 1, 1])) == pytest.approx(1 / 3)
    assert np.isnan(icc1(np.array([1.0, 2.0]), np.array([0, 1])))  # one response per prompt: no within variance


@pytest.mark.slow
def test_icc_recovers_a_known_icc_and_its_interval_covers_it():
    """Prompt effects of variance 0.3 and noise of variance 0.7: known ICC 0.3; 40 prompts of 4 responses.
    The prompt-bootstrap interval covers the truth about 95% of the time (within Monte Carlo error)."""
    rng = np.random.default_rng(9)
    truth, n_prompts, per, trials = 0.3, 40, 4, 200
    groups = np.repeat(np.arange(n_prompts), per)
    covered, estimates = 0, []
    for trial in range(trials):
        y = np.sqrt(truth) * rng.normal(size=n_prompts)[groups] + np.sqrt(1 - truth) * rng.normal(size=len(groups))
        interval = icc1_interval(y, groups, n_boot=200, seed=trial)
        estimates.append(interval.value)
        covered += interval.low <= truth <= interval.high
    # ICC(1) is nearly unbiased: the mean of 200 estimates (sd ~0.08 each) is within ~0.02 of the truth
    assert np.mean(estimates) == pytest.approx(truth, abs=0.02)
    # a percentile bootstrap with 40 prompts under-covers a little (0.91 in 600 trials); 200 trials: MC sd ~0.02
    assert 0.85 <= covered / trials <= 0.99, covered / trials


def test_icc_interval_resamples_whole_prompts_and_keeps_repeated_prompts_apart():
    """Two prompts of three responses: a resample draws {0, 1} (the observed ICC) or one prompt twice. A prompt drawn
    twice is two identical groups: MSB = 0, so ICC = -MSW / ((k0 - 1) MSW) = -1 / 2. The 2.5% quantile is therefore
    -1/2 and the 97.5% quantile the observed value (merging the copies into one group would leave no interval)."""
    y = np.array([0.0, 1.0, 2.0, 5.0, 6.0, 8.0])
    groups = np.array(["b", "b", "b", "a", "a", "a"])
    observed = _anova_icc(y, groups)
    assert observed > 0.5
    interval = icc1_interval(y, groups, n_boot=400, seed=0)
    assert interval.value == pytest.approx(observed)
    assert interval.low == pytest.approx(-0.5) and interval.high == pytest.approx(observed)
