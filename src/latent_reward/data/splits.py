"""Deterministic splits by group (prompt): train / validation / test, inner splits, and folds.

A group's assignment depends only on the seed and the set of groups (a seeded hash orders them),
never on row order. Where the data names its own split (a `split` column, or the Hub split it was
read from), the held-out split's prompts are the test prompts and never train a probe.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from latent_reward.data.schema import Example

SPLIT_NAMES = ("train", "val", "test")
# Split names that mark rows a dataset holds out (and a model trained on its train split never saw).
HELD_OUT_SPLITS = frozenset(
    {
        "test",
        "eval",
        "evaluation",
        "validation",
        "valid",
        "dev",
        "test_prefs",
        "test_sft",
        "test_gen",
        "heldout",
        "held_out",
    }
)


def hash_order(groups: Sequence[str] | np.ndarray, seed: int) -> list[str]:
    """The distinct groups in a seeded pseudo-random order that depends only on the seed and the set of groups."""
    return sorted(set(groups), key=lambda g: hashlib.sha256(f"{seed}:{g}".encode()).hexdigest())


def held_out_prompts(examples: Sequence[Example], excluded: set[str], count: int, seed: int) -> list[Example]:
    """`count` prompts outside `excluded`, a seeded choice (`hash_order`), each as its last example in `examples`."""
    by_group = {e.group: e for e in examples if e.group not in excluded}
    return [by_group[g] for g in hash_order(list(by_group), seed)[:count]]


def split_groups(
    groups: Sequence[str] | np.ndarray, seed: int = 0, fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)
) -> dict[str, str]:
    """Assign each distinct group to a split, cutting the seeded hash order at the given fractions."""
    unique = hash_order(groups, seed)
    n = len(unique)
    n_train = int(round(fractions[0] * n))
    n_val = int(round(fractions[1] * n)) if fractions[2] > 0 else n - n_train
    if n >= 3 and fractions[2] > 0:  # keep every split non-empty when there are enough groups
        n_train = min(max(n_train, 1), n - 2)
        n_val = min(max(n_val, 1), n - n_train - 1)
    return {
        group: "train" if rank < n_train else "val" if rank < n_train + n_val else "test"
        for rank, group in enumerate(unique)
    }


def split_masks(
    groups: Sequence[str] | np.ndarray, seed: int = 0, fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)
) -> dict[str, np.ndarray]:
    """Boolean masks over rows for each split name: bool [n_rows] each."""
    assignment = split_groups(groups, seed, fractions)
    labels = np.array([assignment[g] for g in groups])
    return {name: labels == name for name in SPLIT_NAMES}


def inner_split(groups: Sequence[str] | np.ndarray, fraction: float, seed: int = 0) -> np.ndarray:
    """Rows of about `fraction` of the groups (at least one group when there are two or more): a held-out
    part of a training set, for early stopping. A bool mask [n_rows]."""
    unique = hash_order(groups, seed + 7919)
    n_held = max(1, int(round(fraction * len(unique)))) if len(unique) >= 2 else 0
    held = set(unique[len(unique) - n_held :])
    return np.array([g in held for g in groups], dtype=bool)


def group_folds(groups: Sequence[str] | np.ndarray, n_folds: int, seed: int = 0) -> np.ndarray:
    """Fold number (0..n_folds-1) of each row, int64 [n_rows]; groups in seeded hash order are dealt to folds in
    turn."""
    fold_of = {group: rank % n_folds for rank, group in enumerate(hash_order(groups, seed + 104729))}
    return np.array([fold_of[g] for g in groups], dtype=np.int64)


@dataclass(frozen=True)
class SplitPlan:
    """Train / validation / test row masks and how they were made."""

    masks: dict[str, np.ndarray]
    how: str  # one sentence for the report

    def groups_of(self, name: str, groups: np.ndarray) -> set[str]:
        """The set of groups with rows in split `name` (`groups` has one entry per row)."""
        return set(np.asarray(groups)[self.masks[name]])


def plan_splits(groups: np.ndarray, source_splits: Sequence[str | None], seed: int = 0) -> SplitPlan:
    """The data's own held-out split as test when it names one (the rest split 75/25 into train and
    validation by prompt); otherwise a seeded 60/20/20 split by prompt."""
    groups = np.asarray(groups)
    held_rows = np.array([str(s).lower() in HELD_OUT_SPLITS if s else False for s in source_splits], dtype=bool)
    held_groups = set(groups[held_rows])
    if held_groups and len(held_groups) < len(set(groups)):
        test = np.isin(groups, list(held_groups))
        rest = split_groups(groups[~test], seed, (0.75, 0.25, 0.0))
        labels = np.array(["test" if t else rest[g] for g, t in zip(groups, test)])
        named = sorted({str(s) for s, h in zip(source_splits, held_rows) if h})
        how = (
            f"the data's own split: test = the {len(held_groups)} prompts of its held-out split ({', '.join(named)}); "
            "the other prompts split 75/25 into train and validation"
        )
        return SplitPlan({name: labels == name for name in SPLIT_NAMES}, how)
    return SplitPlan(split_masks(groups, seed), "a seeded 60/20/20 split by prompt")
