"""Replies read back through the model (teacher forcing): how likely the unsteered model finds them, and how far an
intervention moves the next-token distributions on the same prefixes."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from latent_reward.generation.batched import PromptCache, unsteered_prompts
from latent_reward.generation.interventions import Intervention, intervene
from latent_reward.models.architecture import cache_kwarg, residual_hook, without_cudnn_attention
from latent_reward.models.loading import LoadedModel


@dataclass
class ReadBack:
    nll: float  # mean negative log-likelihood per reply token under the unsteered model (perplexity = exp(nll))
    # mean KL(steered || unsteered) of the next-token distributions over the reply's positions (0 without interventions)
    kl: float


@torch.inference_mode()
def read_back(
    loaded: LoadedModel,
    prompts: list[list[int]],
    replies: list[list[int]],
    interventions: tuple[Intervention, ...] = (),
    batch_size: int = 4,
    prompt_cache: PromptCache | None = None,
) -> list[ReadBack]:
    """Per reply: its NLL under the unsteered model and, with interventions, the KL from the steered model's
    next-token distributions to the unsteered one's, on the same (prompt + reply) prefixes. An intervention with
    scope "generated" acts on the reply's positions only, as it did while the reply was generated. With a
    `prompt_cache` (and interventions on generated tokens only) the prompts' unsteered pass is reused and only the
    replies run."""
    out = []
    reuse = prompt_cache if prompt_cache is not None and unsteered_prompts(interventions) else None
    if _scaled_logits(loaded.model):
        reuse = None  # the cached first-token logits carry a scale `_head` does not apply: read whole sequences
    with without_cudnn_attention(next(loaded.model.parameters()).device):
        for start in range(0, len(prompts), batch_size):
            chunk = slice(start, start + batch_size)
            if reuse is not None and reuse.holds(prompts[chunk]):
                out += _continued(loaded, reuse, prompts[chunk], replies[chunk], interventions)
            else:
                out += _batch(loaded, prompts[chunk], replies[chunk], interventions)
    return out


def _batch(loaded: LoadedModel, prompts, replies, interventions) -> list[ReadBack]:
    model = loaded.model
    device = next(model.parameters()).device
    lengths = [len(p) + len(r) for p, r in zip(prompts, replies)]
    ids = torch.zeros((len(prompts), max(lengths)), dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, (prompt, reply) in enumerate(zip(prompts, replies)):
        ids[row, : lengths[row]] = torch.as_tensor(prompt + reply)
        mask[row, : lengths[row]] = 1
    starts = torch.tensor([len(p) for p in prompts])
    # the logits that predict each reply token: positions len(prompt) - 1 ... len(prompt) + len(reply) - 2
    rows = torch.tensor([row for row, (p, r) in enumerate(zip(prompts, replies)) for _ in r], dtype=torch.long)
    cols = torch.tensor([len(p) - 1 + t for p, r in zip(prompts, replies) for t in range(len(r))], dtype=torch.long)
    unsteered = _log_probs(model, ids, mask, device, rows, cols)
    steered = unsteered
    if interventions:
        handles = [residual_hook(model, item.layer, _shift(item, starts, model)) for item in interventions]
        try:
            steered = _log_probs(model, ids, mask, device, rows, cols)
        finally:
            for handle in handles:
                handle.remove()
    results, offset = [], 0
    for _prompt, reply in zip(prompts, replies):
        if not reply:
            results.append(ReadBack(nll=float("nan"), kl=0.0))
            continue
        base, moved = unsteered[offset : offset + len(reply)], steered[offset : offset + len(reply)]
        offset += len(reply)
        targets = torch.as_tensor(reply)
        nll = -base.gather(1, targets[:, None])[:, 0].mean().item()
        kl = (moved.exp() * (moved - base)).sum(-1).mean().item() if interventions else 0.0
        results.append(ReadBack(nll=nll, kl=max(kl, 0.0)))
    return results


def _continued(loaded: LoadedModel, prompt_cache: PromptCache, prompts, replies, interventions) -> list[ReadBack]:
    """`_batch` from the prompts' cached unsteered pass: the replies (right-padded) continue each prompt's cache. The
    first reply token's distribution is the prompt's last logits (no intervention acts on a prompt position)."""
    model = loaded.model
    device = next(model.parameters()).device
    width = max((len(r) for r in replies), default=0)
    if width == 0:
        return [ReadBack(nll=float("nan"), kl=0.0) for _ in replies]
    ids = torch.zeros((len(replies), width), dtype=torch.long)
    reply_mask = torch.zeros_like(ids)
    for row, reply in enumerate(replies):
        ids[row, : len(reply)] = torch.as_tensor(reply, dtype=torch.long)
        reply_mask[row, : len(reply)] = 1
    lengths = torch.tensor([len(p) for p in prompts])
    # the states that predict reply tokens 1.. : reply positions 0 .. len(reply) - 2
    rows = torch.tensor([row for row, r in enumerate(replies) for _ in r[1:]], dtype=torch.long)
    cols = torch.tensor([t for r in replies for t in range(len(r) - 1)], dtype=torch.long)

    def log_probs() -> tuple[torch.Tensor, torch.Tensor]:
        prefilled = prompt_cache.batch(prompts)  # a fresh cache each time: the forward extends it
        assert prefilled is not None, "read_back checked that the cache holds these prompts"
        first, cache, prompt_mask, _, _ = prefilled
        base = getattr(model, model.base_model_prefix, model)
        states = base(
            input_ids=ids.to(device),
            attention_mask=torch.cat([prompt_mask, reply_mask], dim=1).to(device),
            position_ids=(lengths[:, None] + torch.arange(width)[None, :]).to(device),
            use_cache=True,
            **{cache_kwarg(base): cache},
        ).last_hidden_state
        return torch.log_softmax(first.float(), dim=-1).cpu(), _head(
            model, states[rows.to(states.device), cols.to(states.device)]
        )

    unsteered_first, unsteered = log_probs()
    steered = unsteered
    if interventions:
        handles = [residual_hook(model, item.layer, _added(item, model)) for item in interventions]
        try:
            _, steered = log_probs()
        finally:
            for handle in handles:
                handle.remove()
    results, offset = [], 0
    for row, reply in enumerate(replies):
        if not reply:
            results.append(ReadBack(nll=float("nan"), kl=0.0))
            continue
        base = torch.cat([unsteered_first[row : row + 1], unsteered[offset : offset + len(reply) - 1]])
        moved = torch.cat([unsteered_first[row : row + 1], steered[offset : offset + len(reply) - 1]])
        offset += len(reply) - 1
        nll = -base.gather(1, torch.as_tensor(reply)[:, None])[:, 0].mean().item()
        kl = (moved.exp() * (moved - base)).sum(-1).mean().item() if interventions else 0.0
        results.append(ReadBack(nll=nll, kl=max(kl, 0.0)))
    return results


def _scaled_logits(model) -> bool:
    """Whether the model's forward scales its logits beyond soft-capping (Cohere's logit_scale, Granite's
    logits_scaling), which `_head` leaves out."""
    config = model.config.get_text_config()
    return any(getattr(config, name, None) not in (None, 1, 1.0) for name in ("logit_scale", "logits_scaling"))


def _head(model, hidden: torch.Tensor) -> torch.Tensor:
    """Log-softmax of the LM head's logits on `hidden` (final logit soft-capping applied where the model has it)."""
    logits = model.get_output_embeddings()(hidden).float()
    softcap = getattr(model.config.get_text_config(), "final_logit_softcapping", None)
    if softcap:
        logits = torch.tanh(logits / softcap) * softcap
    return torch.log_softmax(logits, dim=-1).cpu()


def _added(item: Intervention, model):
    """The intervention on every position a continued forward sees (all of them reply positions)."""
    vector = item.tensor(model)
    return lambda hidden: intervene(hidden, vector, item.kind)


def _log_probs(model, ids, mask, device, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """Log-softmax of the next-token logits at (rows, cols) only: the LM head runs on those positions alone."""
    base = getattr(model, model.base_model_prefix, model)
    states = base(
        input_ids=ids.to(device), attention_mask=mask.to(device)
    ).last_hidden_state  # on the last block's device
    return _head(model, states[rows.to(states.device), cols.to(states.device)])


def _shift(item: Intervention, starts: torch.Tensor, model):
    vector = item.tensor(model)

    def change(hidden: torch.Tensor) -> torch.Tensor:
        if item.scope == "all":
            return intervene(hidden, vector, item.kind)
        reply = torch.arange(hidden.shape[1])[None, :] >= starts[:, None]  # the reply's positions (first token on)
        return intervene(hidden, vector, item.kind, reply)

    return change
