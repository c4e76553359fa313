"""Preference pairs (LLMBar, MT-Bench, allenai/reward-bench) and HH-RLHF transcripts.

A pair becomes two Examples in one group: the chosen response rated 1, the rejected rated 0,
with `meta["pair"]` linking them so pair accuracy can be computed.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from typing import Any

from latent_reward.data.fields import rated_example, require_fields, split_of, text_value, user_turn
from latent_reward.data.schema import Example, Message
from latent_reward.errors import UserError

_HH_TURN = re.compile(r"(?:^|\n\n)(Human|Assistant):[ ]?")


def load_pairs(records: list[dict[str, Any]], skips: Counter[str]) -> Iterator[Example]:
    """Two Examples per usable {prompt, chosen, rejected} record (chosen rated 1, rejected 0); skips counted in
    `skips`."""
    for row_index, record in enumerate(records):
        require_fields(record, ("prompt", "chosen", "rejected"), f"pair record {row_index}")
        yield from _pair_examples(
            "pairs",
            row_index,
            user_turn(record["prompt"], f"pair record {row_index}"),
            record,
            skips,
            models={"chosen": record.get("chosen_model"), "rejected": record.get("rejected_model")},
        )


def load_hh_rlhf(records: list[dict[str, Any]], skips: Counter[str]) -> Iterator[Example]:
    """HH-RLHF: the transcript (`\\n\\nHuman:` / `\\n\\nAssistant:`) becomes proper chat turns.

    Rows with a `prompt` field hold the transcript up to the final assistant turn; the original
    Hub rows hold two whole transcripts that differ only in the final assistant turn.
    """
    for row_index, record in enumerate(records):
        require_fields(record, ("chosen", "rejected"), f"HH-RLHF record {row_index}")
        where = f"HH-RLHF record {row_index}"
        if "prompt" in record:
            prompt_text, sides = text_value(record["prompt"], "the prompt", where), record
        else:
            prompt_text, chosen, rejected = _split_transcripts(
                text_value(record["chosen"], "chosen", where), text_value(record["rejected"], "rejected", where)
            )
            sides = {"chosen": chosen, "rejected": rejected}
        prompt = parse_transcript(prompt_text, where=where)
        yield from _pair_examples("hh_rlhf", row_index, prompt, sides, skips, models={})


def _pair_examples(
    source: str,
    row_index: int,
    prompt: list[Message],
    record: dict[str, Any],
    skips: Counter[str],
    models: dict[str, Any],
) -> Iterator[Example]:
    examples = []
    for side, rating in (("chosen", 1.0), ("rejected", 0.0)):
        example = rated_example(
            source,
            f"{row_index}.{side}",
            prompt,
            record[side],
            rating,
            skips,
            meta={
                "pair": f"{source}:{row_index}",
                "side": side,
                "subset": record.get("subset"),
                "generator": models.get(side),
                **split_of(record),
            },
        )
        examples.append(example)
    present = [example for example in examples if example is not None]
    if len(present) == len(examples):
        yield from present
    elif any(example is not None for example in examples):
        skips["pair with one side unusable"] += 1


def parse_transcript(text: str, where: str) -> list[Message]:
    """'Human: ... \\n\\nAssistant: ... \\n\\nHuman: ...' -> chat messages, ending on a user turn."""
    text = text.strip()
    text = re.sub(r"\n\nAssistant:\s*$", "", text)
    parts = _HH_TURN.split(text)
    if len(parts) < 3:
        raise UserError(f"{where}: prompt is not an HH transcript ('Human: ...' turns)")
    roles = {"Human": "user", "Assistant": "assistant"}
    return [{"role": roles[role], "content": content.strip()} for role, content in zip(parts[1::2], parts[2::2])]


def _split_transcripts(chosen: str, rejected: str) -> tuple[str, str, str]:
    """The shared prefix up to the last 'Assistant:' marker, and the two final answers."""
    marker = "\n\nAssistant:"
    cut = chosen.rfind(marker)
    if cut < 0 or not rejected.startswith(chosen[: cut + len(marker)]):
        cut = rejected.rfind(marker)
    prefix = chosen[: cut + len(marker)]
    return prefix, chosen[len(prefix) :].strip(), rejected[len(prefix) :].strip()
