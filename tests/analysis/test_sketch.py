"""Wide states: cells chosen on a principal-component sketch, every reported fit exact on the full states."""

import numpy as np
import pytest

from helpers import planted_store
from latent_reward.analysis import sketch as sketch_module
from latent_reward.analysis.crossfit import cross_fit
from latent_reward.analysis.sketch import SketchConfig, SketchedStore, _components, full_store, sketch_view
from latent_reward.analysis.sweep import SweepConfig, sweep
from latent_reward.analysis.targets import make_target, within_prompt
from latent_reward.experiments.prompt_only import PromptOnlyConfig, prompt_only
from latent_reward.experiments.readout import ReadoutConfig, reward_readout
from latent_reward.probes.ridge import ridge_cv_all_layers

NARROW = SketchConfig(dim=6, above=16)  # the planted stores below are 48 wide: sketched to 6 components


def test_a_view_is_made_only_for_states_wider_than_the_threshold(tmp_path):
    store = planted_store(tmp_path / "s", n_groups=20, d=48)
    assert sketch_view(store, SketchConfig(dim=6, above=48)) is store
    assert sketch_view(store, SketchConfig(dim=0, above=16)) is store
    view = sketch_view(store, NARROW)
    assert isinstance(view, SketchedStore) and sketch_view(view, NARROW) is view and full_store(view) is store
    sketch = make_target(view, "rating").states(view, "eot", [1, 2])
    assert sketch.shape == (len(store), 2, 6) and sketch.dtype == np.float32
    assert np.array_equal(view.ratings, store.ratings) and view.d_model == 48


def test_a_target_is_sketched_as_it_reads_the_states_within_prompt_targets_centered(tmp_path):
    """The within-prompt probe chooses its cell on components of the within-prompt variation, not of the raw states
    (whose top components the between-prompt variation can fill)."""
    store = planted_store(tmp_path / "s", n_groups=30, d=48)
    view = SketchedStore(store, NARROW)
    pooled = make_target(view, "rating")
    within = within_prompt(pooled)
    centered = within.states(view, "eot", [2])[:, 0].astype(np.float64)
    _, index = np.unique(within.groups, return_inverse=True)
    sums = np.stack([np.bincount(index, weights=centered[:, j]) for j in range(6)], axis=1)
    assert np.abs(sums).max() < 1e-3 * np.abs(centered).max()  # a linear map of rows centered on their prompt
    expected, _ = _components(within.states(store, "eot", [2])[:, 0], 6, seed=NARROW.seed + 2)
    np.testing.assert_allclose(centered, expected, rtol=2**-10, atol=1e-7)  # float16 rounding, float32 paths
    assert len(within.y) == len(pooled.y) and not np.allclose(pooled.states(view, "eot", [2])[:, 0], centered, atol=0.1)


def test_the_cache_keeps_float16_where_it_holds_every_component_and_float32_beyond(tmp_path, monkeypatch):
    store = planted_store(tmp_path / "s", n_groups=30, d=48)
    view = SketchedStore(store, NARROW)
    target = make_target(view, "rating")
    sketch = target.states(view, "eot", [1, 2])
    assert sketch.dtype == np.float32 and {a.dtype for a in view._cache.values()} == {np.dtype(np.float16)}
    exact, _ = _components(target.states(store, "eot", [2])[:, 0], 6, seed=NARROW.seed + 2)
    np.testing.assert_allclose(sketch[:, 1], exact, rtol=2**-10, atol=1e-7)  # float16 rounding, float32 paths
    monkeypatch.setattr(sketch_module, "_FLOAT16_BOUND", len(store) * 48)  # rows x width no longer below the bound
    wide = SketchedStore(store, NARROW)
    np.testing.assert_allclose(make_target(wide, "rating").states(wide, "eot", [2])[:, 0], exact, rtol=1e-5, atol=1e-6)
    assert {a.dtype for a in wide._cache.values()} == {np.dtype(np.float32)}


def test_a_component_is_at_most_the_square_root_of_rows_times_width_the_float16_bound():
    x = np.zeros((1000, 48), dtype=np.float32)
    x[7] = 1.0  # one row off the rest: its z-scored norm is the largest a row can have, sqrt(48 x 999)
    sketch, _ = _components(x, 4, seed=0)
    assert np.abs(sketch).max() == pytest.approx(np.sqrt(48 * 999), rel=1e-5)  # below sqrt(rows x width)


