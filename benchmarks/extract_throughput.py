"""Extraction speed and memory, measured in one run on this machine.

Prints: extraction tokens/s vs a plain forward pass on the same batches (target ratio >= 0.95);
GFLOP/s computed (linear layers + causal attention on the real tokens, each shared prompt once) vs a
matmul peak in the same dtype measured here before and after (target: 70% in bfloat16); tokens saved by
prompt sharing on arena-bench (16 answers per prompt) and the time it saves; peak memory at 1x and 4x
the number of examples (target: no growth with dataset size).

    python benchmarks/extract_throughput.py [--data-dir ../shared/data] [--n 96] [--dtype float32] [--profile]

--profile prints where the extraction's time goes instead (torch.profiler, operators by self time).
On a GPU: --device cuda, and --model FOLDER --random-init 0 reads a model's shape from a folder holding
only its config and tokenizer and gives it random weights (for a machine the weights cannot travel to).
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
from common import add_model_arguments, describe, load

from latent_reward.activations import plan
from latent_reward.activations.forward import ResidualReader
from latent_reward.data import load_dataset
from latent_reward.models import render_example
from latent_reward.positions import POSITIONS


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so that a wall-clock timing covers it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak_gflops(
    dtype: torch.dtype, rows: int, d_model: int, d_ff: int, device: torch.device, repeats: int = 20
) -> float:
    """The best of several timings of a [rows, d_model] x [d_model, d_ff] product: the model's largest matmul.
    On a GPU each timing covers 100 back-to-back products (one alone is shorter than the timer's resolution)."""
    a = torch.randn(rows, d_model, dtype=dtype, device=device)
    b = torch.randn(d_model, d_ff, dtype=dtype, device=device)
    inner = 100 if device.type == "cuda" else 1
    for _ in range(3):
        a @ b
    best = float("inf")
    for _ in range(repeats):
        synchronize(device)
        tick = time.perf_counter()
        for _ in range(inner):
            a @ b
        synchronize(device)
        best = min(best, (time.perf_counter() - tick) / inner)
    return 2 * rows * d_model * d_ff / best / 1e9


def block_linear_params(model) -> int:
    """Parameters of every nn.Linear inside the transformer blocks (embeddings and LM head excluded)."""
    from latent_reward.models.architecture import decoder_layers

    return sum(m.weight.numel() for m in decoder_layers(model).modules() if isinstance(m, torch.nn.Linear))


def flop_rates(model) -> tuple[float, float]:
    """FLOPs per token of the blocks' linear layers, and attention FLOPs per (query, key) pair over all layers."""
    config = model.config.get_text_config()
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    return 2 * block_linear_params(model), config.num_hidden_layers * 2 * 2 * config.num_attention_heads * head_dim


def computed_flops(model, units: list[plan.Unit]) -> float:
    """Matmul FLOPs the extraction must compute (linear layers + causal attention on real tokens, padding not
    counted): each shared prompt once, each continuation attending to its prompt's cached keys and to itself."""
    linear, per_pair = flop_rates(model)
    total = 0.0
    for unit in units:
        p = unit.prompt_length
        total += p * linear + per_pair * p * (p + 1) / 2
        for c in unit.continuation_lengths:
            total += c * linear + per_pair * (c * p + c * (c + 1) / 2)
    return total


def time_chunks(reader: ResidualReader, chunks, rendered, batch_tokens: int) -> float:
    synchronize(reader.device)
    tick = time.perf_counter()
    for chunk in chunks:
        reader.run(chunk, rendered, batch_tokens)
    synchronize(reader.device)
    return time.perf_counter() - tick


def throughput(loaded, examples, max_tokens: int, batch_tokens: int, repeats: int) -> dict:
    rendered = [render_example(loaded.tokenizer, e.messages, max_tokens) for e in examples]
    units = plan.make_units(rendered, True)
    device_type = loaded.model.device.type
    chunks = plan.prompt_chunks(units, 2 * batch_tokens, device_type)
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
    padded = plan.padded_tokens(chunks, batch_tokens, device_type)
    calls = plan.forward_calls(chunks, batch_tokens, device_type)
    unshared = plan.make_units(rendered, False)  # every example's full forward, as if no prompt were shared
    best_extract, best_plain = min(extract_s), min(plain_s)
    return {
        "examples": len(examples),
        "tokens": tokens,
        "tokens_computed_after_sharing": sum(computed),
        "padded_tokens": padded,
        "forward_calls": calls,
        "extract_tokens_per_s": tokens / best_extract,
        "plain_forward_tokens_per_s": tokens / best_plain,
        "ratio_extract_over_plain": best_plain / best_extract,
        # the machine's rate: work actually done; and the rate as if the work sharing skipped had been done
        "computed_gflops_per_s": computed_flops(loaded.model, units) / best_extract / 1e9,
        "effective_gflops_per_s": computed_flops(loaded.model, unshared) / best_extract / 1e9,
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
        chunks = plan.prompt_chunks(plan.make_units(subset, share), 2 * batch_tokens, loaded.model.device.type)
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

    on_gpu = loaded.model.device.type == "cuda"
    rendered = [render_example(loaded.tokenizer, e.messages, max_tokens) for e in examples]
    chunks = plan.prompt_chunks(plan.make_units(rendered, True), 2 * batch_tokens, loaded.model.device.type)
    reader = ResidualReader(loaded.model, tuple(range(loaded.info.n_layers + 1)), POSITIONS, (), False)
    time_chunks(reader, chunks[:2], rendered, batch_tokens)
    activities = [ProfilerActivity.CPU, ProfilerActivity.CUDA] if on_gpu else [ProfilerActivity.CPU]
    with torch_profile(activities=activities) as profiler:
        time_chunks(reader, chunks, rendered, batch_tokens)
    reader.close()
    print(
        profiler.key_averages().table(
            sort_by="self_device_time_total" if on_gpu else "self_cpu_time_total", row_limit=top
        )
    )


PEAK_SCRIPT = """
import json, resource, sys, torch
from latent_reward.activations import ExtractConfig, extract
from latent_reward.data import load_dataset
from latent_reward.models import load_model
n, data, out, max_tokens, model, dtype, device, seed = sys.argv[1:]
examples = load_dataset(data, limit=int(n)).examples
loaded = load_model(model, dtype=dtype, device=device, random_init_seed=int(seed) if seed else None)
extract(loaded, examples, out, ExtractConfig(max_tokens=int(max_tokens), shard_size=32), progress=False)
print(json.dumps({"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "peak_gpu_mb": torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else 0.0}))
"""


def peak_memory(data: Path, n: int, max_tokens: int, args: argparse.Namespace) -> dict[int, dict]:
    """Peak process memory (and GPU memory on a GPU) of a whole extraction of n and of 4n examples."""
    results = {}
    seed = "" if args.random_init is None else str(args.random_init)
    for count in (n, 4 * n):
        with tempfile.TemporaryDirectory() as folder:
            done = subprocess.run(
                [
                    sys.executable,
                    "-c",
                    PEAK_SCRIPT,
                    str(count),
                    str(data),
                    folder,
                    str(max_tokens),
                    args.model,
                    args.dtype,
                    args.device,
                    seed,
                ],
                capture_output=True,
                text=True,
                check=True,
            )
        results[count] = json.loads(done.stdout.strip().splitlines()[-1])
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--n", type=int, default=96, help="examples for the throughput comparison")
    parser.add_argument("--max-tokens", type=int, default=512)
    parser.add_argument("--batch-tokens", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--memory-n", type=int, default=48, help="examples for the 1x memory run (4x is also run)")
    parser.add_argument("--profile", action="store_true", help="print where the time goes instead of the figures")
    add_model_arguments(parser, dtype="float32")
    args = parser.parse_args()
    torch.manual_seed(0)
    loaded = load(args)
    device = loaded.model.device
    if args.profile:
        examples = load_dataset(str(args.data_dir / "ultrafeedback_binarized_subset_1200.jsonl"), limit=args.n).examples
        return profile(loaded, examples, args.max_tokens, args.batch_tokens)
    config = loaded.model.config.get_text_config()
    peak = matmul_peak_gflops(
        loaded.model.dtype, args.batch_tokens, config.hidden_size, config.intermediate_size, device
    )
    uf = load_dataset(str(args.data_dir / "ultrafeedback_binarized_subset_1200.jsonl"), limit=args.n).examples
    result = throughput(loaded, uf, args.max_tokens, args.batch_tokens, args.repeats)
    # The bound is the faster of two peak measurements, before and after (the machine's speed drifts by a few percent).
    peak = max(
        peak,
        matmul_peak_gflops(loaded.model.dtype, args.batch_tokens, config.hidden_size, config.intermediate_size, device),
    )
    print(
        f"{describe(args, loaded)}, {result['examples']} UltraFeedback examples, "
        f"{result['tokens']} tokens (max_tokens {args.max_tokens}, batch_tokens {args.batch_tokens})"
    )
    print(f"extraction   {result['extract_tokens_per_s']:8.0f} tokens/s")
    print(
        f"plain forward{result['plain_forward_tokens_per_s']:8.0f} tokens/s   ratio extraction/plain = "
        f"{result['ratio_extract_over_plain']:.3f} (target >= 0.95)"
    )
    print(
        f"padding: {result['padded_tokens']} padded tokens for {result['tokens_computed_after_sharing']} computed "
        f"({1 - result['tokens_computed_after_sharing'] / result['padded_tokens']:.1%} padding) in "
        f"{result['forward_calls']} "
        "forward calls"
    )
    print(
        f"computed {result['computed_gflops_per_s']:.1f} GFLOP/s (real tokens, each shared prompt once) vs matmul peak "
        f"{peak:.1f} GFLOP/s = {result['computed_gflops_per_s'] / peak:.1%} (target >= 70%); counting the work prompt "
        f"sharing skipped as done: {result['effective_gflops_per_s']:.1f} GFLOP/s = "
        f"{result['effective_gflops_per_s'] / peak:.1%}"
    )
    arena = sharing_on_arena(loaded, args.data_dir, args.max_tokens, args.batch_tokens, n_prompts=6)
    print(
        f"prompt sharing on arena-bench: {arena['tokens_saved']:,} of {arena['tokens']:,} tokens saved "
        f"({arena['fraction_saved']:.1%}); on {arena['timed_examples']} examples {arena['seconds_shared']:.2f} s "
        "shared "
        f"vs {arena['seconds_unshared']:.2f} s unshared ({arena['seconds_unshared'] / arena['seconds_shared']:.2f}x)"
    )
    if device.type == "cuda":
        square = matmul_peak_gflops(loaded.model.dtype, 8192, 8192, 8192, device, repeats=3)
        print(
            f"for scale: an 8192 x 8192 x 8192 matmul runs at {square / 1000:.0f} TFLOP/s here; the extraction reaches "
            f"{result['computed_gflops_per_s'] / square:.1%} of that"
        )
    memory = peak_memory(args.data_dir / "ultrafeedback_binarized_subset_1200.jsonl", args.memory_n, 256, args)
    (small, small_peak), (large, large_peak) = memory.items()
    for key, label in (("peak_rss_mb", "peak RSS"), ("peak_gpu_mb", "peak GPU memory")):
        if small_peak[key]:
            print(
                f"{label}: {small} examples {small_peak[key]:.0f} MB, {large} examples {large_peak[key]:.0f} MB "
                f"(ratio {large_peak[key] / small_peak[key]:.2f}; target: no growth)"
            )


if __name__ == "__main__":
    main()
