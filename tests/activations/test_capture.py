"""`lr.capture`: residual states in memory, read by the extraction's own forward, equal to what `extract` stores."""

import numpy as np
import pytest

import latent_reward as lr
from helpers import synthetic_examples
from latent_reward.activations import ExtractConfig, extract
from latent_reward.errors import UserError


def test_capture_equals_the_extracted_store_and_becomes_a_store(tiny, tmp_path):
    examples = synthetic_examples(n_prompts=12, per_prompt=3)
    positions, layers = ("user_end", "assistant_start", "eot", "response_mean"), [0, 2, 3]
    captured = lr.capture(tiny, examples, positions, layers)
    assert captured.layers == layers and set(captured.states) == set(positions)
    assert captured["eot"].shape == (len(examples), 3, tiny.info.d_model) and captured["eot"].dtype == np.float32
    stored = extract(
        tiny, examples, tmp_path / "store", ExtractConfig(positions=positions, layers=tuple(layers)), progress=False
    ).store
    for position in positions:  # the same states, up to the store's float16
        np.testing.assert_array_equal(captured[position].astype(np.float16), stored.array(position))
    everything = lr.capture(tiny, examples[:2], "eot")
    assert everything.layers == list(range(tiny.info.n_layers + 1))  # every layer by default
    # rows and columns as asked (other batches: equal up to float rounding)
    np.testing.assert_allclose(everything["eot"][:, 2], captured["eot"][:2, 1], rtol=1e-4, atol=1e-6)

    store = captured.to_store()
    assert store.ids == [e.id for e in examples] and store.layers == layers and store.n_layers == tiny.info.n_layers
    np.testing.assert_array_equal(store.array("eot"), stored.array("eot"))
    assert lr.sweep(store, lr.SweepConfig(n_boot=100), progress=False).result.best.layer in layers


def test_capture_of_bare_conversations_and_its_errors(tiny):
    conversations = [e.messages for e in synthetic_examples(n_prompts=2, per_prompt=1)]
    captured = lr.capture(tiny, conversations, ["eot"], [1])
    assert captured["eot"].shape == (2, 1, tiny.info.d_model) and captured.examples is None
    with pytest.raises(UserError, match="rated examples"):
        captured.to_store()
    with pytest.raises(UserError, match="not every response token"):
        lr.capture(tiny, conversations, ["response_tokens"])
    with pytest.raises(UserError, match="out of range"):
        lr.capture(tiny, conversations, ["eot"], [99])
    examples = synthetic_examples(n_prompts=1, per_prompt=1)
    with pytest.raises(UserError, match="not a mix"):
        lr.capture(tiny, [*examples, *conversations], ["eot"], [1])
