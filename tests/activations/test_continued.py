"""activations/continued.py: states at the last token of conversations sharing their history, each history run once,
checked against a plain pass over each whole token list."""

import numpy as np
import pytest

from latent_reward.activations import continued
from latent_reward.activations.continued import continued_last_states, split_at_history
from latent_reward.activations.tokens import last_token_states
from latent_reward.models.chat import prompt_token_ids

HISTORIES = [
    [{"role": "user", "content": "what is two plus two?"}, {"role": "assistant", "content": "it is four"}],
    [{"role": "user", "content": "name a fox"}, {"role": "assistant", "content": "the quick brown one, who jumps"}],
    [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "hi"}],
]
TURNS = ["thanks!", "are you sure about that, really?", "why?"]


def conversations():
    return [[*h, {"role": "user", "content": t}] for h in HISTORIES for t in TURNS]


@pytest.mark.parametrize("per_cache", [1, 2, 32])
def test_continued_states_equal_a_whole_pass_over_each_conversation(tiny, monkeypatch, per_cache):
    monkeypatch.setattr(continued, "HISTORIES_PER_CACHE", per_cache)  # histories split over several caches
    items = conversations()
    full = [prompt_token_ids(tiny.tokenizer, c) for c in items]
    split = split_at_history(tiny.tokenizer, items, full)
    assert split is not None
    histories, tails = split
    assert [h + t for h, t in zip(histories, tails)] == full
    assert len({tuple(h) for h in histories}) == len(HISTORIES)
    for layer in (0, 1, tiny.model.config.num_hidden_layers):
        expected = last_token_states(tiny, full, layer)
        got = continued_last_states(tiny, histories, tails, layer, batch_size=2)
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
        if layer > 0:  # layer 0 is the last token's embedding, the same generation prompt for every turn
            assert np.abs(expected[0] - expected[1]).max() > 1e-3  # two turns after one history read apart


def test_nothing_is_split_where_no_history_repeats_or_a_conversation_has_none(tiny):
    once = [[*h, {"role": "user", "content": "ok"}] for h in HISTORIES]
    full = [prompt_token_ids(tiny.tokenizer, c) for c in once]
    assert split_at_history(tiny.tokenizer, once, full) is None
    single = [[{"role": "user", "content": "hi"}], [{"role": "user", "content": "hi"}]]
    assert split_at_history(tiny.tokenizer, single, [prompt_token_ids(tiny.tokenizer, c) for c in single]) is None


def test_a_split_that_does_not_reproduce_the_tokens_is_refused(tiny):
    items = conversations()[:2]
    full = [prompt_token_ids(tiny.tokenizer, c) for c in items]
    tampered = [[full[0][0] + 1, *full[0][1:]], full[1]]  # the first list no longer starts with its history
    assert split_at_history(tiny.tokenizer, items, tampered) is None
