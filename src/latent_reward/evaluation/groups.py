"""Per-prompt (group) arithmetic shared by metrics, probes and experiments."""

from __future__ import annotations

import numpy as np


def group_index(groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sorted unique group names [n_groups], each row's index into them [n])."""
    names, index = np.unique(np.asarray(groups), return_inverse=True)
    return names, index


def group_means(x: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean of x's rows per group: (sorted unique groups, means [n_groups, ...]) as float64.

    Works on [n] and [n, ...] arrays; sums in float64 through np.add.reduceat on the rows sorted by group (rows already
    in group order, as a store's are, are summed in place: no copy of x in either dtype).
    """
    names, index = group_index(groups)
    x = np.asarray(x)
    order = np.argsort(index, kind="stable")
    starts = np.searchsorted(index[order], np.arange(len(names)))
    rows = x if np.array_equal(order, np.arange(len(order))) else x[order]
    sums = np.add.reduceat(rows, starts, axis=0, dtype=np.float64)
    return names, sums / np.bincount(index)[(slice(None),) + (None,) * (x.ndim - 1)]


def _result_dtype(x: np.ndarray) -> type[np.floating]:
    """float32 stays float32 (states: half the memory and time); anything else is computed in float64."""
    return np.float32 if x.dtype == np.float32 else np.float64


def broadcast_group_means(x: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Each row replaced by its group's mean (same shape as x; float32 for float32 x, else float64), summed in
    float64."""
    x = np.asarray(x)
    names, means = group_means(x, groups)
    return means.astype(_result_dtype(x), copy=False)[np.searchsorted(names, groups)]


def center_within_groups(x: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Each row minus its group's mean (float32 for float32 x, else float64): what is left is within-prompt variation
    only."""
    x = np.asarray(x)
    return x.astype(_result_dtype(x), copy=False) - broadcast_group_means(x, groups)


def group_sizes(groups: np.ndarray) -> np.ndarray:
    """Each row's group size, int [n]."""
    _, index = group_index(groups)
    return np.bincount(index)[index]
