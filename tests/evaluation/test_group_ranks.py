"""Within-prompt ranks for every prompt at once, against scipy's rankdata prompt by prompt."""

import numpy as np
from scipy import stats

from latent_reward.evaluation.metrics import group_ranks, group_spearman


def test_group_ranks_equal_scipy_rankdata_per_group_with_ties():
    rng = np.random.default_rng(0)
    index = rng.integers(0, 30, 400)
    values = rng.integers(0, 5, 400).astype(float)  # many ties
    ranks = group_ranks(values, index)
    for g in range(30):
        rows = index == g
        np.testing.assert_array_equal(ranks[rows], stats.rankdata(values[rows]))


def test_a_missing_value_leaves_its_prompt_rho_undefined():
    groups = np.repeat(["a", "b"], 4)
    y = np.array([1.0, 2, 3, 4, 1, 2, 3, 4])
    p = np.array([1.0, 2, 4, 3, 1, np.nan, 3, 4])
    values = group_spearman(y, p, groups)
    assert abs(values[0] - stats.spearmanr(y[:4], p[:4]).statistic) < 1e-12 and np.isnan(values[1])
