"""Render conversations with the model's chat template and locate the named token positions.

Nothing about any particular template is assumed: the spans are derived from the rendering
itself (where the prompt rendering ends, where the response text lies in the full rendering)
and mapped to tokens through the fast tokenizer's character offsets.
"""

from __future__ import annotations

from dataclasses import dataclass

from latent_reward.data.schema import Message
from latent_reward.errors import UserError

# The documented fallback for models without a chat template (base models such as gemma-3-270m):
#   [bos]User: <text>\n\nAssistant: <response><eos>\n\n...
# A system message is written as plain text followed by a blank line.
FALLBACK_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ message['content'] }}\n\n"
    "{% elif message['role'] == 'user' %}User: {{ message['content'] }}\n\n"
    "{% else %}Assistant: {{ message['content'] }}{{ eos_token }}\n\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}Assistant:{% endif %}"
)


@dataclass(frozen=True)
class TokenSpans:
    """Token indices of the named positions in one rendered example.

    `response_start`/`response_end` bound the response tokens (end exclusive). `prompt_length`
    is the number of tokens up to and including `assistant_start`: examples whose first
    `prompt_length` tokens agree can share one prompt forward pass.
    """

    user_end: int
    assistant_start: int
    response_start: int
    response_end: int
    eot: int

    @property
    def response_last(self) -> int:
        return self.response_end - 1

    @property
    def prompt_length(self) -> int:
        return self.assistant_start + 1


@dataclass(frozen=True)
class RenderedExample:
    input_ids: list[int]
    spans: TokenSpans
    truncated: bool


def _render(tokenizer, messages: list[Message], add_generation_prompt: bool) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)


def _char_to_token(offsets: list[tuple[int, int]], char: int) -> int:
    """Index of the token covering character `char` (the last token starting at or before it)."""
    best = 0
    for index, (start, end) in enumerate(offsets):
        if start <= char and end > start:
            best = index
        if start > char:
            break
    return best


def render_example(tokenizer, messages: list[Message], max_tokens: int | None = None) -> RenderedExample:
    """Tokenize a conversation whose last message is the rated assistant turn, with its spans.

    Truncation (`max_tokens`): the prompt keeps its last min(length, max_tokens - max_tokens // 4)
    tokens, whatever the response (so all responses to a prompt share the same prompt tokens); the
    response keeps as many of its first tokens as then fit; the end-of-turn token is always kept.
    `truncated` reports whether anything was removed.
    """
    if not getattr(tokenizer, "is_fast", False):
        raise UserError("latent-reward needs a fast tokenizer (character offsets) to locate token positions")
    prompt_text = _render(tokenizer, messages[:-1], add_generation_prompt=True)
    full_text = _render(tokenizer, messages, add_generation_prompt=False)
    if not full_text.startswith(prompt_text):
        raise UserError("the chat template renders the prompt differently with and without the response")
    response = messages[-1]["content"].strip()
    response_char = full_text.find(response, len(prompt_text))
    user_text = messages[-2]["content"].strip() if messages[-2]["role"] == "user" else None
    user_char_end = prompt_text.rfind(user_text) + len(user_text) - 1 if user_text else len(prompt_text) - 1
    if response_char < 0 or (user_text and user_char_end < len(user_text) - 1):
        raise UserError("cannot find the message text in the chat template's rendering")
    encoding = tokenizer(full_text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = encoding["input_ids"], encoding["offset_mapping"]
    assistant_start = _char_to_token(offsets, len(prompt_text) - 1)
    response_start = max(_char_to_token(offsets, response_char), assistant_start + 1)
    response_last = _char_to_token(offsets, response_char + len(response) - 1)
    if response_last < response_start or response_last + 1 >= len(ids):
        raise UserError("the chat template leaves no end-of-turn token after the response")
    spans = TokenSpans(
        user_end=_char_to_token(offsets, user_char_end),
        assistant_start=assistant_start,
        response_start=response_start,
        response_end=response_last + 1,
        eot=response_last + 1,
    )
    return _truncate(ids, spans, max_tokens)


def _truncate(ids: list[int], spans: TokenSpans, max_tokens: int | None) -> RenderedExample:
    # The end-of-turn token is kept; whatever follows it (a trailing newline) is not needed.
    ids = ids[: spans.eot + 1]
    if max_tokens is None:
        return RenderedExample(ids, spans, truncated=False)
    if max_tokens < 8:
        raise UserError("--max-tokens must be at least 8")
    prompt_len, response_len = spans.response_start, spans.response_end - spans.response_start
    tail = len(ids) - spans.response_end  # the end-of-turn token
    # The prompt's cap depends on max_tokens alone, never on the response, so every response to a
    # prompt sees the same prompt tokens (and the prompt positions stay identical across them).
    keep_prompt = min(prompt_len, max_tokens - max_tokens // 4)
    keep_response = max(1, min(response_len, max_tokens - keep_prompt - tail))
    if keep_prompt == prompt_len and keep_response == response_len:
        return RenderedExample(ids, spans, truncated=False)
    drop = prompt_len - keep_prompt
    new_ids = ids[drop:prompt_len] + ids[spans.response_start : spans.response_start + keep_response] + ids[spans.response_end :]
    new_spans = TokenSpans(
        user_end=max(spans.user_end - drop, 0),
        assistant_start=spans.assistant_start - drop,
        response_start=keep_prompt,
        response_end=keep_prompt + keep_response,
        eot=keep_prompt + keep_response,
    )
    return RenderedExample(new_ids, new_spans, truncated=True)
