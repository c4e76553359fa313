"""The `latent-reward` command line: thin wrappers that parse options and call the library."""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Column, Table

from latent_reward.errors import UserError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Probe a chat model's residual stream for the reward it expects its responses to get.")
data_app = typer.Typer(no_args_is_help=True, help="Look at rated data before using it.")
app.add_typer(data_app, name="data")
console = Console()

DEFAULT_DATA = "HuggingFaceH4/ultrafeedback_binarized"

DataOpt = Annotated[str, typer.Option("--data", "-d", help="Hub dataset id or local .jsonl/.jsonl.gz/.json/.parquet/.csv file.")]
SplitOpt = Annotated[Optional[str], typer.Option(help="Hub split (default: the dataset's rated split, e.g. test_prefs).")]
FormatOpt = Annotated[Optional[str], typer.Option("--format", help="Force a loader instead of detecting it from the fields.")]
LimitOpt = Annotated[Optional[int], typer.Option(min=1, help="Use only the first N examples.")]
PromptsOpt = Annotated[Optional[int], typer.Option(min=1, help="Use every response of the first N prompts only.")]
PromptFieldOpt = Annotated[Optional[str], typer.Option(help="Generic files: the prompt column (text or chat messages).")]
ResponseFieldOpt = Annotated[Optional[str], typer.Option(help="Generic files: the response column.")]
RatingFieldOpt = Annotated[Optional[str], typer.Option(help="Generic files: the rating column.")]
GroupFieldOpt = Annotated[Optional[str], typer.Option(help="Generic files: a prompt-id column (default: the prompt text).")]
FallbackOpt = Annotated[bool, typer.Option(help="Use the plain User:/Assistant: format for models without a chat template.")]
DeviceOpt = Annotated[Optional[str], typer.Option(help="torch device, e.g. cuda or cpu.")]


def _load_data(data, split, format, limit, prompt_field, response_field, rating_field, group_field, prompts=None):
    from latent_reward.data import FieldMap, load_dataset

    named = [prompt_field, response_field, rating_field]
    if any(named) and not all(named):
        raise UserError("--prompt-field, --response-field and --rating-field go together")
    fields = FieldMap(prompt_field, response_field, rating_field, group_field) if all(named) else None
    return load_dataset(data, split=split, format=format, fields=fields, limit=limit, prompts=prompts)


@app.command()
def models() -> None:
    """List the bundled offline models and whether each is installed."""
    from latent_reward.models import BUNDLED, DEFAULT_MODEL, is_installed

    table = Table("installed", "chat template", "description")
    table.columns.insert(0, Column("name", no_wrap=True))
    for name, model in BUNDLED.items():
        label = name + (" (default)" if name == DEFAULT_MODEL else "")
        installed = "yes" if is_installed(name) else f"no: {model.install_hint}"
        table.add_row(label, installed, "yes" if model.has_chat_template else "no (fallback format)", model.description)
    console.print(table)
    console.print("Any Hugging Face model id or local folder works too, e.g. HuggingFaceH4/zephyr-7b-beta.")


@data_app.command("inspect")
def data_inspect(
    data: Annotated[str, typer.Argument(help="Hub dataset id or local file.")],
    split: SplitOpt = None,
    format: FormatOpt = None,
    limit: LimitOpt = None,
    prompt_field: PromptFieldOpt = None,
    response_field: ResponseFieldOpt = None,
    rating_field: RatingFieldOpt = None,
    group_field: GroupFieldOpt = None,
) -> None:
    """Counts, groups, responses per group, the rating histogram and two examples."""
    from latent_reward.data.summary import summarize

    dataset = _load_data(data, split, format, limit, prompt_field, response_field, rating_field, group_field)
    summary = summarize(dataset)
    table = Table("", "", show_header=False)
    for key in ("source", "format", "records", "examples", "groups", "responses_per_group", "rating", "aspects",
                "generators", "multi_turn", "skipped"):
        table.add_row(key, str(summary[key]))
    console.print(table)
    peak = max(count for _, count in summary["rating_histogram"])
    console.print("[bold]rating histogram[/bold]")
    for value, count in summary["rating_histogram"]:
        console.print(f"{value:>8.3g} {count:>7} " + "#" * max(1, round(40 * count / peak)) if count else f"{value:>8.3g} {count:>7}")
    for example in dataset.examples[:2]:
        console.rule(f"{example.id}  rating {example.rating:g}  group {example.group}")
        for message in example.messages:
            text = message["content"]
            console.print(f"[bold]{message['role']}:[/bold] {text[:400]}{'...' if len(text) > 400 else ''}", markup=True, highlight=False)


