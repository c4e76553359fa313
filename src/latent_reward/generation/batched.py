"""One generation loop for every experiment that writes text: the reward lens, steering, conversations, respond.

Prompts are left-padded and run once; then one token per step for every unfinished sequence, on a
KV cache. Sampling is seeded per sequence (a sequence's tokens do not depend on what else is in its
batch, up to float rounding). Hooks can read the residual stream at one layer (the state at the
prompt's last token and at every generated token) and apply interventions (add a vector, or
project a direction out) at any layer, on the generated tokens only or on every position.

Hand-written rather than transformers' `generate` because the experiments need per-sequence seeds,
per-token states and interventions that know which positions are generated.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from transformers import DynamicCache

from latent_reward.batching import partition_by_length
from latent_reward.data.schema import Message
from latent_reward.generation.interventions import Intervention, intervene
from latent_reward.models.architecture import (
    cache_kwarg,
    output_cache,
    residual_hook,
    stop_token_ids,
    without_cudnn_attention,
)
from latent_reward.models.chat import prompt_token_ids
from latent_reward.models.loading import LoadedModel


class GenerationConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    max_new_tokens: int = Field(200, ge=1, description="Tokens generated per reply, at most.")
    temperature: float = Field(0.0, ge=0, description="Sampling temperature; 0 = greedy, > 0 samples (seeded).")
    top_p: float = Field(1.0, gt=0, le=1)
    seed: int = 0
    batch_size: int = Field(16, ge=1, description="Sequences generated together.")
    stop_strings: tuple[str, ...] = ()  # also end a reply at these (e.g. the fallback format's next "User:" turn)


@dataclass
class Reply:
    prompt_ids: list[int]
    ids: list[int] = field(default_factory=list)
    text: str = ""
    stop: str = "length"  # "eos", "stop string" or "length"
    states: np.ndarray | None = (
        None  # [1 + len(ids), d]: the read layer at the prompt's last token, then each generated token
    )


def _sequence_seed(seed: int, index: int) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{index}".encode()).digest()[:8], "little") % (2**63)


def _next_tokens(logits: torch.Tensor, config: GenerationConfig, generators: list[torch.Generator]) -> list[int]:
    """One token per row: argmax, or a sample (temperature, nucleus) from each row's own generator."""
    if config.temperature == 0:
        return logits.argmax(-1).tolist()
    probabilities = torch.softmax(logits.float() / config.temperature, dim=-1)
    if config.top_p < 1:
        ordered, index = probabilities.sort(dim=-1, descending=True)
        keep = ordered.cumsum(-1) - ordered < config.top_p
        probabilities = torch.zeros_like(probabilities).scatter(-1, index, ordered * keep)
    return [int(torch.multinomial(row.cpu(), 1, generator=g)) for row, g in zip(probabilities, generators)]


class _Hooks:
    """Residual hooks for one batch: reads at `read_layer`, interventions wherever asked."""

    def __init__(self, loaded: LoadedModel, interventions: tuple[Intervention, ...], read_layer: int | None):
        self.prefill = True
        self.reads: list[torch.Tensor] = []
        self.handles = [
            residual_hook(loaded.model, item.layer, self._intervene(item, item.tensor(loaded.model)))
            for item in interventions
        ]
        if read_layer is not None:
            self.handles.append(
                residual_hook(loaded.model, read_layer, lambda hidden: self.reads.append(hidden[:, -1].float().cpu()))
            )

    def _intervene(self, item: Intervention, vector: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor | None]:
        def change(hidden: torch.Tensor) -> torch.Tensor | None:
            if self.prefill and item.scope == "generated":
                return None
            return intervene(hidden, vector, item.kind)

        return change

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()


