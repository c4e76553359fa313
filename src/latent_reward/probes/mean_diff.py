"""Difference of means: the direction from low- to high-rated examples, with no fitting.

Scored by projection; a one-variable linear fit on the training rows maps the projection to the
rating's scale, so R^2 and MAE are meaningful (correlations do not depend on it).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from latent_reward.probes.base import Probe, Standardizer, unit


class MeanDiffProbe(Probe):
    kind = "mean_diff"

    def __init__(self, quantile: float = 1 / 3):
        super().__init__()
        self.quantile = quantile
        self.vector: np.ndarray | None = None
        self.slope, self.intercept = 1.0, 0.0

    def fit(self, x, y, groups=None, x_val=None, y_val=None) -> MeanDiffProbe:
        self.standardizer = Standardizer.fit(x)
        xs, y = self.standardizer.transform(x), np.asarray(y, dtype=np.float64)
        low, high = np.quantile(y, [self.quantile, 1 - self.quantile])
        top, bottom = y >= high, y <= low
        if not top.any() or not bottom.any() or (top == bottom).all():
            top, bottom = y > np.median(y), y <= np.median(y)
        self.vector = xs[top].mean(axis=0) - xs[bottom].mean(axis=0)
        projection = xs @ self.vector
        self.slope, self.intercept = np.polyfit(projection, y, 1) if projection.std() > 0 else (0.0, float(y.mean()))
        return self

    def predict(self, x) -> np.ndarray:
        return self.slope * (self.standardizer.transform(x) @ self.vector) + self.intercept

    @property
    def direction(self) -> np.ndarray:
        return unit(self.vector / self.standardizer.scale)

    def _tensors(self) -> dict[str, np.ndarray]:
        return {"vector": self.vector}

    def _state(self) -> dict[str, Any]:
        return {"slope": float(self.slope), "intercept": float(self.intercept), "quantile": self.quantile}

    def _restore(self, tensors, state) -> None:
        self.vector, self.slope, self.intercept, self.quantile = tensors["vector"], state["slope"], state["intercept"], state["quantile"]
