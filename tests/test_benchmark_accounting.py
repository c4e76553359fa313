"""The extraction benchmark's FLOP count: what the fraction of the matmul bound is measured against."""

import sys
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from latent_reward.activations.plan import Unit

sys.path.append(str(Path(__file__).resolve().parents[1] / "benchmarks"))
from extract_throughput import computed_flops, flop_rates  # noqa: E402


def full_forward(tiny, length: int) -> float:
    linear, per_pair = flop_rates(tiny.model)
    return length * linear + per_pair * length * (length + 1) / 2


def test_the_rates_match_what_the_model_computes(tiny):
    """Linear FLOPs per token as torch counts a forward's matmuls; attention per pair from the shape (layers x
    scores and values x multiply-add x query heads x head size)."""
    linear, per_pair = flop_rates(tiny.model)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        tiny.model.model(torch.randint(0, 100, (1, 12)))  # the blocks without the LM head, as the extraction runs
    assert counter.get_flop_counts()["Global"] == {torch.ops.aten.mm: 12 * linear}
    config = tiny.model.config
    assert per_pair == config.num_hidden_layers * 2 * 2 * config.num_attention_heads * (config.hidden_size // config.num_attention_heads)


def test_an_unshared_unit_counts_one_full_causal_forward(tiny):
    assert computed_flops(tiny.model, [Unit(7, (0,), (5,))]) == pytest.approx(full_forward(tiny, 12))


def test_a_shared_prompt_is_counted_once(tiny):
    """Three answers to one 7-token prompt: three full forwards less the two prompt passes sharing skips."""
    shared = computed_flops(tiny.model, [Unit(7, (0, 1, 2), (5, 3, 9))])
    unshared = sum(full_forward(tiny, 7 + c) for c in (5, 3, 9))
    assert shared == pytest.approx(unshared - 2 * full_forward(tiny, 7))
