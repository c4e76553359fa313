"""The seed's open questions, with numbers: does a smaller batch help the SGD probe? a scheduler?

Trains the SGD probe at one (position, layer) over a grid of batch sizes x schedules and scores
each on the validation prompts only (the test prompts stay untouched; early stopping uses an inner
split of the training prompts).
"""

from __future__ import annotations

import numpy as np

from latent_reward.evaluation.metrics import all_metrics
from latent_reward.evaluation.results import Result, finite
from latent_reward.probes import SGDProbe, TrainConfig
from latent_reward.probes.settings import SCHEDULES

BATCH_SIZES = (8, 32, 128)


class SGDSetting(Result):
    batch_size: int
    schedule: str
    epochs_run: int
    val_pearson: float | None
    val_within_acc: float | None


def sgd_settings_grid(
    x: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    masks: dict[str, np.ndarray],
    base: TrainConfig | None = None,
    batch_sizes=BATCH_SIZES,
    schedules=SCHEDULES,
) -> list[SGDSetting]:
    """x [n, d] at one cell; one SGD probe per (batch size, schedule), fitted on the train rows."""
    base = base or TrainConfig()
    train, val = masks["train"], masks["val"]
    rows = []
    for batch_size in batch_sizes:
        for schedule in schedules:
            config = base.model_copy(update={"batch_size": batch_size, "schedule": schedule})
            probe = SGDProbe(config).fit(x[train], y[train], groups[train])
            metrics = all_metrics(y[val], probe.predict(x[val]), groups[val])
            rows.append(
                SGDSetting(
                    batch_size=batch_size,
                    schedule=schedule,
                    epochs_run=probe.info.fit["epochs_run"],
                    val_pearson=finite(metrics["pearson"]),
                    val_within_acc=finite(metrics["within_acc"]),
                )
            )
    return rows
