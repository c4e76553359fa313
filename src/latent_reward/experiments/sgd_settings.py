"""The seed's open questions, with numbers: does a smaller batch help the SGD probe? a scheduler?

Trains the SGD probe at one (position, layer) over a grid of batch sizes x schedules, and scores
each on the validation and test groups.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from latent_reward.evaluation.metrics import all_metrics
from latent_reward.probes import SGDProbe, TrainConfig

BATCH_SIZES = (8, 32, 128)
SCHEDULES = ("constant", "warmup_cosine", "onecycle", "plateau")


def sgd_settings_grid(x: np.ndarray, y: np.ndarray, groups: np.ndarray, masks: dict[str, np.ndarray],
                      base: TrainConfig | None = None, batch_sizes=BATCH_SIZES, schedules=SCHEDULES) -> pd.DataFrame:
    base = base or TrainConfig()
    train, val, test = masks["train"], masks["val"], masks["test"]
    rows = []
    for batch_size in batch_sizes:
        for schedule in schedules:
            config = base.model_copy(update={"batch_size": batch_size, "schedule": schedule})
            probe = SGDProbe(config).fit(x[train], y[train], groups[train], x[val], y[val])
            predictions = probe.predict(x)
            row = {"batch_size": batch_size, "schedule": schedule, "epochs_run": probe.info["epochs_run"]}
            for split, rows_mask in (("val", val), ("test", test)):
                metrics = all_metrics(y[rows_mask], predictions[rows_mask], groups[rows_mask])
                row[f"{split}_pearson"], row[f"{split}_within_acc"] = metrics["pearson"], metrics["within_acc"]
            rows.append(row)
    return pd.DataFrame(rows)
