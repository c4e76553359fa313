"""What the analysis `run` does on a store costs, at any shape: a synthetic store with a planted linear signal.

The store is written through the store's own writer, shard by shard (memory stays flat in n): 2-16 responses per
prompt, a prompt-level and a response-level part of the rating, each carried by one direction of the residual
stream at the middle layers (strongest at 60% depth), `assistant_start` (prompt states) and `eot` (response states)
by default. Then the readout (sweep, cross-fits, within-prompt probe, controls, seed spread, text baselines on
synthetic text) and prompt-only run on it as `run` runs them, and the script prints wall time per stage, peak memory
and the recovered r, beside a float64 ridge refitted at the cells the folds chose (states wider than 1,024 choose
their cells on a sketch and are fitted exactly there, in float32); `--compare-full` also chooses every cell on the
full states, which measures what choosing on the sketch costs.

    python benchmarks/analysis_scaling.py --n 10000 --d 4096 --layers 33 --positions 2
    python benchmarks/analysis_scaling.py --n 1000,2000 --d 512,1024 --layers 8   # fits time ~ n^a d^b
    python benchmarks/analysis_scaling.py --n 2000 --d 2048 --layers 8 --compare-full --weak

The last line reads `analysis total: <s> s, peak <GB> GB, recovered r <r> (exact <r>)`; with several sizes, the
fitted exponents follow. That peak is the process's resident peak over its whole life, the store's memory-mapped pages
included; the line before gives the analysis's anonymous peak (heap, arrays), what it needs itself.
"""

from __future__ import annotations

import argparse
import itertools
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from common import AnonymousPeak

from latent_reward.activations import store as store_format
from latent_reward.activations.store import ActivationStore
from latent_reward.analysis.sketch import SketchConfig, sketch_view
from latent_reward.analysis.sweep import SweepConfig
from latent_reward.data.schema import Example
from latent_reward.evaluation.metrics import pearson
from latent_reward.experiments.prompt_only import PromptOnlyConfig, prompt_only
from latent_reward.experiments.readout import ReadoutConfig, reward_readout
from latent_reward.io import write_json
from latent_reward.probes.compute import analysis_device
from latent_reward.probes.ridge import ridge_cv_all_layers

POSITIONS = ("assistant_start", "eot", "response_last", "response_mean", "user_end")
PROMPT_WEIGHT, RESPONSE_WEIGHT, NOISE_WEIGHT = 0.6, 0.8, 0.3  # the rating's parts (each part standard normal)
PLANTED_CEILING = RESPONSE_WEIGHT / np.sqrt(PROMPT_WEIGHT**2 + RESPONSE_WEIGHT**2 + NOISE_WEIGHT**2)
WORDS = np.array("the a model answer helpful code list step because however example note data result clear".split())


def planted_examples(
    n: int, rng: np.random.Generator, sizes_range: tuple[int, int] = (2, 16)
) -> tuple[list[Example], np.ndarray, np.ndarray]:
    """n rated responses to prompts of `sizes_range` responses each (2-16 by default); returns the examples, the
    prompt-level and response-level parts of each rating (standard normal)."""
    sizes = []
    while sum(sizes) < n:
        sizes.append(int(rng.integers(sizes_range[0], sizes_range[1] + 1)))
    sizes[-1] -= sum(sizes) - n
    if sizes[-1] < 2:  # fold a 1-response remainder into the previous prompt
        remainder = sizes.pop()
        sizes[-1] += remainder
    group_index = np.repeat(np.arange(len(sizes)), sizes)
    prompt_part = rng.normal(size=len(sizes))[group_index]
    response_part = rng.normal(size=n)
    rating = PROMPT_WEIGHT * prompt_part + RESPONSE_WEIGHT * response_part + NOISE_WEIGHT * rng.normal(size=n)
    examples = []
    for i in range(n):
        length = int(rng.integers(5, 60))
        messages = [
            {"role": "user", "content": f"prompt {group_index[i]} " + " ".join(rng.choice(WORDS, 6))},
            {"role": "assistant", "content": " ".join(rng.choice(WORDS, length))},
        ]
        examples.append(
            Example(
                id=f"synthetic:{i}",
                group=f"g{group_index[i]:06d}",
                messages=messages,
                rating=float(rating[i]),
                meta={"generator": f"m{i % 4}"},
            )
        )
    return examples, prompt_part, response_part


