"""What a forward call costs beyond its tokens, and what cuDNN attention costs, on this machine (made for GPUs).

Prints the time of a plain transformers forward on dense and padded batches of two sizes (the difference
between the sizes is the per-token cost; the rest is the per-call cost), extraction at several `batch_tokens`
with the number of forward calls its plan makes, extraction planned at a CPU's price of a call and at this
device's, alternated, and extraction with and without cuDNN attention, alternated.

    python benchmarks/forward_call_cost.py --device cuda --dtype bfloat16 [--model FOLDER --random-init 0]
"""

from __future__ import annotations

import argparse
import contextlib
import time
from pathlib import Path

import torch
from common import add_model_arguments, describe, load
from extract_throughput import synchronize, throughput

import latent_reward.activations.forward as forward
import latent_reward.batching as batching
from latent_reward.data import load_dataset


def seconds_per_call(call, device: torch.device) -> float:
    repeats = 10 if device.type == "cuda" else 2  # a CPU call takes seconds at these sizes
    call()
    synchronize(device)
    tick = time.perf_counter()
    for _ in range(repeats):
        call()
    synchronize(device)
    return (time.perf_counter() - tick) / repeats


@torch.inference_mode()
def plain_forwards(loaded, rows: tuple[int, ...], width: int) -> None:
    base, device = getattr(loaded.model, loaded.model.base_model_prefix), loaded.model.device
    for count in rows:
        ids = torch.randint(0, 1000, (count, width), device=device)
        padded = torch.ones_like(ids)
        padded[0, : width // 5] = 0
        variants = {
            "dense": {},
            "one row padded": {"attention_mask": padded, "position_ids": (padded.cumsum(1) - 1).clamp(min=0)},
        }
        for label, options in variants.items():
            s = seconds_per_call(lambda ids=ids, options=options: base(input_ids=ids, **options), device)
            print(
                f"forward [{count} x {width}] {label:15s} {s * 1000:7.1f} ms  {count * width / s:10.0f} tokens/s",
                flush=True,
            )


def compare_call_prices(loaded, examples, rounds: int, batch_tokens: int = 8192) -> None:
    """Extraction with batches planned at the CPU's price of a call and at this device's, alternated."""
    device_price = batching.call_overhead_tokens
    prices = {
        "a call priced at 32 tokens": lambda device_type, budget: batching.CALL_OVERHEAD_TOKENS,
        "a call priced for this device": device_price,
    }
    for round_ in range(rounds):
        for label in list(prices)[:: 1 if round_ % 2 == 0 else -1]:
            batching.call_overhead_tokens = prices[label]
            r = throughput(loaded, examples, 512, batch_tokens, 2)
            print(
                f"round {round_} {label}: {r['forward_calls']} calls, extraction {r['extract_tokens_per_s']:.0f} "
                "tokens/s, "
                f"plain {r['plain_forward_tokens_per_s']:.0f}",
                flush=True,
            )
    batching.call_overhead_tokens = device_price


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--n", type=int, default=150, help="UltraFeedback examples for the extraction timings")
    parser.add_argument("--rounds", type=int, default=2, help="alternations of with and without cuDNN attention")
    add_model_arguments(parser, dtype="bfloat16")
    args = parser.parse_args()
    loaded = load(args)
    print(describe(args, loaded))
    plain_forwards(loaded, (16, 64), 512)
    examples = load_dataset(str(args.data_dir / "ultrafeedback_binarized_subset_1200.jsonl"), limit=args.n).examples
    for batch_tokens in (1024, 8192, 32768):
        r = throughput(loaded, examples, 512, batch_tokens, 2)
        print(
            f"batch_tokens {batch_tokens:5d}: {r['forward_calls']} forward calls, {r['padded_tokens']} padded tokens; "
            f"extraction {r['extract_tokens_per_s']:.0f} tokens/s, plain {r['plain_forward_tokens_per_s']:.0f}",
            flush=True,
        )
    compare_call_prices(loaded, examples, args.rounds)
    switch = forward.without_cudnn_attention
    variants = {"cuDNN attention allowed": lambda device: contextlib.nullcontext(), "without cuDNN attention": switch}
    for round_ in range(args.rounds):
        for label in list(variants)[:: 1 if round_ % 2 == 0 else -1]:  # alternate which goes first
            forward.without_cudnn_attention = variants[label]
            r = throughput(loaded, examples, 512, 8192, 2)
            print(
                f"round {round_} {label}: extraction {r['extract_tokens_per_s']:.0f} tokens/s, "
                f"plain {r['plain_forward_tokens_per_s']:.0f}",
                flush=True,
            )
    forward.without_cudnn_attention = switch


if __name__ == "__main__":
    main()
