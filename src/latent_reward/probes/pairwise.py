"""A linear Bradley-Terry probe trained on within-prompt pairs (higher- vs lower-rated response).

Logistic regression without intercept on state differences (both orders), so only the ranking of
responses to the same prompt teaches it; prompt-level variance cannot. A one-variable fit on the
training rows maps its score to the rating's scale.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression

from latent_reward.errors import UserError
from latent_reward.probes.base import Probe, Standardizer, unit


def within_group_pairs(y: np.ndarray, groups: np.ndarray, max_pairs_per_group: int = 64, seed: int = 0) -> np.ndarray:
    """Index pairs (better, worse) of examples of the same group with different ratings."""
    rng = np.random.default_rng(seed)
    pairs = []
    for group in np.unique(groups):
        rows = np.flatnonzero(groups == group)
        candidates = [(a, b) if y[a] > y[b] else (b, a) for i, a in enumerate(rows) for b in rows[i + 1 :] if y[a] != y[b]]
        if len(candidates) > max_pairs_per_group:
            candidates = [candidates[i] for i in rng.choice(len(candidates), max_pairs_per_group, replace=False)]
        pairs.extend(candidates)
    return np.asarray(pairs, dtype=np.int64).reshape(-1, 2)


class PairwiseProbe(Probe):
    kind = "pairwise"

    def __init__(self, c: float = 0.01):
        super().__init__()
        self.c = c
        self.weights: np.ndarray | None = None
        self.slope, self.intercept = 1.0, 0.0

    def fit(self, x, y, groups=None, x_val=None, y_val=None) -> PairwiseProbe:
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
        model = LogisticRegression(C=self.c, fit_intercept=False, max_iter=2000).fit(features, labels)
        self.weights = model.coef_[0]
        score = xs @ self.weights
        self.slope, self.intercept = np.polyfit(score, y, 1) if score.std() > 0 else (0.0, float(y.mean()))
        self.info["pairs"] = int(len(pairs))
        return self

    def predict(self, x) -> np.ndarray:
        return self.slope * (self.standardizer.transform(x) @ self.weights) + self.intercept

    @property
    def direction(self) -> np.ndarray:
        return unit(self.weights / self.standardizer.scale)

    def _tensors(self) -> dict[str, np.ndarray]:
        return {"weights": self.weights}

    def _state(self) -> dict[str, Any]:
        return {"slope": float(self.slope), "intercept": float(self.intercept), "c": self.c}

    def _restore(self, tensors, state) -> None:
        self.weights, self.slope, self.intercept, self.c = tensors["weights"], state["slope"], state["intercept"], state["c"]
