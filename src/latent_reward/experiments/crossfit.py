"""Cross-fitting: every prompt is tested once, by a ridge probe that never saw it.

The rows are dealt to K folds by prompt. For each fold, the cell (position, layer) and the ridge
penalty are chosen by grouped cross-validation inside the other folds' prompts, the probe is fitted
there and predicts the held-out fold. The out-of-fold predictions of all folds together score every
example as test, which is what gives the headline its power; the cells chosen per fold show how
stable the choice is. At each fold's chosen cell, probes trained on permuted ratings (within each
prompt, and across all rows) give the controls' null distributions.

On a sketched store (states wider than the sketch threshold, `analysis.sketch`) the cells are chosen
on the sketch and every fold's probe is then fitted exactly, on the full states at its chosen cell.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from latent_reward.activations.store import ActivationStore
from latent_reward.analysis.sketch import SketchedStore, exact_reader
from latent_reward.data.splits import group_folds
from latent_reward.evaluation.controls import global_permutations, within_group_permutations
from latent_reward.evaluation.metrics import pearson
from latent_reward.evaluation.results import Cell
from latent_reward.experiments.targets import Target
from latent_reward.io import progress_bar
from latent_reward.probes import ProbeOptions, RidgeProbe, ridge_cv_all_layers

PROBE_KIND = RidgeProbe.kind  # what every fold fits: every penalty from one decomposition per layer (probes/ridge.py)

# The full states [n, d] at one (position, layer), for the exact fit at a cell chosen on a sketch.
ExactStates = Callable[[str, int], np.ndarray]

# Which cells a selector may choose from: the probe (any layer), or the embeddings only (a baseline).
Selector = Callable[[str, int], bool]
ANY_CELL: Selector = lambda position, layer: True  # noqa: E731
LAYER_ZERO: Selector = lambda position, layer: layer == 0  # noqa: E731


@dataclass
class _Choice:
    score: float = -np.inf  # inner-CV r of the cell chosen so far
    cell: Cell | None = None


@dataclass
class CrossFit:
    """Out-of-fold predictions for every kept row, per selector, and the cell each fold chose."""

    folds: np.ndarray  # fold of each kept row
    groups: np.ndarray  # prompt of each kept row
    predictions: dict[str, np.ndarray]  # selector name -> [n_kept]
    cells: dict[str, list[Cell]]  # selector name -> the cell chosen in each fold
    permuted: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # control -> (targets [P, n], predictions [P, n])


def cross_fit(store: ActivationStore | SketchedStore, target: Target, positions: tuple[str, ...], n_folds: int = 5, seed: int = 0,
              settings: ProbeOptions | None = None, selectors: dict[str, Selector] | None = None,
              permutations: int = 0, progress: bool = True, folds: np.ndarray | None = None,
              controls: tuple[str, ...] = ("within", "global")) -> CrossFit:
    """Nested cross-fitting of ridge probes over `positions` x every stored layer (see the module docstring).

    `selectors` name the restricted choices to make besides the best cell (default: just "probe").
    With `permutations` > 0, the "probe" selector's chosen cell is also fitted on that many
    within-prompt and global permutations of the target (those named in `controls`). `folds` (a fold per row) reuses
    another cross-fit's folds, so that two cross-fits compare on the same prompts. A sketched store chooses cells on its
    sketch and fits exactly on the full states.
    """
    exact = exact_reader(store, target.states)
    return cross_fit_arrays(lambda position: target.states(store, position), list(store.layers), target.y, target.groups,
                            positions, n_folds, seed, settings, selectors, permutations, progress, folds, controls, exact)


def cross_fit_arrays(states: Callable[[str], np.ndarray], layers: list[int], y: np.ndarray, groups: np.ndarray,
                     positions: tuple[str, ...], n_folds: int = 5, seed: int = 0, settings: ProbeOptions | None = None,
                     selectors: dict[str, Selector] | None = None, permutations: int = 0, progress: bool = True,
                     folds: np.ndarray | None = None, controls: tuple[str, ...] = ("within", "global"),
                     exact: ExactStates | None = None) -> CrossFit:
    """`cross_fit` on any rows: `states(position)` gives x [n, len(layers), d] for the rows of y and groups. With `exact`,
    those states only choose the cells, and each fold's probe is fitted on `exact(position, layer)` at its cell."""
    alpha_factors = (settings or ProbeOptions()).of(PROBE_KIND).alpha_factors
    selectors = selectors or {"probe": ANY_CELL}
    if folds is None:
        folds = group_folds(groups, n_folds, seed)
    n_folds = int(folds.max()) + 1
    chosen = {name: [_Choice() for _ in range(n_folds)] for name in selectors}
    kept: dict[tuple[str, int], np.ndarray] = {}  # narrow states: the columns of the cells chosen so far
    bar = progress_bar(len(positions) * n_folds, f"cross-fit ({n_folds} folds)", "fit", progress)
    for position in positions:
        x = states(position)
        for k in range(n_folds):
            train = folds != k
            cv = ridge_cv_all_layers(x[train], y[train], groups[train], alpha_factors)
            cv_r = np.array([pearson(y[train], cv.predictions[index, :, 0]) for index in range(len(layers))])
            for name, allowed in selectors.items():
                _consider(chosen[name][k], cv_r, position, layers, allowed)
            bar.update(1)
        if exact is None:
            for choice in (c for choices in chosen.values() for c in choices if c.cell and c.cell.position == position):
                kept.setdefault((position, choice.cell.layer), np.array(x[:, layers.index(choice.cell.layer)]))
    bar.close()
    permuted = _permuted_targets(y, groups, permutations, seed, controls) if permutations and "probe" in selectors else {}
    # wide states (behind a sketch) in float32: half the time of float64, predictions within 3e-5 of it at 10,000 x 4,096
    fitted = _fit_at_cells(chosen, exact or (lambda position, layer: kept[(position, layer)]), y, groups, folds, alpha_factors,
                           permuted, torch.float64 if exact is None else torch.float32)
    result = CrossFit(folds, groups, {}, {})
    for name, choices in chosen.items():
        if any(c.cell is None for c in choices):
            continue
        result.predictions[name], result.cells[name] = fitted[name][0], [c.cell for c in choices]
    if permuted and "probe" in result.cells:
        result.permuted = {control: (targets, fitted["probe"][1 + i * permutations : 1 + (i + 1) * permutations])
                           for i, (control, targets) in enumerate(permuted.items())}
    return result


