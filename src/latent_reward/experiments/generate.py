"""Generate with the model while a probe reads its expected reward at every new token."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from latent_reward.models.architecture import cache_kwarg, output_cache, residual_hook, stop_token_ids
from latent_reward.models.chat import prompt_token_ids
from latent_reward.models.loading import LoadedModel
from latent_reward.probes import Probe


@dataclass
class Generation:
    before: float  # the probe's estimate at the last prompt token, before the reply
    ids: list[int] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)
    estimates: list[float] = field(default_factory=list)


@torch.inference_mode()
def generate_with_estimates(loaded: LoadedModel, probe: Probe, messages: list[dict[str, str]], max_new_tokens: int = 200,
                            temperature: float = 0.0, seed: int = 0,
                            on_token: Callable[[str, float], None] | None = None) -> Generation:
    """The reply's tokens, the probe's estimate at each, and its estimate before the first token.

    The estimate for a token is read from the residual state at that token (index `probe.info["layer"]`),
    so it is the probe's reading "if the response ended here".
    """
    captured: list[torch.Tensor] = []
    handle = residual_hook(loaded.model, int(probe.info["layer"]), lambda hidden: captured.append(hidden[0, -1]))
    generator = torch.Generator().manual_seed(seed)
    stop = stop_token_ids(loaded.model, loaded.tokenizer)
    device = next(loaded.model.parameters()).device
    ids = torch.tensor([prompt_token_ids(loaded.tokenizer, messages)])
    try:
        out = loaded.model(input_ids=ids.to(device), use_cache=True)
        result = Generation(before=float(probe.predict(captured[-1].float().cpu().numpy()[None])[0]))
        for _ in range(max_new_tokens):
            logits = out.logits[0, -1].float()
            if temperature > 0:
                next_id = int(torch.multinomial(torch.softmax(logits / temperature, -1).cpu(), 1, generator=generator))
            else:
                next_id = int(logits.argmax())
            if next_id in stop:
                break
            out = loaded.model(input_ids=torch.tensor([[next_id]], device=device), use_cache=True,
                               **{cache_kwarg(loaded.model): output_cache(out)})
            text = loaded.tokenizer.decode([next_id])
            estimate = float(probe.predict(captured[-1].float().cpu().numpy()[None])[0])
            result.ids.append(next_id)
            result.tokens.append(text)
            result.estimates.append(estimate)
            if on_token is not None:
                on_token(text, estimate)
    finally:
        handle.remove()
    return result
