"""The batching rule: every item once, each batch within its budget; a CPU plan keeps padding low, a GPU plan
makes fewer, fuller calls."""

import random

import pytest

from latent_reward.batching import CALL_OVERHEAD_TOKENS, call_overhead_tokens, partition_by_length


def padded(batches, lengths) -> int:
    return sum(len(batch) * max(lengths[i] for i in batch) for batch in batches)


@pytest.mark.parametrize("seed", range(5))
def test_a_gpu_plan_makes_fewer_calls_than_a_cpu_plan_and_both_keep_every_item_within_budget(seed):
    rng = random.Random(seed)
    lengths = sorted(rng.randint(20, 500) for _ in range(300))
    items, budget = list(range(len(lengths))), 4096
    plans = {device: partition_by_length(items, lengths.__getitem__, budget, device) for device in ("cpu", "cuda")}
    for batches in plans.values():
        assert [i for batch in batches for i in batch] == items
        assert all(len(batch) == 1 or len(batch) * max(lengths[i] for i in batch) <= budget for batch in batches)
    assert len(plans["cuda"]) < len(plans["cpu"])
    assert padded(plans["cpu"], lengths) < padded(plans["cuda"], lengths)
    assert len(plans["cuda"]) == fewest_batches(lengths, budget)


def fewest_batches(lengths: list[int], budget: int) -> int:
    """Greedy packing of sorted lengths: the fewest consecutive batches within the budget."""
    count, size = 1, 0
    for length in lengths:
        if size and (size + 1) * length > budget:
            count, size = count + 1, 0
        size += 1
    return count


def test_a_call_is_priced_at_32_tokens_on_a_cpu_and_at_its_budget_elsewhere():
    assert call_overhead_tokens("cpu", 8192) == CALL_OVERHEAD_TOKENS == 32
    assert call_overhead_tokens("cuda", 8192) == 8192 and call_overhead_tokens("cuda", 1024) == 1024
