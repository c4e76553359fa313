"""Closed-form ridge regression with the penalty chosen by grouped k-fold cross-validation.

Hand-written rather than sklearn's RidgeCV + GroupKFold because the sweep fits every layer of a
position at once: one eigendecomposition of X^T X per layer and fold gives the held-out
predictions for every penalty, batched over layers in torch (benchmarks/probe_sweep.py measures
the difference against the sklearn loop).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from sklearn.model_selection import GroupKFold

from latent_reward.probes.base import Probe, Standardizer, unit
from latent_reward.probes.settings import DEFAULT_ALPHA_FACTORS, ProbeSettings


def _standardize_batch(x: torch.Tensor, rows: torch.Tensor | slice) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and scale over `rows` for each layer: x is [L, n, d]."""
    part = x[:, rows]
    mean = part.mean(dim=1, keepdim=True)
    scale = part.std(dim=1, keepdim=True, unbiased=False)
    return mean, torch.where(scale > 1e-8, scale, torch.ones_like(scale))


def _solve_all_penalties(xs: torch.Tensor, y: torch.Tensor, alphas: torch.Tensor) -> torch.Tensor:
    """Ridge weights for every layer, penalty and target.

    xs [L, n, d] z-scored, y [n, T] centered, alphas [A] -> weights [L, A, d, T]. One symmetric
    eigendecomposition per layer serves every penalty and target: of X^T X (d x d) when n >= d,
    else of X X^T (n x n, the dual form).
    """
    n, d = xs.shape[1], xs.shape[2]
    if n >= d:
        eigenvalues, vectors = torch.linalg.eigh(xs.transpose(1, 2) @ xs)  # [L, d], [L, d, d]
        projected = vectors.transpose(1, 2) @ (xs.transpose(1, 2) @ y)  # V^T X^T y: [L, d, T]
        basis = vectors  # weights = V diag(1 / (e + alpha)) V^T X^T y
    else:
        eigenvalues, vectors = torch.linalg.eigh(xs @ xs.transpose(1, 2))  # [L, n], [L, n, n]
        projected = vectors.transpose(1, 2) @ y  # U^T y: [L, n, T]
        basis = xs.transpose(1, 2) @ vectors  # weights = X^T U diag(1 / (e + alpha)) U^T y
    shrink = 1.0 / (eigenvalues.clamp(min=0)[:, None, :, None] + alphas[None, :, None, None])  # [L, A, k, 1]
    # einsum keeps this one batched matmul per layer (a broadcast @ would copy the basis once per penalty)
    return torch.einsum("ldk,lakt->ladt", basis, shrink * projected[:, None])


def _as_targets(y: np.ndarray) -> torch.Tensor:
    y = np.asarray(y, dtype=np.float64)
    return torch.as_tensor(y[:, None] if y.ndim == 1 else y)


def ridge_cv_all_layers(
    x: np.ndarray, y: np.ndarray, groups: np.ndarray, alpha_factors=DEFAULT_ALPHA_FACTORS, n_folds: int = 5,
    return_predictions: bool = False,
):
    """Grouped k-fold CV for every layer (and every target) at once.

    x: [n, L, d] states, y: [n] or [n, T] targets, groups: [n]. Returns the best alpha factor
    [L] (or [L, T]) and the CV mean squared error [L, A] (or [L, A, T]); with `return_predictions`
    also the out-of-fold predictions at each layer's best penalty, [L, n] (or [L, n, T]).
    """
    xt = torch.as_tensor(np.ascontiguousarray(np.moveaxis(x, 1, 0)), dtype=torch.float64)  # [L, n, d]
    yt = _as_targets(y)
    factors = torch.as_tensor(alpha_factors, dtype=torch.float64)
    n_folds = min(n_folds, len(np.unique(groups)))
    squared_error = torch.zeros((xt.shape[0], len(alpha_factors), yt.shape[1]), dtype=torch.float64)
    held_out = torch.zeros((xt.shape[0], len(alpha_factors), len(yt), yt.shape[1]), dtype=torch.float64) if return_predictions else None
    for train_rows, held_rows in GroupKFold(n_splits=n_folds).split(np.zeros(len(yt)), groups=groups):
        train_rows, held_rows = torch.as_tensor(train_rows), torch.as_tensor(held_rows)
        mean, scale = _standardize_batch(xt, train_rows)
        y_mean = yt[train_rows].mean(dim=0)
        weights = _solve_all_penalties((xt[:, train_rows] - mean) / scale, yt[train_rows] - y_mean, factors * len(train_rows))
        predictions = torch.einsum("lmd,ladt->lamt", (xt[:, held_rows] - mean) / scale, weights) + y_mean
        squared_error += ((predictions - yt[held_rows]) ** 2).sum(dim=2)
        if held_out is not None:
            held_out[:, :, held_rows] = predictions
    mse = (squared_error / len(yt)).numpy()
    best_index = mse.argmin(axis=1)  # [L, T]
    best = np.asarray(alpha_factors)[best_index]
    single = np.asarray(y).ndim == 1
    if not return_predictions:
        return (best[:, 0], mse[..., 0]) if single else (best, mse)
    chosen = np.take_along_axis(held_out.numpy(), best_index[:, None, None, :], axis=1)[:, 0]  # [L, n, T]
    return (best[:, 0], mse[..., 0], chosen[..., 0]) if single else (best, mse, chosen)


