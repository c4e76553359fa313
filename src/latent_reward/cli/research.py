"""Commands that make new data or intervene: respond, judge (and the experiments built on them)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from latent_reward.cli.app import app, console
from latent_reward.cli.options import DeviceMapOpt, DeviceOpt, OutOpt, SeedOpt, with_data_options
from latent_reward.config import DataSpec, ModelSpec

BaseUrlOpt = Annotated[Optional[str], typer.Option(help="An OpenAI-compatible endpoint, e.g. http://127.0.0.1:8080/v1.")]
KeyEnvOpt = Annotated[Optional[str], typer.Option(help="Name of the environment variable that holds the API key (never the key).")]
ConcurrencyOpt = Annotated[int, typer.Option(min=1, help="Requests in flight at once.")]
TimeoutOpt = Annotated[float, typer.Option(min=0.1, help="Seconds per request before it is retried.")]
RetriesOpt = Annotated[int, typer.Option(min=0, help="Retries per request on 429, 5xx, timeouts (exponential backoff, Retry-After).")]


def _endpoint(base_url: Optional[str], model: str, api_key_env: Optional[str], concurrency: int, timeout: float, retries: int,
              temperature: float, **extra):
    from latent_reward.judging.client import Endpoint

    if base_url is None:
        raise typer.BadParameter("--base-url is required", param_hint="--base-url")
    return Endpoint(base_url=base_url, model=model, api_key_env=api_key_env, concurrency=concurrency, timeout=timeout,
                    max_retries=retries, temperature=temperature, **extra)


@app.command()
@with_data_options()
def respond(
    data: DataSpec,
    out: OutOpt,
    model: Annotated[list[str], typer.Option("--model", "-m", help="A model run here (repeatable): bundled name, Hub id or folder.")] = [],  # noqa: B006
    api_model: Annotated[list[str], typer.Option(help="A model behind --base-url (repeatable).")] = [],  # noqa: B006
    base_url: BaseUrlOpt = None,
    api_key_env: KeyEnvOpt = None,
    samples: Annotated[int, typer.Option(min=1, help="Responses per prompt per model.")] = 1,
    max_new_tokens: Annotated[int, typer.Option(min=1)] = 256,
    temperature: Annotated[float, typer.Option(min=0.0, help="0 = greedy; > 0 samples (seeded per response here).")] = 0.7,
    seed: SeedOpt = 0,
    dtype: Annotated[str, typer.Option(help="Models run here: float32, bfloat16 or float16.")] = "bfloat16",
    batch_size: Annotated[int, typer.Option(min=1, help="Sequences generated together (models run here).")] = 16,
    concurrency: ConcurrencyOpt = 8,
    timeout: TimeoutOpt = 120.0,
    retries: RetriesOpt = 4,
    device: DeviceOpt = "auto",
    device_map: DeviceMapOpt = None,
) -> None:
    """Responses to a prompt set from several models, with empty ratings, ready for `judge`."""
    from latent_reward.generation import GenerationConfig
    from latent_reward.workflows.respond import RespondJob, run_respond

    endpoint = _endpoint(base_url, api_model[0], api_key_env, concurrency, timeout, retries, temperature,
                         max_tokens=max_new_tokens) if api_model else None
    job = RespondJob(prompts=data, models=tuple(ModelSpec(name=m, dtype=dtype, device=device, device_map=device_map) for m in model), endpoint_models=tuple(api_model),
                     endpoint=endpoint, samples=samples, out=out,
                     generation=GenerationConfig(max_new_tokens=max_new_tokens, temperature=temperature, seed=seed,
                                                 batch_size=batch_size))
    path = run_respond(job)
    console.print(f"written: {path}")


@app.command()
@with_data_options()
def judge(
    data: DataSpec,
    out: OutOpt,
    base_url: BaseUrlOpt = None,
    model: Annotated[str, typer.Option("--model", "-m", help="The judge model's name at the endpoint.")] = "gpt-4o-mini",
    api_key_env: KeyEnvOpt = None,
    mode: Annotated[str, typer.Option(help="rating (aspects + overall, 1-10) or pairwise (which of two is better).")] = "rating",
    repeats: Annotated[int, typer.Option(min=1, help="Rate every item this many times (2+ with --temperature > 0: self-consistency).")] = 1,
    temperature: Annotated[float, typer.Option(min=0.0)] = 0.0,
    max_tokens: Annotated[int, typer.Option(min=16, help="Tokens the judge may write per item.")] = 400,
    json_mode: Annotated[bool, typer.Option(help="Ask the endpoint for a JSON object (turn off for servers without it).")] = True,
    concurrency: ConcurrencyOpt = 8,
    timeout: TimeoutOpt = 60.0,
    retries: RetriesOpt = 4,
    price_input: Annotated[Optional[float], typer.Option(help="Price per million prompt tokens, for the cost estimate.")] = None,
    price_output: Annotated[Optional[float], typer.Option(help="Price per million completion tokens.")] = None,
    seed: SeedOpt = 0,
) -> None:
    """Rate every response with a judge model (UltraFeedback aspects and an overall score), cached and resumable."""
    from latent_reward.experiments.judge import JudgeConfig
    from latent_reward.workflows.judge import JudgeJob, run_judge

    if mode not in ("rating", "pairwise"):
        raise typer.BadParameter("must be rating or pairwise", param_hint="--mode")
    endpoint = _endpoint(base_url, model, api_key_env, concurrency, timeout, retries, temperature, max_tokens=max_tokens,
                         structured=json_mode, price_input=price_input, price_output=price_output)
    summary = run_judge(JudgeJob(data=data, endpoint=endpoint, config=JudgeConfig(mode=mode, repeats=repeats, seed=seed), out=out))
    cost = f", about ${summary.cost:.4f}" if summary.cost is not None else ""
    rate = f", {summary.items_per_second:.1f} items/s" if summary.items_per_second else ""
    console.print(f"rated {summary.rated} of {summary.items} items ({summary.missing} malformed, recorded as missing; {summary.cached} "
                  f"from the cache; {summary.requests} requests{rate}; {summary.prompt_tokens:,} + {summary.completion_tokens:,} tokens{cost})")
    for label, agreement in (("original ratings", summary.with_original), ("itself (repeat)", summary.self_consistency)):
        if agreement is not None:
            console.print(f"agreement with {label}: Spearman {agreement.spearman}, within-prompt {agreement.within_prompt} "
                          f"({agreement.pairs} pairs, {agreement.prompts} prompts)")
    console.print(f"written: {Path(out) / 'rated.jsonl'}, {Path(out) / 'judge.json'}")


def _numbers(text: str, option: str, kind=float) -> tuple:
    try:
        return tuple(kind(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise typer.BadParameter(f"must be comma-separated numbers, not {text!r}", param_hint=option) from None


@app.command()
def steer(
    probe: Annotated[Path, typer.Option("--probe", help="A saved probe folder (its direction is steered along).")],
    out: OutOpt,
    store: Annotated[Optional[Path], typer.Option(help="The probe's activation store (default: the one it was trained on).")] = None,
    data: Annotated[Optional[str], typer.Option("--data", "-d", help="Prompts to steer on (default: the store's held-out prompts).")] = None,
    layers: Annotated[Optional[str], typer.Option(help="Comma-separated residual indices to steer at (default: the probe's and 1/3 of the depth).")] = None,
    strengths: Annotated[str, typer.Option(help="Comma-separated multiples of the projection's sd, e.g. -8,-4,0,4,8.")] = "-8,-4,0,4,8",
    direction: Annotated[str, typer.Option(help="Comma-separated: probe, mean_diff, random, orthogonal.")] = "probe,random",
    random_directions: Annotated[int, typer.Option(min=1, help="Random (and orthogonal) directions per layer, at the primary (strongest positive) strength.")] = 8,
    ablate: Annotated[bool, typer.Option(help="Also project the probe direction out.")] = False,
    positions: Annotated[str, typer.Option(help="generated (the reply's tokens) or all (the prompt too).")] = "generated",
    prompts: Annotated[int, typer.Option(min=1, help="Held-out prompts.")] = 20,
    samples: Annotated[int, typer.Option(min=1, help="Replies per prompt and condition.")] = 1,
    max_new_tokens: Annotated[int, typer.Option(min=1)] = 48,
    temperature: Annotated[float, typer.Option(min=0.0, help="0 = greedy; > 0 samples (seeded).")] = 0.0,
    scorer_probe: Annotated[list[Path], typer.Option(help="A probe on another model that scores the replies (repeatable).")] = [],  # noqa: B006
    judge_url: BaseUrlOpt = None,
    judge_model: Annotated[Optional[str], typer.Option(help="The judge model at --judge-url (an independent scorer).")] = None,
    api_key_env: KeyEnvOpt = None,
    seed: SeedOpt = 0,
    device: DeviceOpt = "auto",
    device_map: DeviceMapOpt = None,
) -> None:
    """Steer along the reward direction while the model writes; score the replies independently; write steer.html."""
    from latent_reward.experiments.steer import DIRECTIONS, SteerConfig
    from latent_reward.workflows.steer import SteerJob, run_steer

    kinds = tuple(k.strip() for k in direction.split(",") if k.strip())
    if not kinds or any(k not in DIRECTIONS for k in kinds):
        raise typer.BadParameter(f"choose from {', '.join(DIRECTIONS)}", param_hint="--direction")
    if positions not in ("generated", "all"):
        raise typer.BadParameter("must be generated or all", param_hint="--positions")
    config = SteerConfig(layers=_numbers(layers, "--layers", int) if layers else None, strengths=_numbers(strengths, "--strengths"),
                         directions=kinds, random_directions=random_directions, ablate=ablate, scope=positions, prompts=prompts, samples=samples,
                         max_new_tokens=max_new_tokens, temperature=temperature, seed=seed)
    judge_endpoint = None
    if judge_url:
        judge_endpoint = _endpoint(judge_url, judge_model or "judge", api_key_env, 8, 60.0, 4, 0.0, max_tokens=400)
    result = run_steer(SteerJob(probe=probe, store=store, data=DataSpec(source=data) if data else None,
                                scorer_probes=tuple(scorer_probe), judge=judge_endpoint, config=config, out=out,
                                device=device, device_map=device_map))
    from latent_reward.report.steer import answer

    console.print(answer(result))
    console.print(f"report: {Path(out) / 'steer.html'} ({result.seconds:.0f} s)")


@app.command()
@with_data_options()
def conversation(
    data: DataSpec,
    prompt_probe: Annotated[Path, typer.Option(help="V: a prompt probe at assistant_start (a run's prompt_probe folder).")],
    out: OutOpt,
    response_probe: Annotated[Optional[Path], typer.Option(help="The response-level probe (a run's best_probe), to control for quality.")] = None,
    xstest: Annotated[Optional[Path], typer.Option(help="XSTest's labelled completions (refusal vs redirect).")] = None,
    user_simulator: Annotated[list[str], typer.Option(help="Another model writing the user's turns (repeatable); the model itself always does.")] = [],  # noqa: B006
    conversations: Annotated[int, typer.Option(min=1, help="Conversations to use (a seeded choice among the data's prompts).")] = 24,
    samples: Annotated[int, typer.Option(min=1, help="Sampled replies per prompt (besides the greedy one).")] = 2,
    max_new_tokens: Annotated[int, typer.Option(min=1)] = 48,
    seed: SeedOpt = 0,
    device: DeviceOpt = "auto",
    device_map: DeviceMapOpt = None,
) -> None:
    """Does the model steer the user? Expected reward of the user's next turn after its own and counterfactual replies."""
    from latent_reward.experiments.conversation import ConversationConfig
    from latent_reward.workflows.conversation import ConversationJob, run_conversation

    job = ConversationJob(prompt_probe=prompt_probe, response_probe=response_probe, data=data, xstest=xstest,
                          user_simulators=tuple(user_simulator), prompts=conversations,
                          config=ConversationConfig(samples=samples, max_new_tokens=max_new_tokens, seed=seed), out=out,
                          device=device, device_map=device_map)
    report = run_conversation(job)
    from latent_reward.report.conversation import answers

    for question, text in answers(report):
        console.print(f"[bold]{question}[/bold] {text}")
    console.print(f"report: {Path(out) / 'conversation.html'} ({report.seconds:.0f} s)")


