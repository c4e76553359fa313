"""latent-reward's own rated-data format: one Example per line (what `respond` and `judge` write).

    {"id": ..., "group": ..., "messages": [..., {"role": "assistant", "content": ...}], "rating": 7.0 or null,
     "aspects": {...}, "meta": {"generator": ..., "judge": {...}}}

A null rating (a response not yet judged) is skipped and counted like any missing rating. The group
is recomputed from the prompt when absent.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

from latent_reward.data.fields import check_messages, rated_example, require_fields
from latent_reward.data.schema import Example
from latent_reward.errors import UserError

FIELDS = ("messages", "rating")


def split_messages(record: dict[str, Any], where: str) -> tuple[list[dict[str, str]], Any]:
    """(prompt messages, response text) of a record whose messages end with the assistant's reply."""
    messages = record["messages"]
    check_messages(messages, where)
    if not messages or messages[-1]["role"] != "assistant":
        raise UserError(f"{where}: messages must end with the assistant's reply")
    return [{"role": m["role"], "content": m["content"]} for m in messages[:-1]], messages[-1]["content"]


def load(records: list[dict[str, Any]], skips: Counter[str]) -> Iterator[Example]:
    """Examples of native-format records (id and group kept when present); skipped records are counted in `skips`."""
    for row_index, record in enumerate(records):
        where = f"record {row_index}"
        require_fields(record, FIELDS, where)
        prompt, response = split_messages(record, where)
        meta = record.get("meta") if isinstance(record.get("meta"), dict) else {}
        example = rated_example(
            "native",
            row_index,
            prompt,
            response,
            record["rating"],
            skips,
            aspects=record.get("aspects") if isinstance(record.get("aspects"), dict) else None,
            meta=meta,
        )
        if example is not None:
            yield Example(
                id=str(record.get("id") or example.id),
                group=str(record.get("group") or example.group),
                messages=example.messages,
                rating=example.rating,
                aspects=example.aspects,
                meta=example.meta,
            )
