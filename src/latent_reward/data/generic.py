"""Any table of prompt / response / rating columns, named on the command line."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from latent_reward.data.fields import check_messages, rated_example, require_fields, split_of, user_turn
from latent_reward.data.schema import Example, Message


def load(
    records: list[dict[str, Any]],
    skips: Counter[str],
    prompt_field: str,
    response_field: str,
    rating_field: str,
    group_field: str | None = None,
) -> Iterator[Example]:
    """A prompt field may hold text or a list of chat messages."""
    fields = (prompt_field, response_field, rating_field) + ((group_field,) if group_field else ())
    for row_index, record in enumerate(records):
        require_fields(record, fields, f"record {row_index}")
        example = rated_example(
            "generic",
            row_index,
            _prompt_messages(record[prompt_field], row_index),
            record[response_field],
            record[rating_field],
            skips,
            meta={
                **{
                    key: value
                    for key, value in record.items()
                    if key not in fields and isinstance(value, (str, int, float, bool))
                },
                **split_of(record),
            },
        )
        if example is not None:
            yield replace(example, group=str(record[group_field])) if group_field else example


def _prompt_messages(prompt: Any, row_index: int) -> list[Message]:
    if isinstance(prompt, str):
        return user_turn(prompt)
    check_messages(prompt, f"record {row_index}")
    return [{"role": m["role"], "content": m["content"]} for m in prompt]
