"""Two-pass batched forward that reads residual states at named positions inside the pass.

Pass 1 runs each unit's prompt once (left-padded, a chunk of similar-length prompts together) and
keeps the KV cache; pass 2 runs the responses (right-padded, batched by length) on their units'
cache rows. Hooks on the decoder blocks gather only
the needed positions (driven by `positions.TABLE`), so no layer's full sequence is kept and the LM
head never runs (except, when log-probabilities are asked for, on the response positions alone); blocks after the
deepest layer read do not run at all.
With a device map the blocks live on several devices: every hook, gather, mean and cache-row selection
works on the device of the state it reads, and the states read are collected on the first parameter's.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np
import torch

from latent_reward.activations.plan import Unit, response_batches
from latent_reward.models.architecture import (
    blocks_through,
    cache_kwarg,
    output_cache,
    residual_hook,
    without_cudnn_attention,
)
from latent_reward.models.chat import RenderedExample, TokenSpans
from latent_reward.positions import BY_NAME, TOKEN_POSITION, Position


@dataclass
class BatchStates:
    """States read for some examples, rows in `example_index` order."""

    example_index: list[int]
    positions: dict[str, torch.Tensor] = field(default_factory=dict)  # [n, n_layers, d]
    token_states: list[torch.Tensor] = field(default_factory=list)  # per example [t, n_token_layers, d]
    logprob_sum: list[float] = field(default_factory=list)  # summed log-probability of each response and end of turn

    def extend(self, other: BatchStates, positions) -> None:
        """Append another batch's rows (positions in the reader's order)."""
        self.example_index += other.example_index
        for position in positions:
            if position.name in other.positions:
                current = self.positions.get(position.name)
                values = other.positions[position.name]
                self.positions[position.name] = values if current is None else torch.cat([current, values])
        self.token_states += other.token_states
        self.logprob_sum += other.logprob_sum


def _select_rows(cache, rows: torch.Tensor):
    """A copy of a KV cache holding the given batch rows (repeated as asked); the original is left as it was,
    and each layer keeps its own bookkeeping (sliding-window layers included) on its own device."""
    selected = copy.copy(cache)
    selected.layers = []
    placed: dict[torch.device, torch.Tensor] = {}
    for layer in cache.layers:
        clone = copy.copy(layer)
        if not getattr(layer, "is_initialized", True):  # a block the pass left out (`blocks_through`): none cached
            selected.layers.append(clone)
            continue
        if layer.keys.device not in placed:
            placed[layer.keys.device] = rows.to(layer.keys.device)
        here = placed[layer.keys.device]
        clone.keys, clone.values = layer.keys.index_select(0, here), layer.values.index_select(0, here)
        selected.layers.append(clone)
    return selected


@dataclass
class _Requests:
    """What to read in one pass, as few operations per layer as possible (on a GPU each costs a launch):
    every single-token position in one gather (`rows`, `cols`: one block of batch rows per name in `index_names`),
    every average in one matmul (`mean_mask`: [names, rows, cols] of 0/1, divided by `mean_counts` afterwards)."""

    index_names: list[str] = field(default_factory=list)
    rows: torch.Tensor | None = None
    cols: torch.Tensor | None = None
    mean_names: list[str] = field(default_factory=list)
    mean_mask: torch.Tensor | None = None
    mean_counts: torch.Tensor | None = None  # float32 [names, rows, 1]
    every_token: torch.Tensor | None = None  # bool [rows, cols]: the tokens kept at token_layers
    placed: dict[tuple, torch.Tensor] = field(default_factory=dict)  # copies on other devices (a device map), made once

    def at(self, name: str, hidden: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
        """The request tensor `name` on `hidden`'s device (in `dtype` if given): moved once per device and dtype."""
        value = getattr(self, name)
        key = (name, hidden.device, dtype or value.dtype)
        if key not in self.placed:
            self.placed[key] = value.to(device=hidden.device, dtype=key[2])
        return self.placed[key]