@app.command()
def extract(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the activation store.")],
    model: Annotated[str, typer.Option("--model", "-m", help="Bundled name, Hub id or local folder.")] = "smollm2-135m-instruct",
    data: DataOpt = DEFAULT_DATA,
    split: SplitOpt = None,
    format: FormatOpt = None,
    limit: LimitOpt = None,
    prompts: PromptsOpt = None,
    positions: Annotated[str, typer.Option(help="Comma-separated: user_end, assistant_start, response_last, eot, response_mean, response_tokens.")] = "user_end,assistant_start,response_last,eot,response_mean",
    layers: Annotated[str, typer.Option(help="'all' or comma-separated residual indices (0 = embeddings).")] = "all",
    token_layers: Annotated[Optional[str], typer.Option(help="Layers kept for every response token (with response_tokens; default: the last).")] = None,
    max_tokens: Annotated[int, typer.Option(min=8, help="Truncate longer examples (keeps the prompt's end and the response's start).")] = 1024,
    batch_tokens: Annotated[int, typer.Option(min=64, help="Padded tokens per forward pass.")] = 1024,
    shard_size: Annotated[int, typer.Option(min=1, help="Examples per shard (the unit of resumption).")] = 256,
    share_prompts: Annotated[bool, typer.Option(help="Run each prompt once for all its responses.")] = True,
    logprobs: Annotated[bool, typer.Option(help="Also store the model's mean log-probability of each response.")] = False,
    fallback_template: FallbackOpt = False,
    random_init: Annotated[Optional[int], typer.Option(help="Use a randomly initialised copy of the model with this seed (a control).")] = None,
    device: DeviceOpt = None,
    dtype: Annotated[str, typer.Option(help="float32, bfloat16 or float16.")] = "float32",
    device_map: Annotated[Optional[str], typer.Option(help="transformers device_map for large models, e.g. auto.")] = None,
    prompt_field: PromptFieldOpt = None,
    response_field: ResponseFieldOpt = None,
    rating_field: RatingFieldOpt = None,
    group_field: GroupFieldOpt = None,
) -> None:
    """Capture the residual stream at every layer at the named positions into an activation store."""
    from latent_reward.activations import ExtractConfig, extract as run_extract, parse_layers, parse_positions
    from latent_reward.models import load_model
    from latent_reward.runinfo import write_run_json

    started = time.perf_counter()
    position_names = parse_positions(positions)
    dataset = _load_data(data, split, format, limit, prompt_field, response_field, rating_field, group_field, prompts)
    loaded = load_model(model, device=device, dtype=dtype, device_map=device_map,
                        allow_fallback_template=fallback_template, random_init_seed=random_init)
    n_layers = loaded.info.n_layers
    config = ExtractConfig(
        positions=position_names,
        layers=None if layers == "all" else parse_layers(layers, n_layers),
        token_layers=parse_layers(token_layers, n_layers) if token_layers else (),
        max_tokens=max_tokens, batch_tokens=batch_tokens, shard_size=shard_size,
        share_prompts=share_prompts, logprobs=logprobs,
    )
    load_seconds = time.perf_counter() - started
    result = run_extract(loaded, dataset.examples, out, config)
    stats = result.store.manifest["stats"]
    write_run_json(out, "extract", {"model": model, "data": data, "split": split, "limit": limit, **config.model_dump(mode="json")},
                   {"load": load_seconds, "extract": result.seconds, "total": time.perf_counter() - started},
                   {"skipped_records": dataset.skipped, "stats": stats})
    rate = result.tokens / result.seconds if result.computed_shards else 0.0
    console.print(
        f"stored {len(result.store)} examples x {len(result.store.layers)} layers at {', '.join(result.store.positions)} "
        f"in {out} ({result.computed_shards} shards computed, {result.skipped_shards} reused; "
        f"{result.seconds:.1f} s, {rate:,.0f} tokens/s; {stats['truncated']} truncated; "
        f"{stats['tokens_saved_by_prompt_sharing']:,} prompt tokens saved by sharing; skipped records: {dataset.skipped or 'none'})"
    )


