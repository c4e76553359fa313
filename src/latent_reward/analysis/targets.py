"""What a probe predicts, and the states it reads, for the rows that have that target.

Targets: `rating`, any aspect the data has, or `rating-within-prompt`: each rating minus its
prompt's mean, for prompts with two or more responses. The within-prompt target asks only whether
the states rank responses to the same prompt; its states are centered within each prompt too, so
prompt-level variation cannot teach the probe anything.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from latent_reward.activations.store import ActivationStore
from latent_reward.analysis.sketch import SketchedStore
from latent_reward.errors import UserError
from latent_reward.evaluation.groups import broadcast_group_means, center_within_groups, group_sizes
from latent_reward.positions import PROMPT_POSITIONS

WITHIN_PROMPT = "rating-within-prompt"


@dataclass
class Target:
    name: str
    y: np.ndarray  # [n_kept] the values to predict
    groups: np.ndarray  # [n_kept] prompt ids
    keep: np.ndarray  # bool [n_store_rows]: rows that have the target
    within: bool = False  # values (and states) centered on each prompt's mean

    @property
    def rows(self) -> np.ndarray:
        """Store row index of each kept row."""
        return np.flatnonzero(self.keep)

    def positions(
        self, store: ActivationStore | SketchedStore, wanted: tuple[str, ...] | None = None
    ) -> tuple[str, ...]:
        """The store's positions this target can use (prompt positions carry no within-prompt information)."""
        positions = tuple(wanted or store.positions)
        missing = [p for p in positions if p not in store.positions]
        if missing:
            raise UserError(f"the store has no position {missing[0]!r}; it has {', '.join(store.positions)}")
        if self.within:
            positions = tuple(p for p in positions if p not in PROMPT_POSITIONS)
            if not positions:
                raise UserError(f"target {WITHIN_PROMPT} needs a response position (response_last, eot, response_mean)")
        return positions

    def states(
        self, store: ActivationStore | SketchedStore, position: str, layers: list[int] | None = None
    ) -> np.ndarray:
        """float32 [n_kept, n_layers, d] at `position` for the kept rows (on a sketched store: the sketch of those
        states).

        States before the response are a function of the prompt alone; copies computed in different
        batches differ by float rounding, which must not pose as within-prompt signal, so each
        prompt's rows get their mean. For the within-prompt target every row is centered on its prompt.
        """
        if isinstance(store, SketchedStore):
            key = ("target", self.name, self.within, hash(self.keep.tobytes()))
            return store.sketch(key, position, layers, lambda chunk: self.states(store.full, position, chunk))
        x = store.array(position, layers)[self.keep]
        if position in PROMPT_POSITIONS:
            x = broadcast_group_means(x, self.groups)
        if self.within:
            x = center_within_groups(x, self.groups)
        return np.asarray(x, dtype=np.float32)


def make_target(store: ActivationStore | SketchedStore, name: str) -> Target:
    groups = store.groups
    if name in ("rating", WITHIN_PROMPT):
        values = store.ratings
    else:
        aspects = store.aspects
        if name not in aspects:
            raise UserError(
                f"unknown target {name!r}; the data has rating, {WITHIN_PROMPT}{''.join(', ' + a for a in aspects)}"
            )
        values = aspects[name]
    keep = np.isfinite(values)
    target = Target(name, values[keep], groups[keep], keep)
    return within_prompt(target) if name == WITHIN_PROMPT else target


def within_prompt(target: Target) -> Target:
    """The target centered on each prompt's mean, on the prompts with two or more values (a subset of its rows, in
    order)."""
    multi = group_sizes(target.groups) >= 2
    if not multi.any():
        raise UserError(f"target {WITHIN_PROMPT} needs prompts with two or more rated responses")
    keep = np.zeros_like(target.keep)
    keep[target.rows[multi]] = True
    name = WITHIN_PROMPT if target.name == "rating" else f"{target.name} (within prompt)"
    return Target(
        name, center_within_groups(target.y[multi], target.groups[multi]), target.groups[multi], keep, within=True
    )
