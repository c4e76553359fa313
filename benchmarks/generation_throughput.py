"""Batched generation against the one-sequence loop, measured in one run on this machine.

Generates greedy replies to the same UltraFeedback prompts one sequence at a time and in batches,
and prints generated tokens/s for each and the speed-up (target: >= 5x at 16 sequences).

    python benchmarks/generation_throughput.py [--n 16] [--max-new-tokens 64] [--dtype bfloat16]

On a GPU: --device cuda, and --model FOLDER --random-init 0 for random weights of the shape in FOLDER's config.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from common import add_model_arguments, describe, load

from latent_reward.data import load_dataset
from latent_reward.generation import GenerationConfig, generate_chat


def timed(loaded, conversations, config: GenerationConfig) -> tuple[float, int, list]:
    tick = time.perf_counter()
    replies = generate_chat(loaded, conversations, config)  # ends with tokens on the CPU, so the GPU is done
    return time.perf_counter() - tick, sum(len(r.ids) for r in replies), replies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--n", type=int, default=16, help="sequences")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    add_model_arguments(parser, dtype="bfloat16")
    args = parser.parse_args()
    loaded = load(args)
    examples = load_dataset(
        str(args.data_dir / "ultrafeedback_binarized_subset_1200.jsonl"), sample_prompts=args.n
    ).examples
    conversations = list({e.group: e.prompt_messages for e in examples}.values())[: args.n]
    config = GenerationConfig(max_new_tokens=args.max_new_tokens)
    generate_chat(loaded, conversations[:2], config.model_copy(update={"max_new_tokens": 4}))  # warm-up
    one_s, one_tokens, one = timed(loaded, conversations, config.model_copy(update={"batch_size": 1}))
    batched_s, batched_tokens, batched = timed(loaded, conversations, config.model_copy(update={"batch_size": args.n}))
    same = sum(a.ids == b.ids for a, b in zip(one, batched))
    print(f"{describe(args, loaded)}, {len(conversations)} prompts, greedy, up to {args.max_new_tokens} new tokens")
    print(f"one sequence at a time: {one_tokens} tokens in {one_s:.1f} s = {one_tokens / one_s:.1f} tokens/s")
    print(
        f"batch of {args.n}:         {batched_tokens} tokens in {batched_s:.1f} s = {batched_tokens / batched_s:.1f} "
        "tokens/s"
    )
    print(
        f"speed-up {batched_tokens / batched_s / (one_tokens / one_s):.1f}x (target >= 5x); "
        f"{same}/{len(conversations)} replies token-identical across batch sizes"
    )


if __name__ == "__main__":
    main()
