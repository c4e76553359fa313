"""Probe settings: a base model that each kind's own settings class extends, and the minibatch training loop.

Each kind declares its settings class beside its code (`RidgeSettings` in ridge.py, ...) as `Probe.Settings`;
`ProbeOptions` (base.py) holds one per kind for the sweep, each kind defaulting to its own defaults.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

SCHEDULES = ("constant", "warmup_cosine", "onecycle", "plateau")
# Ridge penalties relative to the number of training rows: alpha = factor * n (features are z-scored).
DEFAULT_ALPHA_FACTORS = tuple(float(a) for a in np.logspace(-3, 3, 13))


class ProbeSettings(BaseModel):
    """Base of every probe kind's settings (frozen; unknown fields are an error)."""

    model_config = ConfigDict(frozen=True, extra="forbid")


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
    patience: int = Field(
        6, ge=1, description="epochs without improvement on the inner validation prompts before stopping"
    )
    inner_val_fraction: float = Field(
        0.2, gt=0, lt=1, description="share of the training prompts held out for early stopping"
    )
    seed: int = 0
