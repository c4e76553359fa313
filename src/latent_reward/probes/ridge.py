"""Closed-form ridge regression with the penalty chosen by exact leave-one-prompt-out cross-validation.

Hand-written rather than sklearn's GridSearchCV(Ridge, LeaveOneGroupOut) because the sweep fits every
layer of a position at once: one eigendecomposition per layer gives the leave-one-prompt-out
residuals for every penalty in closed form (the hat-matrix identity for linear smoothers) and the
final fit, batched over layers in torch (benchmarks/probe_sweep.py measures the difference).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from pydantic import Field
from scipy import sparse

from latent_reward.evaluation.groups import broadcast_group_means
from latent_reward.probes.base import CONSTANT_STD, Probe, Standardizer, fitted, unit
from latent_reward.probes.compute import current_device, host
from latent_reward.probes.module import linear_core
from latent_reward.probes.settings import DEFAULT_ALPHA_FACTORS, ProbeSettings


class RidgeSettings(ProbeSettings):
    """The ridge probe's options."""

    alpha_factors: tuple[float, ...] = Field(
        DEFAULT_ALPHA_FACTORS, min_length=1, description="penalties / training rows, chosen by leave-one-prompt-out CV"
    )


def _standardize_batch(x: torch.Tensor, rows: torch.Tensor | slice) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and scale over `rows` for each layer: x is [L, n, d]."""
    part = x[:, rows]
    mean = part.mean(dim=1, keepdim=True)
    scale = part.std(dim=1, keepdim=True, unbiased=False)
    return mean, torch.where(scale > CONSTANT_STD, scale, torch.ones_like(scale))


@dataclass
class _Eigen:
    """One symmetric eigendecomposition per layer that serves every penalty and target.

    For penalty a: fitted values = Q diag(c / (e + a)) Q^T y, weights = basis diag(1 / (e + a)) Q^T y, where
    Z = Q diag(c) is the part of the hat matrix left of the shrinkage.
    Primal (n >= d): eigh(X^T X) = V e V^T, Q = X V, c = 1, basis = V. Dual (n < d): eigh(X X^T) = U e U^T,
    Q = U, c = e, basis = X^T U.
    """

    e: torch.Tensor  # [L, k]
    c: torch.Tensor  # [L, k]
    q: torch.Tensor  # [L, n, k]
    basis: torch.Tensor  # [L, d, k]


_SCIPY_EIGH_FROM = 3072  # between the two widths timed: 2,048 (torch as fast) and 4,096 (scipy 30% faster)


def _eigh(matrices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigenvalues and vectors of a batch of symmetric matrices [L, m, m]: on the CPU from 3,072 wide through scipy,
    else torch. Both call LAPACK's divide-and-conquer `syevd`; what differs is the library under them (torch's wheel
    links MKL, scipy's OpenBLAS), and on this AVX2-only AMD CPU OpenBLAS's was faster at 4,096 (6.5 s vs 9.1 s in
    float32, 11.5 s vs 14.2 s in float64, 2 cores, two timings each). Another CPU may rank them otherwise. OpenBLAS
    is held to torch's thread count, so processes sized for torch do not oversubscribe the cores."""
    if matrices.device.type != "cpu" or matrices.shape[-1] < _SCIPY_EIGH_FROM:
        return torch.linalg.eigh(matrices)
    from scipy.linalg import eigh
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=torch.get_num_threads(), user_api="blas"):
        pairs = [eigh(m.numpy(), driver="evd", check_finite=False) for m in matrices]
    return torch.stack([torch.from_numpy(e) for e, _ in pairs]), torch.stack([torch.from_numpy(v) for _, v in pairs])


def _eigen(xs: torch.Tensor) -> _Eigen:
    n, d = xs.shape[1], xs.shape[2]
    if n >= d:
        e, v = _eigh(xs.transpose(1, 2) @ xs)
        e = e.clamp(min=0)
        return _Eigen(e, torch.ones_like(e), xs @ v, v)
    e, u = _eigh(xs @ xs.transpose(1, 2))
    e = e.clamp(min=0)
    return _Eigen(e, e, u, xs.transpose(1, 2) @ u)


