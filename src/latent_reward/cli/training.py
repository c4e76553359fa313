"""`latent-reward train`: post-training with TRL; the options become a TrainJob."""

from __future__ import annotations

import sys
from dataclasses import replace
from typing import Annotated, Any

import typer

from latent_reward.cli.app import app, console
from latent_reward.cli.choices import Dtype
from latent_reward.cli.fields import same, with_config_options
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

# PostTrainConfig's fields; two take the names every command uses for input truncation and generation length
TRAINING = (
    "method=config.method",
    "config.max_steps",
    "config.batch_size",
    "config.learning_rate",
    "max_tokens=config.max_length",
    "config.beta",
    "config.lora",
    "reward",
    "config.num_generations",
    "max_new_tokens=config.max_completion_length",
    "config.bf16",
    "config.report_to",
)


@app.command()
@with_endpoint_options()
@with_data_options()
@with_config_options(
    "latent_reward.workflows.train:TrainJob",
    TRAINING,
    "settings",
    given={**same("data", "out", "model", "device", "device_map"), "config.seed": "seed"},
    arguments=("method",),
    partial=True,
)
def train(
    data: DataSpec,
    endpoint: EndpointOptions,
    out: OutOpt,
    settings: dict[str, Any],
    model: ModelOpt = "smollm2-135m-instruct",
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
    from latent_reward.workflows.train import TrainJob, run_train

    reward, endpoint = _legacy_judge_reward(settings["reward"], endpoint)
    scorer = endpoint.endpoint() if reward == "judge" else None
    job = TrainJob(**{**settings, "reward": reward}, dtype=dtype.value, endpoint=scorer)
    summary = run_train(job).result
    speed = f", {summary.tokens_per_second:,.0f} tokens/s" if summary.tokens_per_second else ""
    console.print(
        f"{job.config.method}: {summary.steps} steps on {summary.pairs_or_examples} examples in "
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
