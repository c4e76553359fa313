"""Render conversations with the model's chat template and locate the named token positions.

Nothing about any particular template is assumed: the spans are derived from the rendering
itself (where the prompt rendering ends, where the response text lies in the full rendering)
and mapped to tokens through the fast tokenizer's character offsets.

The prompt (everything up to and including the generation prompt) is tokenized on its own and the
rest of the conversation is tokenized after it, as the model sees its own replies while it writes
them. Tokenizing the whole text at once would let a response that starts with spaces or newlines
merge into the prompt's last token, so the prompt's states would depend on the response.
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


def fallback_stops(chat_template: str, either_role: bool = False) -> tuple[str, ...]:
    """Where a reply in the fallback format ends: a base model writing in it often goes on with the next turn instead
    of its end-of-sequence token, so the reply also stops at a new line starting the user's turn, and with
    `either_role` (a model writing the user's side) the assistant's too. Nothing for a model with its own template."""
    if chat_template != "fallback":  # LoadedModel.info.chat_template of a model rendered with the fallback
        return ()
    return ("\nUser:", "\nAssistant:") if either_role else ("\nUser:",)


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
        """Index of the last response token."""
        return self.response_end - 1

    @property
    def prompt_length(self) -> int:
        """Number of prompt tokens (up to and including `assistant_start`)."""
        return self.assistant_start + 1


@dataclass(frozen=True)
class RenderedExample:
    """One tokenized conversation: its token ids, the named spans, and whether it was truncated."""

    input_ids: list[int]
    spans: TokenSpans
    truncated: bool


def render_prompt(tokenizer, messages: list[Message]) -> str:
    """The conversation so far with the generation prompt: what the model continues from."""
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def prompt_token_ids(tokenizer, messages: list[Message]) -> list[int]:
    """Token ids of `render_prompt`, tokenized on their own (the same ids `render_example` uses)."""
    return tokenizer(render_prompt(tokenizer, messages), add_special_tokens=False)["input_ids"]


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
    prompt_text = render_prompt(tokenizer, messages[:-1])
    full_text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)
    if not full_text.startswith(prompt_text):
        raise UserError("the chat template renders the prompt differently with and without the response")
    continuation = full_text[len(prompt_text) :]
    response = messages[-1]["content"].strip()
    response_char = continuation.find(response)
    user_text = messages[-2]["content"].strip() if messages[-2]["role"] == "user" else ""
    user_char_end = prompt_text.rfind(user_text) + len(user_text) - 1 if user_text else len(prompt_text) - 1
    if response_char < 0 or not response or (user_text and user_char_end < len(user_text) - 1):
        raise UserError("cannot find the message text in the chat template's rendering")
    prompt = tokenizer(prompt_text, add_special_tokens=False, return_offsets_mapping=True)
    rest = tokenizer(continuation, add_special_tokens=False, return_offsets_mapping=True)
    n_prompt = len(prompt["input_ids"])
    response_first = _char_to_token(rest["offset_mapping"], response_char)
    response_last = _char_to_token(rest["offset_mapping"], response_char + len(response) - 1)
    if response_last < response_first or response_last + 1 >= len(rest["input_ids"]):
        raise UserError("the chat template leaves no end-of-turn token after the response")
    spans = TokenSpans(
        user_end=_char_to_token(prompt["offset_mapping"], user_char_end),
        assistant_start=n_prompt - 1,
        response_start=n_prompt + response_first,
        response_end=n_prompt + response_last + 1,
        eot=n_prompt + response_last + 1,
    )
    return _truncate(prompt["input_ids"] + rest["input_ids"], spans, max_tokens)


def _truncate(ids: list[int], spans: TokenSpans, max_tokens: int | None) -> RenderedExample:
    # The end-of-turn token is kept; whatever follows it (a trailing newline) is not needed.
    ids = ids[: spans.eot + 1]
    if max_tokens is None:
        return RenderedExample(ids, spans, truncated=False)
    if max_tokens < 8:
        raise UserError("--max-tokens must be at least 8")
    prompt_len = spans.prompt_length
    before_response = spans.response_start - prompt_len  # template tokens between the prompt and the response
    # The prompt's cap depends on max_tokens alone, never on the response, so every response to a
    # prompt sees the same prompt tokens (and the prompt positions stay identical across them).
    keep_prompt = min(prompt_len, max_tokens - max_tokens // 4)
    keep_response = max(
        1, min(spans.response_end - spans.response_start, max_tokens - keep_prompt - before_response - 1)
    )
    if keep_prompt == prompt_len and keep_response == spans.response_end - spans.response_start:
        return RenderedExample(ids, spans, truncated=False)
    drop = prompt_len - keep_prompt
    new_ids = ids[drop : spans.response_start + keep_response] + [ids[spans.eot]]
    response_start = spans.response_start - drop
    new_spans = TokenSpans(
        user_end=max(spans.user_end - drop, 0),
        assistant_start=spans.assistant_start - drop,
        response_start=response_start,
        response_end=response_start + keep_response,
        eot=response_start + keep_response,
    )
    return RenderedExample(new_ids, new_spans, truncated=True)
