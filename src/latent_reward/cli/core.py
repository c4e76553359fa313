"""The core commands: models, data inspect, extract, sweep, run, prompt-only, generate, score, verify, compare."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Column, Table

from latent_reward.cli.app import app, console, data_app
from latent_reward.cli.choices import Normalization
from latent_reward.cli.options import (
    DEFAULT_DTYPE_CHOICE,
    BootOpt,
    DeviceMapOpt,
    DeviceOpt,
    DtypeOpt,
    FoldsOpt,
    MaxNewTokensOpt,
    MaxTokensOpt,
    ModelOpt,
    OutOpt,
    PermutationsOpt,
    ProbeModelOpt,
    ProbesOpt,
    SgdGridOpt,
    SketchDimOpt,
    TargetOpt,
    TemperatureOpt,
    readout_config,
    seed_option,
    with_data_options,
)
from latent_reward.config import DEFAULT_MODEL, DataSpec, ExtractConfig, ModelSpec
from latent_reward.positions import help_text, parse_positions

READOUT_SEEDS = "the split by prompt, cross-fitting folds, shuffled-rating controls, the sketch and the bootstrap"


@app.command()
def models() -> None:
    """List the bundled offline models and whether each is installed."""
    from latent_reward.models import BUNDLED, is_installed
    from latent_reward.models import DEFAULT_MODEL as default

    table = Table("installed", "chat template", "description")
    table.columns.insert(0, Column("name", no_wrap=True))
    for name, model in BUNDLED.items():
        installed = "yes" if is_installed(name) else f"no: {model.install_hint}"
        table.add_row(
            name + (" (default)" if name == default else ""),
            installed,
            "yes" if model.has_chat_template else "no (fallback format)",
            model.description,
        )
    console.print(table)
    console.print("Any Hugging Face model id or local folder works too, e.g. HuggingFaceH4/zephyr-7b-beta.")


@data_app.command("inspect")
@with_data_options(positional=True)
def data_inspect(data: DataSpec) -> None:
    """Counts, groups, responses per group, the rating histogram and two examples."""
    from latent_reward.cli.show import show_dataset

    show_dataset(console, data.load())


@app.command()
@with_data_options()
def extract(
    data: DataSpec,
    out: OutOpt,
    model: ModelOpt = DEFAULT_MODEL,
    positions: Annotated[
        str, typer.Option(help="Comma-separated; " + help_text())
    ] = "user_end,assistant_start,response_last,eot,response_mean",
    layers: Annotated[str, typer.Option(help="'all' or comma-separated residual indices (0 = embeddings).")] = "all",
    token_layers: Annotated[
        str | None,
        typer.Option(help="Layers kept for every response token (with response_tokens; default: the last)."),
    ] = None,
    max_tokens: MaxTokensOpt = 1024,
    batch_tokens: Annotated[int, typer.Option(min=64, help="Padded tokens per forward pass.")] = 1024,
    shard_size: Annotated[int, typer.Option(min=1, help="Examples per shard (the unit of resumption).")] = 256,
    share_prompts: Annotated[bool, typer.Option(help="Run each prompt once for all its responses.")] = True,
    logprobs: Annotated[bool, typer.Option(help="Also store the model's log-probability of each response.")] = False,
    fallback_template: Annotated[
        bool, typer.Option(help="Use the plain User:/Assistant: format for models without a chat template.")
    ] = False,
    random_init: Annotated[
        int | None, typer.Option(help="Use a randomly initialised copy of the model with this seed (a control).")
    ] = None,
    dtype: DtypeOpt = DEFAULT_DTYPE_CHOICE,
    device: DeviceOpt = "auto",
    device_map: DeviceMapOpt = None,
) -> None:
    """Capture the residual stream at every layer at the named positions into an activation store."""
    from latent_reward.workflows.extract import ExtractJob, run_extract

    config = ExtractConfig(
        positions=parse_positions(positions),
        max_tokens=max_tokens,
        batch_tokens=batch_tokens,
        shard_size=shard_size,
        share_prompts=share_prompts,
        logprobs=logprobs,
    )
    job = ExtractJob(
        data=data,
        model=ModelSpec(
            name=model, dtype=dtype.value, device=device, device_map=device_map, fallback_template=fallback_template
        ),
        extract=config,
        layers=layers,
        token_layers=token_layers,
        random_init=random_init,
        out=out,
    )
    extraction = run_extract(job).result
    result, store = extraction.extracted, extraction.extracted.store
    stats = store.manifest.stats
    assert stats is not None, "a finished store records its stats"
    rate = result.tokens / result.seconds if result.computed_shards else 0.0
    repaired = f", {result.repaired_shards} damaged ones recomputed" if result.repaired_shards else ""
    console.print(
        f"stored {len(store)} examples x {len(store.layers)} layers at {', '.join(store.positions)} in {out} "
        f"({result.computed_shards} shards computed, {result.skipped_shards} reused{repaired}; {result.seconds:.1f} s, "
        f"{rate:,.0f} tokens/s; {stats.truncated} truncated; {stats.tokens_saved_by_prompt_sharing:,} prompt "
        f"tokens saved by sharing; skipped records: {extraction.skipped or 'none'})"
    )


@app.command()
def sweep(
    store: Annotated[Path, typer.Option("--store", help="An activation store made by extract.")],
    out: OutOpt,
    probes: ProbesOpt = "ridge",
    target: TargetOpt = "rating",
    seed: Annotated[int, seed_option(READOUT_SEEDS)] = 0,
    n_boot: BootOpt = 1000,
    folds: FoldsOpt = 5,
    permutations: PermutationsOpt = 100,
    positions: Annotated[str | None, typer.Option(help="Positions to sweep (default: all in the store).")] = None,
    random_init_store: Annotated[
        Path | None, typer.Option(help="A store of the random-init control, same data.")
    ] = None,
    sgd_grid: SgdGridOpt = True,
    sketch_dim: SketchDimOpt = 256,
) -> None:
    """Fit probes at every layer x position, score baselines and controls, and write the report."""
    from latent_reward.cli.show import show_headline
    from latent_reward.workflows.run import SweepJob, sweep_stores

    job = SweepJob(
        store=store,
        out=out,
        random_init_store=random_init_store,
        readout=readout_config(probes, target, seed, n_boot, folds, permutations, sgd_grid, positions, sketch_dim),
    )
    show_headline(console, sweep_stores(job))


@app.command()
@with_data_options(limit=600)
def run(
    data: DataSpec,
    out: OutOpt = Path("runs/latest"),
    model: ModelOpt = DEFAULT_MODEL,
    max_tokens: MaxTokensOpt = 512,
    positions: Annotated[
        str, typer.Option(help="Comma-separated; " + help_text())
    ] = "user_end,assistant_start,response_last,eot,response_mean",
    batch_tokens: Annotated[
        int, typer.Option(min=64, help="Padded tokens per forward pass (8192 suits a small model on a GPU).")
    ] = 1024,
    dtype: DtypeOpt = DEFAULT_DTYPE_CHOICE,
    probes: ProbesOpt = "ridge",
    target: TargetOpt = "rating",
    seed: Annotated[int, seed_option(f"--sample-prompts, {READOUT_SEEDS}, and the random-init copy's weights")] = 0,
    n_boot: BootOpt = 1000,
    folds: FoldsOpt = 5,
    permutations: PermutationsOpt = 100,
    random_init_control: Annotated[
        bool, typer.Option(help="Also extract and probe a randomly initialised copy of the model.")
    ] = True,
    logprobs: Annotated[bool, typer.Option(help="Store the log-probability of each response (a baseline).")] = True,
    trajectory: Annotated[
        bool, typer.Option(help="Reward token by token on held-out responses (runs the model again).")
    ] = True,
    sgd_grid: SgdGridOpt = True,
    sketch_dim: SketchDimOpt = 256,
    fallback_template: Annotated[
        bool, typer.Option(help="The plain User:/Assistant: format for models without a chat template.")
    ] = False,
    device: DeviceOpt = "auto",
    device_map: DeviceMapOpt = None,
) -> None:
    """The main job: extract (reusing a matching store), sweep, cross-fitted readout, baselines and controls, report."""
    from latent_reward.cli.show import show_headline
    from latent_reward.workflows.run import RunConfig
    from latent_reward.workflows.run import run as run_workflow

    config = RunConfig(
        data=data,
        model=ModelSpec(
            name=model, dtype=dtype.value, device=device, device_map=device_map, fallback_template=fallback_template
        ),
        extract=ExtractConfig(
            positions=parse_positions(positions), max_tokens=max_tokens, batch_tokens=batch_tokens, logprobs=logprobs
        ),
        readout=readout_config(probes, target, seed, n_boot, folds, permutations, sgd_grid, sketch_dim=sketch_dim),
        random_init_control=random_init_control,
        trajectory=trajectory,
        out=out,
    )
    outcome = run_workflow(config)
    console.print(f"done in {outcome.timings['total']:.0f} s")
    show_headline(console, outcome)


@app.command("prompt-only")
def prompt_only_command(
    store: Annotated[Path, typer.Option("--store", help="A store with user_end / assistant_start states.")],
    out: OutOpt,
    random_init_store: Annotated[Path | None, typer.Option(help="The random-init control's store, same data.")] = None,
    target: TargetOpt = "rating",
    seed: Annotated[int, seed_option("the split by prompt, cross-fitting folds and the bootstrap")] = 0,
    n_boot: BootOpt = 1000,
    folds: FoldsOpt = 5,
) -> None:
    """Expected reward from the user's input alone: probes on each prompt's states predict its mean rating."""
    from latent_reward.experiments.prompt_only import PromptOnlyConfig
    from latent_reward.report.answers import reliability_line
    from latent_reward.workflows.prompt_only import PromptOnlyJob, run_prompt_only

    job = PromptOnlyJob(
        store=store,
        out=out,
        random_init_store=random_init_store,
        config=PromptOnlyConfig(target=target, seed=seed, n_boot=n_boot, folds=folds),
    )
    result = run_prompt_only(job).result
    console.print(
        f"cross-fitted over {result.cross_fitted.n_prompts} prompts: r with the prompt's mean rating = "
        f"{result.cross_fitted.pearson}; baselines: "
        + ", ".join(f"{b.name} {b.scores.pearson}" for b in result.baselines)
        + f"; {reliability_line(result)}. Written to {out}"
    )


@app.command()
def generate(
    prompt: Annotated[str, typer.Argument(help="The user's message.")],
    probe: Annotated[Path, typer.Option("--probe", help="A saved probe folder (e.g. runs/demo/best_probe).")],
    model: ProbeModelOpt = None,
    max_new_tokens: MaxNewTokensOpt = 200,
    temperature: TemperatureOpt = 0.0,
    seed: Annotated[int, seed_option("sampling (with --temperature > 0)")] = 0,
    html: Annotated[Path | None, typer.Option(help="Also write the colored reply as an HTML page here.")] = None,
    device: DeviceOpt = "auto",
    device_map: DeviceMapOpt = None,
) -> None:
    """Generate a reply and stream each token colored by the probe's live estimate of its reward."""
    from latent_reward.cli.show import stream_tokens
    from latent_reward.probes import Probe
    from latent_reward.workflows.generate import GenerateJob, run_generate

    job = GenerateJob(
        prompt=prompt,
        probe=probe,
        model=model,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        seed=seed,
        html=html,
        device=device,
        device_map=device_map,
    )
    loaded_probe = Probe.load(probe)
    reply = run_generate(job, stream_tokens(console, loaded_probe)).result
    console.print()
    final = f"{reply.estimates[-1]:.2f}" if reply.estimates else "n/a"
    console.print(
        f"estimate before the reply: {reply.before:.2f}; at its end: {final} "
        f"(probe: {loaded_probe.kind} @ {loaded_probe.info.position} layer {loaded_probe.info.layer})"
    )
    if html:
        console.print(f"written: {html}")