def test_components_past_the_states_rank_are_zero_not_round_off():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20, 3)) @ rng.normal(size=(3, 40)) + rng.normal(size=40)  # rank 3 once centered
    sketch, explained = _components(x.astype(np.float32), 8, seed=0)
    assert np.all(np.abs(sketch[:, :3]).max(axis=0) > 1) and np.all(sketch[:, 3:] == 0)
    assert explained == pytest.approx(1.0, abs=1e-5)


def test_a_nearly_constant_feature_leaves_no_component_past_the_rank_of_prompt_means():
    """Prompt positions read each prompt's mean: 20 prompts give rank 19 once centered. Features equal for every
    prompt but one float16 step on a few carry the float32 mean's rounding error, divided by their tiny spread, into
    the direction centering removed."""
    rng = np.random.default_rng(0)
    prompts = rng.normal(size=(20, 256)).astype(np.float16)
    prompts[:, :16] = 1000.0
    prompts[:, :16][rng.random((20, 16)) < 0.05] = np.nextafter(np.float16(1000), np.float16(2000))
    sketch, _ = _components(np.repeat(prompts.astype(np.float32), 3, axis=0), 32, seed=0)
    assert np.all(np.abs(sketch[:, :19]).max(axis=0) > 0.1) and np.all(sketch[:, 19:] == 0)


def test_the_sketch_is_the_top_principal_components_of_the_z_scored_states(tmp_path):
    rng = np.random.default_rng(0)
    spectrum = np.array([10.0, 7.0, 5.0, 3.5] + [0.5] * 36)  # four clear components over noise
    x = (rng.normal(size=(300, 40)) * spectrum) @ np.linalg.qr(rng.normal(size=(40, 40)))[0] * rng.uniform(
        0.1, 50, 40
    ) + 3.0
    sketch, explained = _components(x.astype(np.float32), 4, seed=0)
    z = (x - x.mean(0)) / x.std(0)
    u, s, _ = np.linalg.svd(z, full_matrices=False)
    exact = u[:, :4] * s[:4]
    for k in range(4):  # each component up to its sign
        cosine = abs(exact[:, k] @ sketch[:, k]) / (np.linalg.norm(exact[:, k]) * np.linalg.norm(sketch[:, k]))
        assert cosine > 0.999
    assert abs(explained - np.sum(s[:4] ** 2) / np.sum(s**2)) < 1e-3
    store = planted_store(tmp_path / "s", n_groups=30, d=48)
    views = [SketchedStore(store, SketchConfig(dim=4, above=16)) for _ in range(2)]
    first, second = (make_target(view, "rating").states(view, "eot", [2]) for view in views)
    assert np.array_equal(first, second)  # seeded


def test_cross_fit_on_a_sketch_chooses_the_planted_cell_and_fits_it_exactly(tmp_path):
    store = planted_store(tmp_path / "s", n_groups=80, d=48)
    target = make_target(store, "rating")
    crossfit = cross_fit(
        SketchedStore(store, NARROW), target, ("assistant_start", "eot"), n_folds=4, progress=False, permutations=3
    )
    assert {(c.position, c.layer) for c in crossfit.cells["probe"]} == {("eot", 2)}
    y, groups, folds = target.y, target.groups, crossfit.folds
    x = target.states(store, "eot", [2]).astype(np.float64)
    for k in range(4):
        train, held = folds != k, folds == k
        expected = ridge_cv_all_layers(x[train], y[train], groups[train]).probe(0).predict(x[held, 0])
        # the same fit, in float32 on wide states (float64 here): equal to about 1e-6 of the predictions' scale
        np.testing.assert_allclose(
            crossfit.predictions["probe"][held], expected, rtol=1e-4, atol=1e-5 * np.std(expected)
        )
    targets, predictions = crossfit.permuted["global"]
    assert targets.shape == predictions.shape == (3, len(y))


def test_the_sweep_refits_its_best_cell_on_the_full_states(tmp_path):
    store = planted_store(tmp_path / "s", n_groups=90, d=48)
    fit = sweep(SketchedStore(store, NARROW), SweepConfig(n_boot=100), progress=False)
    assert (fit.result.best.position, fit.result.best.layer) == ("eot", 2)
    assert fit.result.sketch.dim == 6 and fit.result.sketch.d_model == 48
    assert fit.best_probe.weights.shape == (48,)
    x = store.array("eot", [2])[:, 0]
    np.testing.assert_allclose(fit.cell_predictions(fit.result.best), fit.best_probe.predict(x))
    assert fit.result.best_test.pearson.value > 0.9


