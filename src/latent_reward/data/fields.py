"""Checks shared by every loader: ratings must be numbers, responses must not be empty."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

from latent_reward.data.schema import Example, Message, make_example
from latent_reward.errors import UserError


def parse_rating(value: Any, where: str) -> float | None:
    """A rating as float; None when it is missing (null, empty); an error when not a number.

    NaN and infinities (also written as strings such as "inf" or "NaN") are returned as NaN, for the
    caller to skip and count: they are never used.
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise UserError(f"{where}: rating {_short(value)} is not a number")
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise UserError(f"{where}: rating {_short(value)} is not a number") from None
    return number if math.isfinite(number) else math.nan


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def split_of(record: dict[str, Any]) -> dict[str, str]:
    """{"source_split": ...} when the record names the dataset split it belongs to (train / eval...)."""
    value = record.get("split")
    return {"source_split": value} if isinstance(value, str) and value else {}


def rated_example(
    source: str,
    index: str | int,
    prompt_messages: list[Message],
    response: Any,
    rating: Any,
    skips: Counter[str],
    aspects: dict[str, Any] | None = None,
    meta: dict[str, Any] | None = None,
) -> Example | None:
    """An Example, or None (counted in `skips`) when its rating is missing or its response empty."""
    where = f"{source} record {index}"
    value = parse_rating(rating, where)
    if value is None:
        skips["missing rating"] += 1
        return None
    if math.isnan(value):
        skips["non-finite rating"] += 1
        return None
    if response is not None and not isinstance(response, str):
        raise UserError(f"{where}: the response is {type(response).__name__}, not text")
    if not isinstance(response, str) or not response.strip():
        skips["empty response"] += 1
        return None
    check_messages(prompt_messages, where)
    if not prompt_messages or not all(m["content"].strip() for m in prompt_messages):
        skips["empty prompt"] += 1
        return None
    clean_aspects = {}
    for name, raw in (aspects or {}).items():
        parsed = _optional_number(raw)
        if parsed is not None:
            clean_aspects[name] = parsed
    return make_example(source, index, prompt_messages, response, value, clean_aspects, meta)


def _optional_number(value: Any) -> float | None:
    """Aspect ratings are optional: 'N/A', non-finite values and other non-numbers are dropped, not errors."""
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


ROLES = ("system", "user", "assistant")


def check_messages(messages: Any, where: str) -> None:
    """Chat messages must be a list of {role, content} with a known role and text content."""
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        raise UserError(f"{where}: the prompt must be text or a list of {{role, content}} messages")
    for message in messages:
        if message.get("role") not in ROLES or not isinstance(message.get("content"), str):
            raise UserError(
                f"{where}: each message needs a role ({', '.join(ROLES)}) and text content, not {_short(message)}"
            )


def text_value(value: Any, what: str, where: str) -> str:
    """A text field's value, or a one-line error naming the field when it is not text."""
    if not isinstance(value, str):
        raise UserError(f"{where}: {what} must be text, not {type(value).__name__}")
    return value


def user_turn(text: Any, where: str = "record") -> list[Message]:
    """A one-message prompt: [{"role": "user", "content": text}], or an error when `text` is not text."""
    return [{"role": "user", "content": text_value(text, "the prompt", where)}]


def require_fields(record: dict[str, Any], names: tuple[str, ...], where: str) -> None:
    """`record` must have every field in `names`: a one-line error names the missing ones."""
    missing = [name for name in names if name not in record]
    if missing:
        raise UserError(f"{where}: missing field(s) {', '.join(missing)}")
