"""TRL's trainers, configured: SFT on preferred responses, offline DPO on preference pairs, online RL (RLOO) whose
reward is a Python callable. This module writes configs, data adapters and glue; the trainers stay TRL's."""

from __future__ import annotations

import csv
import importlib.util
import os
from pathlib import Path
from typing import Literal
from unittest import mock

from pydantic import BaseModel, ConfigDict, Field

from latent_reward.errors import UserError

METHODS = ("sft", "dpo", "online")
REPORT_TO = ("none", "tensorboard", "wandb")  # TRL's logging integrations offered (their packages are the user's)
# the packages each integration needs, as transformers looks for them
INTEGRATION_PACKAGES = {"tensorboard": ("tensorboard", "tensorboardX"), "wandb": ("wandb",)}
TENSORBOARD_FOLDER = "TENSORBOARD_LOGGING_DIR"  # where transformers' TensorBoard callback writes


class PostTrainConfig(BaseModel):
    """Sizes for a CPU by default (a few hundred pairs, short sequences); raise them on a GPU."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    method: Literal["sft", "dpo", "online"] = Field(
        description="sft (preferred responses), dpo (offline, preference pairs) or online (RLOO with --reward)."
    )
    max_steps: int = Field(50, ge=1, description="Optimizer steps.")
    learning_rate: float | None = Field(
        None, gt=0, description="Learning rate (default: SFT 2e-5, DPO 5e-6, online 1e-6)."
    )
    batch_size: int = Field(
        2, ge=1, description="Examples per device and step (online: completions, at least --num-generations)."
    )
    gradient_accumulation: int = Field(1, ge=1)
    max_length: int = Field(256, ge=16, description="Input truncation: prompt + response tokens per example.")
    beta: float = Field(0.1, ge=0, description="DPO's / RLOO's KL strength.")
    lora: bool = Field(
        False, description="Train LoRA adapters (merged into the saved checkpoint) instead of every weight."
    )
    lora_rank: int = Field(16, ge=1)
    num_generations: int = Field(4, ge=2, description="online: completions per prompt (RLOO's leave-one-out baseline).")
    max_completion_length: int = Field(48, ge=1, description="online: tokens per completion, at most.")
    save_steps: int = Field(25, ge=1)  # checkpoints for resuming
    bf16: bool = Field(False, description="bfloat16 mixed precision on float32 weights (GPUs).")
    report_to: Literal["none", "tensorboard", "wandb"] = Field(
        "none", description="Where TRL sends its training logs (tensorboard: into OUT/tensorboard)."
    )
    seed: int = 0

    def lr(self) -> float:
        return self.learning_rate or {"sft": 2e-5, "dpo": 5e-6, "online": 1e-6}[self.method]


def _common(config: PostTrainConfig, folder: Path, model) -> dict:
    """Arguments every trainer takes; training runs where the model was loaded (on the CPU only if it is there)."""
    return dict(
        output_dir=str(folder),
        max_steps=config.max_steps,
        per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=config.gradient_accumulation,
        learning_rate=config.lr(),
        logging_steps=1,
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=2,
        report_to=config.report_to,
        seed=config.seed,
        bf16=config.bf16,
        use_cpu=model.device.type == "cpu",
        dataloader_num_workers=0,
    )


def check_report_to(report_to: str) -> None:
    """A UserError naming the package a logging integration needs when it is not installed (say it before training)."""
    packages = INTEGRATION_PACKAGES.get(report_to, ())
    if packages and not any(importlib.util.find_spec(package) for package in packages):
        raise UserError(f"--report-to {report_to} needs the {packages[0]} package: pip install {packages[0]}")


def build_trainer(
    config: PostTrainConfig,
    model,
    tokenizer,
    records: list[dict],
    folder: Path,
    reward=None,
    callbacks=(),
    logs: Path | None = None,
):
    """The TRL trainer for `config.method` on `records` (see training.data), checkpoints in `folder`; with
    report_to tensorboard, its event files go to `logs` (default: under `folder`)."""
    check_report_to(config.report_to)
    if config.report_to != "tensorboard" or logs is None:
        return _trainer(config, model, tokenizer, records, folder, reward, callbacks)
    # transformers reads the folder from the environment as the trainer makes its TensorBoard writer
    with mock.patch.dict(os.environ, {TENSORBOARD_FOLDER: str(logs)}):
        return _trainer(config, model, tokenizer, records, folder, reward, callbacks)


def _trainer(config: PostTrainConfig, model, tokenizer, records: list[dict], folder: Path, reward, callbacks):
    from datasets import Dataset

    from latent_reward.extras import require

    trl = require("trl")
    dataset = Dataset.from_list(records)
    peft_config = None
    if config.lora:
        peft_config = require("peft").LoraConfig(
            r=config.lora_rank, lora_alpha=2 * config.lora_rank, target_modules="all-linear", task_type="CAUSAL_LM"
        )
    common = _common(config, folder, model)
    if config.method == "sft":
        args = trl.SFTConfig(**common, max_length=config.max_length)
        return trl.SFTTrainer(
            model=model,
            args=args,
            train_dataset=dataset,
            processing_class=tokenizer,
            peft_config=peft_config,
            callbacks=list(callbacks),
        )
    if config.method == "dpo":
        args = trl.DPOConfig(**common, max_length=config.max_length, beta=config.beta)
        return trl.DPOTrainer(
            model=model,
            args=args,
            train_dataset=dataset,
            processing_class=tokenizer,
            peft_config=peft_config,
            callbacks=list(callbacks),
        )
    args = trl.RLOOConfig(
        **{**common, "per_device_train_batch_size": max(config.batch_size, config.num_generations)},
        num_generations=config.num_generations,
        max_completion_length=config.max_completion_length,
        beta=config.beta,
    )
    return trl.RLOOTrainer(
        model=model,
        reward_funcs=[reward],
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=list(callbacks),
    )


def metrics_logger(path: Path):
    """A trainer callback that appends every logged step to a CSV file (the metrics log, readable while training)."""
    from transformers import TrainerCallback

    class Logger(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            row = {"step": state.global_step, **{k: v for k, v in (logs or {}).items() if isinstance(v, (int, float))}}
            new = not path.exists()
            with path.open("a", newline="") as handle:
                writer = csv.writer(handle)
                if new:
                    writer.writerow(["step", "metric", "value"])
                writer.writerows([row["step"], key, value] for key, value in row.items() if key != "step")

    return Logger()
