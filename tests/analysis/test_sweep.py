import numpy as np
import pytest

from helpers import cli, planted_store
from latent_reward.analysis.sweep import GridCell, SweepConfig, sweep
from latent_reward.evaluation.results import SHUFFLED_ALL, SHUFFLED_WITHIN, Interval
from latent_reward.experiments.readout import ReadoutConfig, reward_readout
from latent_reward.probes import Probe

FAST = ReadoutConfig(
    sweep=SweepConfig(n_boot=200), permutations=20, split_seeds=1, paired_permutations=200, sgd_grid=False
)


def test_sweep_finds_the_planted_cell_on_validation_and_tests_it_once(tmp_path):
    store = planted_store(tmp_path / "s", n_groups=150)
    fit = sweep(store, SweepConfig(n_boot=300), progress=False)
    result = fit.result
    assert (result.best.position, result.best.layer, result.best.probe) == ("eot", 2, "ridge")
    assert result.best_test.pearson.value > 0.9 and result.best_test.within_acc.value > 0.85
    assert result.best_test.pearson.low > 0.8
    groups_by_split = {name: set(fit.target.groups[mask]) for name, mask in fit.plan.masks.items()}
    assert not (groups_by_split["train"] & groups_by_split["test"]) and not (
        groups_by_split["val"] & groups_by_split["test"]
    )
    noise = [c.val.pearson.value for c in result.cells("ridge", "eot") if c.layer != 2]
    assert max(abs(v) for v in noise) < 0.35
    best = result.val_best("ridge", "eot").val
    assert best.pearson.low is not None and best.within_acc.low is not None  # the shown kind's cells carry intervals


def test_the_validation_best_cell_is_reported_even_when_another_is_best_on_test(tmp_path, monkeypatch):
    """A planted store where one cell wins on validation and another on test: the report takes the validation winner."""
    from latent_reward.analysis import sweep as sweep_module

    store = planted_store(tmp_path / "s", n_groups=90)
    real_score = sweep_module.all_metrics

    def rigged(y, p, groups):  # layer 1 looks best on the validation rows only
        values = real_score(y, p, groups)
        if len(y) == rigged.val_rows and np.allclose(p, rigged.layer1[rigged.val_mask]):
            values["pearson"] = 0.999
        return values

    fit = sweep(store, SweepConfig(n_boot=100), progress=False)
    rigged.val_mask = fit.plan.masks["val"]
    rigged.val_rows = int(rigged.val_mask.sum())
    rigged.layer1 = fit.predictions[("eot", 1, "ridge")]
    monkeypatch.setattr(sweep_module, "all_metrics", rigged)
    again = sweep(store, SweepConfig(n_boot=100), progress=False).result
    assert again.best.layer == 1  # chosen on validation ...
    test = fit.plan.masks["test"]
    layer2_test = np.corrcoef(fit.predictions[("eot", 2, "ridge")][test], fit.target.y[test])[0, 1]
    assert again.best_test.pearson.value < layer2_test  # ... and reported as it is on test, though layer 2 tests better


def test_readout_cross_fits_every_prompt_and_the_controls_collapse(tmp_path):
    store = planted_store(tmp_path / "s", n_groups=80)
    readout, fit, crossfit = reward_readout(store, FAST, progress=False)
    assert readout.probe.scores.n_examples == len(store) and readout.probe.scores.n_prompts == 80
    assert readout.probe.scores.pearson.low > 0.85 and readout.probe.scores.within_acc.low > 0.8
    assert {str(c) for c in readout.fold_cells} == {"ridge @ eot layer 2"}
    within, overall = readout.comparison(SHUFFLED_WITHIN), readout.comparison(SHUFFLED_ALL)
    assert abs(within.null["within_acc"].null_mean - 0.5) < 0.05 and within.null["within_acc"].p_value < 0.1
    # cross-fitted r of shuffled ratings sits at or a little below 0 (the held-out fold pulls against the training mean)
    assert -0.2 < overall.null["pearson"].null_mean < 0.05 and overall.null["pearson"].n_permutations == 20
    assert overall.null["pearson"].p_value == 1 / 21
    assert readout.verdict.kind == "encodes"
    for fold in np.unique(crossfit.folds):  # every prompt is in exactly one fold
        assert set(crossfit.groups[crossfit.folds == fold]).isdisjoint(crossfit.groups[crossfit.folds != fold])
    # partial r of the cross-fitted probe given the responses' text statistics: the correlation of the residuals of
    # sklearn's linear regression on them (with an intercept)
    from sklearn.linear_model import LinearRegression

    from latent_reward.evaluation.baselines import text_statistics

    responses = [e.response for e in store.examples]
    controls, y, p = text_statistics(responses), fit.target.y, crossfit.predictions["probe"]
    residual = [v - LinearRegression().fit(controls, v).predict(controls) for v in (y, p)]
    assert readout.partial_r_given_length.value == pytest.approx(np.corrcoef(*residual)[0, 1], abs=1e-9)
    # its interval: the prompt bootstrap of _partial_interval (pinned in test_readout_known) on these predictions and
    # controls, at the configured resample count and seed
    from latent_reward.experiments.readout import _partial_interval

    expected = _partial_interval(y, p, controls, fit.target.groups, FAST.sweep.n_boot, FAST.sweep.seed)
    assert (readout.partial_r_given_length.low, readout.partial_r_given_length.high) == (expected.low, expected.high)
    assert expected.high - expected.low > 0.01
    # length-matched pairs by brute force: same prompt, different ratings, characters within 10% of the longer reply
    chars = [len(r) for r in responses]
    pairs = [
        (i, j)
        for i in range(len(y))
        for j in range(i + 1, len(y))
        if fit.target.groups[i] == fit.target.groups[j]
        and y[i] != y[j]
        and abs(chars[i] - chars[j]) < 0.1 * max(chars[i], chars[j], 1)
    ]
    assert readout.length_matched_pairs == len(pairs) > 0
    # (their accuracy: test_readout_known, on a store where the choice of predictions and of length matters)


