"""`latent-reward train`: post-training with TRL; the options become a TrainJob."""

from __future__ import annotations

import sys
from dataclasses import replace
from typing import Annotated

import typer

from latent_reward.cli.app import app, console
from latent_reward.cli.choices import Dtype, Method, ReportTo
from latent_reward.cli.options import (
    DeviceMapOpt,
    DeviceOpt,
    EndpointOptions,
    ModelOpt,
    OutOpt,
    seed_option,
    with_data_options,
    with_endpoint_options,
)
from latent_reward.config import DataSpec


@app.command()
@with_endpoint_options()
@with_data_options()
def train(
    method: Annotated[
        Method,
        typer.Argument(
            help="sft (preferred responses), dpo (offline, preference pairs) or online (RLOO with --reward)."
        ),
    ],
    data: DataSpec,
    endpoint: EndpointOptions,
    out: OutOpt,
    model: ModelOpt = "smollm2-135m-instruct",
    max_steps: Annotated[int, typer.Option(min=1, help="Optimizer steps.")] = 50,
    batch_size: Annotated[
        int, typer.Option(min=1, help="Examples per device and step (online: completions, at least --num-generations).")
    ] = 2,
    learning_rate: Annotated[
        float | None, typer.Option(help="Learning rate (default: SFT 2e-5, DPO 5e-6, online 1e-6).")
    ] = None,
    max_tokens: Annotated[
        int, typer.Option(min=16, help="Input truncation: prompt + response tokens per example.")
    ] = 256,
    beta: Annotated[float, typer.Option(min=0.0, help="DPO's / RLOO's KL strength.")] = 0.1,
    lora: Annotated[
        bool, typer.Option(help="Train LoRA adapters (merged into the saved checkpoint) instead of every weight.")
    ] = False,
    reward: Annotated[
        str | None, typer.Option(help="online: judge (the judge at --base-url), a probe folder, or module:function.")
    ] = None,
    num_generations: Annotated[int, typer.Option(min=2, help="online: completions per prompt.")] = 4,
    max_new_tokens: Annotated[int, typer.Option(min=1, help="online: tokens per completion, at most.")] = 48,
    bf16: Annotated[bool, typer.Option(help="bfloat16 mixed precision on float32 weights (GPUs).")] = False,
    report_to: Annotated[
        ReportTo, typer.Option(help="Where TRL sends its training logs (tensorboard: into OUT/tensorboard).")
    ] = ReportTo.none,
    seed: Annotated[
        int, seed_option("--sample-prompts, TRL's data order, LoRA's initialisation and sampling (online)")
    ] = 0,
    dtype: Annotated[
        Dtype,
        typer.Option(
            help="The weights' precision: float32 here, unlike the other commands' bfloat16, because bfloat16 weights "
            "lose updates smaller than their resolution."
        ),
    ] = Dtype.float32,
    device: DeviceOpt = "auto",
    device_map: DeviceMapOpt = None,
) -> None:
    """Post-train a model with TRL (SFT, offline DPO or online RL); the output folder is the checkpoint."""
    from latent_reward.training.trainers import PostTrainConfig
    from latent_reward.workflows.train import TrainJob, run_train

    reward, endpoint = _legacy_judge_reward(reward, endpoint)
    config = PostTrainConfig(
        method=method.value,
        max_steps=max_steps,
        batch_size=batch_size,
        learning_rate=learning_rate,
        max_length=max_tokens,
        beta=beta,
        lora=lora,
        num_generations=num_generations,
        max_completion_length=max_new_tokens,
        bf16=bf16,
        report_to=report_to.value,
        seed=seed,
    )
    scorer = endpoint.endpoint() if reward == "judge" else None
    summary = run_train(
        TrainJob(
            model=model,
            dtype=dtype.value,
            device=device,
            device_map=device_map,
            data=data,
            config=config,
            reward=reward,
            endpoint=scorer,
            out=out,
        )
    ).result
    speed = f", {summary.tokens_per_second:,.0f} tokens/s" if summary.tokens_per_second else ""
    console.print(
        f"{method.value}: {summary.steps} steps on {summary.pairs_or_examples} examples in "
        f"{summary.train_seconds:.0f} s{speed}; checkpoint: {out}"
    )


def _legacy_judge_reward(reward: str | None, endpoint: EndpointOptions) -> tuple[str | None, EndpointOptions]:
    """--reward judge:URL[#MODEL] (before 0.3) as --reward judge --base-url URL --endpoint-model MODEL."""
    if not reward or not reward.startswith("judge:"):
        return reward, endpoint
    url, _, model = reward[len("judge:") :].partition("#")
    print(
        "warning: train --reward judge:URL#MODEL is now --reward judge --base-url URL --endpoint-model MODEL; the "
        "old form goes in 0.4",
        file=sys.stderr,
    )
    return "judge", replace(endpoint, base_url=url, models=(model or endpoint.models[0],))
