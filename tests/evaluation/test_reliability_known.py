"""Known answers for evaluation/reliability.py: Shrout & Fleiss's table by a hand ANOVA, simulations with a known ICC,
and the prompt-only result carrying the two-way ICC where the rows have a role."""

import numpy as np
import pytest

from latent_reward.evaluation.metrics import icc1
from latent_reward.evaluation.reliability import ONE_WAY, fixed_factor, icc, reliability, spearman_brown

# Shrout & Fleiss (1979), Table 2: 6 targets (rows) rated by 4 judges (columns). Their published values:
# ICC(1,1) = 0.17, ICC(3,1) = 0.71, ICC(3,4) = 0.91.
SHROUT_FLEISS = np.array(
    [[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]], dtype=float
)


def _long(table):
    rows, columns = table.shape
    judges = np.array([f"j{c}" for c in range(columns)])
    return table.ravel(), np.repeat(np.arange(rows), columns), np.tile(judges, rows)


def test_the_two_way_consistency_icc_is_shrout_and_fleiss_icc_3_1_by_a_hand_anova():
    y, groups, judges = _long(SHROUT_FLEISS)
    n, k = SHROUT_FLEISS.shape
    grand = SHROUT_FLEISS.mean()
    ss_rows = k * np.sum((SHROUT_FLEISS.mean(1) - grand) ** 2)
    ss_columns = n * np.sum((SHROUT_FLEISS.mean(0) - grand) ** 2)
    ss_error = np.sum((SHROUT_FLEISS - grand) ** 2) - ss_rows - ss_columns
    msr, mse = ss_rows / (n - 1), ss_error / ((n - 1) * (k - 1))
    msw = (np.sum((SHROUT_FLEISS - grand) ** 2) - ss_rows) / (n * (k - 1))
    assert icc(y, groups, judges) == pytest.approx((msr - mse) / (msr + (k - 1) * mse), abs=1e-12)
    assert icc(y, groups, judges) == pytest.approx(0.715, abs=0.001)
    assert icc(y, groups) == pytest.approx((msr - msw) / (msr + (k - 1) * msw), abs=1e-12)
    assert icc(y, groups) == pytest.approx(icc1(y, groups))
    assert icc(y, groups) == pytest.approx(0.166, abs=0.001)
    assert spearman_brown(icc(y, groups, judges), k) == pytest.approx(0.909, abs=0.001)  # their ICC(3,4)
    result = reliability(y, groups, judges, "judge", n_boot=200)
    assert result.factor == "judge" and result.responses_per_prompt == 4
    assert result.mean_reliability.value == pytest.approx(0.909, abs=0.001)
    assert result.r_ceiling.value == pytest.approx(np.sqrt(result.mean_reliability.value))


def _chosen_rejected(seed, n_prompts=400, gap=2.0):
    """rating = prompt effect (variance 1) + gap if chosen + error (variance 1): ICC(C,1) = 0.5."""
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(n_prompts), 2)
    role = np.tile(np.array(["chosen", "rejected"]), n_prompts)
    y = rng.normal(size=n_prompts)[groups] + gap * (role == "chosen") + rng.normal(size=len(groups))
    return y, groups, role


def test_with_a_role_the_two_way_icc_recovers_a_known_icc_that_the_one_way_icc_misses():
    """The chosen-rejected gap is systematic, but the one-way ICC counts it as within-prompt noise: its within mean
    square is 1 + gap^2 / 2 = 3, as large as the between mean square 2 * 1 + 1 = 3, so ICC(1) is about 0. The two-way
    ICC with the role fixed recovers 0.5, and the prompt mean of the two ratings has reliability 2/3, ceiling 0.816."""
    two_way = [icc(*_chosen_rejected(seed)) for seed in range(40)]
    one_way = [icc(*_chosen_rejected(seed)[:2]) for seed in range(40)]
    assert np.mean(two_way) == pytest.approx(0.5, abs=0.02)
    assert abs(np.mean(one_way)) < 0.05
    y, groups, role = _chosen_rejected(0, n_prompts=4000)
    result = reliability(y, groups, role, "role", n_boot=100)
    assert result.mean_reliability.value == pytest.approx(2 / 3, abs=0.03)
    assert result.r_ceiling.value == pytest.approx(np.sqrt(2 / 3), abs=0.02)
    assert result.icc.low < result.icc.value < result.icc.high


def test_with_generators_on_an_incomplete_unbalanced_table_the_icc_is_still_recovered():
    """Each prompt answered by 2 to 5 of 10 generators with very different means: ICC(C,1) = 1 / (1 + 1) = 0.5."""
    rng = np.random.default_rng(0)
    estimates, one_way = [], []
    for _ in range(30):
        rows = np.array([(g, m) for g in range(300) for m in rng.choice(10, rng.integers(2, 6), replace=False)])
        y = rng.normal(size=300)[rows[:, 0]] + np.linspace(-3, 3, 10)[rows[:, 1]] + rng.normal(size=len(rows))
        estimates.append(icc(y, rows[:, 0], rows[:, 1]))
        one_way.append(icc1(y, rows[:, 0]))
    assert np.mean(estimates) == pytest.approx(0.5, abs=0.02)
    assert np.mean(one_way) < 0.2


def test_the_factor_is_the_role_first_then_the_generator_else_none():
    sides = [{"side": "chosen", "generator": "a"}, {"side": "rejected", "generator": "b"}]
    assert fixed_factor(sides)[0] == "role" and list(fixed_factor(sides)[1]) == ["chosen", "rejected"]
    assert fixed_factor([{"generator": "a"}, {"generator": "b"}])[0] == "generator"
    assert fixed_factor([{"generator": "a"}, {"generator": None}]) == (None, None)  # a row without one: none
    assert fixed_factor([{"generator": "a"}, {"generator": "a"}]) == (None, None)  # one level: nothing to fix
    one_way = reliability(*_chosen_rejected(1)[:2], n_boot=50)
    assert one_way.model == ONE_WAY and one_way.factor is None
