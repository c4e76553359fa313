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

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch

from latent_reward.activations.store import ActivationStore
from latent_reward.analysis.sketch import SketchedStore, exact_reader
from latent_reward.analysis.targets import Target
from latent_reward.data.splits import group_folds
from latent_reward.errors import UserError
from latent_reward.evaluation.controls import global_permutations, within_group_permutations
from latent_reward.evaluation.results import Cell
from latent_reward.heap import reuses_freed_memory
from latent_reward.io import progress_bar
from latent_reward.probes import ProbeOptions, RidgeProbe
from latent_reward.probes.base import CONSTANT_STD
from latent_reward.probes.ridge import RidgeCV, ridge_cv_folds

PROBE_KIND = RidgeProbe.kind  # what every fold fits: every penalty from one decomposition per layer (probes/ridge.py)
# The fits' arithmetic: float32 takes about half of float64's time (decomposition, hat blocks, the shuffled targets'
# residuals). Its out-of-fold predictions differ from float64's by 1e-6 to 1e-4 of their spread (more on strongly
# correlated features), so where two cells or penalties nearly tie, the choice can differ from float64's.
FIT_DTYPE = torch.float32

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
    permuted: dict[str, tuple[np.ndarray, np.ndarray]] = field(
        default_factory=dict
    )  # control -> (targets [P, n], predictions [P, n])


def cross_fit(
    store: ActivationStore | SketchedStore,
    target: Target,
    positions: tuple[str, ...],
    n_folds: int = 5,
    seed: int = 0,
    settings: ProbeOptions | None = None,
    selectors: dict[str, Selector] | None = None,
    permutations: int = 0,
    progress: bool = True,
    folds: np.ndarray | None = None,
    controls: tuple[str, ...] = ("within", "global"),
    reselect_wide: bool = False,
) -> CrossFit:
    """Nested cross-fitting of ridge probes over `positions` x every stored layer (see the module docstring).

    `selectors` name the restricted choices to make besides the best cell (default: just "probe").
    With `permutations` > 0, the "probe" selector's chosen cell is also fitted on that many
    within-prompt and global permutations of the target (those named in `controls`). `folds` (a fold per row) reuses
    another cross-fit's folds, so that two cross-fits compare on the same prompts. A sketched store chooses cells on its
    sketch and fits exactly on the full states.
    """
    exact = exact_reader(store, target.states)
    return cross_fit_arrays(
        lambda position: target.states(store, position),
        list(store.layers),
        target.y,
        target.groups,
        positions,
        n_folds,
        seed,
        settings,
        selectors,
        permutations,
        progress,
        folds,
        controls,
        exact,
        reselect_wide,
    )


