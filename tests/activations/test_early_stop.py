"""A read of early layers runs only the blocks it needs (`blocks_through`): the states equal a read of every layer,
the later blocks never run, and the model is whole again afterwards."""

import numpy as np
import pytest

from helpers import tiny_loaded
from latent_reward.activations.tokens import read_positions, response_token_states
from latent_reward.models.architecture import blocks_through, decoder_layers

CONVERSATIONS = [
    [{"role": "user", "content": prompt}, {"role": "assistant", "content": reply}]
    for prompt, reply in (
        ("what is two plus two?", "it is four"),
        ("what is two plus two?", "five, sadly, or so I was told"),
        ("the quick brown fox", "jumps over it"),
    )
]


@pytest.fixture(scope="module")
def deep():
    return tiny_loaded(n_layers=5)


def calls_per_block(loaded):
    counts = [0] * len(decoder_layers(loaded.model))
    handles = [
        block.register_forward_hook(lambda *_, i=i: counts.__setitem__(i, counts[i] + 1))
        for i, block in enumerate(decoder_layers(loaded.model))
    ]
    return counts, handles


@pytest.mark.parametrize("layers", [(0,), (1, 2), (0, 3)])
def test_reading_early_layers_gives_the_same_states_without_the_later_blocks(deep, layers):
    positions = ("assistant_start", "response_last", "response_mean", "eot")
    full = read_positions(deep, CONVERSATIONS, positions, tuple(range(6)))
    counts, handles = calls_per_block(deep)
    try:
        early = read_positions(deep, CONVERSATIONS, positions, layers)
    finally:
        for handle in handles:
            handle.remove()
    for position in positions:
        np.testing.assert_allclose(early[position], full[position][:, list(layers)], rtol=1e-5, atol=1e-5)
    needed = max(max(layers), 1)  # residual index 0 is read by block 0's pre-hook
    assert all(c > 0 for c in counts[:needed]) and not any(counts[needed:])
    assert len(decoder_layers(deep.model)) == 5  # every block is back


def test_every_response_token_at_an_early_layer_equals_the_full_pass(deep):
    full, _ = response_token_states(deep, CONVERSATIONS, 5)
    early, _ = response_token_states(deep, CONVERSATIONS, 2)
    counts, handles = calls_per_block(deep)
    try:
        again, _ = response_token_states(deep, CONVERSATIONS, 2)
    finally:
        for handle in handles:
            handle.remove()
    assert not any(counts[2:])
    for a, b in zip(early, again):
        np.testing.assert_array_equal(a, b)
    assert any(np.abs(a - b).max() > 1e-3 for a, b in zip(full, early))  # layer 2 is not layer 5


def test_the_blocks_come_back_when_the_pass_fails(deep):
    with pytest.raises(RuntimeError):
        with blocks_through(deep.model, 2):
            assert len(decoder_layers(deep.model)) == 2
            raise RuntimeError("a failing forward")
    assert len(decoder_layers(deep.model)) == 5
    with blocks_through(deep.model, 5):  # the last index: nothing left out
        assert len(decoder_layers(deep.model)) == 5
