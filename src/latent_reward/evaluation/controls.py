"""Control tasks: ratings shuffled within each prompt (Hewitt & Liang's selectivity, by prompt)."""

from __future__ import annotations

import numpy as np


def shuffle_within_groups(y: np.ndarray, groups: np.ndarray, seed: int = 0) -> np.ndarray:
    """A copy of y with values permuted among the rows of each group.

    Prompt-level means survive; any link between a response and its own rating does not, so a
    probe's within-prompt accuracy on this control should sit at chance (0.5).
    """
    rng = np.random.default_rng(seed)
    shuffled = np.array(y, dtype=np.float64, copy=True)
    for group in np.unique(groups):
        rows = np.flatnonzero(groups == group)
        shuffled[rows] = shuffled[rng.permutation(rows)]
    return shuffled


def shuffle_all(y: np.ndarray, seed: int = 0) -> np.ndarray:
    """A global permutation: no link between states and ratings at any level."""
    return np.random.default_rng(seed).permutation(np.asarray(y, dtype=np.float64))
