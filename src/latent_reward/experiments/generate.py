"""Generate with the model while a probe reads its expected reward at every new token."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from latent_reward.generation import GenerationConfig, generate_chat
from latent_reward.models.loading import LoadedModel
from latent_reward.probes import Probe


@dataclass
class Generation:
    before: float  # the probe's estimate at the last prompt token, before the reply
    ids: list[int] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)
    estimates: list[float] = field(default_factory=list)


def generate_with_estimates(
    loaded: LoadedModel,
    probe: Probe,
    messages: list[dict[str, str]],
    max_new_tokens: int = 200,
    temperature: float = 0.0,
    seed: int = 0,
    on_token: Callable[[str, float], None] | None = None,
) -> Generation:
    """The reply's tokens, the probe's estimate at each, and its estimate before the first token.

    The estimate for a token is read from the residual state at that token (index `probe.info.layer`),
    so it is the probe's reading "if the response ended here".
    """
    decode = loaded.tokenizer.decode

    def stream(index: int, token: int, state: np.ndarray | None) -> None:
        if on_token is not None:
            if state is None:
                raise RuntimeError("generation streamed a token without its state at the probe's layer")
            on_token(decode([token]), float(probe.predict(state[None])[0]))

    config = GenerationConfig(max_new_tokens=max_new_tokens, temperature=temperature, seed=seed, batch_size=1)
    reply = generate_chat(loaded, [messages], config, read_layer=probe.info.cell()[1], on_token=stream)[0]
    if reply.states is None:
        raise RuntimeError("generation returned no states at the probe's layer")
    estimates = probe.predict(reply.states)
    return Generation(
        before=float(estimates[0]),
        ids=reply.ids,
        tokens=[decode([t]) for t in reply.ids],
        estimates=[float(v) for v in estimates[1:]],
    )
