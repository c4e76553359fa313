"""Extraction speed and memory, measured in one run on this machine.

Prints: extraction tokens/s vs a plain forward pass on the same batches (target ratio >= 0.95);
achieved GFLOP/s (linear layers + causal attention, on the real tokens) vs a matmul peak in the same dtype
measured here before and after (target: 70% in bfloat16); tokens saved by prompt
sharing on arena-bench (16 answers per prompt) and the time it saves; peak memory at 1x and 4x
the number of examples (target: no growth with dataset size).

    python benchmarks/extract_throughput.py [--data-dir ../shared/data] [--n 96] [--dtype float32] [--profile]

--profile prints where the extraction's time goes instead (torch.profiler, operators by self CPU time).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from latent_reward.activations import plan
from latent_reward.activations.forward import ResidualReader
from latent_reward.positions import POSITIONS
from latent_reward.data import load_dataset
from latent_reward.models import load_model, render_example

MODEL = "smollm2-135m-instruct"


def matmul_peak_gflops(dtype: torch.dtype, rows: int, d_model: int, d_ff: int, repeats: int = 20) -> float:
    """The best of several timings of a [rows, d_model] x [d_model, d_ff] product: the model's largest matmul."""
    a, b = torch.randn(rows, d_model, dtype=dtype), torch.randn(d_model, d_ff, dtype=dtype)
    for _ in range(3):
        a @ b
    best = float("inf")
    for _ in range(repeats):
        tick = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - tick)
    return 2 * rows * d_model * d_ff / best / 1e9


def block_linear_params(model) -> int:
    """Parameters of every nn.Linear inside the transformer blocks (embeddings and LM head excluded)."""
    from latent_reward.models.architecture import decoder_layers

    return sum(m.weight.numel() for m in decoder_layers(model).modules() if isinstance(m, torch.nn.Linear))


def forward_flops(model, lengths: list[int]) -> float:
    """Matmul FLOPs of a causal forward over sequences of these lengths (linear layers + attention scores/values)."""
    config = model.config.get_text_config()
    linear = 2 * block_linear_params(model)
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    attention_width = config.num_attention_heads * head_dim
    total = 0.0
    for n in lengths:
        total += n * linear + config.num_hidden_layers * 2 * 2 * attention_width * n * (n + 1) / 2
    return total


def time_chunks(reader: ResidualReader, chunks, rendered, batch_tokens: int) -> float:
    tick = time.perf_counter()
    for chunk in chunks:
        reader.run(chunk, rendered, batch_tokens)
    return time.perf_counter() - tick


def throughput(loaded, examples, max_tokens: int, batch_tokens: int, repeats: int) -> dict:
    rendered = [render_example(loaded.tokenizer, e.messages, max_tokens) for e in examples]
    units = plan.make_units(rendered, True)
    chunks = plan.prompt_chunks(units, 2 * batch_tokens)
    tokens = sum(len(r.input_ids) for r in rendered)
    layers = tuple(range(loaded.info.n_layers + 1))
    extracting = ResidualReader(loaded.model, layers, POSITIONS, (), False)
    time_chunks(extracting, chunks[:2], rendered, batch_tokens)  # warm-up
    extract_s, plain_s = [], []
    for _ in range(repeats):  # interleaved, so drift in machine speed hits both alike
        extract_s.append(time_chunks(extracting, chunks, rendered, batch_tokens))
        extracting.close()
        plain = ResidualReader(loaded.model, (), (), (), False)
        plain_s.append(time_chunks(plain, chunks, rendered, batch_tokens))
        extracting = ResidualReader(loaded.model, layers, POSITIONS, (), False)
    extracting.close()
    computed = [u.prompt_length for u in units] + [n for u in units for n in u.continuation_lengths]
    padded = plan.padded_tokens(chunks, batch_tokens)
    useful_flops = forward_flops(loaded.model, [len(r.input_ids) for r in rendered])
    best_extract, best_plain = min(extract_s), min(plain_s)
    return {
        "examples": len(examples),
        "tokens": tokens,
        "tokens_computed_after_sharing": sum(computed),
        "padded_tokens": padded,
        "extract_tokens_per_s": tokens / best_extract,
        "plain_forward_tokens_per_s": tokens / best_plain,
        "ratio_extract_over_plain": best_plain / best_extract,
        "useful_gflops_per_s": useful_flops / best_extract / 1e9,
    }


def sharing_on_arena(loaded, data_dir: Path, max_tokens: int, batch_tokens: int, n_prompts: int) -> dict:
    dataset = load_dataset(str(data_dir / "arena_bench_v1_gpt4_scores.jsonl.gz"))
    rendered = [render_example(loaded.tokenizer, e.messages, max_tokens) for e in dataset.examples]
    total = sum(len(r.input_ids) for r in rendered)
    shared = sum(u.tokens for u in plan.make_units(rendered, True))
    # Time a slice of whole prompts both ways.
    groups = list(dict.fromkeys(e.group for e in dataset.examples))[:n_prompts]
    chosen = [i for i, e in enumerate(dataset.examples) if e.group in set(groups)]
    subset = [rendered[i] for i in chosen]
    reader = ResidualReader(loaded.model, tuple(range(loaded.info.n_layers + 1)), POSITIONS, (), False)
    seconds = {}
    for share in (True, False):
        chunks = plan.prompt_chunks(plan.make_units(subset, share), 2 * batch_tokens)
        seconds[share] = time_chunks(reader, chunks, subset, batch_tokens)
    reader.close()
    return {
        "examples": len(rendered),
        "tokens": total,
        "tokens_saved": total - shared,
        "fraction_saved": (total - shared) / total,
        "timed_examples": len(subset),
        "seconds_shared": seconds[True],
        "seconds_unshared": seconds[False],
    }


