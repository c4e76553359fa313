"""Options shared by several commands, and the decorator that gives a command the data options."""

from __future__ import annotations

import functools
import inspect
import typing
from pathlib import Path
from typing import Annotated, Optional

import typer

from latent_reward.config import DEFAULT_DATA, DataSpec
from latent_reward.positions import parse_positions

ModelOpt = Annotated[str, typer.Option("--model", "-m", help="Bundled name, Hub id or local folder.")]
SeedOpt = Annotated[int, typer.Option(help="Seed for splits, folds, controls and the bootstrap.")]
BootOpt = Annotated[int, typer.Option(min=100, help="Bootstrap resamples (prompts) for the intervals.")]
ProbesOpt = Annotated[str, typer.Option(help="Comma-separated probe kinds: ridge, sgd, mlp, mean_diff, pairwise.")]
TargetOpt = Annotated[str, typer.Option(help="What to predict: rating, rating-within-prompt, or an aspect the data has.")]
OutOpt = Annotated[Path, typer.Option("--out", "-o", help="Output folder.")]
DeviceOpt = Annotated[str, typer.Option(
    help="auto (cuda if torch sees one, else cpu; under accelerate launch each process its own GPU), cpu, cuda, cuda:N or mps.",
    rich_help_panel="Devices")]
DeviceMapOpt = Annotated[Optional[str], typer.Option(
    help="transformers device_map, e.g. auto: a large model's layers over several GPUs or GPU + CPU offload (instead of --device).",
    rich_help_panel="Devices")]

_DATA_OPTIONS = {
    "data": (str, typer.Option("--data", "-d", help="Hub dataset id or local .jsonl/.jsonl.gz/.json/.parquet/.csv file.")),
    "split": (Optional[str], typer.Option(help="Hub split (default: the dataset's rated split, e.g. test_prefs); for a local file, the rows whose split field equals it.")),
    "format": (Optional[str], typer.Option("--format", help="Force a loader instead of detecting it from the fields.")),
    "limit": (Optional[int], typer.Option(min=1, help="Use only the first N examples.")),
    "prompts": (Optional[int], typer.Option(min=1, help="Use every response of the first N prompts only.")),
    "sample_prompts": (Optional[int], typer.Option(min=1, help="Use every response of N prompts drawn at random (seeded) from the whole file.")),
    "prompt_field": (Optional[str], typer.Option(help="Generic files: the prompt column (text or chat messages).")),
    "response_field": (Optional[str], typer.Option(help="Generic files: the response column.")),
    "rating_field": (Optional[str], typer.Option(help="Generic files: the rating column.")),
    "group_field": (Optional[str], typer.Option(help="Generic files: a prompt-id column (default: the prompt text).")),
}


def with_data_options(limit: int | None = None, positional: bool = False):
    """Give a command the data options; it receives them as one `data: DataSpec` argument.

    `positional`: the data source is the command's argument instead of --data."""

    def decorate(function):
        signature = inspect.signature(function)
        hints = typing.get_type_hints(function, include_extras=True)  # resolved: typer reads the wrapper's signature
        kept = [p.replace(annotation=hints[name]) for name, p in signature.parameters.items() if name != "data"]
        options = dict(_DATA_OPTIONS)
        if positional:
            options["data"] = (str, typer.Argument(help="Hub dataset id or local file."))
        defaults = {"data": inspect.Parameter.empty if positional else DEFAULT_DATA, "limit": limit}
        added = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=defaults.get(name),
                                   annotation=Annotated[kind, option]) for name, (kind, option) in options.items()]

        @functools.wraps(function)
        def wrapper(**kwargs):
            spec = DataSpec(source=kwargs.pop("data"), **{name: kwargs.pop(name) for name in list(_DATA_OPTIONS)[1:]})
            return function(data=spec, **kwargs)

        wrapper.__signature__ = signature.replace(parameters=[p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in kept] + added)
        return wrapper

    return decorate


def readout_config(probes: str, target: str, seed: int, n_boot: int, folds: int, permutations: int, sgd_grid: bool,
                   positions: Optional[str] = None, sketch_dim: int = 256):
    from latent_reward.analysis.sketch import SketchConfig
    from latent_reward.experiments.readout import ReadoutConfig
    from latent_reward.experiments.sweep import SweepConfig

    sweep = SweepConfig(probes=tuple(p.strip() for p in probes.split(",") if p.strip()), target=target, seed=seed, n_boot=n_boot,
                        positions=parse_positions(positions) if positions else None)
    return ReadoutConfig(sweep=sweep, folds=folds, permutations=permutations, sgd_grid=sgd_grid,
                         sketch=SketchConfig(dim=sketch_dim, seed=seed))


FoldsOpt = Annotated[int, typer.Option(min=2, help="Cross-fitting folds over prompts (the headline).")]
PermutationsOpt = Annotated[int, typer.Option(min=0, help="Shuffled-rating probes per control (null distributions).")]
SgdGridOpt = Annotated[bool, typer.Option(help="Train the SGD probe over batch sizes x schedules at the best cell.")]
SketchDimOpt = Annotated[int, typer.Option(min=0, help="States wider than 1024 choose their cells on this many principal "
                                                       "components per layer, then fit exactly (0: always use the full states).")]