@reuses_freed_memory
def cross_fit_arrays(
    states: Callable[[str], np.ndarray],
    layers: list[int],
    y: np.ndarray,
    groups: np.ndarray,
    positions: tuple[str, ...],
    n_folds: int = 5,
    seed: int = 0,
    settings: ProbeOptions | None = None,
    selectors: dict[str, Selector] | None = None,
    permutations: int = 0,
    progress: bool = True,
    folds: np.ndarray | None = None,
    controls: tuple[str, ...] = ("within", "global"),
    exact: ExactStates | None = None,
    reselect_wide: bool = False,
) -> CrossFit:
    """`cross_fit` on any rows: `states(position)` gives x [n, len(layers), d] for the rows of y and groups. With
    `exact`,
    those states only choose the cells, and each fold's probe is fitted on `exact(position, layer)` at its cell.

    Each permuted target (the shuffled-rating controls) chooses its own cell in each fold, by the same inner
    cross-validation on the same states as the probe, and is fitted there: the control repeats the whole procedure,
    selection included, on ratings that carry no signal. All targets share each (position, fold)'s decomposition.
    Behind a sketch (`exact` given) each re-chosen cell costs one exact fit per fold (about 10 s at 8,000 x 4,096 on 2
    CPU cores), so there the controls are fitted at each fold's probe cell unless `reselect_wide` is set.
    """
    alpha_factors = (settings or ProbeOptions()).of(PROBE_KIND).alpha_factors
    selectors = selectors or {"probe": ANY_CELL}
    if folds is None:
        folds = group_folds(groups, n_folds, seed)
    elif _splits_a_prompt(groups, folds):
        raise ValueError("the folds split a prompt: each prompt's rows must all be in one fold")
    n_folds = int(folds.max()) + 1
    permuted = (
        _permuted_targets(y, groups, permutations, seed, controls) if permutations and "probe" in selectors else {}
    )
    targets = np.vstack([y[None], *permuted.values()])  # [1 + permuted, n]: the rating first
    # the choices: one per selector (on the rating) and one per permuted target, in each fold
    chosen = {name: [_Choice() for _ in range(n_folds)] for name in selectors}
    chosen.update({_null(t): [_Choice() for _ in range(n_folds)] for t in range(1, len(targets))})
    reselect = exact is None or reselect_wide
    allowed = {**selectors, **{_null(t): ANY_CELL for t in range(1, len(targets))}}
    choosing = targets if reselect else targets[:1]  # the targets that choose cells: every one, or the rating only
    column = {name: 0 if name in selectors else int(name[1:]) for name in chosen}
    # narrow states: each fold's final fit at a cell is the one the inner cross-validation made there (same rows, same
    # standardisation, same penalty grid), so its held-out predictions are kept as the choice improves
    kept = {name: np.empty(len(y)) for name in chosen} if exact is None else None
    bar = progress_bar(len(positions) * n_folds, f"cross-fit ({n_folds} folds)", "fit", progress)
    for position in positions:
        x = states(position)
        varies = _varying_layers(x, folds, n_folds)
        for k, index, j, cv in _inner_cv(x, choosing, groups, folds, alpha_factors):
            train, held = folds != k, folds == k
            cv_r = _columnwise_r(choosing[:, train].T, cv.predictions[j])  # [choosing targets]
            improved = [
                name
                for name, choices in chosen.items()
                if varies[k, index]
                and column[name] < len(choosing)
                and allowed[name](position, layers[index])
                and cv_r[column[name]] > choices[k].score
            ]
            if not improved:
                continue
            for name in improved:
                chosen[name][k] = _Choice(float(cv_r[column[name]]), Cell(position=position, layer=layers[index]))
            if kept is not None:
                predicted = cv.predict(j, x[held][:, index])  # [held, targets]
                for name in improved:
                    kept[name][held] = predicted[:, column[name]]
        bar.update(n_folds)
    bar.close()
    if not reselect and "probe" in chosen:  # the controls at each fold's probe cell
        chosen.update({name: list(chosen["probe"]) for name in chosen if name not in selectors})
    if kept is None:  # wide states (behind a sketch)
        if exact is None:
            raise RuntimeError("the cross-fit kept no predictions and has no exact states to fit on")
        kept = _fit_at_cells(chosen, column, exact, targets, groups, folds, alpha_factors)
    if "probe" in chosen and any(c.cell is None for c in chosen["probe"]):
        raise UserError(
            f"no layer at {', '.join(positions)} varies across a fold's training rows, so there is nothing to fit a "
            "probe on: choose other --positions or --layers"
        )
    result = CrossFit(folds, groups, {}, {})
    for name in selectors:
        cells = [c.cell for c in chosen[name] if c.cell is not None]
        if len(cells) == len(chosen[name]):
            result.predictions[name], result.cells[name] = kept[name], cells
    if permuted and "probe" in result.cells:
        for i, (control, control_targets) in enumerate(permuted.items()):
            first = 1 + i * permutations
            result.permuted[control] = (
                control_targets,
                np.stack([kept[_null(t)] for t in range(first, first + permutations)]),
            )
    return result


_CV_BYTES = (
    2**29
)  # memory for one inner cross-validation's leave-one-prompt-out residuals [layers, penalties, n, targets]