def test_readout_and_prompt_only_run_on_a_sketched_store(tmp_path):
    store = planted_store(tmp_path / "s", n_groups=60, d=48, prompt_signal=1.0)
    config = ReadoutConfig(
        sweep=SweepConfig(n_boot=100),
        permutations=5,
        split_seeds=1,
        paired_permutations=100,
        sgd_grid=False,
        sketch=NARROW,
    )
    result, fit, crossfit = reward_readout(store, config, progress=False)
    assert result.sweep.sketch is not None and fit.best_probe.weights.shape == (48,)
    assert result.probe.scores.pearson.value > 0.5
    expected = prompt_only(store, PromptOnlyConfig(n_boot=100, sketch=NARROW), fit)
    assert expected.cross_fitted.pearson.value > 0.5 and {c.position for c in expected.fold_cells} == {
        "assistant_start"
    }


def test_with_more_rows_than_the_basis_sample_every_row_is_projected_on_components_found_on_a_sample(monkeypatch):
    from latent_reward.analysis import sketch as sketch_module

    rng = np.random.default_rng(1)
    spectrum = np.array([10.0, 7.0, 5.0] + [0.5] * 37)
    x = (rng.normal(size=(600, 40)) * spectrum) @ np.linalg.qr(rng.normal(size=(40, 40)))[0]
    monkeypatch.setattr(sketch_module, "_BASIS_ROWS", 150)
    sampled, _ = _components(x.astype(np.float32), 3, seed=0)
    z = (x - x.mean(0)) / x.std(0)
    u, s, _ = np.linalg.svd(z, full_matrices=False)
    assert sampled.shape == (600, 3)
    top = u[:, :3]  # the sample's components span nearly the same space as the full set's (close ones may rotate)
    outside = sampled - top @ (top.T @ sampled)
    assert np.linalg.norm(outside) / np.linalg.norm(sampled) < 0.1


@pytest.mark.slow  # end to end: the sweep workflow and its report
def test_the_report_says_the_grids_are_the_sketch_and_the_scored_probes_the_full_states(tmp_path):
    from latent_reward.workflows.run import SweepJob, sweep_stores

    planted_store(tmp_path / "s", n_groups=60, d=48)
    readout = ReadoutConfig(
        sweep=SweepConfig(n_boot=100),
        permutations=5,
        split_seeds=1,
        paired_permutations=100,
        sgd_grid=False,
        sketch=NARROW,
    )
    outcome = sweep_stores(SweepJob(store=tmp_path / "s", out=tmp_path / "out", readout=readout), progress=False)
    html = " ".join(outcome.report.read_text().split())
    explained = round(100 * outcome.result.readout.sweep.sketch.explained)
    assert "The 48-wide states were explored" in html and f"its top 6 principal components, {explained}%" in html
    assert "the grids show the sketch's validation numbers" in html


def test_on_a_sketch_the_controls_reuse_each_folds_cell_unless_asked_to_reselect(tmp_path):
    """Behind a sketch a re-chosen cell costs an exact fit per fold, so by default each permutation is fitted at its
    fold's probe cell (exactly: a ridge on the full states' permuted training ratings); with reselect_wide it chooses
    its own cell on the sketch, as on narrow states."""
    store = planted_store(tmp_path / "s", n_groups=40, d=48)
    target = make_target(store, "rating")
    sketched = SketchedStore(store, NARROW)
    fixed = cross_fit(sketched, target, ("assistant_start", "eot"), n_folds=3, progress=False, permutations=3)
    targets, predictions = fixed.permuted["global"]
    for k, cell in enumerate(fixed.cells["probe"]):
        train, held = fixed.folds != k, fixed.folds == k
        x = target.states(store, cell.position, [cell.layer]).astype(np.float64)
        for t in range(3):
            expected = (
                ridge_cv_all_layers(x[train], targets[t, train], target.groups[train]).probe(0).predict(x[held, 0])
            )
            np.testing.assert_allclose(predictions[t, held], expected, rtol=1e-4, atol=1e-5 * np.std(expected))
    moved = cross_fit(
        sketched, target, ("assistant_start", "eot"), n_folds=3, progress=False, permutations=3, reselect_wide=True
    )
    assert not np.allclose(moved.permuted["global"][1], predictions)  # some permutation chose another cell
