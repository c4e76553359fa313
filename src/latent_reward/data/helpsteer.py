"""HelpSteer2 (nvidia/HelpSteer2): one response per row, five 0-4 attribute ratings."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from typing import Any

from latent_reward.data.fields import rated_example, require_fields, split_of, text_value
from latent_reward.data.schema import Example, Message

ATTRIBUTES = ("helpfulness", "correctness", "coherence", "complexity", "verbosity")
# HelpSteer2 writes earlier turns of multi-turn prompts inline, separated by these markers.
_TURN_MARKER = re.compile(r"\n?<extra_id_1>(User|Assistant)\n")


def load(records: list[dict[str, Any]], skips: Counter[str]) -> Iterator[Example]:
    """The rating is `helpfulness`; all five attributes are kept as aspects."""
    for row_index, record in enumerate(records):
        require_fields(record, ("prompt", "response", "helpfulness"), f"HelpSteer2 record {row_index}")
        example = rated_example(
            "helpsteer2",
            row_index,
            parse_turns(text_value(record["prompt"], "the prompt", f"HelpSteer2 record {row_index}")),
            record["response"],
            record["helpfulness"],
            skips,
            aspects={name: record.get(name) for name in ATTRIBUTES},
            meta=split_of(record),
        )
        if example is not None:
            yield example


def parse_turns(prompt: str) -> list[Message]:
    """Split an inline multi-turn HelpSteer2 prompt into chat messages (first turn: user)."""
    pieces = _TURN_MARKER.split(prompt)
    messages = [{"role": "user", "content": pieces[0].strip()}]
    for role, text in zip(pieces[1::2], pieces[2::2]):
        messages.append({"role": role.lower(), "content": text.strip()})
    return messages
