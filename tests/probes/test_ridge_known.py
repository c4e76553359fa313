"""Known answers for probes/ridge.py's batched leave-one-prompt-out ridge: several targets and more layers than one
chunk, each (layer, target) against its own sklearn fit; and a pinned small case with today's exact numbers."""

import functools

import numpy as np
import pytest
import torch
from sklearn.linear_model import Ridge
from sklearn.model_selection import LeaveOneGroupOut, cross_val_predict

from latent_reward.probes import ridge
from latent_reward.probes.ridge import ridge_cv_all_layers, ridge_cv_folds

FACTORS = (1e-3, 0.03, 0.3, 3.0, 30.0)


def _layers_and_targets(n_layers=10, n_groups=14, seed=0):
    """x [n, L, d] with layer-dependent signal and scales (one layer with a constant feature), y [n, 3]: targets
    read from different layers at different noise levels, so the chosen penalties differ across cells."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(2, 6, size=n_groups)  # unequal prompt sizes
    groups = np.repeat([f"q{(5 * g) % n_groups:02d}" for g in range(n_groups)], sizes)
    n, d = len(groups), 6
    x = rng.normal(size=(n, n_layers, d)) * rng.uniform(0.2, 20, size=(1, n_layers, d))
    x[:, 3, 2] = 7.0  # constant: standardized with scale 1
    z = (x - x.mean(0)) / np.where(x.std(0) > 1e-8, x.std(0), 1.0)
    y = np.column_stack(
        [
            z[:, -1] @ rng.normal(size=d) + 0.2 * rng.normal(size=n),
            z[:, 1, 0] + 2.0 * rng.normal(size=n),
            rng.normal(size=n) + 5.0,
        ]
    )
    return x, y, groups, z


@functools.cache
def _sklearn_held_out() -> np.ndarray:
    """sklearn's leave-one-prompt-out predictions [layers, penalties, n, targets] for _layers_and_targets(): per layer
    one cross_val_predict of a Ridge that takes each (penalty, target) column with its own penalty (computed once, for
    both chunk sizes)."""
    x, y, groups, z = _layers_and_targets()
    n, n_layers, _ = x.shape
    columns = np.tile(y, len(FACTORS))  # [n, A * T], penalty-major
    alphas = np.repeat(np.asarray(FACTORS) * n, y.shape[1])
    held = [
        cross_val_predict(Ridge(alpha=alphas), z[:, layer], columns, groups=groups, cv=LeaveOneGroupOut())
        for layer in range(n_layers)
    ]
    return np.stack(held).reshape(n_layers, n, len(FACTORS), y.shape[1]).transpose(0, 2, 1, 3)


@pytest.mark.parametrize(
    "layer_chunk,tile_bytes,products_below",
    [(8, None, None), (3, None, None), (8, 1, None), (8, 3600, None), (8, None, 2), (8, 1, 4), (8, 3600, 4)],
)
def test_every_layer_and_target_equals_its_own_sklearn_leave_one_prompt_out_fit(
    layer_chunk, tile_bytes, products_below, monkeypatch
):
    """Prompts of 2 to 5 rows and 3 targets: the few-target systems are solved (4 or 5 rows), the others inverted (2
    or 3); with tile_bytes 1 each hat block is formed one prompt at a time, with 3,600 in tiles of 3 to 18 prompts (by
    prompt size) and a shorter last tile. `products_below` 2: every hat block from scaled copies of Q_G^T (the large
    prompts' form), 4: prompts of 2 and 3 rows from pairwise products, of 4 and 5 from scaled copies."""
    if tile_bytes is not None:
        monkeypatch.setattr(ridge, "_TILE_BYTES", tile_bytes)
        monkeypatch.setattr(ridge, "_SCALED_TILE_BYTES", tile_bytes)
    if products_below is not None:
        monkeypatch.setattr(ridge, "_PRODUCTS_BELOW", products_below)
    x, y, groups, z = _layers_and_targets()
    n, n_layers, _ = x.shape
    cv = ridge_cv_all_layers(x, y, groups, alpha_factors=FACTORS, layer_chunk=layer_chunk)
    assert cv.best_alpha.shape == (n_layers, 3) and cv.predictions.shape == (n_layers, n, 3)
    assert cv.mse.shape == (n_layers, len(FACTORS), 3) and len(cv.weights) == n_layers
    np.testing.assert_allclose(cv.mean, x.mean(0), rtol=1e-12)
    np.testing.assert_allclose(cv.scale, np.where(x.std(0) > 1e-8, x.std(0), 1.0), rtol=1e-12)
    np.testing.assert_allclose(cv.intercept, y.mean(0), rtol=1e-12)
    for layer in range(n_layers):
        held = _sklearn_held_out()[layer]  # [A, n, T]
        mse = ((held - y[None]) ** 2).mean(axis=1)  # [A, T]
        np.testing.assert_allclose(cv.mse[layer], mse, rtol=1e-8)
        for t in range(3):
            chosen = int(mse[:, t].argmin())
            assert cv.best_alpha[layer, t] == FACTORS[chosen], (layer, t)
            np.testing.assert_allclose(cv.predictions[layer, :, t], held[chosen, :, t], rtol=1e-8, atol=1e-10)
            final = Ridge(alpha=FACTORS[chosen] * n).fit(z[:, layer], y[:, t])
            np.testing.assert_allclose(cv.weights[layer][:, t], final.coef_, rtol=1e-8, atol=1e-10)
            assert cv.intercept[t] == pytest.approx(final.intercept_, abs=1e-10)
            probe = cv.probe(layer, t)
            np.testing.assert_allclose(probe.predict(x[:, layer]), final.predict(z[:, layer]), rtol=1e-8, atol=1e-10)
    # the cells really differ: a test of the (layer, target) -> penalty bookkeeping, not of one repeated value
    assert len(np.unique(cv.best_alpha)) >= 3
    assert len(np.unique(cv.best_alpha[9])) >= 2 and len(np.unique(cv.best_alpha[:, 0])) >= 2


def test_chunked_and_unchunked_layers_agree_and_a_one_dimensional_target_is_one_column():
    x, y, groups, _ = _layers_and_targets(n_layers=9, seed=1)
    whole = ridge_cv_all_layers(x, y, groups, alpha_factors=FACTORS, layer_chunk=100)
    for chunk in (2, 8):
        part = ridge_cv_all_layers(x, y, groups, alpha_factors=FACTORS, layer_chunk=chunk)
        np.testing.assert_array_equal(part.best_alpha, whole.best_alpha)
        np.testing.assert_allclose(part.predictions, whole.predictions, rtol=1e-10, atol=1e-12)
    single = ridge_cv_all_layers(x, y[:, 1], groups, alpha_factors=FACTORS)
    np.testing.assert_array_equal(single.best_alpha[:, 0], whole.best_alpha[:, 1])
    np.testing.assert_allclose(single.predictions[..., 0], whole.predictions[..., 1], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("offset", [0.0, 1e3])
def test_fold_fits_from_one_gram_matrix_equal_fits_on_each_folds_rows(offset):
    """ridge_cv_folds (the whole rows' Gram matrix minus each fold's held rows') gives each fold what
    ridge_cv_all_layers gives on that fold's training rows: the same penalties, predictions, weights and z-scoring,
    also for states far from zero (an offset 1,000 times their spread) and a constant feature."""
    x, y, groups, _ = _layers_and_targets(n_layers=4, n_groups=40, seed=2)
    x = x + offset
    _, prompt = np.unique(groups, return_inverse=True)
    folds = prompt % 4
    shared = list(ridge_cv_folds(x, y, groups, folds, alpha_factors=FACTORS))
    assert len(shared) == 4
    for k, cv in enumerate(shared):
        train = folds != k
        own = ridge_cv_all_layers(x[train], y[train], groups[train], alpha_factors=FACTORS)
        np.testing.assert_array_equal(cv.best_alpha, own.best_alpha)
        np.testing.assert_allclose(cv.mse, own.mse, rtol=1e-8)
        np.testing.assert_allclose(cv.predictions, own.predictions, rtol=1e-8, atol=1e-9)
        np.testing.assert_allclose(cv.mean, own.mean, rtol=1e-10)
        np.testing.assert_allclose(cv.scale, own.scale, rtol=1e-8)
        for layer in range(4):
            np.testing.assert_allclose(cv.weights[layer], own.weights[layer], rtol=1e-8, atol=1e-9)
            np.testing.assert_allclose(
                cv.predict(layer, x[~train, layer]), own.predict(layer, x[~train, layer]), rtol=1e-8, atol=1e-9
            )


def test_fold_fits_in_float32_agree_with_float64_also_for_a_constant_feature_far_from_zero():
    """float32 arithmetic (what the cross-fit uses) against float64 per fold: a constant feature keeps scale 1 and the
    held-out predictions agree to float32 precision, with every state offset 1,000 spreads from zero; the targets
    in passes of 2 equal one pass."""
    x, y, groups, _ = _layers_and_targets(n_layers=4, n_groups=40, seed=4)
    x = x + 1e3 * x.std(axis=0, keepdims=True)
    x[:, 1, 0] = 0.1  # constant, not exactly representable in float32
    folds = np.unique(groups, return_inverse=True)[1] % 4
    for k, (single, passes) in enumerate(
        zip(
            ridge_cv_folds(x, y, groups, folds, alpha_factors=FACTORS, dtype=torch.float32),
            ridge_cv_folds(x, y, groups, folds, alpha_factors=FACTORS, dtype=torch.float32, targets_per_pass=2),
            strict=True,
        )
    ):
        train = folds != k
        own = ridge_cv_all_layers(x[train], y[train], groups[train], alpha_factors=FACTORS)
        assert single.scale[1, 0] == 1.0
        for layer in range(4):
            spread = np.std(own.predict(layer, x[~train, layer]), axis=0)
            np.testing.assert_allclose(
                single.predict(layer, x[~train, layer]), own.predict(layer, x[~train, layer]), atol=1e-4 * spread.max()
            )
        np.testing.assert_array_equal(passes.best_alpha, single.best_alpha)
        np.testing.assert_allclose(passes.predictions, single.predictions, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("fold_ids", [[3, 1], [2]])
def test_chosen_folds_alone_equal_those_folds_of_a_fit_of_every_fold(fold_ids):
    """`fold_ids` fits only those folds, in that order (two share the Gram matrix, one decomposes its own rows), each
    equal to the same fold of a fit of every fold."""
    x, y, groups, _ = _layers_and_targets(n_layers=4, n_groups=40, seed=5)
    folds = np.unique(groups, return_inverse=True)[1] % 4
    every = list(ridge_cv_folds(x, y, groups, folds, alpha_factors=FACTORS))
    chosen = list(ridge_cv_folds(x, y, groups, folds, alpha_factors=FACTORS, fold_ids=fold_ids))
    assert len(chosen) == len(fold_ids)
    for k, cv in zip(fold_ids, chosen, strict=True):
        np.testing.assert_array_equal(cv.best_alpha, every[k].best_alpha)
        np.testing.assert_allclose(cv.predictions, every[k].predictions, rtol=1e-8, atol=1e-9)
        np.testing.assert_allclose(cv.predict(1, x[folds == k, 1]), every[k].predict(1, x[folds == k, 1]), rtol=1e-8)
    for wrong in ([1, 1], [4]):  # a fold twice, a fold that does not exist
        with pytest.raises(ValueError, match="fold_ids"):
            next(ridge_cv_folds(x, y, groups, folds, alpha_factors=FACTORS, fold_ids=wrong))


@pytest.mark.parametrize("within", [False, True])
def test_states_without_variation_predict_the_leave_one_out_mean_also_in_float32(within):
    """At a layer whose states are identical in every row (a token's embedding at layer 0; zeros once centered per
    prompt) each prompt's leave-one-out prediction is the other rows' mean rating, in float32 as in float64: no
    rounding noise correlated with the rating (which, scored by r, once won the cross-fit's choice of cell): float32
    differs by the rounding of the ratings' prompt sums (under 1e-9 here), where y minus a residual differed by 4e-7."""
    rng = np.random.default_rng(6)
    groups = np.repeat([f"g{i:03d}" for i in range(60)], 3)
    y = rng.normal(size=len(groups)) * 2.0 + 1.0
    if within:
        y -= np.repeat(y.reshape(-1, 3).mean(axis=1), 3)
    x = np.zeros((len(groups), 2, 5), dtype=np.float32)
    x[:, 1] = rng.normal(size=(len(groups), 5))
    left_out = (y.sum() - np.repeat(y.reshape(-1, 3).sum(axis=1), 3)) / (len(y) - 3)  # the other prompts' mean
    for dtype in (torch.float64, torch.float32):
        cv = ridge_cv_all_layers(x, y, groups, alpha_factors=FACTORS, dtype=dtype)
        np.testing.assert_allclose(cv.predictions[0, :, 0], left_out, rtol=1e-6, atol=1e-8)


def test_fold_fits_with_fewer_rows_than_features_are_each_folds_own():
    x, y, groups, _ = _layers_and_targets(n_layers=4, n_groups=6, seed=3)
    x = np.concatenate([x, x**2, np.abs(x) ** 0.5, np.cos(x)], axis=2)  # 24 features
    folds = np.unique(groups, return_inverse=True)[1] % 3
    assert all(np.sum(folds != k) < x.shape[2] for k in range(3))  # every fold has fewer training rows
    for k, cv in enumerate(ridge_cv_folds(x, y, groups, folds, alpha_factors=FACTORS)):  # a generator
        train = folds != k
        own = ridge_cv_all_layers(x[train], y[train], groups[train], alpha_factors=FACTORS)
        np.testing.assert_allclose(cv.predictions, own.predictions, rtol=1e-7, atol=1e-7)


def _pinned_data(d, seed):
    """n = 60 rows in 12 prompts of 5, 3 layers of d features; target 0 reads layer 1, target 1 one feature of layer
    2."""
    rng = np.random.default_rng(seed)
    n, layers = 60, 3
    groups = np.repeat(np.arange(12), 5).astype(str)
    x = rng.normal(size=(n, layers, d)) * rng.uniform(0.5, 5, size=(1, layers, d))
    w = rng.normal(size=d)
    signal = x[:, 1] @ w / np.sqrt(d)
    y = np.column_stack([signal + 0.5 * rng.normal(size=n), rng.normal(size=n) + 0.3 * x[:, 2, 0]])
    return x, y, groups


# Today's answers (default alpha factors 1e-3 ... 1e3), written down so that a new solver must reproduce them:
# the chosen alpha factor [layer][target] and the first four rows' leave-one-prompt-out predictions
# [layer][row][target].
PINNED = {
    5: (
        [[1.0, 1000.0], [0.03162277660168379, 1.0], [3.1622776601683795, 0.001]],
        [
            [
                [-0.45023464, -0.25338834],
                [-0.4086898, -0.25255497],
                [-0.75258106, -0.25296687],
                [-0.39625837, -0.25323451],
            ],
            [
                [-1.44183158, -0.13495753],
                [0.55204, -0.62854008],
                [-1.32599176, -0.39085049],
                [-0.83283956, -0.62957027],
            ],
            [
                [-0.5003452, -1.31128254],
                [-0.23131565, 0.55921606],
                [-0.46520742, -2.12096497],
                [-0.19210402, -0.70127653],
            ],
        ],
    ),
    80: (
        [[1000.0, 1000.0], [0.001, 10.0], [10.0, 0.1]],  # d > n: the dual form
        [
            [
                [0.67529187, -0.18914017],
                [0.67555537, -0.18843761],
                [0.67802034, -0.18601442],
                [0.67477086, -0.18927182],
            ],
            [
                [-1.62101046, -0.15939765],
                [-1.67905815, -0.25272642],
                [-3.16225021, -0.12451605],
                [3.57617716, -0.32619397],
            ],
            [[0.69148289, -0.54930717], [1.12977879, -0.13073786], [0.08419469, 0.76614914], [0.87954999, 0.10591153]],
        ],
    ),
}


@pytest.mark.parametrize("d,seed", [(5, 101), (80, 202)])
def test_pinned_small_case(d, seed):
    x, y, groups = _pinned_data(d, seed)
    cv = ridge_cv_all_layers(x, y, groups)
    best, predictions = PINNED[d]
    np.testing.assert_allclose(cv.best_alpha, best, rtol=1e-12)
    np.testing.assert_allclose(cv.predictions[:, :4, :], predictions, rtol=0, atol=2e-8)