class RidgeProbe(Probe):
    """Linear probe, closed form. `fit` picks the penalty by grouped CV unless `alpha_factor` is fixed."""

    kind = "ridge"

    def __init__(self, alpha_factor: float | None = None, alpha_factors=DEFAULT_ALPHA_FACTORS, n_folds: int = 5):
        super().__init__()
        self.alpha_factor = alpha_factor
        self.alpha_factors = tuple(alpha_factors)
        self.n_folds = n_folds
        self.weights: np.ndarray | None = None
        self.intercept = 0.0

    @classmethod
    def from_settings(cls, settings: ProbeSettings) -> RidgeProbe:
        return cls(alpha_factors=settings.alpha_factors, n_folds=settings.cv_folds)

    @classmethod
    def fit_layers(cls, settings: ProbeSettings, x, targets, groups) -> list[list[RidgeProbe]]:
        """Every layer and target from one batched grouped CV and one batched solve."""
        return fit_ridge_all_layers(x, targets, groups, settings.alpha_factors, settings.cv_folds)

    def fit(self, x, y, groups=None) -> RidgeProbe:
        x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
        if self.alpha_factor is None:
            if groups is None:
                raise ValueError("ridge needs groups to choose its penalty by grouped cross-validation")
            best, _ = ridge_cv_all_layers(x[:, None, :], y, np.asarray(groups), self.alpha_factors, self.n_folds)
            self.alpha_factor = float(best[0])
        self.standardizer = Standardizer.fit(x)
        xs = torch.as_tensor(self.standardizer.transform(x))[None]
        factor = torch.tensor([self.alpha_factor * len(y)], dtype=torch.float64)
        weights = _solve_all_penalties(xs, _as_targets(y - y.mean()), factor)[0, 0, :, 0].numpy()
        return self._set(weights, float(y.mean()))

    def _set(self, weights: np.ndarray, intercept: float) -> RidgeProbe:
        self.weights, self.intercept = weights, intercept
        self.info["alpha_factor"] = self.alpha_factor
        return self

    def predict(self, x) -> np.ndarray:
        return self.standardizer.transform(x) @ self.weights + self.intercept

    @property
    def direction(self) -> np.ndarray:
        return unit(self.weights / self.standardizer.scale)

    def _tensors(self) -> dict[str, np.ndarray]:
        return {"weights": self.weights}

    def _state(self) -> dict[str, Any]:
        return {"intercept": self.intercept, "alpha_factor": self.alpha_factor}

    def _restore(self, tensors, state) -> None:
        self.weights, self.intercept, self.alpha_factor = tensors["weights"], state["intercept"], state["alpha_factor"]


def fit_ridge_all_layers(x: np.ndarray, y: np.ndarray, groups: np.ndarray, alpha_factors=DEFAULT_ALPHA_FACTORS,
                         n_folds: int = 5) -> list[list[RidgeProbe]]:
    """RidgeProbes for every target column of y ([n] or [n, T]) and every layer of x [n, L, d].

    Penalties come from one batched grouped CV; the final fit on all rows is one more batched
    solve. Returns probes[target][layer] (a single target gives a list of one).
    """
    targets = _as_targets(y)
    best, _ = ridge_cv_all_layers(x, targets.numpy(), groups, alpha_factors, n_folds)  # [L, T]
    factors = np.asarray(alpha_factors)
    xt = torch.as_tensor(np.ascontiguousarray(np.moveaxis(x, 1, 0)), dtype=torch.float64)
    mean, scale = _standardize_batch(xt, slice(None))
    y_mean = targets.mean(dim=0)
    weights = _solve_all_penalties((xt - mean) / scale, targets - y_mean, torch.as_tensor(factors * len(targets)))  # [L, A, d, T]
    probes = []
    for t in range(targets.shape[1]):
        row = []
        for layer in range(xt.shape[0]):
            a = int(np.flatnonzero(factors == best[layer, t])[0])
            probe = RidgeProbe(alpha_factor=float(best[layer, t]))
            probe.standardizer = Standardizer(mean[layer, 0].numpy(), scale[layer, 0].numpy())
            row.append(probe._set(weights[layer, a, :, t].numpy(), float(y_mean[t])))
        probes.append(row)
    return probes
