import pytest

from helpers import CHATML_TEMPLATE, build_tokenizer
from latent_reward.errors import UserError
from latent_reward.models.chat import FALLBACK_CHAT_TEMPLATE, fallback_stops, prompt_token_ids, render_example

ZEPHYR_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}{{ '<|user|>\n' + message['content'] + eos_token }}\n"
    "{% elif message['role'] == 'system' %}{{ '<|system|>\n' + message['content'] + eos_token }}\n"
    "{% elif message['role'] == 'assistant' %}{{ '<|assistant|>\n' + message['content'] + eos_token }}\n"
    "{% endif %}"
    "{% if loop.last and add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}"
    "{% endfor %}"
)
# Qwen2.5's format without tools: a default system prompt, then ChatML turns.
QWEN_STYLE_TEMPLATE = (
    "{% if messages[0]['role'] != 'system' %}<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. "
    "You are a helpful assistant.<|im_end|>\n{% endif %}"
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

CONVERSATIONS = [
    [
        {"role": "user", "content": "what is two plus two?"},
        {"role": "assistant", "content": "it is four. anything else?"},
    ],
    [
        {"role": "system", "content": "you are a helpful assistant"},
        {"role": "user", "content": "how do I cook pasta?"},
        {"role": "assistant", "content": "boil water, add salt."},
        {"role": "user", "content": "and then?"},
        {"role": "assistant", "content": "cook for ten minutes"},
    ],
]


def check_spans(tokenizer, messages, eot_text):
    rendered = render_example(tokenizer, messages)
    ids, spans = rendered.input_ids, rendered.spans
    prompt_ids = tokenizer(
        tokenizer.apply_chat_template(messages[:-1], tokenize=False, add_generation_prompt=True),
        add_special_tokens=False,
    )["input_ids"]
    # assistant_start is the last token of the generation prompt, and the prompt tokens agree.
    assert ids[: spans.assistant_start + 1] == prompt_ids
    # the response tokens decode to the response text; the next token ends the turn.
    assert tokenizer.decode(ids[spans.response_start : spans.response_end]).strip() == messages[-1]["content"]
    assert tokenizer.decode(ids[spans.eot : spans.eot + 1]).startswith(eot_text)
    assert spans.eot == spans.response_last + 1 == len(ids) - 1
    # user_end is the last token of the last user message's text.
    user_text = messages[-2]["content"]
    assert user_text.endswith(tokenizer.decode(ids[spans.user_end : spans.user_end + 1]).strip())
    assert tokenizer.decode(ids[: spans.user_end + 1]).endswith(user_text)
    return rendered


@pytest.mark.parametrize(
    "template, eot",
    [
        (CHATML_TEMPLATE, "<|im_end|>"),
        (ZEPHYR_TEMPLATE, "</s>"),
        (QWEN_STYLE_TEMPLATE, "<|im_end|>"),
        (FALLBACK_CHAT_TEMPLATE, "</s>"),
    ],
)
@pytest.mark.parametrize("messages", CONVERSATIONS)
def test_spans_derived_from_each_template(template, eot, messages):
    check_spans(build_tokenizer(template), messages, eot)


def test_fallback_format_is_the_documented_one():
    tokenizer = build_tokenizer(FALLBACK_CHAT_TEMPLATE)
    text = tokenizer.apply_chat_template(CONVERSATIONS[0], tokenize=False)
    assert text == "<s>User: what is two plus two?\n\nAssistant: it is four. anything else?</s>\n\n"


def test_fallback_stops_are_where_the_fallback_format_starts_a_turn():
    turns = [("user", "hi there"), ("assistant", "hello. how can I help?"), ("user", "a joke"), ("assistant", "no")]
    text = build_tokenizer(FALLBACK_CHAT_TEMPLATE).apply_chat_template(
        [{"role": role, "content": content} for role, content in turns], tokenize=False
    )
    assert fallback_stops("fallback") == ("\nUser:",) and text.count("\nUser:") == 1  # the second user turn
    both = fallback_stops("fallback", either_role=True)
    assert [text.count(stop) for stop in both] == [1, 2]  # and every assistant turn: a simulated user stops at either
    assert fallback_stops("model") == fallback_stops("model", either_role=True) == ()  # its own end-of-turn token


def test_truncation_keeps_prompt_end_and_response_start():
    tokenizer = build_tokenizer()
    prompt = {"role": "user", "content": "the quick brown fox " * 10 + "what?"}
    long_reply = [prompt, {"role": "assistant", "content": "paris is the capital " * 10}]
    full = render_example(tokenizer, long_reply)
    cut = render_example(tokenizer, long_reply, max_tokens=40)
    assert not full.truncated and cut.truncated and len(cut.input_ids) == 40
    s, f = cut.spans, full.spans
    assert s.response_start == 30  # the prompt keeps its last 3/4 of the budget
    assert cut.input_ids[:30] == full.input_ids[f.response_start - 30 : f.response_start]
    n_response = s.response_end - s.response_start
    assert (
        cut.input_ids[s.response_start : s.response_end]
        == full.input_ids[f.response_start : f.response_start + n_response]
    )
    assert cut.input_ids[s.eot] == full.input_ids[f.eot]
    # a short reply to the same prompt sees exactly the same prompt tokens
    short = render_example(tokenizer, [prompt, {"role": "assistant", "content": "paris"}], max_tokens=40)
    assert (
        short.truncated and short.input_ids[: short.spans.assistant_start + 1] == cut.input_ids[: s.assistant_start + 1]
    )


def test_templates_that_drop_the_response_are_rejected():
    tokenizer = build_tokenizer("{% for m in messages %}{{ m['content'] }}{% endfor %}")
    with pytest.raises(UserError):
        render_example(tokenizer, CONVERSATIONS[0])


@pytest.mark.integration
def test_smollm2_template_with_its_default_system_prompt(smollm2):
    rendered = check_spans(smollm2.tokenizer, CONVERSATIONS[0], "<|im_end|>")
    text = smollm2.tokenizer.decode(rendered.input_ids)
    assert text.startswith("<|im_start|>system\nYou are a helpful AI assistant named SmolLM")
    check_spans(smollm2.tokenizer, CONVERSATIONS[1], "<|im_end|>")


@pytest.mark.parametrize("template", [CHATML_TEMPLATE, FALLBACK_CHAT_TEMPLATE])
def test_prompt_tokens_never_depend_on_the_response(template):
    """Responses that start with spaces or newlines must not merge into the prompt's last token (with and without
    truncation)."""
    tokenizer = build_tokenizer(template)
    prompt = [{"role": "user", "content": "what is two plus two? " * 6}]
    replies = ["it is four.", "  it is four.", "\n\nit is four.", " \n it is four.", "\tfour", "four " * 40]
    expected = prompt_token_ids(tokenizer, prompt)
    for max_tokens in (None, 24):
        prefixes = set()
        for reply in replies:
            rendered = render_example(tokenizer, [*prompt, {"role": "assistant", "content": reply}], max_tokens)
            head = rendered.input_ids[: rendered.spans.assistant_start + 1]
            prefixes.add(tuple(head))
            if max_tokens is None:
                assert head == expected
            assert (
                tokenizer.decode(
                    rendered.input_ids[rendered.spans.response_start : rendered.spans.response_end]
                ).strip()
                == reply.strip()[
                    : len(
                        tokenizer.decode(
                            rendered.input_ids[rendered.spans.response_start : rendered.spans.response_end]
                        ).strip()
                    )
                ]
            )
        assert len(prefixes) == 1, f"prompt tokens differ across responses (max_tokens={max_tokens})"
