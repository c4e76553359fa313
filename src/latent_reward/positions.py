"""The named token positions (see DESIGN.md): one table drives extraction, trajectories and the CLI.

A position is read either in the prompt pass (states that exist before the response: shared by
every response to the prompt) or in the response pass. Its rule maps an example's token spans to
the token it reads (an index) or the tokens it averages (a (start, end) range). Adding a position is
one entry here (plus a span field in `models.chat.TokenSpans` if it needs a new landmark).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from latent_reward.errors import UserError

if TYPE_CHECKING:
    from latent_reward.models.chat import TokenSpans


@dataclass(frozen=True)
class Position:
    """One named token position: where it is read and how its state is reduced."""

    name: str
    stage: Literal["prompt", "response"]  # the forward pass that reads it
    reduce: Literal["token", "mean", "all"]  # one token's state, the mean over a range, or every token of it
    rule: Callable[[TokenSpans], int | tuple[int, int]]  # token index ("token"), or (start, end) otherwise
    description: str

    def token(self, spans: TokenSpans) -> int:
        """The index of the token a single-token position reads in `spans`."""
        where = self.rule(spans)
        if isinstance(where, tuple):
            raise TypeError(f"position {self.name} reads a range of tokens, not one")
        return where

    def span(self, spans: TokenSpans) -> tuple[int, int]:
        """The (start, end) range of tokens a range position reads in `spans` (end exclusive)."""
        where = self.rule(spans)
        if not isinstance(where, tuple):
            raise TypeError(f"position {self.name} reads one token, not a range")
        return where


def _index(attribute: str) -> Callable[[TokenSpans], int]:
    return lambda spans: getattr(spans, attribute)


def _range(start: str, end: str) -> Callable[[TokenSpans], tuple[int, int]]:
    return lambda spans: (getattr(spans, start), getattr(spans, end))


TABLE: tuple[Position, ...] = (
    Position("user_end", "prompt", "token", _index("user_end"), "last token of the user's message text"),
    Position(
        "assistant_start",
        "prompt",
        "token",
        _index("assistant_start"),
        "last token of the generation prompt: the state right before the model writes",
    ),
    Position("response_last", "response", "token", _index("response_last"), "last token of the response text"),
    Position("eot", "response", "token", _index("eot"), "the end-of-turn token after the response"),
    Position(
        "response_mean", "response", "mean", _range("response_start", "response_end"), "mean over the response tokens"
    ),
    Position(
        "response_tokens",
        "response",
        "all",
        _range("response_start", "response_end"),
        "every response token, on chosen layers only (large; for trajectories)",
    ),
)
BY_NAME: dict[str, Position] = {p.name: p for p in TABLE}

POSITIONS: tuple[str, ...] = tuple(p.name for p in TABLE if p.reduce != "all")  # stored as [n, layers, d]
PROMPT_POSITIONS: tuple[str, ...] = tuple(p.name for p in TABLE if p.stage == "prompt" and p.reduce != "all")
RESPONSE_POSITIONS: tuple[str, ...] = tuple(p.name for p in TABLE if p.stage == "response" and p.reduce != "all")
TOKEN_POSITION = next(p.name for p in TABLE if p.reduce == "all")  # stored ragged: [tokens, token layers, d]


def help_text() -> str:
    """One line per position, for the CLI's --positions help."""
    return "; ".join(f"{p.name}: {p.description}" for p in TABLE)


def parse_positions(text: str | Sequence[str]) -> tuple[str, ...]:
    """'user_end,eot' or a list -> validated tuple in the table's order."""
    names = [p.strip() for p in (text.split(",") if isinstance(text, str) else text) if p.strip()]
    unknown = [n for n in names if n not in BY_NAME]
    if unknown or not names:
        raise UserError(f"unknown position(s) {', '.join(unknown) or '(none given)'}; choose from {', '.join(BY_NAME)}")
    return tuple(p.name for p in TABLE if p.name in names)


def parse_layers(text: str | Sequence[int] | None, n_layers: int) -> tuple[int, ...]:
    """'all', '0,5,10' or a list -> residual-stream indices 0 (embeddings) .. n_layers."""
    if text is None or text == "all":
        return tuple(range(n_layers + 1))
    try:
        layers = [int(x) for x in text.split(",")] if isinstance(text, str) else [int(x) for x in text]
    except ValueError:
        raise UserError(f"layers must be 'all' or comma-separated integers, not {text!r}") from None
    bad = [layer for layer in layers if not 0 <= layer <= n_layers]
    if bad or not layers:
        raise UserError(f"layer {bad[0] if bad else '(none)'} is out of range: this model has layers 0..{n_layers}")
    return tuple(sorted(set(layers)))