def _chosen_weights(eigen: _Eigen, yc: torch.Tensor, alphas: torch.Tensor) -> torch.Tensor:
    """Ridge weights [L, d, T] for centered targets yc [n, T], each layer and target at its own penalty alphas [L, T]:
    weights = basis diag(1 / (e + a)) Q^T y."""
    projected = eigen.q.transpose(1, 2) @ yc  # [L, k, T]
    return eigen.basis @ (projected / (eigen.e[:, :, None] + alphas[:, None, :]))


def _group_buckets(groups: np.ndarray) -> list[torch.Tensor]:
    """The rows of each group, bucketed by group size: one index tensor [groups of size m, m] per size m (no padding, so
    a few large groups among many small ones cost only their own rows)."""
    _, index = np.unique(groups, return_inverse=True)
    order = np.argsort(index, kind="stable")
    sizes = np.bincount(index)
    starts = np.cumsum(sizes) - sizes
    return [torch.as_tensor(order[starts[sizes == m][:, None] + np.arange(m)[None, :]]) for m in np.unique(sizes)]


_BLOCK_BYTES = 2**28  # memory for one block of the hat matrix's per-prompt blocks and their inverses
# Memory for one tile of the rows' pairwise products on the CPU: small enough to stay in cache between forming the
# products and multiplying them by the shrinkages. One tile per block (256 MiB) took 2.8x as long as 4 MiB tiles
# (8 layers, 60 prompts of 16 rows, 576 wide: 0.206 s vs 0.074 s), since both steps then stream through memory.
_TILE_BYTES = 2**22
# Groups of at least this many rows form their hat blocks from copies of Q_G^T scaled per penalty instead of pairwise
# products, 16 MiB of copies at a time. Timed on 2 cores (one call over 20,000 rows, outer products -> scaled copies):
# 8 rows per group, 576 wide, float32, 8 layers 0.10 -> 0.35 s; 16 rows 0.33 -> 0.24 s; 60 rows 0.32 -> 0.14 s (4
# layers); 60 rows, 4,096 wide, float64 (a capped TF-IDF fit on AlpacaEval's 60 answers per prompt) 26.6 -> 4.6 s.
_PRODUCTS_BELOW = 16
_SCALED_TILE_BYTES = 2**24