def _consider(choice: _Choice, cv_r, position: str, layers: list[int], allowed: Selector) -> None:
    """Keep this position's best allowed layer for the fold if its inner-CV r beats the fold's choice so far."""
    candidates = [i for i, layer in enumerate(layers) if allowed(position, layer)]
    if not candidates:
        return
    index = max(candidates, key=lambda i: cv_r[i])
    if cv_r[index] > choice.score:
        choice.score, choice.cell = float(cv_r[index]), Cell(position=position, layer=layers[index])


def _permuted_targets(y, groups, n: int, seed: int, controls: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The shuffled-rating controls' targets, [n, rows] per control: within each prompt, and across all rows."""
    permute = {"within": lambda: within_group_permutations(y, groups, n, seed + 1), "global": lambda: global_permutations(y, n, seed + 2)}
    return {name: permute[name]() for name in controls}


def _fit_at_cells(chosen: dict[str, list[_Choice]], read: ExactStates, y, groups, folds, alpha_factors: tuple[float, ...],
                  permuted: dict[str, np.ndarray], dtype: torch.dtype) -> dict[str, np.ndarray]:
    """Each fold's final probe at the cell it chose (penalty by leave-one-prompt-out CV inside the fold), on the states
    `read` gives (the full states behind a sketch). Out-of-fold predictions per selector, [targets, rows]: the rating,
    then, for "probe", every permuted target, fitted with the rating on one decomposition per fold. One cell's states
    are in memory at a time, and each (cell, fold) is decomposed once for every selector that chose it."""
    extra = np.concatenate(list(permuted.values())) if permuted else np.zeros((0, len(y)))
    out = {name: np.empty((1 + len(extra) if name == "probe" else 1, len(y))) for name in chosen}
    key = lambda choice: (choice.cell.position, choice.cell.layer)  # noqa: E731
    for cell in sorted({key(c) for choices in chosen.values() for c in choices if c.cell is not None}):
        x = read(*cell)
        for k in range(int(folds.max()) + 1):
            names = [name for name, choices in chosen.items() if choices[k].cell is not None and key(choices[k]) == cell]
            if not names:
                continue
            train, held = folds != k, folds == k
            targets = np.vstack([y[None], extra]) if "probe" in names else y[None]
            cv = ridge_cv_all_layers(x[train][:, None], targets[:, train].T, groups[train], alpha_factors, dtype=dtype)
            predicted = cv.predict(0, x[held]).T
            for name in names:
                out[name][:, held] = predicted[: len(out[name])]
    return out
