"""Known answers for the permutation helpers (evaluation/controls.py, evaluation/paired.py): every permutation is
equally likely and stays inside its prompt, and the p-values match exact enumeration on cases small enough to list."""

from collections import Counter
from itertools import permutations, product

import numpy as np
import pytest
from scipy import stats

from latent_reward.evaluation.controls import (
    global_permutations,
    shuffle_all,
    shuffle_within_groups,
    within_group_permutations,
)
from latent_reward.evaluation.metrics import within_prompt_accuracy
from latent_reward.evaluation.paired import null_test, permutation_p_value

# two prompts, interleaved and not in sorted order: "b" has 3 distinct ratings, "a" has 2 (3! * 2! = 12 arrangements)
GROUPS = np.array(["b", "a", "b", "a", "b"])
Y = np.array([1.0, 10.0, 2.0, 20.0, 3.0])


def test_within_group_permutations_keep_each_groups_multiset_and_are_uniform():
    n = 6000
    permuted = within_group_permutations(Y, GROUPS, n, seed=0)
    assert permuted.shape == (n, 5)
    for row in permuted[:50]:
        assert sorted(row[GROUPS == "b"]) == [1, 2, 3] and sorted(row[GROUPS == "a"]) == [10, 20]
    counts = Counter(map(tuple, permuted))
    every = {tuple(_arrangement(pb, pa)) for pb in permutations([1.0, 2.0, 3.0]) for pa in permutations([10.0, 20.0])}
    assert set(counts) == every and len(every) == 12
    assert stats.chisquare(list(counts.values())).pvalue > 1e-3  # uniform over the 12 (each about 500 times)
    # repeated values stay repeated: the multiset, not the set
    ties = within_group_permutations(np.array([1.0, 5.0, 1.0, 5.0, 2.0]), GROUPS, 20, seed=1)
    for row in ties:
        assert sorted(row[GROUPS == "b"]) == [1, 1, 2] and sorted(row[GROUPS == "a"]) == [5, 5]
    np.testing.assert_array_equal(
        shuffle_within_groups(Y, GROUPS, seed=3), within_group_permutations(Y, GROUPS, 1, seed=3)[0]
    )


def _arrangement(pb, pa):
    out = np.empty(5)
    out[GROUPS == "b"], out[GROUPS == "a"] = pb, pa
    return out


def test_global_permutations_are_uniform_over_all_rows():
    y = np.array([1.0, 2.0, 3.0])
    permuted = global_permutations(y, 3000, seed=0)
    counts = Counter(map(tuple, permuted))
    assert len(counts) == 6 and stats.chisquare(list(counts.values())).pvalue > 1e-3
    assert sorted(shuffle_all(Y, seed=2)) == sorted(Y)


def test_a_within_prompt_null_gives_the_exact_p_value_of_the_enumeration():
    """The within-prompt accuracy of a fixed prediction under the 12 within-prompt arrangements of the ratings: the
    exact p-value is the share of arrangements at least as accurate as the observed one."""
    prediction = np.array([0.1, 5.0, 0.3, 4.0, 0.2])  # orders b as 1 < 3 < 2 (2 of 3 pairs) and a as 20 < 10 (wrong)
    observed = within_prompt_accuracy(Y, prediction, GROUPS)
    assert observed == pytest.approx(2 / 4)
    exact = [
        within_prompt_accuracy(_arrangement(pb, pa), prediction, GROUPS)
        for pb in permutations([1.0, 2.0, 3.0])
        for pa in permutations([10.0, 20.0])
    ]
    exact_p = np.mean(np.array(exact) >= observed - 1e-12)
    n = 4000
    null = [within_prompt_accuracy(t, prediction, GROUPS) for t in within_group_permutations(Y, GROUPS, n, seed=5)]
    result = null_test("within_acc", observed, np.array(null))
    assert result.p_value == pytest.approx(exact_p, abs=4 * np.sqrt(exact_p * (1 - exact_p) / n))
    assert result.null_mean == pytest.approx(np.mean(exact), abs=0.02)
    assert 0.2 < exact_p < 0.95  # neither trivial end