def _hat_blocks(q: torch.Tensor, block: torch.Tensor, shrink: torch.Tensor) -> torch.Tensor:
    """The hat matrix's diagonal blocks Q_G diag(shrink) Q_G^T, without the intercept's part, of each group in `block`
    [g, m] (rows of q [L, n, k]) at every penalty (shrink [L, k, A]): [L, A, g, m, m]. Small groups (fewer than
    `_PRODUCTS_BELOW` rows) as one matrix product of their rows' pairwise products q_i * q_j [m * m, k] with the
    shrinkages; larger ones as Q_G times Q_G^T scaled for every penalty [k, A * m]: the pairwise products grow as m^2 k,
    the scaled copies as A m k. Either way a cache-sized tile of groups at a time (a whole block at a time on a GPU)."""
    (n_layers, _, k), (g, m), n_alphas = q.shape, block.shape, shrink.shape[2]
    on_cpu = q.device.type == "cpu"
    if m < _PRODUCTS_BELOW:
        hat = torch.empty(n_layers, g, m, m, n_alphas, dtype=q.dtype, device=q.device)
        tile = max(1, _TILE_BYTES // (m * m * k * q.element_size())) if on_cpu else g
        for layer in range(n_layers):
            for start in range(0, g, tile):
                qg = q[layer, block[start : start + tile]]  # [t, m, k]
                products = (qg[:, :, None, :] * qg[:, None, :, :]).reshape(-1, k)  # [t * m * m, k]
                hat[layer, start : start + tile] = (products @ shrink[layer]).reshape(-1, m, m, n_alphas)
        return hat.permute(0, 4, 1, 2, 3)
    hat = torch.empty(n_layers, g, m, n_alphas, m, dtype=q.dtype, device=q.device)
    # a tile's scaled copies [t, k, A * m] and its products [t, m, A * m]
    tile = max(1, _SCALED_TILE_BYTES // (n_alphas * m * max(k, m) * q.element_size())) if on_cpu else g
    for layer in range(n_layers):
        for start in range(0, g, tile):
            qg = q[layer, block[start : start + tile]]  # [t, m, k]
            scaled = qg.transpose(1, 2)[:, :, None, :] * shrink[layer][None, :, :, None]  # [t, k, A, m]
            hat[layer, start : start + tile] = (qg @ scaled.reshape(len(qg), k, -1)).reshape(-1, m, n_alphas, m)
    return hat.permute(0, 3, 1, 2, 4)


def _logo_predictions(
    eigen: _Eigen, yc: torch.Tensor, buckets: list[torch.Tensor], alphas: torch.Tensor
) -> torch.Tensor:
    """Leave-one-prompt-out predictions [L, A, n, T] of the centered targets yc [n, T], exact, from the one
    decomposition (a strided view of a [L, n, A, T] tensor).

    For a linear smoother with hat matrix H (the intercept included: H = J / n + Q diag(c / (e + a)) Q^T), the
    prediction for group G by a fit that left G out is (I - H_GG)^{-1} (fitted_G - H_GG y_G): the fit's other rows'
    part of the fitted values, scaled up. Formed this way, not as y_G minus the residual (I - H_GG)^{-1}
    (y_G - fitted_G), it carries no cancellation against y: in float32 a cell whose states do not vary predicts
    exactly the leave-one-out mean, where y minus the residual left rounding noise correlated with y. The small
    systems I - H_GG are solved in float64: with fewer targets than rows per group, each by one batched solve; with
    more, each block is inverted once and applied to every target by one batched product (a solve per block and
    target costs 10x more at 100 targets).
    """
    (n, n_targets), (n_layers, k), n_alphas = yc.shape, eigen.e.shape, len(alphas)
    shrink = eigen.c[:, :, None] / (eigen.e[:, :, None] + alphas[None, None, :])  # [L, k, A]
    projected = eigen.q.transpose(1, 2) @ yc  # [L, k, T]
    fitted = eigen.q @ (shrink[..., None] * projected[:, :, None, :]).reshape(n_layers, k, -1)  # [L, n, A * T]
    fitted = fitted.reshape(n_layers, n, n_alphas, n_targets)
    out = torch.empty_like(fitted)
    for slots in buckets:
        slots = slots.to(yc.device)
        m = slots.shape[1]
        # the float64 blocks [L, A, g, m, m] (hat, I - hat, its inverse or factors, their casts), and off the CPU, where
        # a block's hat is formed in one tile, its intermediates per m x m cell: the pairwise products [L, g * m * m, k]
        # of small prompts, the scaled copies [g, k, A * m] (one layer at a time) of large ones
        products = (
            (k if m < _PRODUCTS_BELOW else k * n_alphas / m) * yc.element_size() if yc.device.type != "cpu" else 0
        )
        per_block = max(1, int(_BLOCK_BYTES // (n_layers * m * m * (products + 4 * n_alphas * 8))))
        for start in range(0, len(slots), per_block):
            block = slots[start : start + per_block]  # [g, m]
            hat = _hat_blocks(eigen.q, block, shrink) + 1.0 / n  # [L, A, g, m, m]
            others = fitted[:, block].permute(0, 3, 1, 2, 4) - hat @ yc[block]  # [L, A, g, m, T]
            held = _held_out(hat, others, few_targets=n_targets < m).to(dtype=yc.dtype)
            out[:, block.reshape(-1)] = held.permute(0, 2, 3, 1, 4).reshape(n_layers, -1, n_alphas, n_targets)
    return out.permute(0, 2, 1, 3)


def _held_out(hat: torch.Tensor, others: torch.Tensor, few_targets: bool) -> torch.Tensor:
    """(I - hat)^{-1} others for each block (hat [L, A, g, m, m], others [L, A, g, m, T]), the systems in float64, on
    others' device: solved when there are fewer targets than rows (`few_targets`), else each block inverted once and
    applied to every target. On the CPU through numpy's batched LAPACK (torch's inverse is 10-1000x slower on many
    tiny systems there), elsewhere in torch on the device."""
    held_out = _held_out_torch if others.device.type != "cpu" else _held_out_numpy
    return held_out(hat, others, few_targets)


def _held_out_numpy(hat: torch.Tensor, others: torch.Tensor, few_targets: bool) -> torch.Tensor:
    system = np.eye(hat.shape[-1]) - hat.double().numpy()
    if few_targets:
        return torch.from_numpy(np.linalg.solve(system, others.double().numpy()))
    return torch.from_numpy(np.linalg.inv(system)).to(others.dtype) @ others


def _held_out_torch(hat: torch.Tensor, others: torch.Tensor, few_targets: bool) -> torch.Tensor:
    system = torch.eye(hat.shape[-1], dtype=torch.float64, device=others.device) - hat.double()
    if few_targets:
        return torch.linalg.solve(system, others.double())
    return torch.linalg.inv(system).to(others.dtype) @ others


def _squared_errors(yc: torch.Tensor, predictions: torch.Tensor) -> torch.Tensor:
    """Mean squared error [L, A, T] of leave-one-out predictions [L, A, n, T] of yc [n, T], accumulated in float64 one
    penalty at a time (no second tensor of the predictions' size)."""
    return torch.stack(
        [((predictions[:, a] - yc) ** 2).mean(dim=1, dtype=torch.float64) for a in range(predictions.shape[1])], dim=1
    )


@dataclass
class LogoRidge:
    """Ridge with an intercept at the penalty leave-one-prompt-out cross-validation chose, on features as given or,
    for a within-prompt fit, on features centered per prompt."""

    errors: np.ndarray  # [A] leave-one-prompt-out mean squared error per penalty
    alpha: float  # the chosen penalty (sklearn's alpha)
    weights: np.ndarray  # [p] on the (centered, for a within-prompt fit) features
    intercept: float
    within: bool = False  # fitted on features centered per prompt: `predict` centers them too

    def predict(self, x: np.ndarray | sparse.spmatrix, groups: np.ndarray | None = None) -> np.ndarray:
        """Predictions [n] for rows x [n, p] (dense or sparse); a within-prompt fit needs the rows' prompts (`groups`,
        whole prompts), as (x - its prompt means) w = x w - (the prompt means of x w)."""
        raw = np.asarray(x @ self.weights).ravel()
        if self.within:
            if groups is None:
                raise ValueError("a within-prompt fit predicts from the rows' prompts (groups)")
            raw = raw - broadcast_group_means(raw, groups)
        return raw + self.intercept


def _centered_rows(x: np.ndarray | sparse.spmatrix, groups: np.ndarray, within: bool) -> np.ndarray:
    """x's rows as a dense float64 array, centered on their prompts' means (`within`) or on the column means (a
    temporary: `logo_ridge` keeps only its cast to the decomposition's dtype)."""
    dense = x.astype(np.float64) if isinstance(x, np.ndarray) else x.toarray().astype(np.float64, copy=False)
    dense -= broadcast_group_means(dense, groups) if within else dense.mean(axis=0)  # in place: a copy of x
    return dense


def _centered_kernel(x: np.ndarray | sparse.spmatrix, groups: np.ndarray | None) -> torch.Tensor:
    """The kernel of x's rows centered on their column means, or for `groups` on their prompts' means: (I - P) x x^T
    (I - P), P the averaging. Centered on the dense kernel, not on x: a sparse row centered on its prompt is as dense
    as the union of the prompt's rows, and the sparse product of such rows cost several times the whole fit (TF-IDF
    of arena-bench's 16 answers per prompt: 8 of 23 s)."""
    gram = x @ x.T
    gram = gram.toarray() if sparse.issparse(gram) else np.asarray(gram, dtype=np.float64)
    if groups is None:
        mean = np.asarray(x.mean(axis=0)).ravel()
        row_means = np.asarray(x @ mean).ravel()
        return torch.as_tensor(gram - row_means[:, None] - row_means[None, :] + mean @ mean, dtype=torch.float64)
    rows_centered = gram - broadcast_group_means(gram, groups)  # (I - P) K
    return torch.as_tensor(rows_centered - broadcast_group_means(rows_centered.T, groups).T, dtype=torch.float64)


def logo_ridge(
    x: np.ndarray | sparse.spmatrix,
    y: np.ndarray,
    groups: np.ndarray,
    alphas: np.ndarray,
    within: bool = False,
    decompose_in: torch.dtype = torch.float64,
) -> LogoRidge:
    """Ridge with an intercept on features x (dense or sparse, not z-scored): the leave-one-prompt-out mean squared
    error of each penalty in `alphas` and the fit on all rows at the best one, exact, from one decomposition (of x^T x
    when x has fewer columns than rows, else of the centered kernel x x^T, which a sparse x with many columns keeps
    small; the fit is then the dual one, (x - mean)^T (K + alpha I)^{-1} y). `within`: fit on x centered per prompt
    (`groups`, whole prompts), as the within-prompt probe's states are; y is taken as given (the caller centers it).
    `decompose_in`: the eigendecomposition's arithmetic (the one step that grows as the cube of the rows or columns;
    in the primal form also Q = x V); everything after it runs in float64."""
    n = x.shape[0]
    groups = np.asarray(groups)
    primal = x.shape[1] < n
    if primal:
        eigen = _eigen(
            torch.as_tensor(_centered_rows(x, groups, within), dtype=decompose_in, device=current_device())[None]
        )
        eigen = _Eigen(eigen.e.double(), eigen.c.double(), eigen.q.double(), eigen.basis.double())
    else:
        kernel = _centered_kernel(x, groups if within else None)
        e, u = _eigh(kernel.to(device=current_device(), dtype=decompose_in)[None])
        e, u = e.clamp(min=0).double(), u.double()
        eigen = _Eigen(e, e, u, torch.empty(0))
    yt = _as_targets(y)
    yc = yt - yt.mean(dim=0)
    penalties = torch.as_tensor(np.asarray(alphas, dtype=np.float64), device=yc.device)
    predictions = _logo_predictions(eigen, yc, _group_buckets(groups), penalties)
    errors = host(_squared_errors(yc, predictions)[0, :, 0])
    best = penalties[int(errors.argmin())]
    if primal:
        weights = host(_chosen_weights(eigen, yc, best.reshape(1, 1))[0, :, 0])
    else:  # dual coefficients (K + alpha I)^{-1} y_c = U diag(1 / (e + alpha)) U^T y_c, then back to the features
        u = eigen.q[0]
        dual = host(u @ ((u.T @ yc[:, 0]) / (eigen.e[0] + best)))
        # the centered rows' transpose times dual: (I - P) dual for a within fit, dual minus its mean otherwise
        dual = dual - (broadcast_group_means(dual, groups) if within else dual.mean())
        weights = np.asarray(x.T @ dual).ravel()
    mean = np.zeros(x.shape[1]) if within else np.asarray(x.mean(axis=0)).ravel()
    return LogoRidge(errors, float(best), weights, float(yt.mean()) - float(mean @ weights), within)


def _as_targets(y: np.ndarray) -> torch.Tensor:
    """Targets [n] or [n, T] as a float64 tensor [n, T] on the fits' device."""
    y = np.asarray(y, dtype=np.float64)
    return torch.as_tensor(y[:, None] if y.ndim == 1 else y, device=current_device())


@dataclass
class RidgeCV:
    """The outcome of `ridge_cv_all_layers`, or of one fold of `ridge_cv_folds` (T = number of targets)."""

    best_alpha: np.ndarray  # [L, T] chosen alpha factor (penalty / training rows)
    mse: np.ndarray  # [L, A, T] leave-one-prompt-out mean squared error
    predictions: np.ndarray  # [L, n, T] leave-one-prompt-out predictions at the chosen penalty
    weights: list[np.ndarray]  # per layer [d, T]: the fit on all rows at the chosen penalty
    intercept: np.ndarray  # [T]
    mean: np.ndarray  # [L, d] standardization of the rows
    scale: np.ndarray  # [L, d]
    alpha_factors: tuple[float, ...] = DEFAULT_ALPHA_FACTORS

    def predict(self, layer: int, x: np.ndarray) -> np.ndarray:
        """Predictions [n, T] of every target's final fit at layer index `layer` for states x [n, d]."""
        z = (np.asarray(x, dtype=np.float64) - self.mean[layer]) / self.scale[layer]
        return z @ self.weights[layer] + self.intercept

    def probe(self, layer: int, target: int = 0) -> RidgeProbe:
        """The fitted probe at layer index `layer` (position in x's layer axis) for target column `target`."""
        probe = RidgeProbe(alpha_factor=float(self.best_alpha[layer, target]), alpha_factors=self.alpha_factors)
        probe.standardizer = Standardizer(self.mean[layer], self.scale[layer])
        return probe._set(self.weights[layer][:, target], float(self.intercept[target]))


@dataclass
class _Chunk:
    """One chunk of layers' cross-validation, before it joins the others in a RidgeCV."""

    mse: np.ndarray  # [l, A, T]
    best: np.ndarray  # [l, T]
    predictions: np.ndarray  # [l, n, T]
    weights: list[np.ndarray]  # per layer [d, T]
    mean: np.ndarray  # [l, d]
    scale: np.ndarray  # [l, d]

    @classmethod
    def of_targets(cls, parts: list[_Chunk]) -> _Chunk:
        """One chunk from chunks of the same layers fitted on consecutive slices of the targets."""
        if len(parts) == 1:
            return parts[0]
        return cls(
            np.concatenate([p.mse for p in parts], axis=2),
            np.concatenate([p.best for p in parts], axis=1),
            np.concatenate([p.predictions for p in parts], axis=2),
            [np.concatenate(layer, axis=1) for layer in zip(*(p.weights for p in parts), strict=True)],
            parts[0].mean,
            parts[0].scale,
        )


def _cv_chunk(
    eigen: _Eigen, mean: torch.Tensor, scale: torch.Tensor, yt: torch.Tensor, groups: np.ndarray, factors: np.ndarray
) -> _Chunk:
    """The leave-one-prompt-out choice of penalty and the final fits of one chunk of layers, from its decomposition of
    the z-scored states (mean and scale [l, 1, d]) and the targets yt [n, T] (float64)."""
    dtype = eigen.q.dtype
    yc = (yt - yt.mean(dim=0)).to(dtype)
    alphas = torch.as_tensor(factors * len(yt), dtype=dtype, device=yc.device)
    predictions = _logo_predictions(eigen, yc, _group_buckets(np.asarray(groups)), alphas)  # [l, A, n, T]
    mse = _squared_errors(yc, predictions)  # [l, A, T]
    chosen = mse.argmin(dim=1)  # [l, T]
    held = predictions.gather(1, chosen[:, None, None, :].expand(-1, 1, len(yt), -1))[:, 0]  # [l, n, T]
    return _Chunk(
        host(mse),
        factors[host(chosen)],
        host(yt.mean(dim=0) + held.double()),
        list(host(_chosen_weights(eigen, yc, alphas[chosen]).double())),
        host(mean[:, 0].double()),
        host(scale[:, 0].double()),
    )


def _joined(chunks: list[_Chunk], yt: torch.Tensor, alpha_factors) -> RidgeCV:
    """The RidgeCV of consecutive chunks of layers, for targets yt [n, T]."""
    return RidgeCV(
        np.concatenate([c.best for c in chunks]),
        np.concatenate([c.mse for c in chunks]),
        np.concatenate([c.predictions for c in chunks]),
        [w for c in chunks for w in c.weights],
        host(yt.mean(dim=0)),
        np.concatenate([c.mean for c in chunks]),
        np.concatenate([c.scale for c in chunks]),
        tuple(alpha_factors),
    )


def _layers_first(x: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
    """States [n, l, d] as a tensor [l, n, d] on the fits' device."""
    return torch.as_tensor(np.ascontiguousarray(np.moveaxis(x, 1, 0)), dtype=dtype, device=current_device())


def ridge_cv_all_layers(
    x: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    alpha_factors=DEFAULT_ALPHA_FACTORS,
    layer_chunk: int = 8,
    dtype: torch.dtype = torch.float64,
) -> RidgeCV:
    """Exact leave-one-prompt-out cross-validation of ridge for every layer and target at once, and the final fits.

    x: [n, L, d] states, y: [n] or [n, T] targets, groups: [n] prompt ids. Features are z-scored on all rows
    (for choosing the penalty this differs from per-fold scaling by a negligible amount). Layers are processed
    in chunks to bound memory. `dtype` is the arithmetic's (float32 halves the time of a wide layer's decomposition;
    the results are returned in float64 either way).
    """
    yt = _as_targets(y)
    factors = np.asarray(alpha_factors, dtype=np.float64)
    chunks = []
    for start in range(0, x.shape[1], layer_chunk):
        xt = _layers_first(x[:, start : start + layer_chunk], dtype)
        mean, scale = _standardize_batch(xt, slice(None))
        chunks.append(_cv_chunk(_eigen((xt - mean) / scale), mean, scale, yt, groups, factors))
    return _joined(chunks, yt, alpha_factors)


def ridge_cv_folds(
    x: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    folds: np.ndarray,
    alpha_factors=DEFAULT_ALPHA_FACTORS,
    dtype: torch.dtype = torch.float64,
    targets_per_pass: int | None = None,
    fold_ids: Sequence[int] | None = None,
) -> Iterator[RidgeCV]:
    """`ridge_cv_all_layers` on each fold's training rows (those with folds != k), for k in `fold_ids` (every fold by
    default) in turn: the same fits, at lower cost. When two or more folds are fitted and each trains on at least as
    many rows as x [n, L, d] has features, the whole rows' Gram matrix is formed once, on states shifted by their
    overall mean, and each fold's is that minus its held rows' and its mean's outer product; otherwise (one fold, or
    the dual form's fewer rows than features) each fold decomposes its own rows. The targets (y: [n] or [n, T]) share
    each fold's decomposition, `targets_per_pass` at a time (bounding the memory of their leave-one-prompt-out
    residuals)."""
    d = x.shape[2]
    n_folds = int(folds.max()) + 1
    fold_ids = list(range(n_folds)) if fold_ids is None else list(fold_ids)
    if len(set(fold_ids)) < len(fold_ids) or not all(0 <= k < n_folds for k in fold_ids):
        raise ValueError(f"fold_ids must be distinct folds in 0..{n_folds - 1}, got {fold_ids}")
    shared = len(fold_ids) > 1 and all(np.sum(folds != k) >= d for k in fold_ids)
    factors = np.asarray(alpha_factors, dtype=np.float64)
    yt = _as_targets(y)
    xt = _layers_first(x, dtype)  # [L, n, d]
    shift = xt.mean(dim=1, keepdim=True)
    xt = xt - shift
    gram = xt.transpose(1, 2) @ xt if shared else None
    for k in fold_ids:
        train = folds != k
        rows = xt[:, torch.as_tensor(train, device=xt.device)]
        mean, scale = _standardize_batch(rows, slice(None))  # the fold's own z-scoring (of the shifted rows)
        if gram is None:
            eigen = _eigen((rows - mean) / scale)
        else:
            held = xt[:, torch.as_tensor(~train, device=xt.device)]
            covariance = gram - held.transpose(1, 2) @ held - int(train.sum()) * mean.transpose(1, 2) @ mean
            e, v = _eigh(covariance / (scale.transpose(1, 2) * scale))  # Z^T Z, Z the z-scored training rows
            to_z = v / scale.transpose(1, 2)  # Q = Z V = (rows - mean) diag(1 / scale) V
            eigen = _Eigen(e.clamp(min=0), torch.ones_like(e), rows @ to_z - mean @ to_z, v)
        passes = range(0, yt.shape[1], targets_per_pass or yt.shape[1])
        parts = [
            _cv_chunk(
                eigen,
                mean + shift,
                scale,
                yt[torch.as_tensor(train, device=yt.device)][:, s : s + (targets_per_pass or yt.shape[1])],
                groups[train],
                factors,
            )
            for s in passes
        ]
        yield _joined([_Chunk.of_targets(parts)], yt[torch.as_tensor(train, device=yt.device)], alpha_factors)


class RidgeProbe(Probe):
    """Linear probe, closed form. `fit` picks the penalty by grouped CV unless `alpha_factor` is fixed."""

    kind = "ridge"
    Settings = RidgeSettings

    def __init__(self, alpha_factor: float | None = None, alpha_factors=DEFAULT_ALPHA_FACTORS):
        super().__init__()
        self.alpha_factor = alpha_factor
        self.alpha_factors = tuple(alpha_factors)
        self.weights: np.ndarray | None = None
        self.intercept = 0.0

    @classmethod
    def from_settings(cls, settings: RidgeSettings) -> RidgeProbe:
        """An unfitted RidgeProbe that chooses its penalty among `settings.alpha_factors`."""
        return cls(alpha_factors=settings.alpha_factors)

    @property
    def fitted_weights(self) -> np.ndarray:
        """The weights [d] on z-scored states, which fitting or loading sets."""
        return fitted(self.weights, self)

    @classmethod
    def fit_layers(cls, settings: RidgeSettings, x, targets, groups) -> list[list[RidgeProbe]]:
        """Every layer and target from one batched grouped CV and one batched solve."""
        return fit_ridge_all_layers(x, targets, groups, settings.alpha_factors)

    def fit(self, x, y, groups=None) -> RidgeProbe:
        """Fit on x [n, d], y [n]; the penalty is chosen by leave-one-prompt-out CV over `groups` unless fixed."""
        x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
        if self.alpha_factor is None:
            if groups is None:
                raise ValueError("ridge needs groups to choose its penalty by grouped cross-validation")
            chosen = fit_ridge_all_layers(x[:, None, :], y, np.asarray(groups), self.alpha_factors)[0][0]
            self.alpha_factor, self.standardizer = chosen.alpha_factor, chosen.standardizer
            return self._set(chosen.fitted_weights, chosen.intercept)
        self.standardizer = Standardizer.fit(x)
        xs = torch.as_tensor(self.standardizer.transform(x), device=current_device())[None]
        penalty = torch.tensor([[self.alpha_factor * len(y)]], dtype=torch.float64, device=xs.device)
        weights = host(_chosen_weights(_eigen(xs), _as_targets(y - y.mean()), penalty)[0, :, 0])
        return self._set(weights, float(y.mean()))

    def _set(self, weights: np.ndarray, intercept: float) -> RidgeProbe:
        self.weights, self.intercept = weights, intercept
        self.info.fit["alpha_factor"] = self.alpha_factor
        return self

    def predict(self, x) -> np.ndarray:
        """Predicted ratings float64 [n] for states x [n, d]."""
        return self.fitted_standardizer.transform(x) @ self.fitted_weights + self.intercept

    @property
    def direction(self) -> np.ndarray:
        """Unit vector [d] in residual space along the weights, with the standardization undone."""
        return unit(self.fitted_weights / self.fitted_standardizer.scale)

    def _tensors(self) -> dict[str, np.ndarray]:
        return {"weights": self.fitted_weights}

    def _torch_core(self) -> tuple[torch.nn.Module, float, float]:
        return linear_core(self.fitted_weights, self.intercept), 1.0, 0.0

    def _state(self) -> dict[str, Any]:
        return {"intercept": self.intercept, "alpha_factor": self.alpha_factor}

    def _restore(self, tensors, state) -> None:
        self.weights, self.intercept, self.alpha_factor = tensors["weights"], state["intercept"], state["alpha_factor"]


def fit_ridge_all_layers(
    x: np.ndarray, y: np.ndarray, groups: np.ndarray, alpha_factors=DEFAULT_ALPHA_FACTORS
) -> list[list[RidgeProbe]]:
    """RidgeProbes for every target column of y ([n] or [n, T]) and every layer of x [n, L, d]: probes[target][layer].

    One eigendecomposition per layer gives the leave-one-prompt-out choice of penalty and the final fit.
    """
    cv = ridge_cv_all_layers(x, y, groups, alpha_factors)
    return [[cv.probe(layer, t) for layer in range(x.shape[1])] for t in range(cv.best_alpha.shape[1])]
