"""Known answers for analysis/crossfit.py: each fold's cell is the best inner-CV cell of its training prompts, each
fold's out-of-fold predictions are a ridge refitted on that fold's training rows (sklearn's Ridge at the chosen
penalty), no held-out rating reaches its own fold, and `folds=` is used as given."""

import numpy as np
import pytest
from scipy import stats
from sklearn.linear_model import Ridge

from latent_reward.analysis.crossfit import LAYER_ZERO, cross_fit_arrays
from latent_reward.probes import ProbeOptions, RidgeSettings
from latent_reward.probes.ridge import ridge_cv_all_layers

FACTORS = (0.01, 0.1, 1.0, 10.0)
SETTINGS = ProbeOptions({"ridge": RidgeSettings(alpha_factors=FACTORS)})
LAYERS = [0, 3, 5]
POSITIONS = ("start", "end")
# the cross-fit's arithmetic is float32 (crossfit.FIT_DTYPE): here its predictions agree with float64 ones to ~1e-6
AGREE = {"rtol": 1e-4, "atol": 1e-5}


def _data(seed=3, n_groups=30, per=3, d=5):
    """Two positions x three layers; the rating shows, about equally weakly, at start layer 3 and end layer 5, so the
    folds need not agree on the cell."""
    rng = np.random.default_rng(seed)
    groups = np.repeat([f"g{g:02d}" for g in range(n_groups)], per)
    n = len(groups)
    y = rng.normal(size=n)
    states = {
        p: rng.normal(size=(n, len(LAYERS), d)) * rng.uniform(0.5, 3, size=(1, len(LAYERS), d)) for p in POSITIONS
    }
    states["start"][:, 1, 0] += 1.2 * y
    states["end"][:, 2, 1] += 1.2 * y
    return states, y, groups


def _inner_r(states, y, groups, train):  # y: the rating or a permuted rating
    """Each (position, layer index)'s r of its leave-one-prompt-out predictions on the training rows, one layer at a
    time."""
    out = {}
    for position in POSITIONS:
        for index in range(len(LAYERS)):
            cv = ridge_cv_all_layers(states[position][train][:, [index]], y[train], groups[train], FACTORS)
            out[position, index] = stats.pearsonr(y[train], cv.predictions[0, :, 0]).statistic
    return out


def _best_cell(inner_r, allowed=lambda position, layer: True):
    """The allowed cell with the highest inner r (the first position, then the first layer, wins ties)."""
    cells = [cell for cell in inner_r if allowed(cell[0], LAYERS[cell[1]])]
    return max(cells, key=lambda cell: inner_r[cell])


def test_each_fold_is_a_refit_on_its_training_rows_at_its_best_cell():
    states, y, groups = _data()
    result = cross_fit_arrays(
        lambda p: states[p],
        LAYERS,
        y,
        groups,
        POSITIONS,
        n_folds=4,
        seed=1,
        settings=SETTINGS,
        selectors={"probe": lambda p, layer: True, "embeddings": LAYER_ZERO},
        progress=False,
    )
    folds = result.folds
    assert sorted(np.unique(folds)) == [0, 1, 2, 3]
    for k in range(4):
        train, held = folds != k, folds == k
        assert set(groups[train]).isdisjoint(groups[held])
        inner_r = _inner_r(states, y, groups, train)
        for name, allowed in (("probe", lambda p, layer: True), ("embeddings", lambda p, layer: layer == 0)):
            position, index = _best_cell(inner_r, allowed)
            cell = result.cells[name][k]
            assert (cell.position, cell.layer) == (position, LAYERS[index]), (name, k)
            # the refit: the penalty by leave-one-prompt-out CV on the training rows, then sklearn's Ridge on all of
            # them with the features z-scored on the training rows
            x = states[position][:, index]
            factor = ridge_cv_all_layers(x[train][:, None], y[train], groups[train], FACTORS).best_alpha[0, 0]
            mean, scale = x[train].mean(0), x[train].std(0)
            ridge = Ridge(alpha=factor * train.sum()).fit((x[train] - mean) / scale, y[train])
            np.testing.assert_allclose(result.predictions[name][held], ridge.predict((x[held] - mean) / scale), **AGREE)
    # the folds chose more than one cell: the selection, not one fixed cell, is what was checked
    assert len({str(c) for c in result.cells["probe"]}) >= 2
    assert {c.layer for c in result.cells["embeddings"]} == {0}


