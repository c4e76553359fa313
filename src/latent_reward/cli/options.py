"""Options shared by several commands that no config holds (model, device, output folder, seed), and the option
groups (data, endpoint) a command receives as one value."""

from __future__ import annotations

import inspect
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from latent_reward.cli.choices import Dtype
from latent_reward.cli.fields import config_options, load, make_option
from latent_reward.cli.groups import Group, Options, with_group
from latent_reward.config import DEFAULT_DATA, DEFAULT_DTYPE, DataSpec
from latent_reward.errors import UserError

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
OutOpt = Annotated[Path, typer.Option("--out", "-o", help="Output folder.")]
FallbackTemplateOpt = Annotated[
    bool, typer.Option(help="Use the plain User:/Assistant: format for models without a chat template.")
]
DeviceOpt = Annotated[
    str,
    typer.Option(
        metavar="[auto|cpu|cuda|cuda:N|mps]",
        help="auto (cuda if torch sees one, else cpu; under accelerate launch each process its own GPU), cpu, cuda, "
        "cuda:N or mps.",
        rich_help_panel="Devices",
    ),
]
AnalysisDeviceOpt = Annotated[
    str,
    typer.Option(
        metavar="[cpu|cuda|cuda:N|auto]",
        help="Where the analysis's ridge fits compute: cpu, cuda, cuda:N or auto (cuda if torch sees one, else cpu; "
        "under accelerate launch the first process's GPU). mps computes on the CPU.",
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


DATA_PANEL = "Data"
DATA_FIELDS = (
    "split",
    "format",
    "limit",
    "prompts",
    "sample_prompts",
    "prompt_field",
    "response_field",
    "rating_field",
    "group_field",
)


def announce_default_data() -> None:
    """Say on stderr what is read when --data is left out (it may be a download), before it is read."""
    print(
        f"reading the default data, {DEFAULT_DATA}, from the Hugging Face Hub (downloaded once, then from its "
        "cache); --data names another",
        file=sys.stderr,
    )


def with_data_options(within: str | None = None, positional: bool = False, optional: str | None = None):
    """Give a command the data options; it receives them as one `data: DataSpec` argument (None when `optional`).

    The options are DataSpec's fields; `within` ("module:Config") names a config whose `data` field's default gives
    their defaults instead (run's limit). `positional`: the data source is the command's argument instead of --data.
    `optional`: --data may be left out, and the text says what the command reads instead; without it, a left-out
    --data reads DEFAULT_DATA, said first on stderr. The command's --seed draws --sample-prompts; a command without
    one gets a --seed for that alone."""

    def decorate(function):
        own_seed = "seed" in inspect.signature(inspect.unwrap(function)).parameters
        fields = DATA_FIELDS if own_seed else (*DATA_FIELDS, "seed")

        def defaults() -> dict[str, Any]:
            if within:
                return {o.name: o.default for o in config_options(load(within), [f"{n}=data.{n}" for n in fields])}
            return {o.name: o.default for o in config_options(DataSpec, fields)}

        def options() -> Options:
            made: Options = {}
            if positional:
                made["data"] = (str, typer.Argument(help="Hub dataset id or local file."), inspect.Parameter.empty)
            else:
                help_text = "Hub dataset id or local .jsonl/.jsonl.gz/.json/.parquet/.csv file " + (
                    f"(default: {optional})." if optional else f"(default: {DEFAULT_DATA}, read from the Hub)."
                )
                made["data"] = (
                    str | None,
                    typer.Option("--data", "-d", help=help_text, rich_help_panel=DATA_PANEL),
                    None,
                )
            declared = defaults()
            for option in config_options(DataSpec, fields):
                kind, made_option, _ = make_option(option, DATA_PANEL)
                made[option.name] = (kind, made_option, declared[option.name])
            return made

        def build(values: dict[str, Any], others: dict[str, Any]) -> DataSpec | None:
            source, seed = values.pop("data"), others["seed"] if own_seed else values.pop("seed")
            if source is None and optional:
                given = [f"--{name.replace('_', '-')}" for name, value in values.items() if value != defaults()[name]]
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
ENDPOINT = "latent_reward.judging.client:Endpoint"
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


def with_endpoint_options(repeatable: bool = False, timeout: float | None = None):
    """Give a command the endpoint options (--base-url, --endpoint-model, and the client's --api-key-env,
    --concurrency, --timeout, --retries); it receives them as one `endpoint: EndpointOptions` argument.
    `repeatable`: several endpoint models. `timeout`: this command's default, when not the client's."""
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

    def options() -> Options:
        made: Options = {
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
        }
        client = config_options(load(ENDPOINT), ("api_key_env", "concurrency", "timeout", "retries=max_retries"))
        made.update({option.name: make_option(option, ENDPOINT_PANEL) for option in client})
        if timeout is not None:
            made["timeout"] = (*made["timeout"][:2], timeout)
        return made

    def build(values: dict[str, Any], others: dict[str, Any]) -> EndpointOptions:
        models = values.pop("endpoint_model")
        return EndpointOptions(models=tuple(models) if repeatable else (models,), **values)

    return with_group(Group("endpoint", options, build))
