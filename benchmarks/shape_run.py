"""A large model's shape end to end, with random weights: `extract` at two dataset sizes, then the analysis `run`
does on the larger store. For a machine the weights cannot reach (no Hub here; a lent GPU carries no weights).

Each extraction runs in its own process, so its peak memory is its own: the store is written shard by shard and the
peak should not grow with the number of examples. Prints tokens/s (tokens of every example's full sequence, a shared
prompt counted once per response, as the store's n_tokens records them), bytes of store per example, peak memory,
then the analysis's wall time per stage and peak memory.

    python benchmarks/shape_run.py --shape llama-1b --n 32,96 --max-tokens 256          # this CPU
    python benchmarks/shape_run.py --shape mistral-7b --n 200,600 --device cuda --dtype bfloat16

The shapes use SmolLM2's tokenizer and chat template (its vocabulary size): only the width, depth, heads and feed-
forward size are the named model's.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SHAPES = {  # the named models' widths, depths, heads and feed-forward sizes (from their published configs)
    "llama-1b": dict(
        kind="llama", hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
        num_key_value_heads=8, tie_word_embeddings=True,
    ),
    "mistral-7b": dict(
        kind="mistral", hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
        num_key_value_heads=8, tie_word_embeddings=False,
    ),
}  # fmt: skip
DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "ultrafeedback_binarized_subset_1200.jsonl"


def write_shape(folder: Path, shape: str) -> Path:
    """A model folder holding only the shape's config and SmolLM2's tokenizer (random weights are made on load)."""
    from transformers import AutoTokenizer, LlamaConfig, MistralConfig

    from latent_reward.models.loading import bundled_folder

    tokenizer = AutoTokenizer.from_pretrained(bundled_folder("smollm2-135m-instruct"))
    settings = dict(SHAPES[shape])
    config_class = {"llama": LlamaConfig, "mistral": MistralConfig}[settings.pop("kind")]
    config_class(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        max_position_embeddings=8192,
        **settings,
    ).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def peak_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def extract_once(args: argparse.Namespace) -> None:
    """(child process) Extract the first `args.one` examples; print one JSON line of figures."""
    import numpy as np

    from latent_reward.activations import ExtractConfig, extract
    from latent_reward.config import DataSpec
    from latent_reward.models import load_model

    examples = DataSpec(source=str(args.data), limit=args.one).load().examples
    loaded = load_model(str(args.model_folder), dtype=args.dtype, device=args.device, random_init_seed=0)
    loaded_gb = peak_gb()
    tick = time.perf_counter()
    config = ExtractConfig(max_tokens=args.max_tokens, batch_tokens=args.batch_tokens, shard_size=args.shard_size)
    store = extract(loaded, examples, args.store, config, progress=False).store
    wall = time.perf_counter() - tick
    tokens = int(np.sum(store.stat("n_tokens")))
    size = sum(f.stat().st_size for f in Path(args.store).rglob("*") if f.is_file())
    print(
        json.dumps(
            dict(
                n=len(examples), wall=wall, tokens=tokens, bytes=size, peak=peak_gb(), loaded=loaded_gb,
                layers=len(store.layers), positions=len(store.positions), d=loaded.info.d_model,
            )
        )
    )  # fmt: skip


def analyse(store_folder: Path, n_boot: int) -> None:
    """The readout and prompt-only on the store, as `run` does them: wall seconds per stage, peak memory."""
    from latent_reward.activations.store import ActivationStore
    from latent_reward.analysis.sketch import sketch_view
    from latent_reward.analysis.sweep import SweepConfig
    from latent_reward.experiments.prompt_only import PromptOnlyConfig, prompt_only
    from latent_reward.experiments.readout import ReadoutConfig, reward_readout

    config = ReadoutConfig(sweep=SweepConfig(n_boot=n_boot), paired_permutations=n_boot)
    tick = time.perf_counter()
    view = sketch_view(ActivationStore.open(store_folder), config.sketch)
    readout, fit, _ = reward_readout(view, config, random_init_store=None, progress=False)
    readout_s = time.perf_counter() - tick
    tick = time.perf_counter()
    prompt_only(view, PromptOnlyConfig(n_boot=n_boot, folds=config.folds, sketch=config.sketch), fit, progress=False)
    prompt_s = time.perf_counter() - tick
    for name, value in readout.timings.items():
        print(f"  {name:<18} {value:9.1f} s")
    print(f"  prompt_only        {prompt_s:9.1f} s")
    print(f"analysis total: {readout_s + prompt_s:.1f} s, peak {peak_gb():.2f} GB (random weights: r is noise)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), default="llama-1b")
    parser.add_argument("--n", default="32,96", help="examples for each extraction (comma list)")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--batch-tokens", type=int, default=1024)
    parser.add_argument("--shard-size", type=int, default=32, help="examples per shard: several shards at each n")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--n-boot", type=int, default=200)
    parser.add_argument("--no-analysis", dest="analysis", action="store_false")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # child: one extraction
    parser.add_argument("--model-folder", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--store", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        extract_once(args)
        return
    work = Path(tempfile.mkdtemp(prefix="shape-run-"))
    try:
        run_sizes(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)  # stores of a 7B shape take gigabytes


def run_sizes(args: argparse.Namespace, work: Path) -> None:
    """Each extraction in its own process, then the analysis of the last store."""
    model_folder = write_shape(work / "model", args.shape)
    print(f"{args.shape} shape, random weights, {args.dtype} on {args.device}, max_tokens {args.max_tokens}")
    store = None
    for n in [int(v) for v in args.n.split(",")]:
        store = work / f"store-{n}"
        child = [sys.executable, __file__, *sys.argv[1:], "--one", str(n), "--model-folder", str(model_folder)]
        output = subprocess.run([*child, "--store", str(store)], check=True, capture_output=True, text=True).stdout
        figures = json.loads(output.strip().splitlines()[-1])
        print(
            f"extract n={figures['n']}: {figures['wall']:.1f} s, {figures['tokens'] / figures['wall']:.0f} tokens/s, "
            f"{figures['bytes'] / figures['n'] / 2**20:.2f} MiB of store per example ({figures['positions']} positions"
            f" x {figures['layers']} layers x d {figures['d']}), peak {figures['peak']:.2f} GB "
            f"(model loaded: {figures['loaded']:.2f} GB)",
            flush=True,
        )
    if args.analysis and store is not None:
        analyse(store, args.n_boot)


if __name__ == "__main__":
    main()