def test_no_fold_sees_its_own_ratings():
    """Any change to one fold's ratings leaves that fold's out-of-fold predictions exactly as they were."""
    states, y, groups = _data(seed=4)
    before = cross_fit_arrays(
        lambda p: states[p], LAYERS, y, groups, POSITIONS, n_folds=3, seed=0, settings=SETTINGS, progress=False
    )
    held = before.folds == 1
    changed = y.copy()
    changed[held] = np.random.default_rng(9).normal(size=held.sum()) * 10
    after = cross_fit_arrays(
        lambda p: states[p], LAYERS, changed, groups, POSITIONS, n_folds=3, seed=0, settings=SETTINGS, progress=False
    )
    np.testing.assert_array_equal(after.folds, before.folds)
    np.testing.assert_array_equal(after.predictions["probe"][held], before.predictions["probe"][held])
    assert not np.allclose(after.predictions["probe"][~held], before.predictions["probe"][~held])


def test_given_folds_are_used_as_they_are():
    states, y, groups = _data(seed=5)
    prompt = np.array([int(g[1:]) for g in groups])
    folds = (prompt * 7 % 3).astype(np.int64)  # 3 folds, not what group_folds would deal
    result = cross_fit_arrays(
        lambda p: states[p],
        LAYERS,
        y,
        groups,
        POSITIONS,
        n_folds=5,
        seed=0,
        settings=SETTINGS,
        progress=False,
        folds=folds,
    )
    np.testing.assert_array_equal(result.folds, folds)
    assert len(result.cells["probe"]) == 3  # the number of folds comes from `folds`, not n_folds
    for k in range(3):
        train = folds != k
        position, index = _best_cell(_inner_r(states, y, groups, train))
        x = states[position][:, index]
        probe = ridge_cv_all_layers(x[train][:, None], y[train], groups[train], FACTORS).probe(0)
        np.testing.assert_allclose(result.predictions["probe"][folds == k], probe.predict(x[folds == k]), **AGREE)
    # the default folds differ from these, and give different predictions
    default = cross_fit_arrays(
        lambda p: states[p], LAYERS, y, groups, POSITIONS, n_folds=3, seed=0, settings=SETTINGS, progress=False
    )
    assert not np.array_equal(default.folds, folds)
    assert not np.allclose(default.predictions["probe"], result.predictions["probe"])
    # folds that split a prompt would let its other rows train the fold that tests it: refused
    split = folds.copy()
    split[np.flatnonzero(groups == groups[0])[0]] = (folds[0] + 1) % 3
    with pytest.raises(ValueError, match="split a prompt"):
        cross_fit_arrays(
            lambda p: states[p], LAYERS, y, groups, POSITIONS, settings=SETTINGS, progress=False, folds=split
        )


def test_each_permutation_control_chooses_its_own_cell_and_refits_there():
    """A shuffled-rating control repeats the whole procedure: in each fold the permuted ratings choose their own best
    inner-CV cell (not the probe's) and the probe is refitted there on the permuted training ratings."""
    states, y, groups = _data(seed=6, n_groups=20)
    result = cross_fit_arrays(
        lambda p: states[p],
        LAYERS,
        y,
        groups,
        POSITIONS,
        n_folds=3,
        seed=2,
        settings=SETTINGS,
        progress=False,
        permutations=4,
    )
    targets, predictions = result.permuted["within"]
    assert targets.shape == predictions.shape == (4, len(y))
    own_cells = 0
    for t in range(4):
        for g in np.unique(groups):
            assert sorted(targets[t, groups == g]) == pytest.approx(sorted(y[groups == g]))
        for k in range(3):
            train, held = result.folds != k, result.folds == k
            position, index = _best_cell(_inner_r(states, targets[t], groups, train))
            probe_cell = result.cells["probe"][k]
            own_cells += (position, LAYERS[index]) != (probe_cell.position, probe_cell.layer)
            x = states[position][:, index]
            probe = ridge_cv_all_layers(x[train][:, None], targets[t, train], groups[train], FACTORS).probe(0)
            np.testing.assert_allclose(predictions[t, held], probe.predict(x[held]), **AGREE)
    assert own_cells > 0  # some permutation chose another cell than the probe: the choice was redone, not reused
    global_targets, _ = result.permuted["global"]
    assert sorted(global_targets[0]) == pytest.approx(sorted(y)) and not np.array_equal(global_targets[0], y)


