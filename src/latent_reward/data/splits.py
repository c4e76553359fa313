"""Deterministic train / validation / test splits by group (prompt)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

SPLIT_NAMES = ("train", "val", "test")


def split_groups(groups: Sequence[str], seed: int = 0, fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)) -> dict[str, str]:
    """Assign each distinct group to a split.

    Groups are ordered by a seeded hash and cut at the given fractions, so the assignment of
    a group depends only on the seed and the set of groups, never on row order.
    """
    unique = sorted(set(groups), key=lambda g: hashlib.sha256(f"{seed}:{g}".encode()).hexdigest())
    n = len(unique)
    n_train = int(round(fractions[0] * n))
    n_val = int(round(fractions[1] * n))
    if n >= 3:  # keep every split non-empty when there are enough groups
        n_train = min(max(n_train, 1), n - 2)
        n_val = min(max(n_val, 1), n - n_train - 1)
    assignment = {}
    for rank, group in enumerate(unique):
        assignment[group] = "train" if rank < n_train else "val" if rank < n_train + n_val else "test"
    return assignment


def split_masks(groups: Sequence[str], seed: int = 0, fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)) -> dict[str, np.ndarray]:
    """Boolean masks over rows for each split name."""
    assignment = split_groups(groups, seed, fractions)
    labels = np.array([assignment[g] for g in groups])
    return {name: labels == name for name in SPLIT_NAMES}
