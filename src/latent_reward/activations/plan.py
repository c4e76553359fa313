"""Deterministic work plan for extraction: prompt units, shards and batches.

A unit is a set of examples whose rendered prompts are token-identical, so one prompt forward
pass serves all of them. Units are sorted by length before packing so batches carry little
padding. The plan depends only on the data and the options, which is what makes a resumed run
equal to an uninterrupted one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from latent_reward.models.chat import RenderedExample


@dataclass(frozen=True)
class Unit:
    prompt_length: int
    members: tuple[int, ...]  # example indices
    continuation_lengths: tuple[int, ...]

    def cost(self) -> int:
        """Padded tokens this unit adds to a batch (prompt once, responses to the longest)."""
        return self.prompt_length + len(self.members) * max(self.continuation_lengths)


def make_units(rendered: list[RenderedExample], share_prompts: bool, max_unit_tokens: int) -> list[Unit]:
    """Group examples by identical prompt tokens, then split groups where sharing costs more
    than it saves: padding a short response up to a long one wastes more tokens than running
    the prompt again once the difference in length, times the responses padded, exceeds the
    prompt's length."""
    by_prompt: dict[bytes, list[int]] = {}
    for index, example in enumerate(rendered):
        prefix = np.asarray(example.input_ids[: example.spans.prompt_length], dtype=np.int64).tobytes()
        key = prefix if share_prompts else prefix + index.to_bytes(8, "little")
        by_prompt.setdefault(key, []).append(index)
    units = []
    for members in by_prompt.values():
        prompt_length = rendered[members[0]].spans.prompt_length
        members.sort(key=lambda i: (len(rendered[i].input_ids), i))
        current: list[int] = []
        for index in members:
            longest = len(rendered[index].input_ids) - prompt_length
            previous = len(rendered[current[-1]].input_ids) - prompt_length if current else longest
            padding_added = len(current) * (longest - previous)
            too_big = prompt_length + (len(current) + 1) * longest > max_unit_tokens
            if current and (padding_added > prompt_length or too_big):
                units.append(_unit(rendered, prompt_length, current))
                current = []
            current.append(index)
        units.append(_unit(rendered, prompt_length, current))
    # Responses dominate the cost: sort by the longest response first, then by prompt length.
    units.sort(key=lambda u: (max(u.continuation_lengths), u.prompt_length, u.members[0]))
    return units


def _unit(rendered: list[RenderedExample], prompt_length: int, members: list[int]) -> Unit:
    lengths = tuple(len(rendered[i].input_ids) - prompt_length for i in members)
    return Unit(prompt_length, tuple(members), lengths)


def make_shards(units: list[Unit], shard_size: int) -> list[list[Unit]]:
    shards: list[list[Unit]] = [[]]
    count = 0
    for unit in units:
        if count >= shard_size:
            shards.append([])
            count = 0
        shards[-1].append(unit)
        count += len(unit.members)
    return [shard for shard in shards if shard]


def make_batches(units: list[Unit], batch_tokens: int) -> list[list[Unit]]:
    """Pack consecutive units while the padded batch stays within `batch_tokens`."""
    batches: list[list[Unit]] = []
    current: list[Unit] = []
    for unit in units:
        candidate = current + [unit]
        if current and padded_tokens(candidate) > batch_tokens:
            batches.append(current)
            candidate = [unit]
        current = candidate
    if current:
        batches.append(current)
    return batches


def padded_tokens(units: list[Unit]) -> int:
    """Tokens one batch of these units computes, padding included (prompts left-padded, responses right-padded)."""
    prompt = len(units) * max(u.prompt_length for u in units)
    responses = sum(len(u.members) for u in units) * max(max(u.continuation_lengths) for u in units)
    return prompt + responses
