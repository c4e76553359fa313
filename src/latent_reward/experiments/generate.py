"""Generate with the model while a probe reads its expected reward at every new token."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from latent_reward.activations.forward import cache_kwarg, decoder_layers, output_cache
from latent_reward.models.loading import LoadedModel
from latent_reward.probes import Probe


def _stop_ids(loaded: LoadedModel) -> set[int]:
    ids = set()
    for source in (loaded.model.generation_config.eos_token_id, loaded.tokenizer.eos_token_id):
        if source is not None:
            ids |= set(source) if isinstance(source, (list, tuple)) else {int(source)}
    return ids


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
    layer = int(probe.info["layer"])
    captured: list[torch.Tensor] = []
    blocks = decoder_layers(loaded.model)
    if layer == 0:
        handle = blocks[0].register_forward_pre_hook(lambda m, args, kwargs: captured.append((args[0] if args else kwargs["hidden_states"])[0, -1]),
                                                     with_kwargs=True)
    else:
        handle = blocks[layer - 1].register_forward_hook(lambda m, a, out: captured.append((out[0] if isinstance(out, tuple) else out)[0, -1]))
    generator = torch.Generator().manual_seed(seed)
    stop = _stop_ids(loaded)
    device = next(loaded.model.parameters()).device
    ids = loaded.tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)["input_ids"]
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