@torch.inference_mode()
def generate(
    loaded: LoadedModel,
    prompts: list[list[int]],
    config: GenerationConfig | None = None,
    interventions: tuple[Intervention, ...] = (),
    read_layer: int | None = None,
    on_token: Callable[[int, int, np.ndarray | None], None] | None = None,
    first_index: int = 0,
    prompt_cache: PromptCache | None = None,
) -> list[Reply]:
    """Replies to prompt token ids, in order; batches of `config.batch_size` prompts of similar length.

    `on_token(prompt index, token id, state)` is called for each generated token: with its state at `read_layer`
    once that is read, else (state None) as it is chosen. Sequence i's seed derives from
    (config.seed, first_index + i), so splitting a job into calls keeps every sequence's tokens. `prompt_cache`:
    the prompts' unsteered passes kept across calls (used when every intervention acts on generated tokens only).
    """
    config = config or GenerationConfig()
    order = sorted(range(len(prompts)), key=lambda i: (len(prompts[i]), i))
    replies: list[Reply | None] = [None] * len(prompts)
    with without_cudnn_attention(next(loaded.model.parameters()).device):
        for start in range(0, len(order), config.batch_size):
            batch = order[start : start + config.batch_size]
            for index, reply in zip(
                batch,
                _generate_batch(
                    loaded,
                    [prompts[i] for i in batch],
                    [first_index + i for i in batch],
                    config,
                    interventions,
                    read_layer,
                    on_token,
                    prompt_cache,
                ),
            ):
                replies[index] = reply
    complete = [reply for reply in replies if reply is not None]
    if len(complete) != len(replies):
        raise RuntimeError(f"{len(replies) - len(complete)} of {len(replies)} prompts got no reply from their batch")
    return complete


def generate_chat(
    loaded: LoadedModel, conversations: list[list[Message]], config: GenerationConfig | None = None, **options
) -> list[Reply]:
    """`generate` from chat messages rendered with the model's template and its generation prompt."""
    prompts = [prompt_token_ids(loaded.tokenizer, messages) for messages in conversations]
    return generate(loaded, prompts, config, **options)


PREFILL_TOKENS = 2048  # padded tokens per prefill call: prompts of very different lengths are prefilled apart


def _prefill(model, prompts: list[list[int]], reads: list[torch.Tensor] | None):
    """Run the prompts (sorted by length) in groups of similar length and merge their KV caches, left-padded, into
    one batch. Returns (last-position logits, cache, attention mask, position ids, reads at the last prompt token);
    `reads`: the list a read hook appends to, or None when nothing is read."""
    device = next(model.parameters()).device
    groups = partition_by_length(list(range(len(prompts))), lambda i: len(prompts[i]), PREFILL_TOKENS, device.type)
    width = max(len(p) for p in prompts)
    parts = []
    read_parts: list[torch.Tensor] = []  # the states at `read_layer` of each part's rows, when it is read
    for group in groups:
        group_width = max(len(prompts[i]) for i in group)
        ids, mask = _left_padded([prompts[i] for i in group], group_width)
        out = model(
            input_ids=ids.to(device),
            attention_mask=mask.to(device),
            position_ids=(mask.cumsum(1) - 1).clamp(min=0).to(device),
            use_cache=True,
            logits_to_keep=1,
        )
        parts.append((out.logits[:, -1], output_cache(out), group_width))
        read_parts += [reads[-1]] if reads is not None else []
    cache = parts[0][1] if len(parts) == 1 else _merge_caches(model, [(c, w) for _, c, w in parts], width)
    if cache is None:  # a layer kept fewer tokens than the prompt (a sliding window): prefill all at one width
        ids, mask = _left_padded(prompts, width)
        out = model(
            input_ids=ids.to(device),
            attention_mask=mask.to(device),
            position_ids=(mask.cumsum(1) - 1).clamp(min=0).to(device),
            use_cache=True,
            logits_to_keep=1,
        )
        parts = [(out.logits[:, -1], output_cache(out), width)]
        read_parts = [reads[-1]] if reads is not None else []
        cache = parts[0][1]
    _, mask = _left_padded(prompts, width)
    read = torch.cat(read_parts) if reads is not None else None
    return torch.cat([logits for logits, _, _ in parts]), cache, mask, (mask.cumsum(1) - 1).clamp(min=0), read