@app.command()
@with_data_options()
def score(
    data: DataSpec,
    probe: Annotated[Path, typer.Option("--probe", help="A saved probe folder.")],
    out: OutOpt,
    within_probe: Annotated[
        Path | None,
        typer.Option(
            help="The within-prompt probe, scored first (default: the within_probe folder beside --probe, if any)."
        ),
    ] = None,
    model: ProbeModelOpt = None,
    reference: Annotated[str | None, typer.Option(help="Reference model for the DPO implicit reward baseline.")] = None,
    normalization: Annotated[
        Normalization,
        typer.Option(
            help="DPO implicit reward: log-probabilities summed, averaged per token, or none (reference-free)."
        ),
    ] = Normalization.sum,
    max_tokens: Annotated[
        int | None,
        typer.Option(
            min=8,
            help="Input truncation: the token budget (default: the probe's); log-probabilities score only pairs "
            "that fit it.",
        ),
    ] = None,
    n_boot: BootOpt = 1000,
    seed: Annotated[int, seed_option("--sample-prompts and the bootstrap")] = 0,
    device: DeviceOpt = "auto",
    device_map: DeviceMapOpt = None,
) -> None:
    """Score conversations with a probe: pair accuracy, best-of-n, or how well it ranks the data's ratings."""
    from latent_reward.cli.show import show_score
    from latent_reward.workflows.score import ScoreJob, run_score

    job = ScoreJob(
        probe=probe,
        within_probe=within_probe,
        data=data,
        out=out,
        model=model,
        reference=reference,
        normalization=normalization.value,
        max_tokens=max_tokens,
        n_boot=n_boot,
        seed=seed,
        device=device,
        device_map=device_map,
    )
    show_score(console, run_score(job).result, out)


@app.command()
def verify(store: Annotated[Path, typer.Argument(help="An activation store folder.")]) -> None:
    """Check every shard of a store against its recorded size and SHA-256."""
    from latent_reward.activations import ActivationStore

    opened = ActivationStore.open(store, verify=True)
    console.print(f"{store}: {opened.manifest.n_shards} shards, {len(opened)} examples; sizes and checksums match")


@app.command()
def compare(
    runs: Annotated[
        list[Path], typer.Argument(help="Folders written by `latent-reward run` (or their report folders).")
    ],
    out: OutOpt = Path("runs/compare"),
) -> None:
    """Side by side: several models (or datasets) on the same questions, paired where they share examples."""
    from latent_reward.workflows.compare import CompareJob, run_compare

    outcome = run_compare(CompareJob(runs=tuple(runs), out=out))
    console.print(f"comparison: {outcome.report}")
