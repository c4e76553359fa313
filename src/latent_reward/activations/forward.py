"""Two-pass batched forward that reads residual states at named positions inside the pass.

Pass 1 runs each unit's prompt once (left-padded) and keeps its KV cache; pass 2 runs every
response (right-padded) on top of its unit's cache rows. Hooks on the decoder blocks gather only
the needed positions, so no layer's full sequence is kept and the LM head never runs (except,
when log-probabilities are asked for, on the response positions alone).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field

import numpy as np
import torch

from latent_reward.activations.plan import Unit
from latent_reward.errors import UserError
from latent_reward.models.chat import RenderedExample


def decoder_layers(model) -> torch.nn.ModuleList:
    """The list of transformer blocks, for the architectures transformers names consistently."""
    base = getattr(model, model.base_model_prefix, model)
    for path in ("layers", "h", "blocks", "decoder.layers", "language_model.layers"):
        module = base
        for part in path.split("."):
            module = getattr(module, part, None)
        if isinstance(module, torch.nn.ModuleList):
            return module
    raise UserError(f"cannot find the transformer blocks of {type(model).__name__}")


def cache_kwarg(module) -> str:
    """transformers 5 renamed `past_key_values` to `cache` (the old name is deprecated)."""
    return "cache" if "cache" in inspect.signature(module.forward).parameters else "past_key_values"


def output_cache(output):
    return output.cache if "cache" in output else output.past_key_values


@dataclass
class BatchStates:
    """States read from one batch, rows in the batch's example order."""

    example_index: list[int]
    positions: dict[str, torch.Tensor] = field(default_factory=dict)  # [n, n_layers, d]
    token_states: list[torch.Tensor] = field(default_factory=list)  # per example [t, n_token_layers, d]
    logprob_mean: list[float] = field(default_factory=list)


