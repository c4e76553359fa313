"""Checks shared by every loader: ratings must be numbers, responses must not be empty."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

from latent_reward.data.schema import Example, Message, make_example
from latent_reward.errors import UserError


def parse_rating(value: Any, where: str) -> float | None:
    """A rating as float; None when it is missing (null, NaN, empty); an error when not a number."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        raise UserError(f"{where}: rating {value!r} is a boolean, not a number")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise UserError(f"{where}: rating {value!r} is not a number") from None
    return None if math.isnan(number) else number


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
    if not isinstance(response, str) or not response.strip():
        skips["empty response"] += 1
        return None
    if not prompt_messages or not all(m.get("content", "").strip() for m in prompt_messages):
        skips["empty prompt"] += 1
        return None
    clean_aspects = {}
    for name, raw in (aspects or {}).items():
        parsed = _optional_number(raw)
        if parsed is not None:
            clean_aspects[name] = parsed
    return make_example(source, index, prompt_messages, response, value, clean_aspects, meta)


def _optional_number(value: Any) -> float | None:
    """Aspect ratings are optional: 'N/A' and other non-numbers are dropped, not errors."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def user_turn(text: str) -> list[Message]:
    return [{"role": "user", "content": text}]


def require_fields(record: dict[str, Any], names: tuple[str, ...], where: str) -> None:
    missing = [name for name in names if name not in record]
    if missing:
        raise UserError(f"{where}: missing field(s) {', '.join(missing)}")