def _inner_cv(
    x: np.ndarray, targets: np.ndarray, groups, folds: np.ndarray, alpha_factors
) -> Iterator[tuple[int, int, int, RidgeCV]]:
    """The leave-one-prompt-out ridge CV, on each fold's training rows, of every target [T, n] at each layer of
    x [n, L, d]: (fold, layer index, its index in the fit, the fit). Layers go in chunks, each chunk's Gram matrix
    serving every fold and each fold's decomposition every target (`ridge_cv_folds`), the targets in passes whose
    residuals fit `_CV_BYTES`; for one fold the layers come in order."""
    per_layer = len(alpha_factors) * targets.shape[1] * len(targets) * 8
    layers_per_fit = int(np.clip(_CV_BYTES // per_layer, 1, 8))
    per_pass = max(1, _CV_BYTES // (len(alpha_factors) * targets.shape[1] * 8))
    for first in range(0, x.shape[1], layers_per_fit):
        part = x[:, first : first + layers_per_fit]
        fits = ridge_cv_folds(part, targets.T, groups, folds, alpha_factors, dtype=FIT_DTYPE, targets_per_pass=per_pass)
        for k, cv in enumerate(fits):
            for j in range(part.shape[1]):
                yield k, first + j, j, cv


def _splits_a_prompt(groups: np.ndarray, folds: np.ndarray) -> bool:
    """Whether some prompt has rows in more than one fold."""
    _, prompt = np.unique(groups, return_inverse=True)
    return len(set(zip(prompt.tolist(), np.asarray(folds).tolist(), strict=True))) > len(set(prompt.tolist()))


def _varying_layers(x: np.ndarray, folds: np.ndarray, n_folds: int) -> np.ndarray:
    """[folds, layers]: whether some feature of the layer (x [n, L, d]) varies across the fold's training rows by more
    than the ridge leaves unscaled (a standard deviation of `CONSTANT_STD` at most, so a range of twice that): a layer
    that does not is an intercept-only fit, whatever its inner r, and is never chosen. From each fold's minimum and
    maximum: one pass over x."""
    low = np.stack([x[folds == k].min(axis=0) for k in range(n_folds)])  # [K, L, d]
    high = np.stack([x[folds == k].max(axis=0) for k in range(n_folds)])
    varies = np.empty((n_folds, x.shape[1]), dtype=bool)
    for k in range(n_folds):
        others = np.arange(n_folds) != k
        varies[k] = ((high[others].max(axis=0) - low[others].min(axis=0)) > 2 * CONSTANT_STD).any(axis=-1)
    return varies


def _columnwise_r(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Pearson r of each column of p [n, T] with the same column of y [n, T]; NaN where either side does not vary
    (NaN compares below every score, so such a fit is never chosen). A spread of p below `_CONSTANT` of y's counts as
    none: a fit on states the ridge leaves unscaled predicts the leave-one-out means, which on a per-prompt centered
    target are zero up to rounding (about 1e-10 of its spread with 3 or more responses per prompt)."""
    yc, pc = y - y.mean(axis=0), p - p.mean(axis=0)
    y_norm, p_norm = np.sqrt((yc**2).sum(axis=0)), np.sqrt((pc**2).sum(axis=0))
    defined = (y_norm > 0) & (p_norm > _CONSTANT * y_norm)
    return np.divide((yc * pc).sum(axis=0), y_norm * p_norm, out=np.full(y.shape[1], np.nan), where=defined)


# A relative spread of the inner predictions below which they count as constant: rounding leaves about 1e-10; the
# largest penalty factor (1,000) shrinks a unit-variance direction's fit by about 1/1,000, far above this.
_CONSTANT = 1e-6


def _null(t: int) -> str:
    """The name of permuted target t's choice (t >= 1; column 0 is the rating)."""
    return f"#{t}"


def _permuted_targets(y, groups, n: int, seed: int, controls: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The shuffled-rating controls' targets, [n, rows] per control: within each prompt, and across all rows."""
    permute = {
        "within": lambda: within_group_permutations(y, groups, n, seed + 1),
        "global": lambda: global_permutations(y, n, seed + 2),
    }
    return {name: permute[name]() for name in controls}


def _fit_at_cells(
    chosen: dict[str, list[_Choice]],
    column: dict[str, int],
    read: ExactStates,
    targets: np.ndarray,
    groups,
    folds,
    alpha_factors: tuple[float, ...],
) -> dict[str, np.ndarray]:
    """Each fold's final probe at the cell each choice made (penalty by leave-one-prompt-out CV inside the fold), on the
    states `read` gives (the full states behind a sketch): out-of-fold predictions [rows] per choice. One cell's states
    are in memory at a time; the folds that chose a cell share its Gram matrix (`ridge_cv_folds`), and each (cell,
    fold) is decomposed once for every target whose choice landed at that cell in some fold."""
    out = {name: np.empty(targets.shape[1]) for name in chosen}
    for cell in sorted({(c.cell.position, c.cell.layer) for choices in chosen.values() for c in choices if c.cell}):
        names_in = {
            k: [
                name
                for name, choices in chosen.items()
                if (at := choices[k].cell) is not None and (at.position, at.layer) == cell
            ]
            for k in range(int(folds.max()) + 1)
        }
        fold_ids = [k for k, names in names_in.items() if names]
        columns = sorted({column[name] for k in fold_ids for name in names_in[k]})
        x = read(*cell)
        fits = ridge_cv_folds(
            x[:, None], targets[columns].T, groups, folds, alpha_factors, dtype=FIT_DTYPE, fold_ids=fold_ids
        )
        for k, cv in zip(fold_ids, fits, strict=True):
            held = folds == k
            predicted = cv.predict(0, x[held])
            for name in names_in[k]:
                out[name][held] = predicted[:, columns.index(column[name])]
    return out
