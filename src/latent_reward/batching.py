"""Batching by length: the one rule extraction and generation share for keeping padding low."""

from __future__ import annotations

# A forward call costs about this many tokens' worth of time beyond its tokens (per-op overhead of a small model on a CPU).
CALL_OVERHEAD_TOKENS = 32


def call_overhead_tokens(device_type: str, budget: int) -> int:
    """What a forward call is priced at, in tokens, when batches are cut. On a GPU a call costs far more than its
    tokens (an H100 took about 35 ms per forward of SmolLM2's shape plus 0.6 us per token; with a 32-token price the
    plan made 234 calls for 600 examples), so a call is priced at the whole budget: fewer, fuller batches."""
    return CALL_OVERHEAD_TOKENS if device_type == "cpu" else budget


def partition_by_length(items: list, length, budget: int, device_type: str = "cpu") -> list[list]:
    """Split items (sorted by length) into consecutive batches minimizing padded tokens plus a per-call overhead
    (priced for `device_type`), each batch's padded size (count x longest) within `budget` (a single longer item
    gets a batch of its own).

    Exact dynamic program over the sorted order (O(n^2) for n items of a shard or chunk): hand-written because
    greedy packing pads much more when lengths are spread.
    """
    lengths = [length(item) for item in items]
    overhead = call_overhead_tokens(device_type, budget)
    best = [0.0] + [float("inf")] * len(items)
    cut = [0] * (len(items) + 1)
    for end in range(1, len(items) + 1):
        longest = lengths[end - 1]
        for start in range(end - 1, -1, -1):
            size = end - start
            if size > 1 and size * longest > budget:
                break
            cost = best[start] + size * longest + overhead
            if cost < best[end]:
                best[end], cut[end] = cost, start
    batches, end = [], len(items)
    while end > 0:
        batches.append(items[cut[end] : end])
        end = cut[end]
    return batches[::-1]