def test_a_cell_without_variation_is_never_chosen_for_its_rounding_noise():
    """States identical in every row (a token's embedding at layer 0), centered per prompt: all zeros. The float32
    inner cross-validation's predictions there are rounding noise correlated with the target; they count as constant
    (inner r undefined), so every fold chooses the layer that carries a weak signal, as float64 arithmetic would."""
    rng = np.random.default_rng(0)
    groups = np.repeat([f"g{i:03d}" for i in range(150)], 2)
    signal = rng.normal(size=len(groups))
    y = signal + 1.5 * rng.normal(size=len(groups))
    y -= np.repeat(y.reshape(-1, 2).mean(axis=1), 2)  # the within-prompt target
    states = np.zeros((len(groups), 2, 8), dtype=np.float32)
    states[:, 1] = rng.normal(size=(len(groups), 8))
    states[:, 1, 0] += signal
    states[:, 1] -= np.repeat(states[:, 1].reshape(-1, 2, 8).mean(axis=1), 2, axis=0)
    result = cross_fit_arrays(lambda p: states, [0, 1], y, groups, ("eot",), n_folds=5, seed=0, progress=False)
    assert {cell.layer for cell in result.cells["probe"]} == {1}


def test_a_cell_without_variation_is_not_chosen_when_every_real_cell_scores_below_zero():
    """A cell whose states do not vary predicts a constant (inner r undefined, not 0): on a target the states do not
    predict, where the real cell's inner r is negative in some folds, it still is the one chosen, so no fold reports
    an intercept-only fit as a layer."""
    rng = np.random.default_rng(3)
    groups = np.repeat([f"g{i:03d}" for i in range(60)], 2)
    y = rng.normal(size=len(groups))
    y -= np.repeat(y.reshape(-1, 2).mean(axis=1), 2)
    states = np.zeros((len(groups), 2, 8), dtype=np.float32)
    states[:, 1] = rng.normal(size=(len(groups), 8))
    states[:, 1] -= np.repeat(states[:, 1].reshape(-1, 2, 8).mean(axis=1), 2, axis=0)
    result = cross_fit_arrays(lambda p: states, [0, 1], y, groups, ("eot",), n_folds=10, seed=0, progress=False)
    assert {cell.layer for cell in result.cells["probe"]} == {1}


@pytest.mark.parametrize("per_prompt", [3, 4])
def test_a_cell_without_variation_is_not_chosen_with_more_than_two_responses_per_prompt(per_prompt):
    """With 3 or more responses per prompt the centered target's leave-one-out means are rounding noise (not exact
    zeros as with pairs): they still count as constant predictions, and the real cell is chosen in every fold."""
    rng = np.random.default_rng(4)
    groups = np.repeat([f"g{i:03d}" for i in range(40)], per_prompt)
    y = rng.normal(size=len(groups))
    y -= np.repeat(y.reshape(-1, per_prompt).mean(axis=1), per_prompt)
    states = np.zeros((len(groups), 2, 8), dtype=np.float32)
    states[:, 1] = rng.normal(size=(len(groups), 8))
    states[:, 1] -= np.repeat(states[:, 1].reshape(-1, per_prompt, 8).mean(axis=1), per_prompt, axis=0)
    result = cross_fit_arrays(lambda p: states, [0, 1], y, groups, ("eot",), n_folds=10, seed=0, progress=False)
    assert {cell.layer for cell in result.cells["probe"]} == {1}


def test_states_that_vary_nowhere_are_a_clear_user_error():
    """Every cell constant (a template token's embedding, centered per prompt): no probe can be fitted, and the
    cross-fit says so in one line instead of reporting an intercept-only fit as a layer."""
    from latent_reward.errors import UserError

    groups = np.repeat([f"g{i:03d}" for i in range(30)], 2)
    y = np.random.default_rng(5).normal(size=len(groups))
    states = np.zeros((len(groups), 1, 4), dtype=np.float32)
    with pytest.raises(UserError, match="no layer at assistant_start varies"):
        cross_fit_arrays(lambda p: states, [0], y, groups, ("assistant_start",), n_folds=5, seed=0, progress=False)


def test_a_cell_without_variation_is_not_chosen_on_the_uncentered_rating_either():
    """On the rating itself a constant cell's inner predictions are the other prompts' means, which vary (and
    correlate negatively with the rating): the states, not the predictions, show it is an intercept-only fit, and it
    is never chosen, even where the real cell's states carry nothing."""
    rng = np.random.default_rng(6)
    groups = np.repeat([f"g{i:03d}" for i in range(12)], 2)
    y = rng.normal(size=len(groups))
    states = np.zeros((len(groups), 2, 30), dtype=np.float32)
    states[:, 0] = 0.25  # a token's embedding: the same in every row
    states[:, 1] = rng.normal(size=(len(groups), 30))
    result = cross_fit_arrays(lambda p: states, [0, 1], y, groups, ("eot",), n_folds=6, seed=0, progress=False)
    assert {cell.layer for cell in result.cells["probe"]} == {1}
