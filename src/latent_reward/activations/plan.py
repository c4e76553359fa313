"""Deterministic work plan for extraction: prompt units, shards, chunks and batches.

A unit is a set of examples whose rendered prompts are token-identical, so one prompt forward pass
serves all of them. Work is done in chunks of units of similar prompt length: one prompt pass over
the chunk, then its responses batched by their own length, each on its prompt's rows of the chunk's
KV cache. Sorting each pass by its own length keeps padding low in both. The plan depends only on the
data, the options and the device type (which prices a forward call); the states do not depend on the plan,
which is what makes a resumed run equal to an uninterrupted one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from latent_reward.batching import partition_by_length
from latent_reward.models.chat import RenderedExample


@dataclass(frozen=True)
class Unit:
    """Examples whose rendered prompts are token-identical, so one prompt pass serves them all."""

    prompt_length: int
    members: tuple[int, ...]  # example indices
    continuation_lengths: tuple[int, ...]  # tokens after the prompt (response + end of turn), per member

    @property
    def tokens(self) -> int:
        """Tokens this unit computes: its prompt once, then each continuation."""
        return self.prompt_length + sum(self.continuation_lengths)


def make_units(rendered: list[RenderedExample], share_prompts: bool = True) -> list[Unit]:
    """Group examples by identical prompt tokens, sorted by prompt length (so a chunk holds prompts of similar
    length)."""
    by_prompt: dict[bytes, list[int]] = {}
    for index, example in enumerate(rendered):
        prefix = np.asarray(example.input_ids[: example.spans.prompt_length], dtype=np.int64).tobytes()
        key = prefix if share_prompts else prefix + index.to_bytes(8, "little")
        by_prompt.setdefault(key, []).append(index)
    units = []
    for members in by_prompt.values():
        prompt_length = rendered[members[0]].spans.prompt_length
        lengths = tuple(len(rendered[i].input_ids) - prompt_length for i in members)
        units.append(Unit(prompt_length, tuple(members), lengths))
    units.sort(key=lambda u: (u.prompt_length, u.members[0]))
    return units


def make_shards(units: list[Unit], shard_size: int) -> list[list[Unit]]:
    """Consecutive units, about `shard_size` examples each: the unit of resumption."""
    shards: list[list[Unit]] = [[]]
    count = 0
    for unit in units:
        if count >= shard_size:
            shards.append([])
            count = 0
        shards[-1].append(unit)
        count += len(unit.members)
    return [shard for shard in shards if shard]


def prompt_chunks(units: list[Unit], prompt_tokens: int, device_type: str) -> list[list[Unit]]:
    """Units in order of prompt length, grouped so that each chunk's padded prompt pass stays within `prompt_tokens`."""
    ordered = sorted(units, key=lambda u: (u.prompt_length, u.members[0]))
    return partition_by_length(ordered, lambda u: u.prompt_length, prompt_tokens, device_type)


def response_batches(units: list[Unit], batch_tokens: int, device_type: str) -> list[list[tuple[int, int]]]:
    """(unit index, member position) pairs of one chunk batched for the response pass: by continuation length,
    each batch's padded size within `batch_tokens`."""
    items = [(u, m) for u, unit in enumerate(units) for m in range(len(unit.members))]
    items.sort(key=lambda item: (units[item[0]].continuation_lengths[item[1]], item))
    return partition_by_length(
        items, lambda item: units[item[0]].continuation_lengths[item[1]], batch_tokens, device_type
    )


def padded_tokens(chunks: list[list[Unit]], batch_tokens: int, device_type: str) -> int:
    """Tokens the two passes over these chunks compute, padding included."""
    total = 0
    for chunk in chunks:
        total += len(chunk) * max(u.prompt_length for u in chunk)
        total += sum(
            len(batch) * max(chunk[u].continuation_lengths[m] for u, m in batch)
            for batch in response_batches(chunk, batch_tokens, device_type)
        )
    return total


def forward_calls(chunks: list[list[Unit]], batch_tokens: int, device_type: str) -> int:
    """Forward calls the two passes over these chunks make."""
    return sum(1 + len(response_batches(chunk, batch_tokens, device_type)) for chunk in chunks)