ProbesOpt = Annotated[str, typer.Option(help="Comma-separated probe types: ridge, sgd, mlp, mean_diff, pairwise.")]
TargetOpt = Annotated[str, typer.Option(help="What to predict: rating, or an aspect the data has.")]
SeedOpt = Annotated[int, typer.Option(help="Seed for the split, controls and bootstrap.")]
BootOpt = Annotated[int, typer.Option(min=100, help="Bootstrap resamples (prompts) for the intervals.")]


def _sweep_options(probes: str, target: str, seed: int, n_boot: int, positions: Optional[str]):
    from latent_reward.activations import parse_positions
    from latent_reward.experiments.sweep import SweepOptions

    chosen = tuple(p.strip() for p in probes.split(",") if p.strip())
    return SweepOptions(probes=chosen, target=target, seed=seed, n_boot=n_boot,
                        positions=parse_positions(positions) if positions else None)


@app.command()
def sweep(
    store: Annotated[Path, typer.Option("--store", help="An activation store made by extract.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the report.")],
    probes: ProbesOpt = "ridge",
    target: TargetOpt = "rating",
    seed: SeedOpt = 0,
    n_boot: BootOpt = 1000,
    positions: Annotated[Optional[str], typer.Option(help="Positions to sweep (default: all in the store).")] = None,
    random_init_store: Annotated[Optional[Path], typer.Option(help="A store of the random-init control, same data.")] = None,
    sgd_grid: Annotated[bool, typer.Option(help="Train the SGD probe over batch sizes x schedules at the best cell.")] = True,
) -> None:
    """Fit probes at every layer x position, score baselines and controls, and write the report."""
    from latent_reward.activations import ActivationStore
    from latent_reward.experiments.pipeline import ReportInputs, report_from_stores
    from latent_reward.runinfo import write_run_json

    started = time.perf_counter()
    options = _sweep_options(probes, target, seed, n_boot, positions)
    inputs = ReportInputs(ActivationStore.open(store), ActivationStore.open(random_init_store) if random_init_store else None,
                          options, sgd_grid)
    extra = {"command": "sweep", "options": {"store": str(store), "probes": probes, "target": target, "seed": seed}}
    html, readout = report_from_stores(inputs, out, extra)
    best_probe_folder = readout.sweep.best_probe.save(out / "best_probe")
    write_run_json(out, "sweep", extra["options"], {"total": time.perf_counter() - started, **readout.timings})
    _print_headline(readout, html, best_probe_folder)


def _print_headline(readout, html: Path, probe_folder: Path) -> None:
    best = readout.sweep.best
    ci = best["test_ci"]
    console.print(
        f"best cell: {best['probe']} @ {best['position']} layer {best['layer']}: test r = {best['test']['pearson']:.3f} "
        f"[{ci['pearson']['low']:.3f}, {ci['pearson']['high']:.3f}], within-prompt accuracy = {best['test']['within_acc']:.3f}"
        + (f" [{ci['within_acc']['low']:.3f}, {ci['within_acc']['high']:.3f}]" if "within_acc" in ci else ""))
    console.print(f"report: {html}\nbest probe: {probe_folder}")


