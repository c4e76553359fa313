"""The normalized record every loader produces."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any

Message = dict[str, str]


def group_key(prompt_messages: list[Message]) -> str:
    """A stable id for a prompt (the conversation before the rated response).

    Derived from the content so that the same prompt gets the same group in every file
    (AlpacaEval and the best-of-n set share their 805 prompts, for example). Whitespace runs and
    case are normalized first, so copies that differ only in spacing or capitals are one prompt.
    """
    payload = json.dumps([[m["role"], _normalize(m["content"])] for m in prompt_messages], ensure_ascii=False)
    return hashlib.sha1(payload.encode("utf-8")).hexdigest()[:16]


def _normalize(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().casefold()


@dataclass(frozen=True)
class Example:
    """One rated response in its conversation.

    `messages` ends with the rated assistant turn; everything before it is the prompt.
    `group` identifies the prompt: all splits are by group.
    """

    id: str
    group: str
    messages: list[Message]
    rating: float
    aspects: dict[str, float] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def prompt_messages(self) -> list[Message]:
        """The messages before the rated response."""
        return self.messages[:-1]

    @property
    def response(self) -> str:
        """The rated response's text (the last message's content)."""
        return self.messages[-1]["content"]

    @property
    def source_split(self) -> str:
        """'dataset:split' (e.g. 'ultrafeedback_binarized:train'): how post-training data is named in a model's record."""
        return f"{self.id.split(':')[0]}:{self.meta.get('source_split')}"

    @property
    def prompt_text(self) -> str:
        """The conversation before the response as plain text (the turns joined by newlines)."""
        return "\n".join(m["content"] for m in self.prompt_messages)

    def to_record(self) -> dict[str, Any]:
        """A JSON-ready dict (one line of a store's examples.jsonl or of a rated-data file)."""
        return asdict(self)

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Example:
        """The Example a `to_record` dict describes."""
        return cls(id=record["id"], group=record["group"], messages=record["messages"], rating=float(record["rating"]),
                   aspects=dict(record.get("aspects") or {}), meta=dict(record.get("meta") or {}))


def make_example(
    source: str,
    index: str | int,
    prompt_messages: list[Message],
    response: str,
    rating: float,
    aspects: dict[str, float] | None = None,
    meta: dict[str, Any] | None = None,
) -> Example:
    """Build an Example whose group comes from the prompt and whose id is `source:index`."""
    messages = [*prompt_messages, {"role": "assistant", "content": response}]
    return Example(
        id=f"{source}:{index}",
        group=group_key(prompt_messages),
        messages=messages,
        rating=float(rating),
        aspects=dict(aspects or {}),
        meta=dict(meta or {}),
    )
