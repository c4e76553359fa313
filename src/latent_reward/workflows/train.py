"""`latent-reward train sft|dpo|online`: post-train a model with TRL; the output folder is the checkpoint.

The folder holds an ordinary Hugging Face checkpoint (weights, config, tokenizer with the chat template used in
training), metrics.csv, run.json and latent_reward.json (method, base model, data, steps), which is written last:
a folder without it is an unfinished run, which `extract`, `run` and the others refuse and the same command resumes
from its last checkpoint.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from pydantic import Field

from latent_reward.config import DataSpec, Device, ModelSpec, Spec
from latent_reward.errors import UserError
from latent_reward.evaluation.results import Result
from latent_reward.extras import require
from latent_reward.io import atomic_write_text, prepare_output_folder
from latent_reward.judging.client import Endpoint
from latent_reward.training.data import dpo_records, prompt_records, sft_records
from latent_reward.training.trainers import PostTrainConfig, build_trainer, check_report_to, metrics_logger
from latent_reward.workflows.base import Outcome, start

MARKER = "latent_reward.json"
CHECKPOINTS = "trainer"


class TrainJob(Spec):
    model: str  # bundled name, Hub id or local checkpoint folder
    dtype: str = "float32"  # the weights' precision (--bf16 is mixed precision on top)
    device: Device = "auto"
    device_map: str | None = None
    data: DataSpec
    config: PostTrainConfig
    reward: str | None = Field(
        None, description="online: judge (the judge at --base-url), a probe folder, or module:function."
    )
    endpoint: Endpoint | None = None  # the judge, for reward "judge"
    out: Path


class TrainSummary(Result):
    """What a finished training run records (also in the checkpoint's latent_reward.json)."""

    method: str
    base_model: str
    data: str
    pairs_or_examples: int
    steps: int
    resumed: bool
    chat_template: str
    post_training: list[str]  # what the checkpoint has been post-trained on ('dataset:split')
    train_seconds: float
    tokens: int
    tokens_per_second: float | None


def _reward_spec(job: TrainJob) -> str | None:
    """The reward that online training optimizes (an error when it is not given); None for the offline methods."""
    if job.config.method != "online":
        return None
    if not job.reward:
        raise UserError("online training needs --reward (judge, a probe folder or module:function)")
    return job.reward


def run_train(job: TrainJob) -> Outcome[TrainSummary]:
    reward_spec = _reward_spec(job)
    require("trl")  # before any model is loaded
    check_report_to(job.config.report_to)
    if job.config.lora:
        require("peft")
    if (prepare_output_folder(job.out) / MARKER).exists():
        raise UserError(f"{job.out} already holds a finished checkpoint; choose another --out folder")
    with start("train", job, job.out, "training run") as folder:
        out = folder.path
        examples = job.data.load().examples
        records = {"sft": sft_records, "dpo": dpo_records, "online": prompt_records}[job.config.method](examples)
        model, tokenizer, template = _load(job)
        reward = None
        if reward_spec is not None:
            from latent_reward.training.rewards import make_reward

            reward = make_reward(reward_spec, job.endpoint, out)
        trainer = build_trainer(
            job.config,
            model,
            tokenizer,
            records,
            out / CHECKPOINTS,
            reward,
            [metrics_logger(out / "metrics.csv")],
            logs=out / "tensorboard",
        )
        resume = any((out / CHECKPOINTS).glob("checkpoint-*"))
        result = trainer.train(resume_from_checkpoint=True if resume else None)
        _save(trainer, tokenizer, out, job.config)
        base_model = str(Path(job.model).resolve()) if Path(job.model).is_dir() else job.model  # found from any folder
        summary = TrainSummary(
            method=job.config.method,
            base_model=base_model,
            data=job.data.source,
            pairs_or_examples=len(records),
            steps=trainer.state.global_step,
            resumed=resume,
            chat_template=template,
            post_training=_post_training(job.model, examples),
            **_speed(trainer, result),
        )
        outcome = folder.finish(
            summary, results=None, files={"checkpoint": out, "metrics": out / "metrics.csv"}, extra={"summary": summary}
        )
        atomic_write_text(out / MARKER, summary.model_dump_json(indent=1))  # last: the checkpoint is finished
        return outcome


def _post_training(model: str, examples) -> list[str]:
    """What the checkpoint has been post-trained on: its starting model's record and this run's data ('dataset:split'),
    so that `run` on the checkpoint shows those rows apart."""
    from latent_reward.models.bundled import BUNDLED
    from latent_reward.models.loading import saved_post_training

    before = (
        BUNDLED[model].post_training
        if model in BUNDLED
        else saved_post_training(Path(model))
        if Path(model).is_dir()
        else ()
    )
    return sorted({*before, *(e.source_split for e in examples)})


def _load(job: TrainJob):
    """The starting model through the one loader (a model without a chat template gets the fallback format, which
    is saved with the checkpoint so that every later command reads it the same way)."""
    spec = ModelSpec(
        name=job.model, dtype=job.dtype, device=job.device, device_map=job.device_map, fallback_template=True
    )
    loaded = spec.load()
    tokenizer = loaded.tokenizer
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return loaded.model, tokenizer, loaded.info.chat_template


def _save(trainer, tokenizer, out: Path, config: PostTrainConfig) -> None:
    """The final weights (LoRA adapters merged) and tokenizer into `out`."""
    model = trainer.model
    if config.lora:
        model = model.merge_and_unload()
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    shutil.rmtree(out / CHECKPOINTS, ignore_errors=True)


def _speed(trainer, result) -> dict:
    """Wall time and tokens per second, from the trainer's own log."""
    tokens = max((entry.get("num_tokens", 0) for entry in trainer.state.log_history), default=0)
    runtime = result.metrics.get("train_runtime") or 0.0
    return {
        "train_seconds": round(runtime, 1),
        "tokens": int(tokens),
        "tokens_per_second": round(tokens / runtime, 1) if runtime and tokens else None,
    }