class ResidualReader:
    """Registers hooks on the blocks; `run(batch)` returns the states at the requested positions.

    Residual index 0 is the input of the first block (the embeddings, with any scaling the model
    applies), index i the raw output of block i. The last index is *before* the final norm, unlike
    the last entry of transformers' `hidden_states`.
    """

    def __init__(self, model, layers: tuple[int, ...], positions: tuple[str, ...], token_layers: tuple[int, ...], logprobs: bool):
        self.model = model
        self.base = getattr(model, model.base_model_prefix, model)
        self.blocks = decoder_layers(model)
        self.layers = layers
        self.token_layers = token_layers
        self.positions = positions
        self.logprobs = logprobs
        self.device = next(model.parameters()).device
        self._cache_kwarg = cache_kwarg(self.base)
        self._requests: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self._mean_mask: torch.Tensor | None = None
        self._token_mask: torch.Tensor | None = None
        self._captured: dict[str, dict[int, torch.Tensor]] = {}
        self._token_captured: dict[int, torch.Tensor] = {}
        self._handles = []
        for layer in sorted(set(layers) | set(token_layers)):
            if layer == 0:
                self._handles.append(self.blocks[0].register_forward_pre_hook(self._pre_hook, with_kwargs=True))
            else:
                self._handles.append(self.blocks[layer - 1].register_forward_hook(self._make_hook(layer)))

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()

    def _pre_hook(self, module, args, kwargs):
        hidden = args[0] if args else kwargs["hidden_states"]
        self._capture(0, hidden)

    def _make_hook(self, layer: int):
        def hook(module, args, output):
            self._capture(layer, output[0] if isinstance(output, tuple) else output)

        return hook

    def _capture(self, layer: int, hidden: torch.Tensor) -> None:
        if layer in self.layers:
            for name, (rows, cols) in self._requests.items():
                self._captured.setdefault(name, {})[layer] = hidden[rows, cols].float()
            if self._mean_mask is not None:
                mask = self._mean_mask
                mean = (hidden.float() * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
                self._captured.setdefault("response_mean", {})[layer] = mean
        if layer in self.token_layers and self._token_mask is not None:
            self._token_captured[layer] = hidden[self._token_mask].float()

    def _take(self) -> dict[str, torch.Tensor]:
        stacked = {name: torch.stack([by_layer[l] for l in self.layers], dim=1) for name, by_layer in self._captured.items()}
        self._captured = {}
        return stacked

    @torch.inference_mode()
    def run(self, units: list[Unit], rendered: list[RenderedExample]) -> BatchStates:
        device = self.device
        prompt_lengths = [u.prompt_length for u in units]
        width = max(prompt_lengths)
        prompt_ids = torch.zeros((len(units), width), dtype=torch.long)
        prompt_mask = torch.zeros((len(units), width), dtype=torch.long)
        for row, unit in enumerate(units):
            ids = rendered[unit.members[0]].input_ids[: unit.prompt_length]
            prompt_ids[row, width - unit.prompt_length :] = torch.as_tensor(ids)
            prompt_mask[row, width - unit.prompt_length :] = 1
        prompt_positions = (prompt_mask.cumsum(1) - 1).clamp(min=0)

        # Pass 1: prompts. Left padding puts every prompt's last token in the last column.
        rows = torch.arange(len(units))
        requests = {}
        if "user_end" in self.positions:
            cols = torch.tensor([width - u.prompt_length + rendered[u.members[0]].spans.user_end for u in units])
            requests["user_end"] = (rows.to(device), cols.to(device))
        if "assistant_start" in self.positions:
            requests["assistant_start"] = (rows.to(device), torch.full((len(units),), width - 1, device=device))
        self._requests, self._mean_mask, self._token_mask = requests, None, None
        out = self.base(
            input_ids=prompt_ids.to(device), attention_mask=prompt_mask.to(device),
            position_ids=prompt_positions.to(device), use_cache=True,
        )
        prompt_states = self._take()
        cache = output_cache(out)
        prompt_last_hidden = out.last_hidden_state[:, -1] if self.logprobs else None

        # Pass 2: responses (and the end-of-turn token), each on its unit's cache rows.
        members = [(u_row, index) for u_row, unit in enumerate(units) for index in unit.members]
        unit_of_row = torch.tensor([u_row for u_row, _ in members])
        lengths = [len(rendered[index].input_ids) - units[u_row].prompt_length for u_row, index in members]
        span = max(lengths)
        cont_ids = torch.zeros((len(members), span), dtype=torch.long)
        cont_mask = torch.zeros((len(members), span), dtype=torch.long)
        response_mask = torch.zeros((len(members), span), dtype=torch.float32)
        last_cols, eot_cols = [], []
        for row, ((u_row, index), length) in enumerate(zip(members, lengths)):
            example, offset = rendered[index], units[u_row].prompt_length
            cont_ids[row, :length] = torch.as_tensor(example.input_ids[offset:])
            cont_mask[row, :length] = 1
            response_mask[row, example.spans.response_start - offset : example.spans.response_end - offset] = 1
            last_cols.append(example.spans.response_last - offset)
            eot_cols.append(example.spans.eot - offset)
        cache.reorder_cache(unit_of_row.to(device))
        positions = torch.tensor([units[u].prompt_length for u, _ in members])[:, None] + torch.arange(span)[None, :]
        rows = torch.arange(len(members), device=device)
        requests = {}
        if "response_last" in self.positions:
            requests["response_last"] = (rows, torch.tensor(last_cols, device=device))
        if "eot" in self.positions:
            requests["eot"] = (rows, torch.tensor(eot_cols, device=device))
        self._requests = requests
        self._mean_mask = response_mask.to(device) if "response_mean" in self.positions else None
        self._token_mask = response_mask.to(device).bool() if self.token_layers else None
        out = self.base(
            input_ids=cont_ids.to(device),
            attention_mask=torch.cat([prompt_mask[unit_of_row], cont_mask], dim=1).to(device),
            position_ids=positions.to(device),
            use_cache=True,
            **{self._cache_kwarg: cache},
        )
        response_states = self._take()

        states = BatchStates(example_index=[index for _, index in members])
        for name in self.positions:
            if name in prompt_states:
                states.positions[name] = prompt_states[name][unit_of_row.to(device)].cpu()
            elif name in response_states:
                states.positions[name] = response_states[name].cpu()
        if self.token_layers:
            per_layer = torch.stack([self._token_captured[l] for l in self.token_layers], dim=1).cpu()
            counts = response_mask.sum(1).long().tolist()
            states.token_states = list(torch.split(per_layer, counts))
            self._token_captured = {}
        if self.logprobs:
            states.logprob_mean = self._response_logprobs(
                prompt_last_hidden[unit_of_row.to(device)], out.last_hidden_state, cont_ids.to(device), response_mask.to(device)
            )
        return states

    def _response_logprobs(self, first_hidden, hidden, targets, response_mask) -> list[float]:
        """Mean log-probability of each response's tokens, computing logits at those rows only."""
        predictors = torch.cat([first_hidden[:, None], hidden[:, :-1]], dim=1)  # state before each token
        selected = response_mask.bool()
        head = self.model.get_output_embeddings()
        softcap = getattr(self.model.config.get_text_config(), "final_logit_softcapping", None)
        flat_states, flat_targets = predictors[selected], targets[selected]
        logprobs = []
        for start in range(0, flat_states.shape[0], 512):
            logits = head(flat_states[start : start + 512]).float()
            if softcap:
                logits = torch.tanh(logits / softcap) * softcap
            logprobs.append(torch.log_softmax(logits, -1).gather(1, flat_targets[start : start + 512, None])[:, 0])
        per_token = torch.cat(logprobs)
        counts = selected.sum(1).tolist()
        return [chunk.mean().item() for chunk in torch.split(per_token, counts)]


def as_float16(tensor: torch.Tensor) -> np.ndarray:
    return tensor.to(torch.float16).numpy()
