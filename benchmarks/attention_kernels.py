"""Attention speed on this machine in bfloat16 at SmolLM2's head shape (9 query heads, 3 key/value heads, 64
dimensions), for the shapes an extraction runs: PyTorch's scaled_dot_product_attention (the flash kernel on a
CPU) with a mask, causal, with grouped keys (`enable_gqa`) and in float32 (with and without the casts from and to
bfloat16), its math backend, attention written as two matmuls, and with --flex torch.compile'd flex_attention
(needs a C++ compiler). Prints GFLOP/s of useful (causal) work.

    python benchmarks/attention_kernels.py [--flex]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

HEADS, KV_HEADS, HEAD_DIM = 9, 3, 64


def best_seconds(call, repeats: int = 5) -> float:
    call()
    best = float("inf")
    for _ in range(repeats):
        tick = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - tick)
    return best


def flex_variant(queries: int, keys: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor):
    """Compiled flex_attention with the same causal offset, on the grouped keys."""
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    compiled = torch.compile(flex_attention, dynamic=False)
    offset = keys - queries
    block_mask = create_block_mask(lambda b, h, qi, ki: ki <= qi + offset, None, None, queries, keys, device="cpu")
    return lambda: compiled(q, k, v, block_mask=block_mask, enable_gqa=True)


def kernel_variants(
    q: torch.Tensor, grouped_k: torch.Tensor, grouped_v: torch.Tensor, mask: torch.Tensor, flex: bool
) -> dict:
    """The attention calls to time on one batch: q [rows, heads, queries, d], the grouped keys/values and the mask."""
    queries, keys = mask.shape[-2:]
    k, v = (t.repeat_interleave(HEADS // KV_HEADS, 1) for t in (grouped_k, grouped_v))  # as transformers repeats them
    q32, k32, v32 = q.float(), k.float(), v.float()

    def as_matmuls():
        scores = (q @ k.transpose(-1, -2)) * HEAD_DIM**-0.5
        return torch.softmax(scores.masked_fill(~mask, float("-inf")), -1) @ v

    def math_backend():
        with sdpa_kernel([SDPBackend.MATH]):
            return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)

    variants = {
        "sdpa with mask": lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=mask),
        "sdpa enable_gqa": lambda: F.scaled_dot_product_attention(
            q, grouped_k, grouped_v, attn_mask=mask, enable_gqa=True
        ),
        "sdpa float32": lambda: F.scaled_dot_product_attention(q32, k32, v32, attn_mask=mask),
        "sdpa float32 with casts": lambda: F.scaled_dot_product_attention(
            q.float(), k.float(), v.float(), attn_mask=mask
        ).bfloat16(),
        "math backend": math_backend,
        "two matmuls": as_matmuls,
    }
    if flex:
        variants["flex compiled"] = flex_variant(queries, keys, q, grouped_k, grouped_v)
    if queries == keys:
        variants["sdpa is_causal"] = lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True)
    return variants


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flex", action="store_true", help="also time compiled flex_attention")
    args = parser.parse_args()
    torch.manual_seed(0)
    for rows, queries, keys in ((16, 512, 512), (8, 300, 600), (32, 200, 350)):
        q = torch.randn(rows, HEADS, queries, HEAD_DIM, dtype=torch.bfloat16)
        grouped_k, grouped_v = (torch.randn(rows, KV_HEADS, keys, HEAD_DIM, dtype=torch.bfloat16) for _ in range(2))
        # queries are the last `queries` positions of the keys (a response after its cached prompt)
        mask = (
            torch.ones(queries, keys, dtype=torch.bool).tril(keys - queries)[None, None].expand(rows, 1, queries, keys)
        )
        useful = rows * HEADS * 2 * 2 * HEAD_DIM * int(mask[0, 0].sum())

        variants = kernel_variants(q, grouped_k, grouped_v, mask, args.flex)
        rates = {name: useful / best_seconds(call) / 1e9 for name, call in variants.items()}
        print(
            f"{rows} x {queries} queries x {keys} keys: " + ", ".join(f"{n} {r:.0f} GFLOP/s" for n, r in rates.items())
        )


if __name__ == "__main__":
    main()
