"""Batching by length: the one rule extraction and generation share for keeping padding low."""

from __future__ import annotations

# A forward call costs about this many tokens' worth of time beyond its tokens (per-op overhead of a small model on a CPU).
CALL_OVERHEAD_TOKENS = 32


def partition_by_length(items: list, length, budget: int, overhead: int = CALL_OVERHEAD_TOKENS) -> list[list]:
    """Split items (sorted by length) into consecutive batches minimizing padded tokens plus a per-call overhead,
    each batch's padded size (count x longest) within `budget` (a single longer item gets a batch of its own).

    Exact dynamic program over the sorted order (O(n^2) for n items of a shard or chunk): hand-written because
    greedy packing pads much more when lengths are spread.
    """
    lengths = [length(item) for item in items]
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
