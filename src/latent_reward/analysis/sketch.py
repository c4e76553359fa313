"""Narrow views of wide residual states, for choosing where to probe.

An exact leave-one-prompt-out ridge costs one min(n, d)-sized eigendecomposition per layer, position
and fold; at a 7B model's width (d = 4,096, 33 layers) that is hours on a CPU for one cross-fit. So
for states wider than `SketchConfig.above`, the analysis explores the grid and chooses each fold's
cell on a sketch: each layer's states z-scored and projected on their top `dim` principal components.
Every reported fit is then made exactly, on the full states, at the cells chosen (`full_store`).

The sketch is fitted on the states a target reads (its rows, centered within prompts for the
within-prompt target, averaged per prompt for prompt-only) without the ratings, so no rating reaches
the choice that the folds make; its components come from a seeded randomized SVD (Halko et al.) on at
most 4,096 of those rows, so the same store and seed give the same sketch. Hand-written as a view (not sklearn's PCA)
because it must stand
in for the store everywhere a store is read, one layer at a time, and cache what it computed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, overload

import numpy as np
import torch
from pydantic import ConfigDict, Field

from latent_reward.activations.store import ActivationStore
from latent_reward.evaluation.results import Result

_LAYER_CHUNK = 2  # layers read from disk at once (bounds memory at large width)
# The cached sketches are the analysis's largest holding that grows with the rows (each target's [n, layers, dim] per
# position, kept for the whole analysis). They keep the store's own precision, float16, at half of float32's memory;
# the fits read them as float32. A z-scored row's norm is at most sqrt(rows x width), which bounds every component:
# float16 holds it up to rows x width = 65,504^2 (about 4e9), float32 beyond.
_FLOAT16_BOUND = float(np.finfo(np.float16).max) ** 2


def _cached(sketch: np.ndarray, width: int) -> np.ndarray:
    """A layer's sketch [rows, dim] as the cache keeps it (float16 where the bound above allows)."""
    return sketch.astype(np.float16) if len(sketch) * width < _FLOAT16_BOUND else sketch