@app.command()
def run(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for stores, probes and the report.")] = Path("runs/latest"),
    model: Annotated[str, typer.Option("--model", "-m", help="Bundled name, Hub id or local folder.")] = "smollm2-135m-instruct",
    data: DataOpt = DEFAULT_DATA,
    split: SplitOpt = None,
    format: FormatOpt = None,
    limit: Annotated[Optional[int], typer.Option(min=1, help="Use only the first N examples.")] = 600,
    prompts: PromptsOpt = None,
    max_tokens: Annotated[int, typer.Option(min=8, help="Truncate longer examples.")] = 512,
    dtype: Annotated[str, typer.Option(help="float32, bfloat16 or float16 (bfloat16: ~2.3x faster on this kind of CPU).")] = "bfloat16",
    probes: ProbesOpt = "ridge",
    target: TargetOpt = "rating",
    seed: SeedOpt = 0,
    n_boot: BootOpt = 1000,
    random_init_control: Annotated[bool, typer.Option(help="Also extract and probe a randomly initialised copy of the model.")] = True,
    logprobs: Annotated[bool, typer.Option(help="Store the mean log-probability of each response (a baseline).")] = True,
    trajectory: Annotated[bool, typer.Option(help="Reward token by token on held-out responses (runs the model again on ~320 responses).")] = True,
    fallback_template: FallbackOpt = False,
    device: DeviceOpt = None,
    prompt_field: PromptFieldOpt = None,
    response_field: ResponseFieldOpt = None,
    rating_field: RatingFieldOpt = None,
    group_field: GroupFieldOpt = None,
) -> None:
    """The main job: extract (reusing a matching store), sweep, baselines and controls, report."""
    from latent_reward.config import ExtractConfig
    from latent_reward.experiments.pipeline import ReportInputs, extract_or_reuse, report_from_stores
    from latent_reward.models import load_model
    from latent_reward.runinfo import write_run_json

    started = time.perf_counter()
    options = _sweep_options(probes, target, seed, n_boot, None)
    dataset = _load_data(data, split, format, limit, prompt_field, response_field, rating_field, group_field, prompts)
    config = ExtractConfig(max_tokens=max_tokens, logprobs=logprobs)
    model_options = {"device": device, "allow_fallback_template": fallback_template}
    timings = {}
    store, timings["extract"] = extract_or_reuse(model, dataset.examples, out / "store", config, data, dtype, **model_options)
    random_store = None
    if random_init_control:
        random_store, timings["extract_random_init"] = extract_or_reuse(
            model, dataset.examples, out / "store-random-init", config.model_copy(update={"logprobs": False}), data, dtype,
            random_init_seed=seed, **model_options)
    run_options = {"model": model, "data": data, "split": split, "limit": limit, "prompts": prompts, "max_tokens": max_tokens, "dtype": dtype,
                   "probes": probes, "target": target, "seed": seed, "random_init_control": random_init_control}
    extra = {"command": "run", "options": run_options}
    trajectory_model = load_model(model, dtype=dtype, **model_options) if trajectory else None
    html, readout = report_from_stores(ReportInputs(store, random_store, options, trajectory_model=trajectory_model), out / "report",
                                       {**extra, "timings_extract": timings})
    probe_folder = readout.sweep.best_probe.save(out / "best_probe")
    timings.update(readout.timings, total=time.perf_counter() - started)
    write_run_json(out, "run", run_options, timings, {"skipped_records": dataset.skipped})
    console.print(f"done in {timings['total']:.0f} s")
    _print_headline(readout, html, probe_folder)


@app.command("prompt-only")
def prompt_only_command(
    store: Annotated[Path, typer.Option("--store", help="A store with user_end / assistant_start states.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for prompt_only.json and its figure.")],
    random_init_store: Annotated[Optional[Path], typer.Option(help="The random-init control's store, same data.")] = None,
    target: TargetOpt = "rating",
    seed: SeedOpt = 0,
    n_boot: BootOpt = 1000,
) -> None:
    """Expected reward from the user's input alone: probes on each prompt's states predict its mean rating."""
    from latent_reward.activations import ActivationStore
    from latent_reward.experiments.prompt_only import prompt_only
    from latent_reward.experiments.sweep import SweepOptions, sweep as run_sweep
    from latent_reward.report.html import write_json

    opened = ActivationStore.open(store)
    response_level = run_sweep(opened, SweepOptions(target=target, seed=seed, n_boot=200, control=False), progress=False)
    result = prompt_only(opened, response_level, ActivationStore.open(random_init_store) if random_init_store else None,
                         target, seed, n_boot)
    if result is None:
        raise UserError("the store has neither user_end nor assistant_start states; extract with those positions")
    out.mkdir(parents=True, exist_ok=True)
    result.curves.to_csv(out / "prompt_only_curves.csv", index=False)
    write_json(out / "prompt_only.json", {"best": result.best, "baselines": result.baselines,
                                          "variance_between_fraction": result.variance_between_fraction,
                                          "decomposition": result.decomposition.to_dict(orient="records"),
                                          "top_prompts": result.top_prompts, "bottom_prompts": result.bottom_prompts})
    r = result.best["test_pearson"]
    console.print(f"best: {result.best['position']} layer {result.best['layer']}: test r with the prompt's mean rating = "
                  f"{r['value']:.3f} [{r['low']:.3f}, {r['high']:.3f}]; baselines: "
                  + ", ".join(f"{k} {v['value']:.3f}" for k, v in result.baselines.items())
                  + f"; {result.variance_between_fraction:.0%} of the variance lies between prompts. Written to {out}")


