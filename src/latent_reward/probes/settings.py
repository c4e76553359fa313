"""Options of every probe kind in one object, so the sweep builds any kind with one call."""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

SCHEDULES = ("constant", "warmup_cosine", "onecycle", "plateau")
# Ridge penalties relative to the number of training rows: alpha = factor * n (features are z-scored).
DEFAULT_ALPHA_FACTORS = tuple(float(a) for a in np.logspace(-3, 3, 13))


class TrainConfig(BaseModel):
    """The minibatch loop of the SGD and MLP probes."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    batch_size: int = Field(32, ge=1)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    optimizer: str = Field("adamw", pattern="^(adamw|sgd)$")
    schedule: str = Field("warmup_cosine", pattern="^(" + "|".join(SCHEDULES) + ")$")
    warmup_fraction: float = Field(0.1, ge=0, lt=1)
    epochs: int = Field(40, ge=1)
    patience: int = Field(6, ge=1, description="epochs without improvement on the inner validation prompts before stopping")
    inner_val_fraction: float = Field(0.2, gt=0, lt=1, description="share of the training prompts held out for early stopping")
    seed: int = 0


class ProbeSettings(BaseModel):
    """Every probe kind's options; each kind reads its own."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    train: TrainConfig = TrainConfig()
    alpha_factors: tuple[float, ...] = DEFAULT_ALPHA_FACTORS  # ridge: chosen by leave-one-prompt-out CV
    mlp_hidden: int = Field(256, ge=1)
    mlp_dropout: float = Field(0.1, ge=0, lt=1)
    mean_diff_quantile: float = Field(1 / 3, gt=0, lt=0.5)
    pairwise_c: float = Field(0.01, gt=0)
