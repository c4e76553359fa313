"""Residual states at every response token on one layer, computed on demand (not stored).

Storing every token at every layer is gigabytes per thousand responses; the experiments that need
token-level states (trajectories, the reward lens) need one layer, known only after the sweep.
"""

from __future__ import annotations

import numpy as np

from latent_reward.activations.forward import ResidualReader
from latent_reward.activations.plan import make_units, prompt_chunks
from latent_reward.models.chat import RenderedExample, render_example
from latent_reward.models.loading import LoadedModel


def response_token_states(loaded: LoadedModel, messages: list[list[dict[str, str]]], layer: int, max_tokens: int | None = None,
                          batch_tokens: int = 1024) -> tuple[list[np.ndarray], list[RenderedExample]]:
    """float32 [n_response_tokens, d_model] per conversation at residual index `layer`, with the renderings."""
    rendered = [render_example(loaded.tokenizer, m, max_tokens) for m in messages]
    reader = ResidualReader(loaded.model, (), (), (layer,), False)
    states: list[np.ndarray | None] = [None] * len(rendered)
    try:
        for chunk in prompt_chunks(make_units(rendered), 2 * batch_tokens):
            result = reader.run(chunk, rendered, batch_tokens)
            for index, tokens in zip(result.example_index, result.token_states):
                states[index] = tokens[:, 0].numpy()
    finally:
        reader.close()
    return states, rendered
