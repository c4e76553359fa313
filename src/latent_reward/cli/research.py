"""Commands that make new data or intervene: respond, judge, steer, conversation (train: cli/training.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from latent_reward.cli.app import app, console
from latent_reward.cli.choices import JudgeMode, Scope
from latent_reward.cli.options import (
    DEFAULT_DTYPE_CHOICE,
    DeviceMapOpt,
    DeviceOpt,
    DtypeOpt,
    EndpointOptions,
    MaxNewTokensOpt,
    OutOpt,
    ProbeModelOpt,
    TemperatureOpt,
    seed_option,
    with_data_options,
    with_endpoint_options,
)
from latent_reward.config import DataSpec, ModelSpec


@app.command()
@with_endpoint_options(repeatable=True, timeout=120.0)
@with_data_options()
def respond(
    data: DataSpec,
    endpoint: EndpointOptions,
    out: OutOpt,
    model: Annotated[
        list[str], typer.Option("--model", "-m", help="A model run here (repeatable): bundled name, Hub id or folder.")
    ] = [],  # noqa: B006
    samples: Annotated[int, typer.Option(min=1, help="Responses per prompt per model.")] = 1,
    max_new_tokens: MaxNewTokensOpt = 256,
    temperature: TemperatureOpt = 0.7,
    seed: Annotated[int, seed_option("--sample-prompts and sampling (each response seeded from it and its index)")] = 0,
    dtype: DtypeOpt = DEFAULT_DTYPE_CHOICE,
    batch_size: Annotated[int, typer.Option(min=1, help="Sequences generated together (models run here).")] = 16,
    device: DeviceOpt = "auto",
    device_map: DeviceMapOpt = None,
) -> None:
    """Responses to a prompt set from several models, with empty ratings, ready for `judge`."""
    from latent_reward.generation import GenerationConfig
    from latent_reward.workflows.respond import RespondJob, run_respond

    remote = endpoint.endpoint(temperature=temperature, max_tokens=max_new_tokens) if endpoint.models else None
    local = tuple(ModelSpec(name=m, dtype=dtype.value, device=device, device_map=device_map) for m in model)
    generation = GenerationConfig(
        max_new_tokens=max_new_tokens, temperature=temperature, seed=seed, batch_size=batch_size
    )
    job = RespondJob(
        prompts=data,
        models=local,
        endpoint_models=endpoint.models,
        endpoint=remote,
        samples=samples,
        out=out,
        generation=generation,
    )
    result = run_respond(job).result
    console.print(f"written: {result.file} ({result.responses} responses to {result.prompts} prompts)")


@app.command()
@with_endpoint_options()
@with_data_options()
def judge(
    data: DataSpec,
    endpoint: EndpointOptions,
    out: OutOpt,
    mode: Annotated[
        JudgeMode, typer.Option(help="rating (aspects + overall, 1-10) or pairwise (which of two is better).")
    ] = JudgeMode.rating,
    repeats: Annotated[
        int, typer.Option(min=1, help="Rate every item this many times (2+ with --temperature > 0: self-consistency).")
    ] = 1,
    temperature: Annotated[float, typer.Option(min=0.0, help="The judge's sampling temperature (0 = greedy).")] = 0.0,
    max_new_tokens: Annotated[int, typer.Option(min=16, help="Tokens the judge may write per item.")] = 400,
    structured: Annotated[
        bool,
        typer.Option(
            help="Ask for the rubric's JSON schema as the response format (endpoints that refuse it "
            "get free text, parsed as before)."
        ),
    ] = True,
    price_input: Annotated[
        float | None, typer.Option(help="Price per million prompt tokens, for the cost estimate.")
    ] = None,
    price_output: Annotated[float | None, typer.Option(help="Price per million completion tokens.")] = None,
    seed: Annotated[int, seed_option("--sample-prompts and the bootstrap of the agreement intervals")] = 0,
) -> None:
    """Rate every response with a judge model (UltraFeedback aspects and an overall score), cached and resumable."""
    from latent_reward.experiments.judge import JudgeConfig
    from latent_reward.workflows.judge import JudgeJob, run_judge

    remote = endpoint.endpoint(
        temperature=temperature,
        max_tokens=max_new_tokens,
        structured=structured,
        price_input=price_input,
        price_output=price_output,
    )
    config = JudgeConfig(mode=mode.value, repeats=repeats, seed=seed)
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


def _numbers(text: str, option: str, kind=float) -> tuple:
    try:
        return tuple(kind(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise typer.BadParameter(f"must be comma-separated numbers, not {text!r}", param_hint=option) from None


@app.command()
@with_endpoint_options()
@with_data_options(optional="the store's prompts the probe was neither trained nor validated on")
def steer(
    data: DataSpec | None,
    endpoint: EndpointOptions,
    probe: Annotated[Path, typer.Option("--probe", help="A saved probe folder (its direction is steered along).")],
    out: OutOpt,
    model: ProbeModelOpt = None,
    store: Annotated[
        Path | None, typer.Option(help="The probe's activation store (default: the one it was trained on).")
    ] = None,
    layers: Annotated[
        str | None,
        typer.Option(help="Comma-separated residual indices to steer at (default: the probe's and 1/3 of the depth)."),
    ] = None,
    strengths: Annotated[
        str, typer.Option(help="Comma-separated multiples of the projection's sd, e.g. -8,-4,0,4,8.")
    ] = "-8,-4,0,4,8",
    direction: Annotated[
        str, typer.Option(help="Comma-separated: probe, mean_diff, random, orthogonal.")
    ] = "probe,random",
    random_directions: Annotated[
        int,
        typer.Option(
            min=1,
            help="Random (and orthogonal) directions at the primary (strongest positive) strength; a rank p can "
            "be no smaller than 1/(this + 1): 19 allow 0.05, 99 allow 0.01.",
        ),
    ] = 19,
    random_layers: Annotated[
        str,
        typer.Option(help="Where the random directions are steered: primary (the primary contrast's layer) or all."),
    ] = "primary",
    ablate: Annotated[bool, typer.Option(help="Also project the probe direction out.")] = False,
    scope: Annotated[
        Scope, typer.Option(help="Where the push applies: generated (the reply's tokens) or all (the prompt too).")
    ] = Scope.generated,
    held_out_prompts: Annotated[
        int,
        typer.Option(
            min=1,
            help="Prompts to steer on: a seeded choice among those the probe was neither trained nor validated on.",
        ),
    ] = 20,
    samples: Annotated[int, typer.Option(min=1, help="Replies per prompt and condition.")] = 1,
    max_new_tokens: MaxNewTokensOpt = 48,
    temperature: TemperatureOpt = 0.0,
    scorer_probe: Annotated[
        list[Path], typer.Option(help="A probe on another model that scores the replies (repeatable).")
    ] = [],  # noqa: B006
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
    from latent_reward.experiments.steer import DIRECTIONS, SteerConfig
    from latent_reward.workflows.steer import SteerJob, run_steer

    kinds = tuple(k.strip() for k in direction.split(",") if k.strip())
    if not kinds or any(k not in DIRECTIONS for k in kinds):
        raise typer.BadParameter(f"choose from {', '.join(DIRECTIONS)}", param_hint="--direction")
    if endpoint.base_url and not judge:
        raise typer.BadParameter("names the judge's endpoint: add --judge", param_hint="--base-url")
    if random_layers not in ("primary", "all"):
        raise typer.BadParameter("must be primary or all", param_hint="--random-layers")
    config = SteerConfig(
        layers=_numbers(layers, "--layers", int) if layers else None,
        strengths=_numbers(strengths, "--strengths"),
        directions=kinds,
        random_directions=random_directions,
        random_layers=random_layers,
        ablate=ablate,
        scope=scope.value,
        prompts=held_out_prompts,
        samples=samples,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        seed=seed,
    )
    scorer = endpoint.endpoint(temperature=0.0, max_tokens=400) if judge else None
    result = run_steer(
        SteerJob(
            probe=probe,
            model=model,
            store=store,
            data=data,
            scorer_probes=tuple(scorer_probe),
            judge=scorer,
            config=config,
            out=out,
            device=device,
            device_map=device_map,
        )
    ).result
    from latent_reward.report.steer import answer

    console.print(answer(result))
    console.print(f"report: {Path(out) / 'steer.html'} ({result.seconds:.0f} s)")


@app.command()
@with_data_options()
def conversation(
    data: DataSpec,
    prompt_probe: Annotated[
        Path, typer.Option(help="V: a prompt probe at assistant_start (a run's prompt_probe folder).")
    ],
    out: OutOpt,
    model: ProbeModelOpt = None,
    response_probe: Annotated[
        Path | None, typer.Option(help="The response-level probe (a run's best_probe), to control for quality.")
    ] = None,
    xstest: Annotated[Path | None, typer.Option(help="XSTest's labelled completions (refusal vs redirect).")] = None,
    user_simulator: Annotated[
        list[str],
        typer.Option(help="Another model writing the user's turns (repeatable); the model itself always does."),
    ] = [],  # noqa: B006
    conversations: Annotated[
        int, typer.Option(min=1, help="Conversations to use (a seeded choice among the data's prompts).")
    ] = 24,
    samples: Annotated[int, typer.Option(min=1, help="Sampled replies per prompt (besides the greedy one).")] = 2,
    max_new_tokens: MaxNewTokensOpt = 48,
    seed: Annotated[int, seed_option("--sample-prompts, the choice of conversations, sampling and the bootstrap")] = 0,
    device: DeviceOpt = "auto",
    device_map: DeviceMapOpt = None,
) -> None:
    """Does the model steer the user? Expected reward of the user's next turn after its own and counterfactual
    replies."""
    from latent_reward.experiments.conversation import ConversationConfig
    from latent_reward.workflows.conversation import ConversationJob, run_conversation

    job = ConversationJob(
        prompt_probe=prompt_probe,
        model=model,
        response_probe=response_probe,
        data=data,
        xstest=xstest,
        user_simulators=tuple(user_simulator),
        prompts=conversations,
        config=ConversationConfig(samples=samples, max_new_tokens=max_new_tokens, seed=seed),
        out=out,
        device=device,
        device_map=device_map,
    )
    report = run_conversation(job).result
    from latent_reward.report.conversation import answers

    for question, text in answers(report):
        console.print(f"[bold]{question}[/bold] {text}")
    console.print(f"report: {Path(out) / 'conversation.html'} ({report.seconds:.0f} s)")
