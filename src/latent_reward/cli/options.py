"""Options shared by several commands, and the option groups (data, endpoint) a command receives as one value."""

from __future__ import annotations

import functools
import inspect
import sys
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from latent_reward.cli.choices import Dtype
from latent_reward.config import DEFAULT_DATA, DEFAULT_DTYPE, DataSpec
from latent_reward.errors import UserError
from latent_reward.positions import parse_positions

ModelOpt = Annotated[str, typer.Option("--model", "-m", help="Bundled name, Hub id or local folder.")]
ProbeModelOpt = Annotated[
    str | None,
    typer.Option(
        "--model", "-m", help="Bundled name, Hub id or local folder (default: the model the probe was trained on)."
    ),
]
DtypeOpt = Annotated[
    Dtype,
    typer.Option(
        help="The model's precision; auto: bfloat16 on a GPU or a CPU with bfloat16 instructions, else float32."
    ),
]
BootOpt = Annotated[int, typer.Option(min=100, help="Bootstrap resamples (prompts) for the intervals.")]
ProbesOpt = Annotated[str, typer.Option(help="Comma-separated probe kinds: ridge, sgd, mlp, mean_diff, pairwise.")]
TargetOpt = Annotated[
    str, typer.Option(help="What to predict: rating, rating-within-prompt, or an aspect the data has.")
]
OutOpt = Annotated[Path, typer.Option("--out", "-o", help="Output folder.")]
MaxNewTokensOpt = Annotated[int, typer.Option(min=1, help="Tokens generated per reply, at most.")]
MaxTokensOpt = Annotated[
    int, typer.Option(min=8, help="Input truncation: longer examples keep the prompt's end and the response's start.")
]
TemperatureOpt = Annotated[float, typer.Option(min=0.0, help="Sampling temperature; 0 = greedy, > 0 samples (seeded).")]
DeviceOpt = Annotated[
    str,
    typer.Option(
        metavar="[auto|cpu|cuda|cuda:N|mps]",
        help="auto (cuda if torch sees one, else cpu; under accelerate launch each process its own GPU), cpu, cuda, "
        "cuda:N or mps.",
        rich_help_panel="Devices",
    ),
]
DeviceMapOpt = Annotated[
    str | None,
    typer.Option(
        help="transformers device_map, e.g. auto: a large model's layers over several GPUs or GPU + CPU offload "
        "(instead of --device).",
        rich_help_panel="Devices",
    ),
]
DEFAULT_DTYPE_CHOICE = Dtype(DEFAULT_DTYPE)


def seed_option(seeds: str) -> Any:
    """--seed's option, with help that says what it seeds in this command (`seeds`: a phrase listing them); annotate
    `seed: Annotated[int, seed_option(...)]`."""
    return typer.Option(help=f"Seed for {seeds}.")


FoldsOpt = Annotated[int, typer.Option(min=2, help="Cross-fitting folds over prompts (the headline).")]
PermutationsOpt = Annotated[int, typer.Option(min=0, help="Shuffled-rating probes per control (null distributions).")]
SgdGridOpt = Annotated[bool, typer.Option(help="Train the SGD probe over batch sizes x schedules at the best cell.")]
SketchDimOpt = Annotated[
    int,
    typer.Option(
        min=0,
        help="States wider than 1024 choose their cells on this many principal components per layer, then fit "
        "exactly (0: always use the full states).",
    ),
]


@dataclass(frozen=True)
class Group:
    """Options several commands share, given to a command as one value (its parameter `name`)."""

    name: str
    options: dict[str, tuple[Any, Any, Any]]  # parameter -> (type, typer.Option, default)
    build: Callable[[dict[str, Any], dict[str, Any]], Any]  # (the group's values, the command's other arguments) -> it


def with_group(group: Group):
    """Give a command the group's options in place of its parameter `group.name`.

    typer reads a command's signature; the wrapper's signature lists the command's own parameters and the group's
    options, and the wrapper hands the command the value the group builds from them."""

    def decorate(function):
        signature = inspect.signature(function)
        hints = typing.get_type_hints(function, include_extras=True)  # resolved: typer reads the wrapper's signature
        keyword = inspect.Parameter.KEYWORD_ONLY
        # the command's own annotations are strings (resolved above); another group's options are already objects
        kept = [
            p.replace(annotation=hints[name] if isinstance(p.annotation, str) else p.annotation, kind=keyword)
            for name, p in signature.parameters.items()
            if name != group.name
        ]
        added = [
            inspect.Parameter(name, keyword, default=default, annotation=Annotated[kind, option])
            for name, (kind, option, default) in group.options.items()
        ]

        @functools.wraps(function)
        def wrapper(**kwargs):
            values = {name: kwargs.pop(name) for name in group.options}
            return function(**{group.name: group.build(values, kwargs)}, **kwargs)

        wrapper.__signature__ = signature.replace(parameters=kept + added)  # type: ignore[attr-defined]
        return wrapper

    return decorate


