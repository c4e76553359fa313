"""The extraction benchmark's FLOP count: what the fraction of the matmul bound is measured against.

The expected counts come from torch's FlopCounterMode on real forwards of the tiny model with eager attention (whose
scores and weighted values are plain batched matmuls, so the counter sees them), a prompt's KV cache reused for its
continuations as the extraction does, and the causal (query, key) pairs counted from an explicit mask; never from the
formula under test.
"""

import copy
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from latent_reward.activations.plan import Unit
from latent_reward.models.architecture import cache_kwarg, output_cache

sys.path.append(str(Path(__file__).resolve().parents[1] / "benchmarks"))
from extract_throughput import computed_flops, flop_rates  # noqa: E402


@pytest.fixture(scope="module")
def eager(tiny):
    """The tiny model's blocks (no LM head, as the extraction runs them) with eager attention."""
    model = copy.deepcopy(tiny.model)
    model.set_attn_implementation("eager")
    return model


def counted(blocks, length: int, cache=None) -> tuple[dict, object]:
    """torch's FLOP counts by op for one forward of `length` new tokens (after `cache`), and the cache it leaves."""
    extra = {cache_kwarg(blocks): copy.deepcopy(cache)} if cache is not None else {}
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        out = blocks(torch.randint(0, 100, (1, length)), use_cache=True, **extra)
    return counter.get_flop_counts()["Global"], output_cache(out)


def causal_pairs(prompt: int, new: int) -> int:
    """(query, key) pairs a causal mask keeps for `new` queries after `prompt` cached keys, counted from the mask."""
    keys = prompt + new
    mask = torch.ones(new, keys, dtype=torch.bool).tril(diagonal=prompt)
    return int(mask.sum())


def test_the_rates_match_what_torch_counts_on_the_model(tiny, eager):
    """Linear FLOPs per token: the counted matmuls of a 12-token forward / 12. Attention FLOPs per (query, key) pair:
    the counted batched matmuls (scores and weighted values over every query head) / 12^2, since eager attention
    computes the whole square before masking."""
    linear, per_pair = flop_rates(tiny.model)
    counts, _ = counted(eager.model, 12)
    assert set(counts) == {torch.ops.aten.mm, torch.ops.aten.bmm}
    assert linear == counts[torch.ops.aten.mm] / 12
    assert per_pair == counts[torch.ops.aten.bmm] / 12**2
    # and by hand for this config (3 layers, 4 query heads of size 8): 3 x (scores + values) x multiply-add x 4 x 8
    assert per_pair == 3 * 2 * 2 * 4 * 8


def test_an_unshared_unit_counts_one_full_causal_forward(tiny, eager):
    """A 7-token prompt and a 5-token answer read as one 12-token sequence: torch's linear count of that forward,
    and the counted cost of a pair times the 78 pairs a causal mask keeps (not the 144 eager attention computes)."""
    counts, _ = counted(eager.model, 12)
    rate = counts[torch.ops.aten.bmm] / 12**2
    assert causal_pairs(0, 12) == 78
    assert computed_flops(tiny.model, [Unit(7, (0,), (5,))]) == pytest.approx(counts[torch.ops.aten.mm] + rate * 78)


def test_a_shared_prompt_is_counted_once(tiny, eager):
    """Three answers to one 7-token prompt, run as the extraction runs them: the prompt once, each answer from a copy
    of its KV cache. The linear FLOPs are what torch counts on those four forwards; the attention FLOPs are the
    counted cost of a pair times the causal pairs (each answer token attends to the 7 prompt keys and the answer up
    to itself)."""
    prompt_counts, cache = counted(eager.model, 7)
    linear = prompt_counts[torch.ops.aten.mm]
    rate = prompt_counts[torch.ops.aten.bmm] / 7**2
    pairs = causal_pairs(0, 7)
    for answer in (5, 3, 9):
        counts, _ = counted(eager.model, answer, cache)
        linear += counts[torch.ops.aten.mm]
        assert counts[torch.ops.aten.bmm] == rate * answer * (7 + answer)  # each answer's queries against every key
        pairs += causal_pairs(7, answer)
    assert pairs == 28 + (5 * 7 + 15) + (3 * 7 + 6) + (9 * 7 + 45)
    assert computed_flops(tiny.model, [Unit(7, (0, 1, 2), (5, 3, 9))]) == pytest.approx(linear + rate * pairs)
