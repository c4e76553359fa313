"""Rated conversations as TRL datasets: preferred responses (SFT), preference pairs (DPO), prompts (online RL).

Only prompts of the data's training split take part when the data names a held-out split (those prompts
stay unseen, for evaluating the checkpoints).
"""

from __future__ import annotations

from collections import defaultdict

from latent_reward.data.schema import Example
from latent_reward.data.splits import HELD_OUT_SPLITS
from latent_reward.errors import UserError


def training_examples(examples: list[Example]) -> list[Example]:
    """The examples outside the data's held-out split (all of them when it names none)."""
    return [e for e in examples if str(e.meta.get("source_split") or "").lower() not in HELD_OUT_SPLITS]


def _by_prompt(examples: list[Example]) -> dict[str, list[Example]]:
    groups: dict[str, list[Example]] = defaultdict(list)
    for example in examples:
        groups[example.meta.get("pair") or example.group].append(example)
    return groups


def sft_records(examples: list[Example]) -> list[dict]:
    """{"messages": conversation} with each prompt's best-rated response."""
    records = []
    for members in _by_prompt(training_examples(examples)).values():
        best = max(members, key=lambda e: e.rating)
        records.append({"messages": best.messages})
    if not records:
        raise UserError("no training examples for SFT")
    return records


def dpo_records(examples: list[Example]) -> list[dict]:
    """{"prompt", "chosen", "rejected"} in conversational form: each prompt's best- against its worst-rated response
    (prompts whose responses are all rated alike give no pair)."""
    records = []
    for members in _by_prompt(training_examples(examples)).values():
        best, worst = max(members, key=lambda e: e.rating), min(members, key=lambda e: e.rating)
        if best.rating > worst.rating:
            records.append(
                {"prompt": best.prompt_messages, "chosen": best.messages[-1:], "rejected": worst.messages[-1:]}
            )
    if not records:
        raise UserError(
            "DPO needs preference pairs: prompts with two or more differently rated responses (or chosen/rejected data)"
        )
    return records


def prompt_records(examples: list[Example]) -> list[dict]:
    """{"prompt": conversation ending in a user turn}, one per prompt, for online RL."""
    records = [{"prompt": members[0].prompt_messages} for members in _by_prompt(training_examples(examples)).values()]
    if not records:
        raise UserError("no prompts for online training")
    return records