def _left_padded(prompts: list[list[int]], width: int) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.zeros((len(prompts), width), dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, prompt in enumerate(prompts):
        ids[row, width - len(prompt) :] = torch.as_tensor(prompt)
        mask[row, width - len(prompt) :] = 1
    return ids, mask


def _merge_caches(model, parts: list[tuple], width: int):
    """One cache from several prefills: each layer's keys and values left-padded with zeros to `width` and stacked.
    None when a layer holds fewer positions than its prefill width (sliding-window layers past their window)."""
    layers = []
    for index in range(len(parts[0][0].layers)):
        keys, values = [], []
        for cache, group_width in parts:
            layer = cache.layers[index]
            if layer.keys.shape[-2] != group_width:
                return None
            pad = (0, 0, width - group_width, 0)
            keys.append(torch.nn.functional.pad(layer.keys, pad))
            values.append(torch.nn.functional.pad(layer.values, pad))
        layers.append((torch.cat(keys), torch.cat(values)))
    return DynamicCache(ddp_cache_data=layers, config=model.config)


def unsteered_prompts(interventions: tuple[Intervention, ...]) -> bool:
    """Whether the prompts' own pass is the unsteered model's (every intervention acts on generated tokens only)."""
    return all(item.scope == "generated" for item in interventions)


class PromptCache:
    """The unsteered model's pass over each prompt (its KV cache and the logits at its last token), kept so that
    conditions generating from the same prompts (steer's 28 by default) and reading their replies back run each
    prompt once. Batches are assembled from single prompts, left-padded with zeros as `_merge_caches` does; a model
    whose cache keeps fewer positions than the prompt (a sliding window) is not cached (`batch` returns None)."""

    def __init__(self, model) -> None:
        self.model = model
        self._rows: dict[tuple[int, ...], tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]] = {}
        self.cacheable = True

    def holds(self, prompts: list[list[int]]) -> bool:
        """Whether every prompt's pass is kept, running those not yet kept (False for a model this cannot cache)."""
        missing = list(dict.fromkeys(tuple(p) for p in prompts if tuple(p) not in self._rows))
        if missing and self.cacheable:
            self._add([list(p) for p in missing])
        return self.cacheable

    def batch(self, prompts: list[list[int]]):
        """(last-position logits, cache, attention mask, position ids, None) for `prompts`, as `_prefill` returns,
        or None where the model cannot be cached this way."""
        if not self.holds(prompts):
            return None
        width = max(len(p) for p in prompts)
        rows = [self._rows[tuple(p)] for p in prompts]
        layers = []
        for index in range(len(rows[0][1])):
            pad = [(0, 0, width - row[1][index][0].shape[-2], 0) for row in rows]
            keys = torch.cat([torch.nn.functional.pad(row[1][index][0], side) for row, side in zip(rows, pad)])
            values = torch.cat([torch.nn.functional.pad(row[1][index][1], side) for row, side in zip(rows, pad)])
            layers.append((keys, values))
        _, mask = _left_padded(prompts, width)
        cache = DynamicCache(ddp_cache_data=layers, config=self.model.config)
        return torch.stack([row[0] for row in rows]), cache, mask, (mask.cumsum(1) - 1).clamp(min=0), None

    def _add(self, prompts: list[list[int]]) -> None:
        prompts = sorted(prompts, key=len)  # similar lengths prefilled together
        for start in range(0, len(prompts), 16):
            group = prompts[start : start + 16]
            logits, cache, _, _, _ = _prefill(self.model, group, None)  # interventions skip prompts: unsteered
            width = max(len(p) for p in group)
            if any(layer.keys.shape[-2] != width for layer in cache.layers):
                self.cacheable = False  # a sliding-window layer kept fewer positions
                return
            for row, prompt in enumerate(group):
                kept = [
                    (
                        layer.keys[row : row + 1, :, width - len(prompt) :],
                        layer.values[row : row + 1, :, width - len(prompt) :],
                    )
                    for layer in cache.layers
                ]
                self._rows[tuple(prompt)] = (logits[row], kept)


