"""Control tasks: ratings shuffled within each prompt (Hewitt & Liang's selectivity, by prompt), or across all.

Within-prompt shuffles keep every prompt's mean rating but break the link between a response and its
own rating, so a probe's within-prompt accuracy on them sits at chance (0.5); global shuffles break
every link (r at 0). Many permutations give a null distribution and a p-value.
"""

from __future__ import annotations

import numpy as np

from latent_reward.evaluation.groups import group_index


def shuffle_within_groups(y: np.ndarray, groups: np.ndarray, seed: int = 0) -> np.ndarray:
    """A copy of y, float64 [n], with values permuted among the rows of each group."""
    return within_group_permutations(y, groups, 1, seed)[0]


def within_group_permutations(y: np.ndarray, groups: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """[n, rows]: n independent within-group permutations of y."""
    y = np.asarray(y, dtype=np.float64)
    _, index = group_index(groups)
    rng = np.random.default_rng(seed)
    by_group = np.argsort(index, kind="stable")  # rows in group order
    out = np.empty((n, len(y)))
    for k in range(n):
        shuffled = np.lexsort((rng.random(len(y)), index))  # rows in group order, random within each group
        out[k, by_group] = y[shuffled]
    return out


def shuffle_all(y: np.ndarray, seed: int = 0) -> np.ndarray:
    """A global permutation of y, float64 [n]: no link between states and ratings at any level."""
    return np.random.default_rng(seed).permutation(np.asarray(y, dtype=np.float64))


def global_permutations(y: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """[n, rows]: n independent permutations of y across all rows."""
    rng = np.random.default_rng(seed)
    y = np.asarray(y, dtype=np.float64)
    return np.stack([rng.permutation(y) for _ in range(n)])