def test_null_test_by_hand():
    result = null_test("pearson", 0.5, np.array([0.1, 0.5, 0.7, 0.2, np.nan]))
    assert result.p_value == pytest.approx(3 / 5)  # (1 + two null values >= 0.5) / (1 + 4 finite)
    assert result.n_permutations == 4 and result.null_mean == pytest.approx(0.375)
    assert (result.null_low, result.null_high) == (
        pytest.approx(np.quantile([0.1, 0.5, 0.7, 0.2], 0.025)),
        pytest.approx(np.quantile([0.1, 0.5, 0.7, 0.2], 0.975)),
    )
    assert null_test("pearson", 0.9, np.arange(99) / 100).p_value == pytest.approx(10 / 100)  # 0.90 ... 0.98
    assert null_test("pearson", 0.985, np.arange(99) / 100).p_value == pytest.approx(1 / 100)
    assert null_test("pearson", 0.5, np.array([np.nan])).p_value is None


def _paired_case(seed):
    rng = np.random.default_rng(seed)
    groups = np.repeat(["p3", "p1", "p4", "p0", "p2", "p5"], 3)
    y = rng.normal(size=18)
    return y, y + 0.8 * rng.normal(size=18), y + 1.2 * rng.normal(size=18), groups


def _corr(y, p):
    return np.corrcoef(y, p)[0, 1]


@pytest.mark.parametrize("metric", ["within_acc", "pearson"])
def test_paired_permutation_p_value_matches_the_enumeration_of_every_prompt_swap(metric):
    """Six prompts: 2^6 = 64 ways to swap the two predictors' predictions prompt by prompt. The exact two-sided
    p-value is the share of swaps whose |difference| is at least the observed one; the code's Monte Carlo p-value
    (1 + hits) / (1 + n) agrees within its error."""
    y, p_a, p_b, groups = _paired_case(seed=11 if metric == "pearson" else 12)
    if metric == "pearson":  # predictions on one scale before they are exchanged, as documented
        p_a, p_b = (p_a - p_a.mean()) / p_a.std(), (p_b - p_b.mean()) / p_b.std()

        def statistic(a, b):
            return _corr(y, a) - _corr(y, b)
    else:

        def statistic(a, b):
            return within_prompt_accuracy(y, a, groups) - within_prompt_accuracy(y, b, groups)

    observed = statistic(p_a, p_b)
    names = np.unique(groups)
    null = []
    for swap in product([False, True], repeat=len(names)):
        rows = np.isin(groups, names[list(swap)])
        null.append(statistic(np.where(rows, p_b, p_a), np.where(rows, p_a, p_b)))
    exact = np.mean(np.abs(null) >= abs(observed) - 1e-12)
    assert 0.02 < exact < 0.9, exact
    n = 20000
    p_value = permutation_p_value(y, p_a, p_b, groups, metric, n_permutations=n, seed=0)
    assert p_value == pytest.approx(exact, abs=4 * np.sqrt(exact * (1 - exact) / n) + 1 / n)


def test_paired_bootstrap_difference_uses_the_same_prompt_resamples_for_both_predictors():
    from latent_reward.evaluation.metrics import Resampler
    from latent_reward.evaluation.paired import paired_differences

    rng = np.random.default_rng(13)
    groups = np.repeat(np.arange(25).astype(str), 4)
    y = rng.normal(size=100)
    a, b = y + 0.5 * rng.normal(size=100), y + rng.normal(size=100)
    resampler = Resampler.make(groups, 300, seed=2)
    found = paired_differences(y, a, b, resampler, n_permutations=50)
    for metric in ("pearson", "within_acc"):
        point = (
            _corr(y, a) - _corr(y, b)
            if metric == "pearson"
            else within_prompt_accuracy(y, a, groups) - within_prompt_accuracy(y, b, groups)
        )
        assert found[metric].difference.value == pytest.approx(point)
        # each resample: the metric of a minus the metric of b on the very same materialized rows
        differences = []
        for weights in resampler.group_weights:
            rows = np.concatenate(
                [
                    np.flatnonzero(groups == name)
                    for name, count in zip(np.unique(groups), weights)
                    for _ in range(int(count))
                ]
            )
            labels = np.concatenate([np.full(4, copy) for copy in range(int(weights.sum()))])
            if metric == "pearson":
                differences.append(_corr(y[rows], a[rows]) - _corr(y[rows], b[rows]))
            else:
                differences.append(
                    within_prompt_accuracy(y[rows], a[rows], labels) - within_prompt_accuracy(y[rows], b[rows], labels)
                )
        low, high = np.quantile(differences, [0.025, 0.975])
        assert found[metric].difference.low == pytest.approx(low) and found[metric].difference.high == pytest.approx(
            high
        )