def _generate_batch(
    loaded: LoadedModel,
    prompts: list[list[int]],
    indices: list[int],
    config: GenerationConfig,
    interventions,
    read_layer,
    on_token,
    prompt_cache: PromptCache | None = None,
) -> list[Reply]:
    model, device = loaded.model, next(loaded.model.parameters()).device
    generators = [torch.Generator().manual_seed(_sequence_seed(config.seed, i)) for i in indices]
    stop_ids = stop_token_ids(model, loaded.tokenizer)
    replies = [Reply(prompt_ids=list(p)) for p in prompts]
    states: list[list[torch.Tensor]] = [[] for _ in prompts]
    hooks = _Hooks(loaded, tuple(interventions), read_layer)
    try:
        shared = prompt_cache is not None and read_layer is None and unsteered_prompts(interventions)
        prefilled = prompt_cache.batch(prompts) if shared and prompt_cache is not None else None
        logits, cache, mask, positions, reads = prefilled or _prefill(
            model, prompts, hooks.reads if read_layer is not None else None
        )
        hooks.prefill = False
        active = list(range(len(prompts)))  # rows of `logits` and `cache`, in order
        if reads is not None:
            for row in active:
                states[row].append(reads[row])
        while active:
            fed, finished = _choose(
                loaded,
                logits,
                active,
                replies,
                generators,
                stop_ids,
                config,
                indices,
                on_token if read_layer is None else None,
                read_layer is not None,
            )
            if not fed:
                break
            if fed != active:  # some rows ended: drop them from the cache (a copy of every layer, so only when needed)
                keep = torch.tensor([active.index(row) for row in fed], dtype=torch.long)
                cache.batch_select_indices(keep)  # indices on the CPU: each layer's cache may sit on its own device
                mask, positions = mask[keep], positions[keep]
            mask = torch.cat([mask, torch.ones((len(fed), 1), dtype=torch.long)], dim=1)
            positions = positions[:, -1:] + 1
            out = model(
                input_ids=torch.tensor([[replies[row].ids[-1]] for row in fed], device=device),
                attention_mask=mask.to(device),
                position_ids=positions.to(device),
                use_cache=True,
                logits_to_keep=1,
                **{cache_kwarg(model): cache},
            )
            logits, cache = out.logits[:, -1], output_cache(out)
            _record(hooks, states, fed, read_layer)
            if on_token is not None and read_layer is not None:
                for row in fed:
                    on_token(indices[row], replies[row].ids[-1], states[row][-1].numpy())
            active = fed
            if finished:  # rows fed only to read their last token's state: no further step
                keep = torch.tensor([i for i, row in enumerate(fed) if row not in finished], dtype=torch.long)
                cache.batch_select_indices(keep)
                logits, mask, positions = logits[keep.to(logits.device)], mask[keep], positions[keep]
                active = [row for row in fed if row not in finished]
    finally:
        hooks.close()
    for row, reply in enumerate(replies):
        reply.text = loaded.tokenizer.decode(reply.ids, skip_special_tokens=True)
        if read_layer is not None:
            reply.states = torch.stack(states[row][: len(reply.ids) + 1]).numpy()
    return replies


def _record(hooks: _Hooks, states: list[list[torch.Tensor]], rows: list[int], read_layer: int | None) -> None:
    if read_layer is not None:
        for row, state in zip(rows, hooks.reads[-1]):
            states[row].append(state)


def _choose(loaded, logits, active, replies, generators, stop_ids, config, indices, on_token, read_all: bool):
    """Pick each active row's next token; returns the rows to feed and those among them that are finished
    (fed only so that their last token's state is read)."""
    fed, finished = [], set()
    for row, token in zip(active, _next_tokens(logits, config, [generators[r] for r in active])):
        reply = replies[row]
        if token in stop_ids:
            reply.stop = "eos"
            continue
        reply.ids.append(token)
        if on_token is not None:
            on_token(indices[row], token, None)
        if _hits_stop_string(loaded.tokenizer, reply, config.stop_strings):
            continue
        if len(reply.ids) >= config.max_new_tokens:
            reply.stop = "length"
            if not read_all:
                continue
            finished.add(row)
        fed.append(row)
    return fed, finished


def _hits_stop_string(tokenizer, reply: Reply, stop_strings: tuple[str, ...]) -> bool:
    """Whether the reply now ends with a stop string; if so, the string's tokens are dropped and the reply stops."""
    if not stop_strings:
        return False
    tail = tokenizer.decode(reply.ids[-12:], skip_special_tokens=True)
    for stop in stop_strings:
        if stop in tail:
            full = tokenizer.decode(reply.ids, skip_special_tokens=True)
            cut = full.rfind(stop)
            while reply.ids and len(tokenizer.decode(reply.ids, skip_special_tokens=True)) > cut:
                reply.ids.pop()
            reply.stop = "stop string"
            return True
    return False
