"""The fixed choices options take, as enums, so that typer lists them in --help and refuses anything else.

The values mirror the library's own lists (tests/test_cli_vocabulary.py checks that they agree); they are written out
here because importing those modules would load torch before a command runs.
"""

from __future__ import annotations

from enum import StrEnum


class Dtype(StrEnum):
    """A model's precision (models.loading.DTYPES, and auto: models.devices.resolve_dtype)."""

    auto = "auto"
    bfloat16 = "bfloat16"
    float32 = "float32"
    float16 = "float16"


class JudgeMode(StrEnum):
    """experiments.judge.JudgeConfig.mode."""

    rating = "rating"
    pairwise = "pairwise"


class Normalization(StrEnum):
    """experiments.reward_model.NORMALIZATIONS."""

    sum = "sum"
    mean = "mean"
    none = "none"


class Method(StrEnum):
    """training.trainers.METHODS."""

    sft = "sft"
    dpo = "dpo"
    online = "online"


class Scope(StrEnum):
    """experiments.steer.SteerConfig.scope: which positions steering pushes."""

    generated = "generated"
    all = "all"


class ReportTo(StrEnum):
    """training.trainers.REPORT_TO: where TRL sends its training logs."""

    none = "none"
    tensorboard = "tensorboard"
    wandb = "wandb"