def test_prompt_level_signal_gives_global_r_but_no_within_prompt_accuracy(tmp_path):
    store = planted_store(tmp_path / "s", response_signal=0.0, prompt_signal=1.0)
    result = sweep(store, SweepConfig(n_boot=200, positions=("assistant_start",)), progress=False).result
    cell = next(c for c in result.grid if c.layer == 2)
    assert cell.val.pearson.value > 0.8
    assert abs(cell.val.within_acc.value - 0.5) < 0.12
    readout, _, _ = reward_readout(
        store,
        FAST.model_copy(update={"sweep": SweepConfig(n_boot=200, positions=("assistant_start",))}),
        progress=False,
    )
    assert readout.verdict.kind == "no within-prompt evidence"


def test_other_probe_kinds_run_in_the_sweep(tmp_path):
    store = planted_store(tmp_path / "s", n_groups=40)
    result = sweep(
        store, SweepConfig(probes=("ridge", "mean_diff", "pairwise"), positions=("eot",), n_boot=200), progress=False
    ).result
    at_signal = {c.probe: c.val.pearson.value for c in result.grid if c.layer == 2}
    assert all(v > 0.8 for v in at_signal.values()), at_signal


def test_within_prompt_target_removes_prompt_level_signal(tmp_path):
    store = planted_store(tmp_path / "s", n_groups=60, prompt_signal=3.0, response_signal=1.0)
    fit = sweep(store, SweepConfig(target="rating-within-prompt", n_boot=100), progress=False)
    assert fit.result.best.position == "eot"  # prompt positions carry nothing within prompts and are left out
    assert {c.position for c in fit.result.grid} == {"eot"}
    np.testing.assert_allclose(
        [fit.target.y[fit.target.groups == g].mean() for g in np.unique(fit.target.groups)], 0, atol=1e-9
    )
    assert fit.result.best_test.within_acc.value > 0.85


@pytest.mark.slow  # end to end: the whole workflow on the tiny model
def test_sweep_command_saves_a_reloadable_probe(tmp_path):
    store = planted_store(tmp_path / "s")
    result = cli(
        "sweep",
        "--store",
        tmp_path / "s",
        "--out",
        tmp_path / "out",
        "--n-boot",
        "100",
        "--no-sgd-grid",
        "--permutations",
        "10",
    )
    assert result.returncode == 0, result.stderr
    assert "validation-best cell: ridge @ eot layer 2" in result.stdout.replace("\n", " ")
    probe = Probe.load(tmp_path / "out" / "best_probe")
    assert probe.info.position == "eot" and probe.info.layer == 2 and probe.info.validation_groups
    x = store.array("eot", layers=[2])[:, 0].astype(np.float32)
    assert np.corrcoef(probe.predict(x), store.ratings)[0, 1] > 0.9


@pytest.mark.parametrize(
    "option, value, message", [("--probes", "forest", "unknown probe"), ("--target", "honesty", "unknown target")]
)
def test_sweep_rejects_unknown_probe_and_target(tmp_path, option, value, message):
    planted_store(tmp_path / "s")
    result = cli("sweep", "--store", tmp_path / "s", "--out", tmp_path / "o", option, value)
    assert result.returncode == 2 and message in result.stderr


def test_within_prompt_version_of_any_target_centers_its_own_values_on_a_subset_of_its_rows():
    from latent_reward.analysis.targets import Target, within_prompt

    # an aspect rated on store rows 0-5 and 7-8 (row 6 has none); prompt "c" keeps one rated response only
    keep = np.array([True] * 6 + [False] + [True, True])
    aspect = Target("honesty", np.array([1.0, 3.0, 2.0, 4.0, 6.0, 9.0, 5.0, 7.0]), np.array(list("aabbbcdd")), keep)
    within = within_prompt(aspect)
    assert within.within and within.name == "honesty (within prompt)"
    assert not (within.keep & ~aspect.keep).any()  # never a row the target lacks
    np.testing.assert_array_equal(np.flatnonzero(within.keep), [0, 1, 2, 3, 4, 7, 8])
    np.testing.assert_allclose(within.y, [-1, 1, -2, 0, 2, -1, 1])  # the aspect's own values, centered per prompt


def test_a_grid_cell_written_with_metric_dicts_loads_as_scores():
    """results.json written before `GridCell.val` was typed: {metric: value} beside the shown kind's intervals."""
    old = {
        "position": "eot",
        "layer": 2,
        "probe": "ridge",
        "val": {"pearson": 0.5, "mae": 1.2, "within_acc": None},
        "val_ci": {"pearson": {"value": 0.5, "low": 0.4, "high": 0.6}},
    }
    cell = GridCell.model_validate(old)
    assert cell.val.pearson == Interval(value=0.5, low=0.4, high=0.6)
    assert cell.val.mae == Interval(value=1.2) and not cell.val.within_acc.known
    assert GridCell.model_validate(cell.model_dump(mode="json")) == cell  # the typed form reads back unchanged