def write_synthetic_store(
    folder: Path,
    n: int,
    d: int,
    n_layers: int,
    positions: tuple[str, ...],
    seed: int,
    sizes_range: tuple[int, int] = (2, 16),
    shard_size: int = 256,
    weak: bool = False,
) -> ActivationStore:
    """A complete store of float16 states [n, n_layers, d] per position with the planted signal, one shard at a time.
    The signal's direction carries sqrt(d) times a dimension's noise (a top principal component), or with `weak` about
    one dimension's worth (buried among the noise's components)."""
    rng = np.random.default_rng(seed)
    examples, prompt_part, response_part = planted_examples(n, rng, sizes_range)
    layers = list(range(n_layers))
    depth = np.arange(n_layers) / max(n_layers - 1, 1)
    strength = 1.5 * np.exp(-((depth - 0.6) ** 2) / 0.05)  # per layer: peaks at 60% depth, near 0 at the embeddings
    scales = rng.lognormal(0.0, 1.0, size=(n_layers, d)).astype(np.float32)  # anisotropic residual dimensions
    directions = rng.normal(size=(2, d)).astype(np.float32)
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    (folder / store_format.SHARDS).mkdir(parents=True, exist_ok=True)
    n_shards = 0
    for n_shards, start in enumerate(range(0, n, shard_size), start=1):
        rows = np.arange(start, min(start + shard_size, n))
        tensors = {}
        for position in positions:
            signal = prompt_part[rows] if position in ("assistant_start", "user_end") else response_part[rows]
            noise = rng.standard_normal(size=(len(rows), n_layers, d), dtype=np.float32) * scales
            planted_part = np.einsum(
                "r,l,d->rld",
                signal.astype(np.float32),
                strength.astype(np.float32),
                directions[0 if position in ("assistant_start", "user_end") else 1],
            )
            tensors[position] = (noise + planted_part * (2.0 if weak else np.sqrt(d))).astype(np.float16)
        tensors["example_index"] = rows.astype(np.int64)
        tensors["response_tokens_count"] = np.array([len(examples[i].response.split()) for i in rows], dtype=np.int64)
        tensors["n_tokens"] = tensors["response_tokens_count"] + 20
        store_format.write_shard(folder, n_shards - 1, tensors)
    store_format.write_examples(folder, examples)
    manifest = store_format.new_manifest(
        {"synthetic": seed, "n": n, "d": d},
        {"name": "synthetic", "n_layers": n_layers - 1, "d_model": d},
        positions,
        layers,
        [],
        n_layers - 1,
        "synthetic",
        {},
    )
    manifest = manifest.model_copy(
        update={
            "status": "complete",
            "n_examples": n,
            "n_shards": n_shards,
            "shards": store_format.shard_records(folder, n_shards),
        }
    )
    write_json(folder / store_format.MANIFEST, manifest)
    return ActivationStore.open(folder)


def exact_reference(store: ActivationStore, target, crossfit) -> float:
    """r of the out-of-fold predictions of a float64 ridge (penalty by leave-one-prompt-out CV inside each fold) on the
    full states at each fold's chosen cell: the analysis fits the same in float32 on wide states."""
    y, groups, folds = target.y, target.groups, crossfit.folds
    predictions = np.empty(len(y))
    for k, cell in enumerate(crossfit.cells["probe"]):
        x = target.states(store, cell.position, [cell.layer])
        train, held = folds != k, folds == k
        predictions[held] = ridge_cv_all_layers(x[train], y[train], groups[train]).predict(0, x[held, 0])[:, 0]
    return pearson(y, predictions)


