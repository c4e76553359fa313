"""A linear Bradley-Terry probe trained on within-prompt pairs (higher- vs lower-rated response).

Logistic regression without intercept on state differences (both orders), so only the ranking of
responses to the same prompt teaches it; prompt-level variance cannot.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field
from sklearn.linear_model import LogisticRegression

from latent_reward.errors import UserError
from latent_reward.probes.base import ProjectionProbe, Standardizer
from latent_reward.probes.settings import ProbeSettings


class PairwiseSettings(ProbeSettings):
    """The pairwise (Bradley-Terry) probe's options."""

    c: float = Field(0.01, gt=0, description="inverse regularization strength of the logistic regression")


def within_group_pairs(y: np.ndarray, groups: np.ndarray, max_pairs_per_group: int = 64, seed: int = 0) -> np.ndarray:
    """Index pairs (better, worse), int64 [n_pairs, 2], of examples of the same group with different ratings."""
    rng = np.random.default_rng(seed)
    pairs = []
    for group in np.unique(groups):
        rows = np.flatnonzero(groups == group)
        candidates = [
            (a, b) if y[a] > y[b] else (b, a) for i, a in enumerate(rows) for b in rows[i + 1 :] if y[a] != y[b]
        ]
        if len(candidates) > max_pairs_per_group:
            candidates = [candidates[i] for i in rng.choice(len(candidates), max_pairs_per_group, replace=False)]
        pairs.extend(candidates)
    return np.asarray(pairs, dtype=np.int64).reshape(-1, 2)


class PairwiseProbe(ProjectionProbe):
    """A linear Bradley-Terry probe fitted on within-prompt pairs of differently rated responses."""

    kind = "pairwise"
    Settings = PairwiseSettings

    def __init__(self, c: float = 0.01):
        super().__init__()
        self.c = c

    @classmethod
    def from_settings(cls, settings: PairwiseSettings) -> PairwiseProbe:
        """An unfitted PairwiseProbe with `settings.c` as its inverse regularization strength."""
        return cls(settings.c)

    def fit(self, x, y, groups=None) -> PairwiseProbe:
        """Fit on x [n, d], y [n] from pairs within each prompt of `groups` [n] (required); returns self."""
        if groups is None:
            raise ValueError("the pairwise probe needs groups (prompts) to form pairs")
        y = np.asarray(y, dtype=np.float64)
        self.standardizer = Standardizer.fit(x)
        xs = self.standardizer.transform(x)
        pairs = within_group_pairs(y, np.asarray(groups))
        if len(pairs) == 0:
            raise UserError("the pairwise probe needs prompts with at least two differently rated responses")
        differences = xs[pairs[:, 0]] - xs[pairs[:, 1]]
        features = np.concatenate([differences, -differences])
        labels = np.concatenate([np.ones(len(pairs)), np.zeros(len(pairs))])
        self.vector = LogisticRegression(C=self.c, fit_intercept=False, max_iter=2000).fit(features, labels).coef_[0]
        self._calibrate(xs, y)
        self.info.fit["pairs"] = int(len(pairs))
        return self

    def _options(self) -> dict[str, Any]:
        return {"c": self.c}
