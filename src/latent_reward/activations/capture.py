"""Residual states of a few conversations, in memory (TransformerLens' `run_with_cache` habit): `capture` runs the
extraction's own forward (activations/forward.py) and returns arrays instead of writing a store; `Capture.to_store`
turns them into an ActivationStore for the sweep, the readout and prompt-only."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from latent_reward.activations.store import ActivationStore
from latent_reward.activations.tokens import read_positions
from latent_reward.data.schema import Example, Message
from latent_reward.errors import UserError
from latent_reward.models.loading import LoadedModel
from latent_reward.positions import POSITIONS, parse_layers, parse_positions


@dataclass
class Capture:
    """What `capture` read: `states[position]` float32 [n, len(layers), d_model], rows in input order."""

    states: dict[str, np.ndarray]
    layers: list[int]  # residual indices of the columns (0 = embeddings)
    n_layers: int  # the model's number of blocks
    model: str
    examples: list[Example] | None = None  # when rated examples were given

    def __getitem__(self, position: str) -> np.ndarray:
        return self.states[position]

    def to_store(self, folder: str | Path | None = None) -> ActivationStore:
        """An ActivationStore of these states and the examples' ratings and groups (in memory unless `folder`)."""
        if self.examples is None:
            raise UserError("a store needs rated examples: capture Examples, not bare conversations")
        return ActivationStore.from_arrays(
            self.states,
            examples=self.examples,
            layers=self.layers,
            n_layers=self.n_layers,
            model=self.model,
            folder=folder,
        )


def capture(
    loaded: LoadedModel,
    conversations: Sequence[Example] | Sequence[list[Message]],
    positions: Sequence[str] | str = POSITIONS,
    layers: Sequence[int] | str | None = None,
    max_tokens: int | None = None,
    batch_tokens: int = 1024,
) -> Capture:
    """The residual states of `conversations` (Examples, or message lists ending in the assistant's reply) at the named
    `positions` and residual indices `layers` (default all, 0..n_layers), computed as extraction computes them but
    kept in memory: for small jobs (everything is held as float32)."""
    if not conversations:
        raise UserError("capture needs at least one conversation")
    examples = [c for c in conversations if isinstance(c, Example)]
    messages = [list(c) for c in conversations if not isinstance(c, Example)]
    if examples and messages:
        raise UserError("capture takes Examples or message lists, not a mix of both")
    if examples:
        messages = [e.messages for e in examples]
    names = parse_positions(positions)
    if any(name not in POSITIONS for name in names):
        raise UserError(f"capture reads the positions {', '.join(POSITIONS)} (not every response token)")
    indices = parse_layers(layers if layers is not None else "all", loaded.info.n_layers)
    states = read_positions(loaded, messages, names, indices, max_tokens, batch_tokens)
    return Capture(states, list(indices), loaded.info.n_layers, loaded.info.name, examples or None)