@app.command()
def generate(
    prompt: Annotated[str, typer.Argument(help="The user's message.")],
    probe: Annotated[Path, typer.Option("--probe", help="A saved probe folder (e.g. runs/demo/best_probe).")],
    model: Annotated[Optional[str], typer.Option(help="Model (default: the one the probe was trained on).")] = None,
    max_new_tokens: Annotated[int, typer.Option(min=1)] = 200,
    temperature: Annotated[float, typer.Option(min=0.0, help="0 = greedy.")] = 0.0,
    seed: SeedOpt = 0,
    html: Annotated[Optional[Path], typer.Option(help="Also write the colored reply as an HTML page here.")] = None,
) -> None:
    """Generate a reply and stream each token colored by the probe's live estimate of its reward."""
    from rich.text import Text

    from latent_reward.experiments.generate import generate_with_estimates
    from latent_reward.models import load_model
    from latent_reward.probes import Probe
    from latent_reward.report.lens import color, lens_page

    loaded_probe = Probe.load(probe)
    name = model or loaded_probe.info.get("model")
    if not name:
        raise UserError("the probe does not record its model; pass --model")
    loaded = load_model(name, dtype=loaded_probe.info.get("model_dtype") or "float32",
                        allow_fallback_template=loaded_probe.info.get("chat_template") == "fallback")
    low, high = loaded_probe.info.get("rating_range") or (0.0, 1.0)

    def show(token: str, estimate: float) -> None:
        r, g, b = color(estimate, low, high)
        console.print(Text(token, style=f"black on rgb({r},{g},{b})"), end="")

    reply = generate_with_estimates(loaded, loaded_probe, [{"role": "user", "content": prompt}], max_new_tokens, temperature,
                                    seed, show)
    console.print()
    final = f"{reply.estimates[-1]:.2f}" if reply.estimates else "n/a"
    console.print(f"estimate before the reply: {reply.before:.2f}; at its end: {final} "
                  f"(probe: {loaded_probe.kind} @ {loaded_probe.info['position']} layer {loaded_probe.info['layer']})")
    if html:
        from latent_reward.activations.store import atomic_write_text

        atomic_write_text(html, lens_page(f"{name}: {prompt[:80]}", [{"caption": prompt, "tokens": reply.tokens, "estimates": reply.estimates}], low, high))
        console.print(f"written: {html}")


@app.command()
def score(
    probe: Annotated[Path, typer.Option("--probe", help="A saved probe folder.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the store, scores.csv and score.json.")],
    data: DataOpt = DEFAULT_DATA,
    split: SplitOpt = None,
    format: FormatOpt = None,
    limit: LimitOpt = None,
    prompts: PromptsOpt = None,
    model: Annotated[Optional[str], typer.Option(help="Model (default: the one the probe was trained on).")] = None,
    reference: Annotated[Optional[str], typer.Option(help="Reference model for the DPO implicit reward baseline.")] = None,
    normalization: Annotated[str, typer.Option(help="Implicit reward: sum, mean or none (reference-free).")] = "sum",
    n_boot: BootOpt = 1000,
    seed: SeedOpt = 0,
) -> None:
    """Score conversations with a probe: pair accuracy, best-of-n, or how well it tracks the data's ratings."""
    from latent_reward.experiments.reward_model import NORMALIZATIONS, run_scoring

    if normalization not in NORMALIZATIONS:
        raise UserError(f"--normalization must be one of {', '.join(NORMALIZATIONS)}")
    dataset = _load_data(data, split, format, limit, None, None, None, None, prompts)
    summary = run_scoring(probe, dataset, out, model, reference, normalization, n_boot, seed)
    for line in summary["lines"]:
        console.print(line)


@app.command()
def compare(
    runs: Annotated[list[Path], typer.Argument(help="Folders written by `latent-reward run` (or their report folders).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for compare.html, compare.json and the figure.")] = Path("runs/compare"),
) -> None:
    """Side by side: several models (or datasets) on the same questions."""
    from latent_reward.experiments.compare import compare_runs

    html = compare_runs(runs, out)
    console.print(f"comparison: {html}")


def _quiet_libraries() -> None:
    """Our progress bar and messages are the ones that matter; silence the libraries' own."""
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    _quiet_libraries()
    try:
        app(standalone_mode=False)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as error:  # click's own usage errors
        import click

        if isinstance(error, click.exceptions.ClickException):
            error.show()
            sys.exit(error.exit_code)
        if isinstance(error, click.exceptions.Exit):
            sys.exit(error.exit_code)
        if isinstance(error, click.exceptions.Abort):
            sys.exit(130)
        raise