def peak_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def analyse(
    store: ActivationStore, args: argparse.Namespace, sketch: SketchConfig
) -> tuple[dict[str, float], list, float]:
    """The readout and prompt-only on `store`, as `run` does them (one sketched view shared by both): wall seconds per
    stage and the recovered r; the cell each fold chose; and the float64 reference r at those cells (NaN without
    --exact)."""
    config = ReadoutConfig(
        sweep=SweepConfig(n_boot=args.n_boot),
        permutations=args.permutations,
        sgd_grid=False,
        paired_permutations=args.n_boot,
        split_seeds=args.split_seeds,
        sketch=sketch,
        device=args.analysis_device,
    )
    tick = time.perf_counter()
    view = sketch_view(store, sketch)
    readout, fit, crossfit = reward_readout(view, config, random_init_store=None, progress=False)
    stages = dict(readout.timings)
    stages["readout"] = time.perf_counter() - tick
    tick = time.perf_counter()
    with analysis_device(args.analysis_device):
        prompt_only(view, PromptOnlyConfig(n_boot=args.n_boot, folds=config.folds, sketch=sketch), fit, progress=False)
    stages["prompt_only"] = time.perf_counter() - tick
    stages["total"] = stages["readout"] + stages["prompt_only"]
    stages["recovered_r"] = float(readout.probe.scores.pearson.value)
    exact = exact_reference(store, fit.target, crossfit) if args.exact else float("nan")
    return stages, crossfit.cells["probe"], exact


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", default="2000", help="responses; a comma list runs every size")
    parser.add_argument("--d", default="576", help="residual width; a comma list runs every size")
    parser.add_argument("--layers", type=int, default=31, help="stored layers (embeddings included)")
    parser.add_argument("--positions", type=int, default=2, help=f"how many of {', '.join(POSITIONS)}")
    parser.add_argument(
        "--responses-per-prompt", default="2,16", help="range of responses per prompt (UltraFeedback: 2,2)"
    )
    parser.add_argument("--permutations", type=int, default=100)
    parser.add_argument("--n-boot", type=int, default=1000)
    parser.add_argument("--split-seeds", type=int, default=ReadoutConfig().split_seeds)
    parser.add_argument(
        "--no-exact",
        dest="exact",
        action="store_false",
        help="skip the float64 reference fit at the chosen cells (five fits, after the timed analysis)",
    )
    parser.add_argument("--sketch-dim", type=int, default=SketchConfig().dim, help="principal components per layer")
    parser.add_argument(
        "--compare-full",
        action="store_true",
        help="also choose every cell on the full states (exact selection; slow at large width)",
    )
    parser.add_argument(
        "--weak",
        action="store_true",
        help="plant the signal at the noise's scale (not a top principal component) instead of above it",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--analysis-device", default="cpu", help="where the ridge fits compute: cpu (default), cuda, cuda:N or auto"
    )
    parser.add_argument("--keep", type=Path, default=None, help="write the store here and keep it")
    args = parser.parse_args()
    sizes = list(itertools.product([int(v) for v in args.n.split(",")], [int(v) for v in args.d.split(",")]))
    runs = []
    for n, d in sizes:
        folder = args.keep or Path(tempfile.mkdtemp(prefix="analysis-scaling-"))
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        try:
            tick = time.perf_counter()
            sizes_range = tuple(int(v) for v in args.responses_per_prompt.split(","))
            store = write_synthetic_store(
                folder, n, d, args.layers, POSITIONS[: args.positions], args.seed, sizes_range, weak=args.weak
            )
            written = time.perf_counter() - tick
            with AnonymousPeak() as anonymous:
                stages, cells, exact_r = analyse(store, args, SketchConfig(dim=args.sketch_dim))
            full_r, agreement = float("nan"), None
            if args.compare_full:  # every cell chosen on the full states: what choosing on the sketch costs
                full_stages, full_cells, _ = analyse(store, args, SketchConfig(dim=0))
                full_r, agreement = full_stages["recovered_r"], np.mean([a == b for a, b in zip(cells, full_cells)])
                stages["full_choice_total"] = full_stages["total"]
        finally:
            if args.keep is None:
                shutil.rmtree(folder, ignore_errors=True)
        runs.append((n, d, stages["total"]))
        print(f"n={n} d={d} layers={args.layers} positions={args.positions}: store written in {written:.1f} s")
        for name, value in stages.items():
            if name not in ("total", "recovered_r"):
                print(f"  {name:<18} {value:9.1f} s")
        if agreement is not None:
            print(
                f"  cells chosen on the full states: r {full_r:.4f}; the sketch chose the same cell in {agreement:.0%} "
                "of folds"
            )
        print(f"  planted ceiling r {PLANTED_CEILING:.3f} (the rating's correlation with the response-level signal)")
        print(
            f"  peak anonymous memory {anonymous.gb:.2f} GB during the analysis; the resident peak below is the "
            "process's whole life: the memory-mapped store's pages (which the kernel drops and reads again when memory "
            "is short), writing the store, --compare-full and earlier sizes included"
        )
        if torch.cuda.is_available():
            gpu_peak = torch.cuda.max_memory_allocated() / 2**30
            print(f"  GPU peak {gpu_peak:.2f} GB (--analysis-device {args.analysis_device})")
        print(
            f"analysis total: {stages['total']:.1f} s, peak {peak_gb():.2f} GB, recovered r "
            f"{stages['recovered_r']:.4f} "
            f"(exact {exact_r:.4f})",
            flush=True,
        )
    varied = [axis for axis in (0, 1) if len({run[axis] for run in runs}) > 1]  # n, d
    if varied:
        logs = np.log(np.array(runs, dtype=np.float64))
        design = np.column_stack([np.ones(len(runs)), logs[:, varied]])
        coefficients = np.linalg.lstsq(design, logs[:, 2], rcond=None)[0][1:]
        print("time ~ " + " ".join(f"{'nd'[axis]}^{value:.2f}" for axis, value in zip(varied, coefficients)))


if __name__ == "__main__":
    main()