class SketchConfig(Result):
    """When and how wide states are sketched for choosing cells."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    dim: int = Field(
        256,
        ge=0,
        description="States wider than 1024 choose their cells on this many principal components per "
        "layer, then fit exactly (0: always use the full states).",
    )
    above: int = Field(1024, ge=1, description="States wider than this are sketched; narrower ones are used whole.")
    seed: int = 0


class SketchSummary(Result):
    """What a result that chose cells on a sketch records."""

    dim: int
    d_model: int
    explained: float  # share of the z-scored states' variance the kept components hold, mean over sketched layers


_BASIS_ROWS = 4096  # rows the components are found on (all rows are projected on them)
_ROUND_OFF = 1e-4  # a component whose spread is this small against the largest is float32 round-off, not a direction


def _components(x: np.ndarray, dim: int, seed: int) -> tuple[np.ndarray, float]:
    """float32 [n, dim]: the rows of x [n, d] z-scored and projected on their top `dim` principal components, and the
    share of the variance those hold. With more than 4,096 rows the components are found on 4,096 of them drawn at
    random (seeded): the cost stays flat in n, and a sample that size finds the leading components of a few thousand
    dimensions about as well."""
    z = torch.as_tensor(np.asarray(x, dtype=np.float32))
    z = z - z.mean(dim=0)
    scale = z.std(dim=0, unbiased=False)
    z = z / torch.where(scale > 1e-8, scale, torch.ones_like(scale))
    keep = min(dim, *z.shape)
    rows = (
        np.sort(np.random.default_rng(seed).choice(len(z), _BASIS_ROWS, replace=False))
        if len(z) > _BASIS_ROWS
        else None
    )
    basis_rows = z if rows is None else z[torch.as_tensor(rows)]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        _, _, v = torch.svd_lowrank(basis_rows, q=min(keep + 10, *basis_rows.shape), niter=2)
    sketch = z @ v[:, :keep]
    # Components past the states' rank (centered rows, rows centered on their prompt or averaged per prompt have fewer
    # directions than rows) are float round-off, which the fits' z-scoring would blow up into unit-variance noise;
    # zeroed, they are constant features, which the fits leave out. Judged on the spread the fits see: the float32
    # mean's rounding error, divided by a nearly constant feature's tiny std, can leave more than round-off's spread.
    spread = sketch.std(dim=0)
    sketch[:, spread <= _ROUND_OFF * spread.max()] = 0
    total = float((z * z).sum())
    explained = float((sketch * sketch).sum()) / total if total > 0 else 1.0
    return sketch.numpy(), explained


class SketchedStore:
    """A store whose states are read through `sketch`: each layer's principal-component sketch (float32 [n, layers,
    dim])
    of the states a target reads, computed once; everything else (examples, ratings, stats, manifest) is the full
    store's, which `full` holds."""

    def __init__(self, store: ActivationStore, config: SketchConfig):
        self.full = store
        self.config = config
        self._cache: dict[tuple[Any, str, int], np.ndarray] = {}
        self._explained: dict[tuple[Any, str, int], float] = {}

    def __getattr__(self, name: str) -> Any:
        if name == "full":  # not set yet (a copy being built): no recursion through the delegation below
            raise AttributeError(name)
        return getattr(self.full, name)

    def __len__(self) -> int:
        return len(self.full)

    def sketch(
        self, key: Any, position: str, layers: list[int] | None, read: Callable[[list[int]], np.ndarray]
    ) -> np.ndarray:
        """float32 [rows, len(layers), dim]: the sketch of each layer of `read(layers)` (the full states as a target
        reads
        them: its rows, centered within prompts or averaged per prompt), cached under `key` (which names that
        reading)."""
        layers = list(self.full.layers if layers is None else layers)
        missing = [layer for layer in layers if (key, position, layer) not in self._cache]
        for start in range(0, len(missing), _LAYER_CHUNK):
            chunk = missing[start : start + _LAYER_CHUNK]
            states = read(chunk)
            for index, layer in enumerate(chunk):
                sketch, self._explained[(key, position, layer)] = _components(
                    states[:, index], self.config.dim, self.config.seed + layer
                )
                self._cache[(key, position, layer)] = _cached(sketch, states.shape[-1])
        return np.stack([self._cache[(key, position, layer)] for layer in layers], axis=1, dtype=np.float32)

    def summary(self) -> SketchSummary:
        """The sketch's width, the full width and the mean share of variance kept (over the layers sketched so far)."""
        explained = float(np.mean(list(self._explained.values()))) if self._explained else float("nan")
        return SketchSummary(dim=self.config.dim, d_model=self.full.d_model, explained=explained)


@overload
def sketch_view(store: ActivationStore | SketchedStore, config: SketchConfig) -> ActivationStore | SketchedStore: ...
@overload
def sketch_view(store: None, config: SketchConfig) -> None: ...
@overload
def sketch_view(
    store: ActivationStore | SketchedStore | None, config: SketchConfig
) -> ActivationStore | SketchedStore | None: ...
def sketch_view(
    store: ActivationStore | SketchedStore | None, config: SketchConfig
) -> ActivationStore | SketchedStore | None:
    """`store` as the analysis should read it for choosing cells: a SketchedStore when its states are wider than
    `config.above` (and `config.dim` > 0), else the store itself. A view is returned as it is."""
    if store is None or isinstance(store, SketchedStore) or not config.dim or store.d_model <= config.above:
        return store
    return SketchedStore(store, config)


def full_store(store: ActivationStore | SketchedStore) -> ActivationStore:
    """The store with the full states behind a view (the store itself when it is not a view)."""
    return store.full if isinstance(store, SketchedStore) else store


def exact_reader(
    store: ActivationStore | SketchedStore, read: Callable[[ActivationStore, str, list[int]], np.ndarray]
) -> Callable[[str, int], np.ndarray] | None:
    """For a sketched store, (position, layer) -> the full states [rows, d] there as `read(store, position, layers)`
    reads them (what a cell chosen on the sketch is fitted on); None for a full store."""
    if not isinstance(store, SketchedStore):
        return None
    return lambda position, layer: read(store.full, position, [layer])[:, 0]


def sketch_summary(store: ActivationStore | SketchedStore) -> SketchSummary | None:
    """The view's summary, or None for a full store."""
    return store.summary() if isinstance(store, SketchedStore) else None