def profile(loaded, examples, max_tokens: int, batch_tokens: int, top: int = 15) -> None:
    """Print the operators that take the extraction's time (one pass over the examples after a warm-up)."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    rendered = [render_example(loaded.tokenizer, e.messages, max_tokens) for e in examples]
    chunks = plan.prompt_chunks(plan.make_units(rendered, True), 2 * batch_tokens)
    reader = ResidualReader(loaded.model, tuple(range(loaded.info.n_layers + 1)), POSITIONS, (), False)
    time_chunks(reader, chunks[:2], rendered, batch_tokens)
    with torch_profile(activities=[ProfilerActivity.CPU]) as profiler:
        time_chunks(reader, chunks, rendered, batch_tokens)
    reader.close()
    print(profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=top))


PEAK_SCRIPT = """
import json, resource, sys
from latent_reward.activations import ExtractConfig, extract
from latent_reward.data import load_dataset
from latent_reward.models import load_model
n, data, out, max_tokens, dtype = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
examples = load_dataset(data, limit=n).examples
extract(load_model("%s", dtype=dtype), examples, out, ExtractConfig(max_tokens=max_tokens, shard_size=32), progress=False)
print(json.dumps({"examples": n, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
""" % MODEL


def peak_memory(data: Path, n: int, max_tokens: int, dtype: str) -> dict:
    results = {}
    for count in (n, 4 * n):
        with tempfile.TemporaryDirectory() as folder:
            done = subprocess.run([sys.executable, "-c", PEAK_SCRIPT, str(count), str(data), folder, str(max_tokens), dtype],
                                  capture_output=True, text=True, check=True)
        results[count] = json.loads(done.stdout.strip().splitlines()[-1])["peak_rss_mb"]
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--n", type=int, default=96, help="examples for the throughput comparison")
    parser.add_argument("--max-tokens", type=int, default=512)
    parser.add_argument("--batch-tokens", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--memory-n", type=int, default=48, help="examples for the 1x memory run (4x is also run)")
    parser.add_argument("--profile", action="store_true", help="print where the time goes instead of the figures")
    args = parser.parse_args()
    torch.manual_seed(0)
    loaded = load_model(MODEL, dtype=args.dtype)
    if args.profile:
        examples = load_dataset(str(args.data_dir / "ultrafeedback_binarized_subset_1200.jsonl"), limit=args.n).examples
        return profile(loaded, examples, args.max_tokens, args.batch_tokens)
    config = loaded.model.config.get_text_config()
    peak = matmul_peak_gflops(loaded.model.dtype, args.batch_tokens, config.hidden_size, config.intermediate_size)
    uf = load_dataset(str(args.data_dir / "ultrafeedback_binarized_subset_1200.jsonl"), limit=args.n).examples
    result = throughput(loaded, uf, args.max_tokens, args.batch_tokens, args.repeats)
    # The bound is the faster of two peak measurements, before and after (the machine's speed drifts by a few percent).
    peak = max(peak, matmul_peak_gflops(loaded.model.dtype, args.batch_tokens, config.hidden_size, config.intermediate_size))
    print(f"model {MODEL} ({args.dtype}), {torch.get_num_threads()} threads, {result['examples']} UltraFeedback examples, "
          f"{result['tokens']} tokens (max_tokens {args.max_tokens}, batch_tokens {args.batch_tokens})")
    print(f"extraction   {result['extract_tokens_per_s']:8.0f} tokens/s")
    print(f"plain forward{result['plain_forward_tokens_per_s']:8.0f} tokens/s   ratio extraction/plain = "
          f"{result['ratio_extract_over_plain']:.3f} (target >= 0.95)")
    print(f"padding: {result['padded_tokens']} padded tokens for {result['tokens_computed_after_sharing']} computed "
          f"({1 - result['tokens_computed_after_sharing'] / result['padded_tokens']:.1%} padding)")
    print(f"achieved {result['useful_gflops_per_s']:.1f} GFLOP/s on the real tokens vs matmul peak {peak:.1f} GFLOP/s "
          f"= {result['useful_gflops_per_s'] / peak:.1%} (target >= 70%)")
    arena = sharing_on_arena(loaded, args.data_dir, args.max_tokens, args.batch_tokens, n_prompts=6)
    print(f"prompt sharing on arena-bench: {arena['tokens_saved']:,} of {arena['tokens']:,} tokens saved "
          f"({arena['fraction_saved']:.1%}); on {arena['timed_examples']} examples {arena['seconds_shared']:.1f} s shared "
          f"vs {arena['seconds_unshared']:.1f} s unshared ({arena['seconds_unshared'] / arena['seconds_shared']:.2f}x)")
    memory = peak_memory(args.data_dir / "ultrafeedback_binarized_subset_1200.jsonl", args.memory_n, 256, args.dtype)
    (small, small_mb), (large, large_mb) = memory.items()
    print(f"peak RSS: {small} examples {small_mb:.0f} MB, {large} examples {large_mb:.0f} MB "
          f"(ratio {large_mb / small_mb:.2f}; target: no growth)")


if __name__ == "__main__":
    main()
