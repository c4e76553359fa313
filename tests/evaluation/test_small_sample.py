"""Known answers for the few-prompt intervals and tests (evaluation/small_sample.py, evaluation/multiplicity.py): the
points and standard errors against closed forms, the coverage of the intervals at n = 20 prompts against a known
truth (within Monte Carlo error), the sign-flip p against exact enumeration, Holm against a worked example."""

from itertools import product

import numpy as np
import pytest
from scipy import stats

from latent_reward.evaluation.multiplicity import holm
from latent_reward.evaluation.small_sample import (
    bca,
    detectable_effect,
    sign_flip_p,
    studentized_crossed,
    studentized_mean,
)

SIMULATIONS = 2000
MC_ERROR = 3 * np.sqrt(0.95 * 0.05 / SIMULATIONS)  # three Monte Carlo standard errors of a coverage near 0.95


def test_the_studentized_mean_has_the_closed_form_point_and_standard_error():
    x = np.array([1.0, 4.0, 2.0, 8.0, np.nan, 5.0])
    interval, se = studentized_mean(x, 500, 0)
    finite = x[np.isfinite(x)]
    assert interval.value == pytest.approx(4.0) and se == pytest.approx(finite.std(ddof=1) / np.sqrt(5))
    assert interval.low < 4.0 < interval.high
    constant, zero = studentized_mean(np.full(6, 2.5), 100, 0)
    assert (constant.value, constant.low, constant.high, zero) == (2.5, 2.5, 2.5, 0.0)
    single, _ = studentized_mean(np.array([3.0]), 100, 0)
    assert single.value == 3.0 and single.low is None
    assert not studentized_mean(np.array([np.nan]), 100, 0)[0].known


@pytest.mark.slow
def test_the_studentized_mean_covers_a_known_mean_at_20_prompts_where_the_percentile_interval_does_not():
    """2000 samples of 20 per-prompt values (normal, known mean 0.3): the studentized interval covers 0.3 at 0.95 within
    Monte Carlo error; the percentile interval of the same resampled means covers about 0.93, outside it."""
    rng = np.random.default_rng(11)
    studentized = percentile = 0
    for i in range(SIMULATIONS):
        x = 0.3 + rng.normal(size=20)
        interval, _ = studentized_mean(x, 999, i)
        studentized += interval.low <= 0.3 <= interval.high
        means = x[rng.integers(0, 20, size=(999, 20))].mean(1)
        low, high = np.quantile(means, [0.025, 0.975])
        percentile += low <= 0.3 <= high
    assert abs(studentized / SIMULATIONS - 0.95) < MC_ERROR
    assert percentile / SIMULATIONS < 0.95 - MC_ERROR  # the simulation can tell an undercovering interval apart


@pytest.mark.slow
def test_the_crossed_interval_covers_the_difference_from_the_random_directions_population():
    """20 prompts, 19 random directions each with its own offset (sd 0.3), shared prompt effects: the truth is the
    steered direction minus the random directions' population mean (0.2), not minus these 19 draws' mean."""
    rng = np.random.default_rng(12)
    covered = 0
    for i in range(SIMULATIONS // 2):
        prompt = rng.normal(size=20)
        values = 0.2 + prompt + rng.normal(0, 0.3, 20)
        draws = rng.normal(0, 0.3, (19, 1)) + prompt + rng.normal(0, 0.3, (19, 20))
        interval, _ = studentized_crossed(values, draws, 499, i)
        covered += interval.low <= 0.2 <= interval.high
    assert abs(covered / (SIMULATIONS // 2) - 0.95) < 3 * np.sqrt(0.95 * 0.05 / (SIMULATIONS // 2))


def test_the_crossed_standard_error_has_both_parts_and_leaves_incomplete_prompts_out():
    rng = np.random.default_rng(0)
    values, draws = rng.normal(size=12), rng.normal(size=(5, 12))
    values[3], draws[2, 7] = np.nan, np.nan
    interval, se = studentized_crossed(values, draws, 300, 0)
    keep = np.ones(12, bool)
    keep[[3, 7]] = False
    d = values[keep] - draws[:, keep].mean(0)
    assert interval.value == pytest.approx(d.mean())
    assert se == pytest.approx(np.sqrt(d.var(ddof=1) / 10 + draws[:, keep].mean(1).var(ddof=1) / 5))
    _, se_one = studentized_crossed(values, draws[:1], 300, 0)  # one direction: no spread between directions to count
    assert se_one == pytest.approx(np.nanstd(values - draws[0], ddof=1) / np.sqrt(np.isfinite(values - draws[0]).sum()))


def test_sign_flip_p_matches_exact_enumeration_and_has_its_floor():
    x = np.array([0.9, -0.2, 0.5, 1.4, 0.3])
    observed = abs(x.mean())
    every = product((-1, 1), repeat=5)  # all 32 sign vectors
    exact = np.mean([abs(np.dot(signs, x)) / 5 >= observed - 1e-12 for signs in every])
    assert sign_flip_p(x, 200_000, 0) == pytest.approx(exact, abs=0.004)
    assert sign_flip_p(np.full(30, 1.0), 999, 0) == pytest.approx(1 / 1000)  # every flip moves the mean towards 0
    assert sign_flip_p(np.array([np.nan]), 99, 0) is None


def test_holm_on_a_worked_example():
    # sorted: 0.005 x 4 = 0.02, 0.01 x 3 = 0.03, 0.03 x 2 = 0.06, 0.04 x 1 = 0.04 -> 0.06 (never below the one before)
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, None, 0.6]) == [pytest.approx(1.0), None, pytest.approx(1.0)]  # capped at 1; None is not a test


def test_bca_over_clusters_is_scipys_bca_of_the_cluster_means_when_clusters_are_equal():
    rng = np.random.default_rng(3)
    rows = rng.exponential(size=(15, 4))  # 15 clusters of 4 rows: the mean over rows is the mean of cluster means

    def statistic(ids):
        return float(rows[ids].mean())

    interval = bca(np.arange(15), statistic, 999, 7)
    reference = stats.bootstrap(
        (rows.mean(1),), np.mean, n_resamples=999, method="BCa", vectorized=False, random_state=np.random.default_rng(7)
    ).confidence_interval
    assert interval.value == pytest.approx(rows.mean())
    assert (interval.low, interval.high) == pytest.approx((reference.low, reference.high))


def test_the_detectable_effect_is_the_two_t_quantiles_times_the_standard_error():
    assert detectable_effect(0.1, 19) == pytest.approx((2.093024 + 0.860951) * 0.1, rel=1e-5)
    assert detectable_effect(1.0, 10**6) == pytest.approx(1.959964 + 0.841621, rel=1e-4)  # the normal values
    assert detectable_effect(float("nan"), 19) is None