@app.command()
@with_data_options()
def train(
    method: Annotated[str, typer.Argument(help="sft (preferred responses), dpo (offline, preference pairs) or online (RLOO with --reward).")],
    data: DataSpec,
    out: OutOpt,
    model: Annotated[str, typer.Option("--model", "-m", help="Starting point: bundled name, Hub id or checkpoint folder.")] = "smollm2-135m-instruct",
    max_steps: Annotated[int, typer.Option(min=1)] = 50,
    batch_size: Annotated[int, typer.Option(min=1)] = 2,
    learning_rate: Annotated[Optional[float], typer.Option(help="Default: SFT 2e-5, DPO 5e-6, online 1e-6.")] = None,
    max_length: Annotated[int, typer.Option(min=16, help="Prompt + response tokens.")] = 256,
    beta: Annotated[float, typer.Option(min=0.0, help="DPO's / RLOO's KL strength.")] = 0.1,
    lora: Annotated[bool, typer.Option(help="Train LoRA adapters (merged into the saved checkpoint) instead of every weight.")] = False,
    reward: Annotated[Optional[str], typer.Option(help="online: a probe folder, judge:URL[#MODEL], or module:function.")] = None,
    api_key_env: KeyEnvOpt = None,
    num_generations: Annotated[int, typer.Option(min=2, help="online: completions per prompt.")] = 4,
    max_completion_length: Annotated[int, typer.Option(min=1, help="online: tokens per completion.")] = 48,
    bf16: Annotated[bool, typer.Option(help="bfloat16 mixed precision (GPUs).")] = False,
    seed: SeedOpt = 0,
    dtype: Annotated[str, typer.Option(help="The weights' precision: float32, bfloat16 or float16.")] = "float32",
    device: DeviceOpt = "auto",
    device_map: DeviceMapOpt = None,
) -> None:
    """Post-train a model with TRL (SFT, offline DPO or online RL); the output folder is the checkpoint."""
    from latent_reward.training.trainers import METHODS, PostTrainConfig
    from latent_reward.workflows.train import TrainJob, run_train

    if method not in METHODS:
        raise typer.BadParameter(f"must be one of {', '.join(METHODS)}", param_hint="METHOD")
    config = PostTrainConfig(method=method, max_steps=max_steps, batch_size=batch_size, learning_rate=learning_rate, max_length=max_length,
                             beta=beta, lora=lora, num_generations=num_generations, max_completion_length=max_completion_length,
                             bf16=bf16, seed=seed)
    summary = run_train(TrainJob(model=model, dtype=dtype, device=device, device_map=device_map, data=data, config=config,
                                 reward=reward, api_key_env=api_key_env, out=out))
    speed = f", {summary['tokens_per_second']:,.0f} tokens/s" if summary.get("tokens_per_second") else ""
    console.print(f"{method}: {summary['steps']} steps on {summary['pairs_or_examples']} examples in {summary['train_seconds']:.0f} s{speed}; "
                  f"checkpoint: {out}")
