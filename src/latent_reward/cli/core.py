"""The core commands: models, data inspect, extract, sweep, run, prompt-only, generate, score, verify, compare."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Column, Table

from latent_reward.cli.app import app, console, data_app
from latent_reward.cli.fields import same, with_config_options
from latent_reward.cli.options import (
    DEFAULT_DTYPE_CHOICE,
    AnalysisDeviceOpt,
    DeviceMapOpt,
    DeviceOpt,
    DtypeOpt,
    FallbackTemplateOpt,
    ModelOpt,
    OutOpt,
    ProbeModelOpt,
    seed_option,
    with_data_options,
)
from latent_reward.config import DEFAULT_MODEL, DataSpec, ModelSpec
from latent_reward.positions import parse_positions

if TYPE_CHECKING:
    from latent_reward.workflows.generate import GenerateJob
    from latent_reward.workflows.prompt_only import PromptOnlyJob
    from latent_reward.workflows.run import SweepJob
    from latent_reward.workflows.score import ScoreJob

READOUT_SEEDS = "the split by prompt, cross-fitting folds, shuffled-rating controls, the sketch and the bootstrap"
RUN = "latent_reward.workflows.run:RunConfig"
# the readout's options, in `run` and `sweep` (both configs hold a `readout`); --seed seeds the sweep and the sketch
READOUT = tuple(
    f"{name}=readout.{path}"
    for name, path in (
        ("probes", "sweep.probes"),
        ("target", "sweep.target"),
        ("n_boot", "sweep.n_boot"),
        ("folds", "folds"),
        ("permutations", "permutations"),
        ("sgd_grid", "sgd_grid"),
        ("sketch_dim", "sketch.dim"),
    )
)
READOUT_SEED = {"readout.sweep.seed": "seed", "readout.sketch.seed": "seed"}
ANALYSIS_DEVICE = {"readout.device": "analysis_device"}  # the --analysis-device of run and sweep
EXTRACT = ("extract.positions", "extract.max_tokens", "extract.batch_tokens", "extract.logprobs", "extract.shard_size")


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
@with_config_options(
    "latent_reward.workflows.extract:ExtractJob",
    (*EXTRACT, "layers", "token_layers", "extract.share_prompts", "random_init"),
    "settings",
    parse={"positions": parse_positions},
    partial=True,
)
def extract(
    data: DataSpec,
    out: OutOpt,
    settings: dict[str, Any],
    model: ModelOpt = DEFAULT_MODEL,
    fallback_template: FallbackTemplateOpt = False,
    dtype: DtypeOpt = DEFAULT_DTYPE_CHOICE,
    device: DeviceOpt = "auto",
    device_map: DeviceMapOpt = None,
) -> None:
    """Capture the residual stream at every layer at the named positions into an activation store."""
    from latent_reward.workflows.extract import ExtractJob, run_extract

    spec = ModelSpec(
        name=model, dtype=dtype.value, device=device, device_map=device_map, fallback_template=fallback_template
    )
    job = ExtractJob(**settings, data=data, model=spec, out=out)
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
@with_config_options(
    "latent_reward.workflows.run:SweepJob",
    (*READOUT, "readout.sweep.positions", "random_init_store"),
    "job",
    given={**same("store", "out"), **READOUT_SEED, **ANALYSIS_DEVICE},
    parse={"positions": parse_positions},
)
def sweep(
    store: Annotated[Path, typer.Option("--store", help="An activation store made by extract.")],
    out: OutOpt,
    job: SweepJob,
    seed: Annotated[int, seed_option(READOUT_SEEDS)] = 0,
    analysis_device: AnalysisDeviceOpt = "cpu",
) -> None:
    """Fit probes at every layer x position, score baselines and controls, and write the report."""
    from latent_reward.cli.show import show_headline
    from latent_reward.workflows.run import sweep_stores

    show_headline(console, sweep_stores(job))


@app.command()
@with_data_options(within=RUN)
@with_config_options(
    RUN,
    (*EXTRACT, *READOUT, "random_init_control", "random_init_depth", "trajectory"),
    "settings",
    given={**same("data", "out"), **READOUT_SEED, **ANALYSIS_DEVICE},
    parse={"positions": parse_positions},
    partial=True,
)
def run(
    data: DataSpec,
    settings: dict[str, Any],
    out: OutOpt = Path("runs/latest"),
    model: ModelOpt = DEFAULT_MODEL,
    dtype: DtypeOpt = DEFAULT_DTYPE_CHOICE,
    seed: Annotated[int, seed_option(f"--sample-prompts, {READOUT_SEEDS}, and the random-init copy's weights")] = 0,
    fallback_template: FallbackTemplateOpt = False,
    device: DeviceOpt = "auto",
    device_map: DeviceMapOpt = None,
    analysis_device: AnalysisDeviceOpt = "cpu",
) -> None:
    """The main job: extract (reusing a matching store), sweep, cross-fitted readout, baselines and controls, report."""
    from latent_reward.cli.show import show_headline
    from latent_reward.workflows.run import RunConfig
    from latent_reward.workflows.run import run as run_workflow

    spec = ModelSpec(
        name=model, dtype=dtype.value, device=device, device_map=device_map, fallback_template=fallback_template
    )
    config = RunConfig(**settings, model=spec)
    outcome = run_workflow(config)
    if outcome is None:  # a helper process of `accelerate launch`: its shards are written, the first process reports
        return
    console.print(f"done in {outcome.timings['total']:.0f} s")
    show_headline(console, outcome)


@app.command("prompt-only")
@with_config_options(
    "latent_reward.workflows.prompt_only:PromptOnlyJob",
    ("random_init_store", "config.target", "config.n_boot", "config.folds"),
    "job",
    given={**same("store", "out"), "config.seed": "seed", "device": "analysis_device"},
)
def prompt_only_command(
    store: Annotated[Path, typer.Option("--store", help="A store with user_end / assistant_start states.")],
    out: OutOpt,
    job: PromptOnlyJob,
    seed: Annotated[int, seed_option("the split by prompt, cross-fitting folds and the bootstrap")] = 0,
    analysis_device: AnalysisDeviceOpt = "cpu",
) -> None:
    """Expected reward from the user's input alone: probes on each prompt's states predict its mean rating."""
    from latent_reward.report.answers import reliability_line
    from latent_reward.workflows.prompt_only import run_prompt_only

    result = run_prompt_only(job).result
    console.print(
        f"cross-fitted over {result.cross_fitted.n_prompts} prompts: r with the prompt's mean rating = "
        f"{result.cross_fitted.pearson}; baselines: "
        + ", ".join(f"{b.name} {b.scores.pearson}" for b in result.baselines)
        + f"; {reliability_line(result)}. Written to {out}"
    )


@app.command()
@with_config_options(
    "latent_reward.workflows.generate:GenerateJob",
    ("max_new_tokens", "temperature", "html"),
    "job",
    given=same("prompt", "probe", "model", "seed", "device", "device_map"),
)
def generate(
    prompt: Annotated[str, typer.Argument(help="The user's message.")],
    probe: Annotated[Path, typer.Option("--probe", help="A saved probe folder (e.g. runs/demo/best_probe).")],
    job: GenerateJob,
    model: ProbeModelOpt = None,
    seed: Annotated[int, seed_option("sampling (with --temperature > 0)")] = 0,
    device: DeviceOpt = "auto",
    device_map: DeviceMapOpt = None,
) -> None:
    """Generate a reply and stream each token colored by the probe's live estimate of its reward."""
    from latent_reward.cli.show import stream_tokens
    from latent_reward.probes import Probe
    from latent_reward.workflows.generate import run_generate

    loaded_probe = Probe.load(probe)
    reply = run_generate(job, stream_tokens(console, loaded_probe)).result
    console.print()
    final = f"{reply.estimates[-1]:.2f}" if reply.estimates else "n/a"
    console.print(
        f"estimate before the reply: {reply.before:.2f}; at its end: {final} "
        f"(probe: {loaded_probe.kind} @ {loaded_probe.info.position} layer {loaded_probe.info.layer})"
    )
    if job.html:
        console.print(f"written: {job.html}")


@app.command()
@with_data_options()
@with_config_options(
    "latent_reward.workflows.score:ScoreJob",
    ("within_probe", "reference", "normalization", "max_tokens", "n_boot"),
    "job",
    given=same("data", "probe", "out", "model", "seed", "device", "device_map"),
)
def score(
    data: DataSpec,
    probe: Annotated[Path, typer.Option("--probe", help="A saved probe folder.")],
    out: OutOpt,
    job: ScoreJob,
    model: ProbeModelOpt = None,
    seed: Annotated[int, seed_option("--sample-prompts and the bootstrap")] = 0,
    device: DeviceOpt = "auto",
    device_map: DeviceMapOpt = None,
) -> None:
    """Score conversations with a probe: pair accuracy, best-of-n, or how well it ranks the data's ratings."""
    from latent_reward.cli.show import show_score
    from latent_reward.workflows.score import run_score

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
