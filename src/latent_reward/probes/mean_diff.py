"""Difference of means: the direction from low- to high-rated examples, with no fitting."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field

from latent_reward.probes.base import ProjectionProbe, Standardizer
from latent_reward.probes.settings import ProbeSettings


class MeanDiffSettings(ProbeSettings):
    """The difference-of-means probe's options."""

    quantile: float = Field(
        1 / 3, gt=0, lt=0.5, description="share of ratings at each end whose mean states are compared"
    )


class MeanDiffProbe(ProjectionProbe):
    """Projection on the difference between the mean states of the top and bottom `quantile` of ratings."""

    kind = "mean_diff"
    Settings = MeanDiffSettings

    def __init__(self, quantile: float = 1 / 3):
        super().__init__()
        self.quantile = quantile

    @classmethod
    def from_settings(cls, settings: MeanDiffSettings) -> MeanDiffProbe:
        """An unfitted MeanDiffProbe using `settings.quantile`."""
        return cls(settings.quantile)

    def fit(self, x, y, groups=None) -> MeanDiffProbe:
        """Fit on x [n, d], y [n]: the difference of means, then the linear calibration; returns self (`groups` is
        unused)."""
        self.standardizer = Standardizer.fit(x)
        xs, y = self.standardizer.transform(x), np.asarray(y, dtype=np.float64)
        low, high = np.quantile(y, [self.quantile, 1 - self.quantile])
        top, bottom = y >= high, y <= low
        if not top.any() or not bottom.any() or (top == bottom).all():
            top, bottom = y > np.median(y), y <= np.median(y)
        self.vector = xs[top].mean(axis=0) - xs[bottom].mean(axis=0)
        self._calibrate(xs, y)
        return self

    def _options(self) -> dict[str, Any]:
        return {"quantile": self.quantile}
