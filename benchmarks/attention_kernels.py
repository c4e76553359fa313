"""Attention speed on this machine in bfloat16 at SmolLM2's head shape (9 heads of 64), for the shapes an
extraction runs: PyTorch's scaled_dot_product_attention (the flash kernel on a CPU) with a mask and causal,
its math backend, and attention written as two matmuls. Prints GFLOP/s of useful (causal) work.

    python benchmarks/attention_kernels.py
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

HEADS, HEAD_DIM = 9, 64


def best_seconds(call, repeats: int = 5) -> float:
    call()
    best = float("inf")
    for _ in range(repeats):
        tick = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - tick)
    return best


def main() -> None:
    torch.manual_seed(0)
    for rows, queries, keys in ((16, 512, 512), (8, 300, 600), (32, 200, 350)):
        q = torch.randn(rows, HEADS, queries, HEAD_DIM, dtype=torch.bfloat16)
        k, v = (torch.randn(rows, HEADS, keys, HEAD_DIM, dtype=torch.bfloat16) for _ in range(2))
        # queries are the last `queries` positions of the keys (a response after its cached prompt)
        mask = torch.ones(queries, keys, dtype=torch.bool).tril(keys - queries)[None, None].expand(rows, 1, queries, keys)
        useful = rows * HEADS * 2 * 2 * HEAD_DIM * int(mask[0, 0].sum())

        def as_matmuls():
            scores = (q @ k.transpose(-1, -2)) * HEAD_DIM**-0.5
            return torch.softmax(scores.masked_fill(~mask, float("-inf")), -1) @ v

        def math_backend():
            with sdpa_kernel([SDPBackend.MATH]):
                return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)

        variants = {"sdpa with mask": lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=mask),
                    "math backend": math_backend, "two matmuls": as_matmuls}
        if queries == keys:
            variants["sdpa is_causal"] = lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True)
        rates = {name: useful / best_seconds(call) / 1e9 for name, call in variants.items()}
        print(f"{rows} x {queries} queries x {keys} keys: " + ", ".join(f"{n} {r:.0f} GFLOP/s" for n, r in rates.items()))


if __name__ == "__main__":
    main()