DATA_PANEL = "Data"
_DATA_FIELDS = {
    "split": (
        str | None,
        typer.Option(
            help="Hub split (default: the dataset's rated split, e.g. test_prefs); "
            "for a local file, the rows whose split field equals it.",
            rich_help_panel=DATA_PANEL,
        ),
    ),
    "format": (
        str | None,
        typer.Option(
            "--format", help="Force a loader instead of detecting it from the fields.", rich_help_panel=DATA_PANEL
        ),
    ),
    "limit": (int | None, typer.Option(min=1, help="Use only the first N examples.", rich_help_panel=DATA_PANEL)),
    "prompts": (
        int | None,
        typer.Option(min=1, help="Use every response of the first N prompts only.", rich_help_panel=DATA_PANEL),
    ),
    "sample_prompts": (
        int | None,
        typer.Option(
            min=1,
            help="Use every response of N prompts drawn at random (seeded by --seed) from the whole file.",
            rich_help_panel=DATA_PANEL,
        ),
    ),
    "prompt_field": (
        str | None,
        typer.Option(help="Generic files: the prompt column (text or chat messages).", rich_help_panel=DATA_PANEL),
    ),
    "response_field": (
        str | None,
        typer.Option(help="Generic files: the response column.", rich_help_panel=DATA_PANEL),
    ),
    "rating_field": (str | None, typer.Option(help="Generic files: the rating column.", rich_help_panel=DATA_PANEL)),
    "group_field": (
        str | None,
        typer.Option(help="Generic files: a prompt-id column (default: the prompt text).", rich_help_panel=DATA_PANEL),
    ),
}


def announce_default_data() -> None:
    """Say on stderr what is read when --data is left out (it may be a download), before it is read."""
    print(
        f"reading the default data, {DEFAULT_DATA}, from the Hugging Face Hub (downloaded once, then from its "
        "cache); --data names another",
        file=sys.stderr,
    )


def with_data_options(limit: int | None = None, positional: bool = False, optional: str | None = None):
    """Give a command the data options; it receives them as one `data: DataSpec` argument (None when `optional`).

    `positional`: the data source is the command's argument instead of --data. `optional`: --data may be left out,
    and the text says what the command reads instead; without it, a left-out --data reads DEFAULT_DATA, said first on
    stderr. The command's --seed draws --sample-prompts; a command without one gets a --seed for that alone."""

    def decorate(function):
        own_seed = "seed" in inspect.signature(function).parameters
        options: dict[str, tuple[Any, Any, Any]] = {}
        if positional:
            options["data"] = (str, typer.Argument(help="Hub dataset id or local file."), inspect.Parameter.empty)
        else:
            help_text = "Hub dataset id or local .jsonl/.jsonl.gz/.json/.parquet/.csv file " + (
                f"(default: {optional})." if optional else f"(default: {DEFAULT_DATA}, read from the Hub)."
            )
            options["data"] = (
                str | None,
                typer.Option("--data", "-d", help=help_text, rich_help_panel=DATA_PANEL),
                None,
            )
        options.update(
            {name: (kind, option, limit if name == "limit" else None) for name, (kind, option) in _DATA_FIELDS.items()}
        )
        if not own_seed:
            options["seed"] = (int, typer.Option(help="Seed of --sample-prompts' draw.", rich_help_panel=DATA_PANEL), 0)

        def build(values: dict[str, Any], others: dict[str, Any]) -> DataSpec | None:
            source, seed = values.pop("data"), others["seed"] if own_seed else values.pop("seed")
            if source is None and optional:
                given = [
                    f"--{name.replace('_', '-')}"
                    for name, value in values.items()
                    if value is not None and value != limit
                ]
                if given:
                    raise UserError(
                        f"{', '.join(given)} choose rows of --data, which is not given (without it the "
                        f"command reads {optional})"
                    )
                return None
            if source is None:
                announce_default_data()
                source = DEFAULT_DATA
            return DataSpec(source=source, seed=seed, **values)

        return with_group(Group("data", options, build))(function)

    return decorate


