"""Per-prompt means against a by-hand loop, for each layout of the rows: groups in sorted order, in contiguous runs
whose names are not sorted (summed in place), and interleaved (summed over a sorted copy)."""

import numpy as np
import pytest

from latent_reward.evaluation.groups import broadcast_group_means, center_within_groups, group_means

_NAMES = np.array(["c", "a", "b", "d"])
_LAYOUTS = {
    "sorted": np.repeat(np.sort(_NAMES), [3, 1, 2, 4]),
    "runs": np.repeat(_NAMES, [3, 1, 2, 4]),
    "interleaved": np.array(["c", "a", "c", "b", "d", "c", "b", "d", "d", "d"]),
}


@pytest.mark.parametrize("layout", list(_LAYOUTS))
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_group_means_equal_a_loop_over_the_groups_for_every_row_layout(layout, dtype):
    groups = _LAYOUTS[layout]
    x = np.random.default_rng(0).normal(size=(len(groups), 2, 3)).astype(dtype)
    names, means = group_means(x, groups)
    assert list(names) == sorted(_NAMES) and means.dtype == np.float64
    by_hand = np.stack([x[groups == name].astype(np.float64).mean(axis=0) for name in names])
    np.testing.assert_allclose(means, by_hand, rtol=1e-12, atol=1e-15)
    broadcast = broadcast_group_means(x, groups)
    np.testing.assert_allclose(broadcast, by_hand[np.searchsorted(names, groups)], rtol=1e-12, atol=1e-15)
    centered = center_within_groups(x, groups)
    assert centered.dtype == np.float64
    np.testing.assert_allclose(centered, x.astype(np.float64) - broadcast, rtol=1e-12, atol=1e-15)


def test_a_one_dimensional_array_and_no_rows():
    groups = _LAYOUTS["runs"]
    y = np.arange(len(groups), dtype=np.float64)
    _, means = group_means(y, groups)
    assert means.tolist() == [3.0, 4.5, 1.0, 7.5]  # a: row 3; b: rows 4-5; c: rows 0-2; d: rows 6-9
    names, empty = group_means(np.zeros((0, 2)), np.array([], dtype=str))
    assert len(names) == 0 and empty.shape == (0, 2)
