"""A saved probe with the model it reads: its estimate on conversations the model reads now (not from a store).

Every caller that reads a probe on new conversations goes through `ProbeReader`: replies an experiment generated
(steer's scorers, conversation's quality control), completions in online training (a probe as the reward), and the
expected reward of a conversation that ends in a user turn (conversation's V).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from latent_reward.activations.continued import continued_last_states, split_at_history
from latent_reward.activations.tokens import last_token_states, position_states
from latent_reward.config import ModelSpec
from latent_reward.data.schema import Message
from latent_reward.errors import UserError
from latent_reward.generation.batched import PromptCache
from latent_reward.models.chat import prompt_token_ids
from latent_reward.models.loading import LoadedModel
from latent_reward.probes.base import Probe


def probe_model(
    probe: Probe, model: str | None = None, device: str = "auto", device_map: str | None = None
) -> LoadedModel:
    """The model a saved probe reads (or `model`), in the dtype and chat format it was trained with, on `device`
    (or spread by `device_map`)."""
    name = model or probe.info.model
    if not name:
        raise UserError("the probe does not record its model; pass --model")
    spec = ModelSpec(
        name=name,
        dtype=probe.info.model_dtype or "float32",
        device=device,
        device_map=device_map,
        fallback_template=probe.info.chat_template == "fallback",
    )
    loaded = spec.load()
    if probe.standardizer is not None and len(probe.standardizer.mean) != loaded.info.d_model:
        raise UserError(
            f"the probe reads {len(probe.standardizer.mean)}-dimensional states but {name} has "
            f"{loaded.info.d_model}; it was trained on another model"
        )
    return loaded


@dataclass(frozen=True)
class ProbeReader:
    """A probe and the (unsteered) model whose states it reads."""

    probe: Probe
    model: LoadedModel

    @classmethod
    def load(
        cls, probe: Probe, model: str | None = None, device: str = "auto", device_map: str | None = None
    ) -> ProbeReader:
        """The probe with the model it was trained on (or `model`), loaded as `probe_model` does."""
        return cls(probe, probe_model(probe, model, device, device_map))

    def read(self, conversations: list[list[Message]]) -> np.ndarray:
        """[n]: the probe's estimate for each conversation (ending in the turn it rates), read at its position and layer
        within its token budget."""
        if not conversations:
            return np.zeros(0)
        info = self.probe.info
        return self.probe.predict(position_states(self.model, conversations, *info.cell(), info.max_tokens))

    def read_prompts(self, conversations: list[list[Message]], cache: PromptCache | None = None) -> np.ndarray:
        """[n]: the probe's estimate at the start of the assistant's turn after each conversation (ending in a user
        turn): the last token of its rendering with the generation prompt, at the probe's layer. Conversations that
        share their history (several user turns after one reply) run it once; with a `cache` every history is kept
        there (for other reads after the same histories)."""
        if not conversations:
            return np.zeros(0)
        ids = [prompt_token_ids(self.model.tokenizer, c) for c in conversations]
        layer = self.probe.info.cell()[1]
        split = split_at_history(self.model.tokenizer, conversations, ids, repeated_only=cache is None)
        if split is None:
            return self.probe.predict(last_token_states(self.model, ids, layer))
        return self.probe.predict(continued_last_states(self.model, *split, layer, cache=cache))
