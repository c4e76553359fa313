"""Cross-fitting: every prompt is tested once, by a ridge probe that never saw it.

The rows are dealt to K folds by prompt. For each fold, the cell (position, layer) and the ridge
penalty are chosen by grouped cross-validation inside the other folds' prompts, the probe is fitted
there and predicts the held-out fold. The out-of-fold predictions of all folds together score every
example as test, which is what gives the headline its power; the cells chosen per fold show how
stable the choice is. At each fold's chosen cell, probes trained on permuted ratings (within each
prompt, and across all rows) give the controls' null distributions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from latent_reward.activations.store import ActivationStore
from latent_reward.data.splits import group_folds
from latent_reward.evaluation.controls import global_permutations, within_group_permutations
from latent_reward.evaluation.metrics import pearson
from latent_reward.evaluation.results import Cell
from latent_reward.experiments.targets import Target
from latent_reward.io import progress_bar
from latent_reward.probes import ProbeSettings, fit_ridge_all_layers, ridge_cv_all_layers
from latent_reward.probes.ridge import RidgeCV

# Which cells a selector may choose from: the probe (any layer), or the embeddings only (a baseline).
Selector = Callable[[str, int], bool]
ANY_CELL: Selector = lambda position, layer: True  # noqa: E731
LAYER_ZERO: Selector = lambda position, layer: layer == 0  # noqa: E731


@dataclass
class _Choice:
    score: float = -np.inf
    cell: Cell | None = None
    predictions: np.ndarray | None = None  # for the held-out fold's rows
    states: np.ndarray | None = None  # [n_kept, d] at the chosen cell (for the permutation controls)


@dataclass
class CrossFit:
    """Out-of-fold predictions for every kept row, per selector, and the cell each fold chose."""

    folds: np.ndarray  # fold of each kept row
    groups: np.ndarray  # prompt of each kept row
    predictions: dict[str, np.ndarray]  # selector name -> [n_kept]
    cells: dict[str, list[Cell]]  # selector name -> the cell chosen in each fold
    permuted: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # control -> (targets [P, n], predictions [P, n])


def cross_fit(store: ActivationStore, target: Target, positions: tuple[str, ...], n_folds: int = 5, seed: int = 0,
              settings: ProbeSettings | None = None, selectors: dict[str, Selector] | None = None,
              permutations: int = 0, progress: bool = True, folds: np.ndarray | None = None,
              controls: tuple[str, ...] = ("within", "global")) -> CrossFit:
    """Nested cross-fitting of ridge probes over `positions` x every stored layer (see the module docstring).

    `selectors` name the restricted choices to make besides the best cell (default: just "probe").
    With `permutations` > 0, the "probe" selector's chosen cell is also fitted on that many
    within-prompt and global permutations of the target (those named in `controls`). `folds` (a fold per row) reuses
    another cross-fit's folds, so that two cross-fits compare on the same prompts.
    """
    return cross_fit_arrays(lambda position: target.states(store, position), list(store.layers), target.y, target.groups,
                            positions, n_folds, seed, settings, selectors, permutations, progress, folds, controls)


def cross_fit_arrays(states: Callable[[str], np.ndarray], layers: list[int], y: np.ndarray, groups: np.ndarray,
                     positions: tuple[str, ...], n_folds: int = 5, seed: int = 0, settings: ProbeSettings | None = None,
                     selectors: dict[str, Selector] | None = None, permutations: int = 0, progress: bool = True,
                     folds: np.ndarray | None = None, controls: tuple[str, ...] = ("within", "global")) -> CrossFit:
    """`cross_fit` on any rows: `states(position)` gives x [n, len(layers), d] for the rows of y and groups."""
    settings = settings or ProbeSettings()
    selectors = selectors or {"probe": ANY_CELL}
    if folds is None:
        folds = group_folds(groups, n_folds, seed)
    n_folds = int(folds.max()) + 1
    chosen = {name: [_Choice() for _ in range(n_folds)] for name in selectors}
    bar = progress_bar(len(positions) * n_folds, f"cross-fit ({n_folds} folds)", "fit", progress)
    for position in positions:
        x = states(position)
        for k in range(n_folds):
            train = folds != k
            cv = ridge_cv_all_layers(x[train], y[train], groups[train], settings.alpha_factors)
            cv_r = np.array([pearson(y[train], cv.predictions[index, :, 0]) for index in range(len(layers))])
            for name, allowed in selectors.items():
                _consider(chosen[name][k], x, folds == k, cv_r, cv, position, layers, allowed)
            bar.update(1)
    bar.close()
    result = CrossFit(folds, groups, {}, {})
    for name, choices in chosen.items():
        if any(c.cell is None for c in choices):
            continue
        predictions = np.empty(len(y))
        for k, choice in enumerate(choices):
            predictions[folds == k] = choice.predictions
        result.predictions[name], result.cells[name] = predictions, [c.cell for c in choices]
    if permutations and "probe" in result.cells:
        result.permuted = _permutation_controls(chosen["probe"], y, groups, folds, settings, permutations, seed, controls)
    return result


def _consider(choice: _Choice, x, held, cv_r, cv: RidgeCV, position: str, layers: list[int], allowed: Selector) -> None:
    """Keep this position's best allowed layer for the fold if its inner-CV r beats the fold's choice so far."""
    candidates = [i for i, layer in enumerate(layers) if allowed(position, layer)]
    if not candidates:
        return
    index = max(candidates, key=lambda i: cv_r[i])
    if not cv_r[index] > choice.score:
        return
    choice.score, choice.cell = float(cv_r[index]), Cell(position=position, layer=layers[index])
    choice.predictions = cv.probe(index).predict(x[held, index])
    choice.states = np.array(x[:, index])


def _permutation_controls(choices: list[_Choice], y, groups, folds, settings: ProbeSettings, n: int, seed: int,
                          controls: tuple[str, ...]):
    """Out-of-fold predictions of ridge probes trained on permuted targets at each fold's chosen cell."""
    permute = {"within": lambda: within_group_permutations(y, groups, n, seed + 1), "global": lambda: global_permutations(y, n, seed + 2)}
    out = {}
    for name in controls:
        targets = permute[name]()
        predictions = np.empty_like(targets)
        for k, choice in enumerate(choices):
            train, held = folds != k, folds == k
            probes = fit_ridge_all_layers(choice.states[train][:, None, :], targets[:, train].T, groups[train], settings.alpha_factors)
            for t, row in enumerate(probes):
                predictions[t, held] = row[0].predict(choice.states[held])
        out[name] = (targets, predictions)
    return out
