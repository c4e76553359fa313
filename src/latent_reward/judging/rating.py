"""Replies rated with the rubric: one request per reply and repeat (keyed for the cache), and the judge's overall
rating of text no one has rated yet (steer's replies, online training's completions)."""

from __future__ import annotations

from typing import Any

import numpy as np

from latent_reward.data.schema import Message
from latent_reward.judging.cache import JudgeCache, item_key
from latent_reward.judging.client import Endpoint, Request, Usage, complete_all
from latent_reward.judging.rubric import RUBRIC_VERSION, RatingReply, parse_rating, rating_messages, reply_schema


def rate(
    items: list[tuple[list[Message], str]],
    endpoint: Endpoint,
    cache: JudgeCache,
    repeats: int = 1,
    progress: bool = True,
) -> tuple[list[list[dict[str, Any] | None]], Usage]:
    """The judge's parsed rating ({aspect: score, "overall": score, "rationale": text}) of each (prompt messages, reply)
    in each repeat, [item][repeat] (None where the reply stayed malformed), and the usage."""
    schema = reply_schema(RatingReply)
    requests = [
        Request(
            item_key(endpoint.model, RUBRIC_VERSION, [prompt, reply, r, endpoint.temperature]),
            rating_messages(prompt, reply),
            parse_rating,
            schema,
        )
        for r in range(repeats)
        for prompt, reply in items
    ]
    parsed, _, usage = complete_all(endpoint, requests, cache, RUBRIC_VERSION, progress)
    return [[parsed[requests[r * len(items) + i].key] for r in range(repeats)] for i in range(len(items))], usage


def overall_ratings(
    conversations: list[list[Message]], endpoint: Endpoint, cache: JudgeCache, progress: bool = True
) -> np.ndarray:
    """float64 [n]: the judge's overall rating (1-10) of each conversation's last (assistant) turn; NaN where it gave
    none."""
    ratings, _ = rate([(c[:-1], c[-1]["content"]) for c in conversations], endpoint, cache, progress=progress)
    return np.array([r[0]["overall"] if r[0] is not None else np.nan for r in ratings], dtype=np.float64)
