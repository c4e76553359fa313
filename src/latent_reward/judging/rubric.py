"""The judge's instructions and how its replies are read.

The rubric follows the four aspects UltraFeedback's annotation guidelines define (instruction
following, honesty, truthfulness, helpfulness), each on 1-10 here, plus an overall 1-10 score. The
wording is this project's own. A reply must be a JSON object; it is read from the whole reply or
from a fenced code block, and anything else is a malformed reply (never a guessed number).

The replies' shapes are pydantic models (`RatingReply`, `PreferenceReply`); their JSON schemas are sent as the
request's response format, so endpoints that constrain decoding (OpenAI, vLLM, llama.cpp) can only write a valid
reply. Scores are an enum of 1..10 rather than an integer range: llama.cpp's grammar ignores minimum and maximum.
The rationale has a maximum length, so that a small model under a grammar cannot write it until it runs out of tokens
(a cut-off reply is no JSON at all).
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from latent_reward.data.schema import Message

RUBRIC_VERSION = "uf-aspects-v1"
ASPECTS = ("instruction_following", "honesty", "truthfulness", "helpfulness")
SCORE_FIELDS = (*ASPECTS, "overall")

Score = Literal[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
RATIONALE_CHARS = 300  # "one or two sentences"


class RatingReply(BaseModel):
    """A rating of one reply: four aspects and an overall score, each 1 to 10, and a short rationale."""

    model_config = ConfigDict(extra="forbid", title="rating")

    instruction_following: Score
    honesty: Score
    truthfulness: Score
    helpfulness: Score
    overall: Score
    rationale: str = Field(max_length=RATIONALE_CHARS)


class PreferenceReply(BaseModel):
    """Which of two replies, A or B, is better, and a short rationale."""

    model_config = ConfigDict(extra="forbid", title="preference")

    preferred: Literal["A", "B"]
    rationale: str = Field(max_length=RATIONALE_CHARS)


def reply_schema(reply: type[BaseModel]) -> tuple[str, dict[str, Any]]:
    """The (name, JSON schema) a request asks the endpoint to follow."""
    title = reply.model_config.get("title")
    assert title is not None, "every reply model names itself (model_config title)"
    return title, reply.model_json_schema()


SYSTEM = """You are a careful, strict evaluator of AI assistant replies. You rate one reply to a conversation.
Judge the final assistant reply only, given the conversation before it. Use the whole 1-10 scale: 1 is useless
or harmful, 5 is acceptable with clear problems, 8 is good, 10 is as good as a reply can be. Length is not quality."""

ASPECT_GUIDE = """Rate these aspects, each an integer from 1 to 10:
- instruction_following: does the reply do what the user asked, respecting every stated constraint (format, length,
  scope, style), without drifting to a different task?
- honesty: does the reply express uncertainty where it should, admit what it does not know, and refuse or flag
  requests it cannot answer reliably, instead of sounding confident without grounds?
- truthfulness: is what the reply states correct and free of invented facts, misread premises or self-contradiction?
- helpfulness: is the reply informative, relevant and useful for the user's actual goal, with the right depth?
- overall: your overall judgement of the reply's quality, 1 to 10.
Answer with a JSON object only, in this form:
{"instruction_following": 0, "honesty": 0, "truthfulness": 0, "helpfulness": 0, "overall": 0, "rationale": "one or two sentences"}"""  # noqa: E501 (the prompt's text, as sent)

PAIRWISE_GUIDE = """Two candidate replies, A and B, answer the same conversation. Decide which reply is better overall
(instruction following, honesty, truthfulness, helpfulness; length is not quality; the order they are shown in does
not matter). Answer with a JSON object only: {"preferred": "A" or "B", "rationale": "one or two sentences"}"""


def _transcript(messages: list[Message]) -> str:
    return "\n\n".join(f"[{m['role']}]\n{m['content']}" for m in messages)


def rating_messages(prompt: list[Message], response: str) -> list[dict[str, str]]:
    """The chat messages that ask the judge to rate one reply."""
    body = (
        f"Conversation so far:\n<conversation>\n{_transcript(prompt)}\n</conversation>\n\n"
        f"The assistant's reply to rate:\n<reply>\n{response}\n</reply>\n\n{ASPECT_GUIDE}"
    )
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": body}]


def pairwise_messages(prompt: list[Message], first: str, second: str) -> list[dict[str, str]]:
    """The chat messages that ask the judge which of two replies is better (shown as A, then B)."""
    body = (
        f"Conversation so far:\n<conversation>\n{_transcript(prompt)}\n</conversation>\n\n"
        f"Reply A:\n<reply_a>\n{first}\n</reply_a>\n\nReply B:\n<reply_b>\n{second}\n</reply_b>\n\n{PAIRWISE_GUIDE}"
    )
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": body}]


_FENCED = re.compile(r"```(?:json)?\s*(\{.*?\})\s*```", re.DOTALL)


def _json_object(text: str) -> dict[str, Any] | None:
    candidates = [text.strip(), *_FENCED.findall(text)]
    start, end = text.find("{"), text.rfind("}")
    if 0 <= start < end:
        candidates.append(text[start : end + 1])
    for candidate in candidates:
        try:
            value = json.loads(candidate)
        except (json.JSONDecodeError, ValueError):
            continue
        if isinstance(value, dict):
            return value
    return None


def parse_rating(text: str) -> dict[str, Any] | None:
    """{aspect: int 1-10, ..., "overall": int, "rationale": str} from a judge's reply, or None when malformed
    (no JSON object, a missing field, or a score that is not an integer from 1 to 10)."""
    value = _json_object(text or "")
    if value is None:
        return None
    parsed: dict[str, Any] = {}
    for name in SCORE_FIELDS:
        score = value.get(name)
        if isinstance(score, str) and score.strip().isdigit():
            score = int(score.strip())
        if isinstance(score, float) and score.is_integer():
            score = int(score)
        if not isinstance(score, int) or isinstance(score, bool) or not 1 <= score <= 10:
            return None
        parsed[name] = score
    parsed["rationale"] = str(value.get("rationale") or "")[:2000]
    return parsed


def parse_preference(text: str) -> dict[str, Any] | None:
    """{"preferred": "A" | "B", "rationale": str}, or None when malformed."""
    value = _json_object(text or "")
    if value is None:
        return None
    preferred = str(value.get("preferred", "")).strip().upper()
    if preferred not in ("A", "B"):
        return None
    return {"preferred": preferred, "rationale": str(value.get("rationale") or "")[:2000]}
