"""The normalized record every loader produces."""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from dataclasses import asdict, dataclass, field
from typing import Any

Message = dict[str, str]

GROUP_KEY_VERSION = 2  # 2: Unicode NFKC and punctuation normalized too. Saved probes record it (their prompts' keys).
# Typographic variants NFKC leaves as they are: quotes, dashes and invisible characters (a table: no maintained
# library maps exactly these, and the normalization must never change between versions without GROUP_KEY_VERSION).
_PUNCTUATION = str.maketrans(
    {
        **dict.fromkeys("\u2018\u2019\u201a\u201b\u2032\u00b4`", "'"),
        **dict.fromkeys("\u201c\u201d\u201e\u201f\u2033\u00ab\u00bb", '"'),
        **dict.fromkeys("\u2010\u2011\u2012\u2013\u2014\u2015\u2212", "-"),
        **dict.fromkeys("\u200b\u200c\u200d\u2060\ufeff\u00ad"),  # zero-width characters and soft hyphens: removed
    }
)


def group_key(prompt_messages: list[Message]) -> str:
    """A stable id for a prompt (the conversation before the rated response).

    Derived from the content so that the same prompt gets the same group in every file
    (AlpacaEval and the best-of-n set share their 805 prompts, for example). The text is normalized
    first (`normalize_prompt`), so copies that differ only in spacing, capitals, Unicode forms or
    typographic punctuation are one prompt.
    """
    payload = json.dumps([[m["role"], normalize_prompt(m["content"])] for m in prompt_messages], ensure_ascii=False)
    return hashlib.sha1(payload.encode("utf-8")).hexdigest()[:16]


def normalize_prompt(text: str) -> str:
    """Unicode NFKC (full-width forms, ligatures, non-breaking spaces...), typographic quotes, dashes and invisible
    characters to plain ones, whitespace runs to one space, no space before closing or after opening punctuation,
    and case folded."""
    text = unicodedata.normalize("NFKC", text).translate(_PUNCTUATION)
    text = re.sub(r"\s+", " ", text).strip()
    text = re.sub(r"([(\[{]) | (?=[,.;:!?)\]}])", r"\1", text)
    return text.casefold()


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
        """'dataset:split' (e.g. 'ultrafeedback_binarized:train'): how post-training data is named in a model's
        record."""
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
        return cls(
            id=record["id"],
            group=record["group"],
            messages=record["messages"],
            rating=float(record["rating"]),
            aspects=dict(record.get("aspects") or {}),
            meta=dict(record.get("meta") or {}),
        )


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