ENDPOINT_PANEL = "Endpoint (an OpenAI-compatible server)"
DEFAULT_ENDPOINT_MODEL = "gpt-4o-mini"


@dataclass(frozen=True)
class EndpointOptions:
    """The endpoint options as given; `endpoint` makes the client's Endpoint."""

    base_url: str | None
    models: tuple[str, ...]
    api_key_env: str | None
    concurrency: int
    timeout: float
    retries: int

    def endpoint(self, model: str | None = None, **settings):
        """The Endpoint for `model` (default: the first --endpoint-model); --base-url must be given."""
        from latent_reward.judging.client import Endpoint

        if self.base_url is None:
            raise typer.BadParameter(
                "is required: the OpenAI-compatible endpoint to send the requests to", param_hint="--base-url"
            )
        return Endpoint(
            base_url=self.base_url,
            model=model or self.models[0],
            api_key_env=self.api_key_env,
            concurrency=self.concurrency,
            timeout=self.timeout,
            max_retries=self.retries,
            **settings,
        )


def with_endpoint_options(repeatable: bool = False, timeout: float = 60.0):
    """Give a command the endpoint options (--base-url, --endpoint-model, --api-key-env, --concurrency, --timeout,
    --retries); it receives them as one `endpoint: EndpointOptions` argument. `repeatable`: several endpoint models."""
    model: tuple[Any, Any, Any]
    if repeatable:
        model = (
            list[str],
            typer.Option(
                "--endpoint-model", help="A model behind --base-url (repeatable).", rich_help_panel=ENDPOINT_PANEL
            ),
            [],
        )
    else:
        model = (
            str,
            typer.Option("--endpoint-model", help="The model's name at --base-url.", rich_help_panel=ENDPOINT_PANEL),
            DEFAULT_ENDPOINT_MODEL,
        )
    options: dict[str, tuple[Any, Any, Any]] = {
        "base_url": (
            str | None,
            typer.Option(
                help="An OpenAI-compatible endpoint, e.g. http://127.0.0.1:8080/v1 (make judge-server) or "
                "https://api.openai.com/v1.",
                rich_help_panel=ENDPOINT_PANEL,
            ),
            None,
        ),
        "endpoint_model": model,
        "api_key_env": (
            str | None,
            typer.Option(
                help="Name of the environment variable holding the endpoint's API key "
                "(never the key; local servers need none).",
                rich_help_panel=ENDPOINT_PANEL,
            ),
            None,
        ),
        "concurrency": (
            int,
            typer.Option(min=1, help="Requests in flight at once.", rich_help_panel=ENDPOINT_PANEL),
            8,
        ),
        "timeout": (
            float,
            typer.Option(min=0.1, help="Seconds per request before it is retried.", rich_help_panel=ENDPOINT_PANEL),
            timeout,
        ),
        "retries": (
            int,
            typer.Option(
                min=0,
                help="Retries per request on 429, 5xx and timeouts (exponential backoff, honouring Retry-After).",
                rich_help_panel=ENDPOINT_PANEL,
            ),
            4,
        ),
    }

    def build(values: dict[str, Any], others: dict[str, Any]) -> EndpointOptions:
        models = values.pop("endpoint_model")
        return EndpointOptions(models=tuple(models) if repeatable else (models,), **values)

    return with_group(Group("endpoint", options, build))


def readout_config(
    probes: str,
    target: str,
    seed: int,
    n_boot: int,
    folds: int,
    permutations: int,
    sgd_grid: bool,
    positions: str | None = None,
    sketch_dim: int = 256,
):
    from latent_reward.analysis.sketch import SketchConfig
    from latent_reward.analysis.sweep import SweepConfig
    from latent_reward.experiments.readout import ReadoutConfig

    sweep = SweepConfig(
        probes=tuple(p.strip() for p in probes.split(",") if p.strip()),
        target=target,
        seed=seed,
        n_boot=n_boot,
        positions=parse_positions(positions) if positions else None,
    )
    return ReadoutConfig(
        sweep=sweep,
        folds=folds,
        permutations=permutations,
        sgd_grid=sgd_grid,
        sketch=SketchConfig(dim=sketch_dim, seed=seed),
    )
