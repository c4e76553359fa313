"""Per-prompt (group) arithmetic shared by metrics, probes and experiments."""

from __future__ import annotations

import numpy as np


def group_index(groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sorted unique group names [n_groups], each row's index into them [n])."""
    names, index = np.unique(np.asarray(groups), return_inverse=True)
    return names, index


def group_means(x: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean of x's rows per group: (sorted unique groups, means [n_groups, ...]) as float64.

    Works on [n] and [n, ...] arrays; sums in float64 through np.add.reduceat without a float64 copy of x, over the
    rows in place when each group's rows are contiguous (as a store's usually are), else over a copy sorted by group.
    """
    names, index = group_index(groups)
    x = np.asarray(x)
    runs = np.flatnonzero(np.r_[True, index[1:] != index[:-1]]) if len(index) else np.zeros(0, dtype=np.int64)
    if len(runs) == len(names):  # one run of rows per group
        sums = np.empty((len(names),) + x.shape[1:])
        sums[index[runs]] = np.add.reduceat(x, runs, axis=0, dtype=np.float64)
    else:
        order = np.argsort(index, kind="stable")
        starts = np.searchsorted(index[order], np.arange(len(names)))
        sums = np.add.reduceat(x[order], starts, axis=0, dtype=np.float64)
    return names, sums / np.bincount(index)[(slice(None),) + (None,) * (x.ndim - 1)]


def broadcast_group_means(x: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Each row replaced by its group's mean (same shape as x, float64)."""
    names, means = group_means(x, groups)
    return means[np.searchsorted(names, groups)]


def center_within_groups(x: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Each row minus its group's mean, float64: what is left is within-prompt variation only."""
    return np.asarray(x, dtype=np.float64) - broadcast_group_means(x, groups)


def group_sizes(groups: np.ndarray) -> np.ndarray:
    """Each row's group size, int [n]."""
    _, index = group_index(groups)
    return np.bincount(index)[index]