class ResidualReader:
    """Registers hooks on the blocks; `run(batch)` returns the states at the requested positions.

    Residual index 0 is the input of the first block (the embeddings, with any scaling the model
    applies), index i the raw output of block i. The last index is *before* the final norm, unlike
    the last entry of transformers' `hidden_states`.
    """

    def __init__(
        self, model, layers: tuple[int, ...], positions: tuple[str, ...], token_layers: tuple[int, ...], logprobs: bool
    ):
        self.model = model
        self.base = getattr(model, model.base_model_prefix, model)
        self.layers = layers
        self.token_layers = token_layers
        self.positions = [BY_NAME[name] for name in positions]
        self.logprobs = logprobs
        self.device = next(model.parameters()).device
        self._cache_kwarg = cache_kwarg(self.base)
        self._requests = _Requests()
        self._index_captured: dict[int, torch.Tensor] = {}
        self._mean_captured: dict[int, torch.Tensor] = {}
        self._token_captured: dict[int, torch.Tensor] = {}
        self._handles = [
            residual_hook(model, layer, self._capturer(layer)) for layer in sorted(set(layers) | set(token_layers))
        ]

    def close(self) -> None:
        """Remove the hooks from the model."""
        for handle in self._handles:
            handle.remove()

    def _capturer(self, layer: int):
        def capture(hidden: torch.Tensor) -> None:
            requests = self._requests
            if layer in self.layers:
                if requests.rows is not None:
                    self._index_captured[layer] = hidden[requests.at("rows", hidden), requests.at("cols", hidden)]
                if requests.mean_mask is not None:  # a matmul in the model's dtype (accumulated in float32)
                    self._mean_captured[layer] = torch.einsum(
                        "pbt,btd->pbd", requests.at("mean_mask", hidden, hidden.dtype), hidden
                    )
            if layer in self.token_layers and requests.every_token is not None:
                self._token_captured[layer] = hidden[requests.at("every_token", hidden)].float()

        return capture

    def _take(self) -> dict[str, torch.Tensor]:
        """The states read in the last pass, per position name: float32 [rows, layers, d]."""
        requests, taken = self._requests, {}
        if self._index_captured:
            stacked = torch.stack([self._index_captured[layer].to(self.device) for layer in self.layers], dim=1).float()
            for name, block in zip(requests.index_names, stacked.chunk(len(requests.index_names))):
                taken[name] = block
        if self._mean_captured:
            stacked = torch.stack(
                [self._mean_captured[layer].to(self.device) for layer in self.layers], dim=2
            ).float()  # [names, rows, layers, d]
            if requests.mean_counts is None:
                raise RuntimeError("averages were captured without the token counts to divide them by")
            for name, totals, counts in zip(requests.mean_names, stacked, requests.mean_counts):
                taken[name] = totals / counts[:, :, None]
        self._index_captured, self._mean_captured = {}, {}
        return taken

    def _requests_for(self, stage: str, spans: list[TokenSpans], offsets: list[int], width: int) -> _Requests:
        """Requests for the positions read in `stage`, for rows whose token t sits at column t - offset."""
        requests = _Requests()
        cols, masks = [], []
        for position in self.positions:
            if position.stage != stage or position.reduce == "all":  # every-token states: see token_layers
                continue
            if position.reduce == "token":
                requests.index_names.append(position.name)
                cols += [position.token(s) - o for s, o in zip(spans, offsets)]
            else:
                requests.mean_names.append(position.name)
                masks.append(self._range_mask(position, spans, offsets, width))
        if cols:
            requests.rows = torch.arange(len(spans)).repeat(len(requests.index_names)).to(self.device)
            requests.cols = torch.tensor(cols, device=self.device)
        if masks:
            stacked = torch.stack(masks)
            requests.mean_mask = stacked.to(self.device)
            requests.mean_counts = stacked.sum(2, keepdim=True).to(self.device)
        return requests

    @staticmethod
    def _range_mask(position: Position, spans: list[TokenSpans], offsets: list[int], width: int) -> torch.Tensor:
        mask = torch.zeros((len(spans), width), dtype=torch.float32)
        for row, (s, o) in enumerate(zip(spans, offsets)):
            start, end = position.span(s)
            mask[row, start - o : end - o] = 1
        return mask

    @torch.inference_mode()
    def run(self, units: list[Unit], rendered: list[RenderedExample], batch_tokens: int) -> BatchStates:
        """States of every member of a chunk of units: one prompt pass, then the responses in batches of about
        `batch_tokens` padded tokens (sorted by length), each on its prompt's rows of the chunk's KV cache."""
        deepest = None if self.logprobs else max((*self.layers, *self.token_layers), default=None)
        with without_cudnn_attention(self.device), blocks_through(self.model, deepest):
            return self._run(units, rendered, batch_tokens)

    def _run(self, units: list[Unit], rendered: list[RenderedExample], batch_tokens: int) -> BatchStates:
        prompt_states, cache, prompt_mask, last_hidden = self._prompt_pass(units, rendered)
        result = BatchStates(example_index=[])
        for batch in response_batches(units, batch_tokens, self.device.type):
            rows = torch.tensor([u for u, _ in batch])
            members = [units[u].members[m] for u, m in batch]
            states = self._response_pass(
                units,
                rows,
                members,
                rendered,
                _select_rows(cache, rows.to(self.device)),
                prompt_mask[rows],
                None if last_hidden is None else last_hidden[rows],
            )
            for name, values in prompt_states.items():
                states.positions[name] = values[rows.to(self.device)].cpu()
            result.extend(states, self.positions)
        return result

    def _prompt_pass(self, units: list[Unit], rendered: list[RenderedExample]):
        """Every prompt of the chunk once, left-padded (each prompt's last token in the last column)."""
        device = self.device
        width = max(u.prompt_length for u in units)
        ids = torch.zeros((len(units), width), dtype=torch.long)
        mask = torch.zeros((len(units), width), dtype=torch.long)
        for row, unit in enumerate(units):
            ids[row, width - unit.prompt_length :] = torch.as_tensor(
                rendered[unit.members[0]].input_ids[: unit.prompt_length]
            )
            mask[row, width - unit.prompt_length :] = 1
        self._requests = self._requests_for(
            "prompt", [rendered[u.members[0]].spans for u in units], [u.prompt_length - width for u in units], width
        )
        out = self.base(
            input_ids=ids.to(device),
            attention_mask=mask.to(device),
            position_ids=(mask.cumsum(1) - 1).clamp(min=0).to(device),
            use_cache=True,
        )
        return self._take(), output_cache(out), mask, (out.last_hidden_state[:, -1] if self.logprobs else None)

    def _response_pass(self, units, rows, members, rendered, cache, prompt_mask, prompt_last_hidden) -> BatchStates:
        """The responses (and end-of-turn tokens) of `members`, right-padded, on their prompts' cache rows."""
        device = self.device
        offsets = [units[u].prompt_length for u in rows.tolist()]
        lengths = [len(rendered[index].input_ids) - offset for index, offset in zip(members, offsets)]
        span = max(lengths)
        ids = torch.zeros((len(members), span), dtype=torch.long)
        mask = torch.zeros((len(members), span), dtype=torch.long)
        for row, (index, offset, length) in enumerate(zip(members, offsets, lengths)):
            ids[row, :length] = torch.as_tensor(rendered[index].input_ids[offset:])
            mask[row, :length] = 1
        spans = [rendered[index].spans for index in members]
        response_mask = self._range_mask(BY_NAME[TOKEN_POSITION], spans, offsets, span).to(device)
        self._requests = self._requests_for("response", spans, offsets, span)
        self._requests.every_token = response_mask.bool() if self.token_layers else None
        positions = torch.tensor(offsets)[:, None] + torch.arange(span)[None, :]
        out = self.base(
            input_ids=ids.to(device),
            attention_mask=torch.cat([prompt_mask, mask], dim=1).to(device),
            position_ids=positions.to(device),
            use_cache=True,
            **{self._cache_kwarg: cache},
        )
        states = BatchStates(example_index=list(members), positions={k: v.cpu() for k, v in self._take().items()})
        if self.token_layers:
            per_layer = torch.stack([self._token_captured[layer].cpu() for layer in self.token_layers], dim=1)
            states.token_states = list(torch.split(per_layer, response_mask.sum(1).long().tolist()))
            self._token_captured = {}
        if self.logprobs:
            scored = response_mask.clone()  # log pi(y|x): the response's tokens and the end-of-turn token that ends it
            for row, (s, offset) in enumerate(zip(spans, offsets)):
                scored[row, s.eot - offset] = 1
            states.logprob_sum = self._response_logprobs(
                prompt_last_hidden, out.last_hidden_state, ids.to(device), scored
            )
        return states

    def _response_logprobs(self, first_hidden, hidden, targets, response_mask) -> list[float]:
        """Summed log-probability of each masked token (the response's and its end-of-turn token), computing logits at
        those rows only."""
        predictors = torch.cat([first_hidden[:, None], hidden[:, :-1]], dim=1)  # state before each token
        selected = response_mask.bool()
        head = self.model.get_output_embeddings()
        softcap = getattr(self.model.config.get_text_config(), "final_logit_softcapping", None)
        flat_states, flat_targets = predictors[selected.to(predictors.device)], targets[selected]
        logprobs = []
        for start in range(0, flat_states.shape[0], 512):
            logits = head(flat_states[start : start + 512]).float()
            if softcap:
                logits = torch.tanh(logits / softcap) * softcap
            logprobs.append(
                torch.log_softmax(logits, -1).gather(1, flat_targets[start : start + 512, None].to(logits.device))[:, 0]
            )
        per_token = torch.cat(logprobs)
        return [chunk.double().sum().item() for chunk in torch.split(per_token, selected.sum(1).tolist())]


def as_float16(tensor: torch.Tensor) -> np.ndarray:
    """A CPU tensor as a float16 numpy array of the same shape."""
    return tensor.to(torch.float16).numpy()
