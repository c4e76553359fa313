"""The named token positions (see DESIGN.md) and which forward pass each is read in."""

from __future__ import annotations

from latent_reward.errors import UserError

# Read in the prompt pass (shared by every response to the same prompt).
PROMPT_POSITIONS = ("user_end", "assistant_start")
# Read in the response pass.
RESPONSE_POSITIONS = ("response_last", "eot", "response_mean")
# Every response token, on chosen layers only (it is large): stored ragged.
TOKEN_POSITION = "response_tokens"

POSITIONS = (*PROMPT_POSITIONS, *RESPONSE_POSITIONS)
DEFAULT_POSITIONS = POSITIONS


def parse_positions(text: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """'user_end,eot' or a list -> validated tuple in the canonical order."""
    names = [p.strip() for p in (text.split(",") if isinstance(text, str) else text) if p.strip()]
    unknown = [n for n in names if n not in (*POSITIONS, TOKEN_POSITION)]
    if unknown or not names:
        raise UserError(
            f"unknown position(s) {', '.join(unknown) or '(none given)'}; choose from {', '.join((*POSITIONS, TOKEN_POSITION))}"
        )
    return tuple(p for p in (*POSITIONS, TOKEN_POSITION) if p in names)


def parse_layers(text: str | list[int] | None, n_layers: int) -> tuple[int, ...]:
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
