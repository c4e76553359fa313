"""States at the last token of conversations that share their history: each history runs once (its KV cache kept in a
`PromptCache`) and only the tokens after it run per conversation. The conversation experiment reads the expected reward
after several user turns to the same (prompt, reply); a full pass per turn ran that history once per turn."""

from __future__ import annotations

import numpy as np
import torch

from latent_reward.activations.tokens import last_token_states
from latent_reward.data.schema import Message
from latent_reward.generation.batched import PromptCache
from latent_reward.models.architecture import cache_kwarg, residual_hook, without_cudnn_attention
from latent_reward.models.loading import LoadedModel

HISTORIES_PER_CACHE = 32  # histories whose KV caches are held at once (SmolLM2: ~14 MB per 300-token history)


def split_at_history(
    tokenizer, conversations: list[list[Message]], full: list[list[int]], repeated_only: bool = True
) -> tuple[list[list[int]], list[list[int]]] | None:
    """(history ids, ids after them): each conversation's history is all but its last message, tokenized on its own,
    when every full token list starts with its history's tokens and goes on past them; None where the split is not
    exact (a template that re-renders earlier turns, a token merged across the boundary) or, with `repeated_only`,
    where no history repeats (nothing to share)."""
    if any(len(c) < 2 for c in conversations):
        return None
    texts = [tokenizer.apply_chat_template(c[:-1], tokenize=False) for c in conversations]
    if repeated_only and len(set(texts)) == len(texts):
        return None
    known: dict[str, list[int]] = {}
    histories, tails = [], []
    for text, ids in zip(texts, full):
        if text not in known:
            known[text] = tokenizer(text, add_special_tokens=False)["input_ids"]
        before = known[text]
        if len(ids) <= len(before) or ids[: len(before)] != before:
            return None
        histories.append(before)
        tails.append(ids[len(before) :])
    return histories, tails


@torch.inference_mode()
def continued_last_states(
    loaded: LoadedModel,
    histories: list[list[int]],
    tails: list[list[int]],
    layer: int,
    batch_size: int = 8,
    cache: PromptCache | None = None,
) -> np.ndarray:
    """float32 [n, d_model]: the state at residual index `layer` at the last token of each history + tail, each
    distinct history run once (kept in `cache` when given, so that other reads after the same histories share it;
    else in caches of HISTORIES_PER_CACHE histories). Equals `last_token_states` on the joined lists up to float
    rounding; falls back to it for models whose cache keeps fewer positions than a history (sliding windows)."""
    order = sorted(range(len(histories)), key=lambda i: (histories[i], len(tails[i])))  # a history's tails together
    states = np.zeros((len(histories), loaded.info.d_model), dtype=np.float32)
    groups = [order] if cache is not None else _history_groups(order, histories)
    with without_cudnn_attention(next(loaded.model.parameters()).device):
        for group in groups:
            held = cache if cache is not None else PromptCache(loaded.model)
            if not held.holds([histories[i] for i in group]):
                states[group] = last_token_states(loaded, [histories[i] + tails[i] for i in group], layer)
                continue
            for start in range(0, len(group), batch_size):
                batch = group[start : start + batch_size]
                kept, after = [histories[i] for i in batch], [tails[i] for i in batch]
                states[batch] = _continue(loaded, held, kept, after, layer)
    return states


def _continue(
    loaded: LoadedModel, cache: PromptCache, histories: list[list[int]], tails: list[list[int]], layer: int
) -> np.ndarray:
    """One batch: the tails (right-padded) run on their histories' cached pass; the state at each tail's last token."""
    prefilled = cache.batch(histories)
    if prefilled is None:
        raise RuntimeError("a history's cache was asked for after the model was found uncacheable")
    _, kv, history_mask, _, _ = prefilled
    width = max(len(t) for t in tails)
    ids = torch.zeros((len(tails), width), dtype=torch.long)
    tail_mask = torch.zeros_like(ids)
    for row, tail in enumerate(tails):
        ids[row, : len(tail)] = torch.as_tensor(tail)
        tail_mask[row, : len(tail)] = 1
    last = torch.tensor([len(t) - 1 for t in tails])
    lengths = torch.tensor([len(h) for h in histories])
    captured: list[torch.Tensor] = []
    handle = residual_hook(
        loaded.model,
        layer,
        lambda hidden: captured.append(
            hidden[torch.arange(len(tails), device=hidden.device), last.to(hidden.device)].float().cpu()
        ),
    )
    base = getattr(loaded.model, loaded.model.base_model_prefix, loaded.model)
    device = next(loaded.model.parameters()).device
    try:
        base(
            input_ids=ids.to(device),
            attention_mask=torch.cat([history_mask, tail_mask], dim=1).to(device),
            position_ids=(lengths[:, None] + torch.arange(width)[None, :]).to(device),
            use_cache=True,
            **{cache_kwarg(base): kv},
        )
    finally:
        handle.remove()
    return captured[-1].numpy()


def _history_groups(order: list[int], histories: list[list[int]]) -> list[list[int]]:
    """`order` cut into runs of at most HISTORIES_PER_CACHE distinct histories (a history's rows never split)."""
    groups: list[list[int]] = []
    seen = 0
    for position, index in enumerate(order):
        new = position == 0 or histories[index] != histories[order[position - 1]]
        if new and (not groups or seen == HISTORIES_PER_CACHE):
            groups.append([])
            seen = 0
        seen += new
        groups[-1].append(index)
    return groups
