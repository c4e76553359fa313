"""Commands that make new data or intervene: respond, judge, steer, conversation (train: cli/training.py)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from latent_reward.cli.app import app, console
from latent_reward.cli.fields import same, with_config_options
from latent_reward.cli.options import (
    DEFAULT_DTYPE_CHOICE,
    ENDPOINT,
    DeviceMapOpt,
    DeviceOpt,
    DtypeOpt,
    EndpointOptions,
    OutOpt,
    ProbeModelOpt,
    seed_option,
    with_data_options,
    with_endpoint_options,
)
from latent_reward.config import DataSpec, ModelSpec

if TYPE_CHECKING:
    from latent_reward.experiments.judge import JudgeConfig
    from latent_reward.workflows.conversation import ConversationJob

RUNS = ("model", "device", "device_map")  # the commands' own options that the jobs take as they are


@app.command()
@with_endpoint_options(repeatable=True, timeout=120.0)
@with_data_options()
@with_config_options(
    "latent_reward.workflows.respond:RespondJob",
    ("samples", "generation.max_new_tokens", "generation.temperature", "generation.batch_size"),
    "settings",
    given={"prompts": "data", **same("out"), "generation.seed": "seed"},
    partial=True,
)
def respond(
    data: DataSpec,
    endpoint: EndpointOptions,
    out: OutOpt,
    settings: dict[str, Any],
    model: Annotated[
        list[str], typer.Option("--model", "-m", help="A model run here (repeatable): bundled name, Hub id or folder.")
    ] = [],  # noqa: B006
    seed: Annotated[int, seed_option("--sample-prompts and sampling (each response seeded from it and its index)")] = 0,
    dtype: DtypeOpt = DEFAULT_DTYPE_CHOICE,
    device: DeviceOpt = "auto",
    device_map: DeviceMapOpt = None,
) -> None:
    """Responses to a prompt set from several models, with empty ratings, ready for `judge`."""
    from latent_reward.workflows.respond import RespondJob, run_respond

    sampling = {"temperature": settings["generation"]["temperature"]}
    sampling["max_tokens"] = settings["generation"]["max_new_tokens"]
    remote = endpoint.endpoint(**sampling) if endpoint.models else None
    local = tuple(ModelSpec(name=m, dtype=dtype.value, device=device, device_map=device_map) for m in model)
    job = RespondJob(**settings, models=local, endpoint_models=endpoint.models, endpoint=remote)
    result = run_respond(job).result
    console.print(f"written: {result.file} ({result.responses} responses to {result.prompts} prompts)")


@app.command()
@with_endpoint_options()
@with_data_options()
@with_config_options("latent_reward.experiments.judge:JudgeConfig", ("mode", "repeats"), given={"seed": "seed"})
@with_config_options(ENDPOINT, ("temperature", "structured", "price_input", "price_output"), "client", partial=True)
def judge(
    data: DataSpec,
    endpoint: EndpointOptions,
    out: OutOpt,
    config: JudgeConfig,
    client: dict[str, Any],
    max_new_tokens: Annotated[int, typer.Option(min=16, help="Tokens the judge may write per item.")] = 400,
    seed: Annotated[int, seed_option("--sample-prompts and the bootstrap of the agreement intervals")] = 0,
) -> None:
    """Rate every response with a judge model (UltraFeedback aspects and an overall score), cached and resumable."""
    from latent_reward.workflows.judge import JudgeJob, run_judge

    remote = endpoint.endpoint(max_tokens=max_new_tokens, **client)
    summary = run_judge(JudgeJob(data=data, endpoint=remote, config=config, out=out)).result
    cost = f", about ${summary.cost:.4f}" if summary.cost is not None else ""
    rate = f", {summary.items_per_second:.1f} items/s" if summary.items_per_second else ""
    form = f"; response format {summary.response_format}" if summary.response_format else ""
    console.print(
        f"rated {summary.rated} of {summary.items} items ({summary.missing} malformed, recorded as missing; "
        f"{summary.cached} from the cache; {summary.requests} requests{rate}; {summary.prompt_tokens:,} + "
        f"{summary.completion_tokens:,} tokens{cost}{form})"
    )
    agreements = (("original ratings", summary.with_original), ("itself (repeat)", summary.self_consistency))
    for label, agreement in agreements:
        if agreement is not None:
            console.print(
                f"agreement with {label}: Spearman {agreement.spearman}, within-prompt "
                f"{agreement.within_prompt} ({agreement.pairs} pairs, {agreement.prompts} prompts)"
            )
    console.print(f"written: {Path(out) / 'rated.jsonl'}, {Path(out) / 'judge.json'}")


@app.command()
@with_endpoint_options()
@with_data_options(optional="the store's prompts the probe was neither trained nor validated on")
@with_config_options(
    "latent_reward.workflows.steer:SteerJob",
    (
        "store",
        "config.layers",
        "config.strengths",
        "direction=config.directions",
        "config.random_directions",
        "config.random_layers",
        "config.ablate",
        "config.scope",
        "held_out_prompts=config.prompts",
        "config.samples",
        "config.max_new_tokens",
        "config.temperature",
        "scorer_probe=scorer_probes",
    ),
    "settings",
    given={**same("data", "probe", "out", *RUNS), "config.seed": "seed"},
    repeatable=("scorer_probe",),
    partial=True,
)
def steer(
    data: DataSpec | None,
    endpoint: EndpointOptions,
    probe: Annotated[Path, typer.Option("--probe", help="A saved probe folder (its direction is steered along).")],
    out: OutOpt,
    settings: dict[str, Any],
    model: ProbeModelOpt = None,
    judge: Annotated[
        bool, typer.Option(help="Also score the replies with a judge at --base-url (an independent scorer).")
    ] = False,
    seed: Annotated[
        int,
        seed_option("--sample-prompts, the choice of held-out prompts, random directions, sampling and the bootstrap"),
    ] = 0,
    device: DeviceOpt = "auto",
    device_map: DeviceMapOpt = None,
) -> None:
    """Steer along the reward direction while the model writes; score the replies independently; write steer.html."""
    from latent_reward.workflows.steer import SteerJob, run_steer

    if endpoint.base_url and not judge:
        raise typer.BadParameter("names the judge's endpoint: add --judge", param_hint="--base-url")
    scorer = endpoint.endpoint(temperature=0.0, max_tokens=400) if judge else None
    result = run_steer(SteerJob(**settings, judge=scorer)).result
    from latent_reward.report.steer import answer

    console.print(answer(result))
    console.print(f"report: {Path(out) / 'steer.html'} ({result.seconds:.0f} s)")


@app.command()
@with_data_options()
@with_config_options(
    "latent_reward.workflows.conversation:ConversationJob",
    (
        "response_probe",
        "xstest",
        "user_simulator=user_simulators",
        "conversations=prompts",
        "config.samples",
        "config.max_new_tokens",
    ),
    "job",
    given={**same("data", "prompt_probe", "out", *RUNS), "config.seed": "seed"},
    repeatable=("user_simulator",),
)
def conversation(
    data: DataSpec,
    prompt_probe: Annotated[
        Path, typer.Option(help="V: a prompt probe at assistant_start (a run's prompt_probe folder).")
    ],
    out: OutOpt,
    job: ConversationJob,
    model: ProbeModelOpt = None,
    seed: Annotated[int, seed_option("--sample-prompts, the choice of conversations, sampling and the bootstrap")] = 0,
    device: DeviceOpt = "auto",
    device_map: DeviceMapOpt = None,
) -> None:
    """Does the model steer the user? Expected reward of the user's next turn after its own and counterfactual
    replies."""
    from latent_reward.workflows.conversation import run_conversation

    report = run_conversation(job).result
    from latent_reward.report.conversation import answers

    for question, text in answers(report):
        console.print(f"[bold]{question}[/bold] {text}")
    console.print(f"report: {Path(out) / 'conversation.html'} ({report.seconds:.0f} s)")
