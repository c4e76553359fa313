"""Known answers for experiments/readout.py: the partial correlation given the text statistics and its interval; linear
vs nonlinear on planted linear and XOR-like signals; the SGD settings grid against the least-squares closed form; the
seed spread against cross-fits rebuilt with sklearn."""

from types import SimpleNamespace

import numpy as np
import pytest
from scipy import stats
from sklearn.linear_model import LinearRegression

from helpers import planted, planted_store, sklearn_ridge, split, write_store
from latent_reward.analysis.sgd_settings import sgd_settings_grid
from latent_reward.analysis.sweep import SweepConfig, sweep
from latent_reward.data.schema import Example
from latent_reward.data.splits import group_folds, inner_split
from latent_reward.evaluation.metrics import within_prompt_accuracy
from latent_reward.evaluation.results import Cell, Interval, Scores
from latent_reward.experiments.readout import (
    ReadoutConfig,
    _linear_vs_nonlinear,
    _optional_parts,
    _partial_interval,
    _within_crossfit,
    reward_readout,
)
from latent_reward.probes import MLPProbe, ProbeOptions, SGDProbe, TrainConfig


def _clustered(seed=0, n_prompts=40, per=5):
    """Rating and prediction share a prompt-level term (so rows of a prompt are correlated) and a length term that
    the controls (length and a noisy copy) explain."""
    rng = np.random.default_rng(seed)
    index = np.repeat(np.arange(n_prompts), per)
    groups = np.array([f"p{i:03d}" for i in index])
    length = rng.normal(size=len(index)) * 3
    controls = np.column_stack([length, length + rng.normal(size=len(index)), rng.normal(size=len(index))])
    shared = rng.normal(size=n_prompts)[index]
    y = shared + length + 0.8 * rng.normal(size=len(index))
    p = shared + 2 * length + 0.8 * rng.normal(size=len(index))
    return y, p, controls, groups, index


def _partial_r(y, p, controls):
    ry = y - LinearRegression().fit(controls, y).predict(controls)
    rp = p - LinearRegression().fit(controls, p).predict(controls)
    return stats.pearsonr(ry, rp).statistic


def test_partial_r_given_length_is_the_regression_residual_correlation_with_a_prompt_bootstrap_interval():
    y, p, controls, groups, index = _clustered()
    interval = _partial_interval(y, p, controls, groups, n_boot=500, seed=0)
    expected = _partial_r(y, p, controls)
    assert interval.value == pytest.approx(expected, abs=1e-10)
    assert abs(expected - stats.pearsonr(y, p).statistic) > 0.2  # the controls matter here
    # an independent prompt bootstrap (whole prompts with replacement, 2000 resamples) gives the same ends within
    # Monte Carlo error; a row bootstrap would give a clearly narrower interval on these clustered rows
    rng = np.random.default_rng(123)
    rows_of = [np.flatnonzero(index == g) for g in range(index.max() + 1)]

    def precision_r(rows):  # the same partial r from the inverse correlation matrix (fast, and a second closed form)
        inverse = np.linalg.inv(np.corrcoef(np.column_stack([y[rows], p[rows], controls[rows]]).T))
        return -inverse[0, 1] / np.sqrt(inverse[0, 0] * inverse[1, 1])

    assert precision_r(np.arange(len(y))) == pytest.approx(expected, abs=1e-10)

    def ends(draw_rows):
        values = [precision_r(draw_rows()) for _ in range(2000)]
        return np.quantile(values, [0.025, 0.975])

    prompt_low, prompt_high = ends(
        lambda: np.concatenate([rows_of[g] for g in rng.integers(0, len(rows_of), len(rows_of))])
    )
    row_low, row_high = ends(lambda: rng.integers(0, len(y), len(y)))
    assert (prompt_high - prompt_low) > 1.3 * (row_high - row_low)  # the case separates the two resampling schemes
    assert interval.low == pytest.approx(prompt_low, abs=0.03) and interval.high == pytest.approx(prompt_high, abs=0.03)


def _two_layer_store(folder, kind: str, d: int, noise: float, n_groups: int = 40, per: int = 4, seed: int = 0):
    """eot states [n, 2 layers, d] of pure noise; the rating is read from layer 1 only: linear in it (a random unit-
    variance direction), or the product of its first two coordinates (XOR-like: no linear function of the states
    correlates with it in the population), plus `noise`."""
    rng = np.random.default_rng(seed)
    n = n_groups * per
    index = np.repeat(np.arange(n_groups), per)
    states = rng.normal(size=(n, 2, d))
    x = states[:, 1]
    signal = x[:, 0] * x[:, 1] if kind == "xor" else x @ rng.normal(size=d) / np.sqrt(d)
    rating = signal + noise * rng.normal(size=n)
    examples = [
        Example(
            id=f"{kind}:{i}",
            group=f"g{index[i]:03d}",
            rating=float(rating[i]),
            messages=[
                {"role": "user", "content": f"prompt {index[i]}"},
                {"role": "assistant", "content": "answer " * int(rng.integers(1, 20))},
            ],
        )
        for i in range(n)
    ]
    return write_store(folder, {"eot": states}, examples, [0, 1])


LINEAR_VS_MLP = SweepConfig(
    probes=("ridge", "sgd", "mlp"),
    n_boot=200,
    settings=ProbeOptions({kind: {"train": TrainConfig(lr=1e-2)} for kind in ("sgd", "mlp")}),
)


def _check_linear_vs_nonlinear(store):
    """Run the comparison and check what is exact in it: the linear side is the linear cell (ridge or SGD, either
    layer) with the best validation r, the nonlinear side the MLP's, each refitted here on the training prompts
    (sklearn's Ridge at the leave-one-prompt-out penalty; the seeded SGD and MLP probes fitted anew) and scored on the
    test prompts; the paired difference is linear minus nonlinear."""
    fit = sweep(store, LINEAR_VS_MLP, progress=False)
    comparison = _linear_vs_nonlinear(fit, ReadoutConfig(sweep=LINEAR_VS_MLP, paired_permutations=200))
    train, val, test = (fit.plan.masks[name] for name in ("train", "val", "test"))
    y, groups = fit.target.y, fit.target.groups
    x = {layer: store.array("eot", layers=[layer])[:, 0].astype(np.float32) for layer in (0, 1)}
    settings = LINEAR_VS_MLP.settings
    probes = {}
    for layer in (0, 1):
        rows = x[layer][train], y[train], groups[train]
        probes["ridge", layer] = sklearn_ridge(
            rows[0].astype(np.float64), *rows[1:], settings.of("ridge").alpha_factors
        )[0]
        probes["sgd", layer] = SGDProbe.from_settings(settings.of("sgd")).fit(*rows)
        probes["mlp", layer] = MLPProbe.from_settings(settings.of("mlp")).fit(*rows)
    val_r = {cell: stats.pearsonr(y[val], probe.predict(x[cell[1]][val])).statistic for cell, probe in probes.items()}
    linear = max((cell for cell in probes if cell[0] != "mlp"), key=val_r.get)
    nonlinear = max((cell for cell in probes if cell[0] == "mlp"), key=val_r.get)
    assert (comparison.linear.probe, comparison.linear.layer) == linear and comparison.linear.position == "eot"
    assert (comparison.nonlinear.probe, comparison.nonlinear.layer) == nonlinear
    linear_r, nonlinear_r = (
        stats.pearsonr(y[test], probes[cell].predict(x[cell[1]][test])).statistic for cell in (linear, nonlinear)
    )
    assert comparison.linear_test.pearson.value == pytest.approx(linear_r, abs=1e-6)
    assert comparison.nonlinear_test.pearson.value == pytest.approx(nonlinear_r, abs=1e-6)
    assert comparison.linear_test.n_examples == test.sum()
    assert comparison.linear_test.n_prompts == len(set(groups[test]))
    difference = comparison.difference["pearson"].difference
    assert difference.value == pytest.approx(linear_r - nonlinear_r, abs=1e-6)
    return comparison, val_r


def test_a_planted_linear_signal_is_read_better_by_the_linear_probe(tmp_path):
    """A rating linear in 32 state coordinates with little noise, 40 prompts: ridge reads it almost exactly; the MLP,
    with the same rows, cannot match it (paired over the test prompts, the interval is above 0). The rows are too few
    for the MLP to learn a 32-dimensional direction as well as the closed form does; that it loses is the known answer,
    how much it loses is not."""
    comparison, val_r = _check_linear_vs_nonlinear(_two_layer_store(tmp_path / "s", "linear", d=32, noise=0.05))
    assert comparison.linear.layer == 1 and comparison.nonlinear.layer == 1
    # the closed form beats the SGD probe at the signal layer on validation, so the rule between linear kinds matters
    assert comparison.linear.probe == "ridge" and val_r["ridge", 1] > val_r["sgd", 1] + 0.01
    assert comparison.linear_test.pearson.value > 0.99
    assert comparison.difference["pearson"].difference.low > 0


def test_a_planted_xor_like_signal_is_read_only_by_the_mlp(tmp_path):
    """A rating that is the product of two state coordinates: the MLP reads it (r > 0.9 on the test prompts), the linear
    probes cannot (their validation-best cell is noise), and the paired interval of linear minus MLP is below 0."""
    comparison, _ = _check_linear_vs_nonlinear(_two_layer_store(tmp_path / "s", "xor", d=4, noise=0.1, n_groups=60))
    assert comparison.nonlinear.layer == 1
    assert comparison.nonlinear_test.pearson.value > 0.9
    assert comparison.difference["pearson"].difference.high < 0
    assert comparison.difference["pearson"].p_value < 0.01


def test_sgd_grid_rows_are_each_setting_on_the_training_prompts_and_the_converged_one_is_least_squares():
    """Each row is the SGD probe with that batch size and schedule, fitted on the training prompts and scored on the
    validation prompts. With a decaying rate and no weight decay, minibatch SGD on squared error converges to the
    least-squares fit of its rows (the training prompts less the inner early-stopping ones): at batch 8 (300 steps)
    its validation r is the closed form's; at batch 128 (20 steps) it is still far from it."""
    x, y, groups, _ = planted(n_groups=100, d=16, noise=1.0)
    train, val, _ = split(groups)
    base = TrainConfig(epochs=10, lr=1e-2, patience=100, weight_decay=0.0)
    rows = sgd_settings_grid(x, y, groups, {"train": train, "val": val}, base, (8, 128), ("constant", "warmup_cosine"))
    assert [(r.batch_size, r.schedule) for r in rows] == [
        (8, "constant"),
        (8, "warmup_cosine"),
        (128, "constant"),
        (128, "warmup_cosine"),
    ]
    for row in rows:
        config = base.model_copy(update={"batch_size": row.batch_size, "schedule": row.schedule})
        probe = SGDProbe(config).fit(x[train], y[train], groups[train])
        assert row.val_pearson == pytest.approx(stats.pearsonr(y[val], probe.predict(x[val])).statistic, abs=1e-9)
        assert row.val_within_acc == pytest.approx(within_prompt_accuracy(y[val], probe.predict(x[val]), groups[val]))
        assert row.epochs_run == 10  # patience 100: every epoch runs
    fitted = ~inner_split(groups[train], base.inner_val_fraction, base.seed)
    least_squares = LinearRegression().fit(x[train][fitted], y[train][fitted])
    closed_form = stats.pearsonr(y[val], least_squares.predict(x[val])).statistic
    by_setting = {(r.batch_size, r.schedule): r.val_pearson for r in rows}
    assert by_setting[8, "warmup_cosine"] == pytest.approx(closed_form, abs=0.003)
    assert by_setting[128, "warmup_cosine"] < closed_form - 0.1


def test_seed_spread_and_sgd_grid_of_the_readout(tmp_path):
    """The seed spread: the first seed's entry is the headline's; each other seed's is the r and within-prompt accuracy
    of a cross-fit on that seed's folds, rebuilt here with sklearn (each fold: Ridge at the planted cell, eot layer 2,
    penalty by leave-one-prompt-out error on the other folds). The SGD grid is run at the sweep's best cell."""
    store = planted_store(tmp_path / "s", n_groups=30, per_group=4)
    settings = ProbeOptions(
        {"ridge": {"alpha_factors": (0.01, 0.1, 1.0, 10.0)}, "sgd": {"train": TrainConfig(epochs=3, patience=100)}}
    )
    config = ReadoutConfig(sweep=SweepConfig(n_boot=100, settings=settings), split_seeds=3, folds=4)
    fit = sweep(store, config.sweep, progress=False)
    headline = Scores(pearson=Interval.of(0.5), within_acc=Interval.of(0.75))  # stands in for the headline's scores
    result = SimpleNamespace(
        probe=SimpleNamespace(scores=headline),
        within_probe=None,
        sweep=fit.result,
        seed_spread=None,
        sgd_grid=None,
        linear_vs_nonlinear=None,
    )
    _optional_parts(result, store, fit, config, ("assistant_start", "eot"), False, {})
    spread = result.seed_spread
    assert spread.seeds == [0, 1, 2] and spread.pearson[0] == 0.5 and spread.within_acc[0] == 0.75
    y, groups = fit.target.y, fit.target.groups
    x = store.array("eot", layers=[2])[:, 0].astype(np.float64)
    for position, seed in enumerate((1, 2)):
        folds = group_folds(groups, 4, seed)
        predictions = np.empty(len(y))
        for k in range(4):
            held = folds == k
            ridge, _ = sklearn_ridge(x[~held], y[~held], groups[~held], settings.of("ridge").alpha_factors)
            predictions[held] = ridge.predict(x[held])
        assert spread.pearson[1 + position] == pytest.approx(
            stats.pearsonr(y, predictions).statistic, abs=1e-6
        )  # float32
        accuracy = within_prompt_accuracy(y, predictions, groups)
        assert spread.within_acc[1 + position] == pytest.approx(accuracy, abs=1e-12)
    assert spread.pearson[1] != spread.pearson[2]  # the seeds deal different folds
    # the SGD grid: the default 3 batch sizes x 4 schedules at the best cell, fitted on the sweep's training prompts
    assert fit.result.best == Cell(position="eot", layer=2, probe="ridge")
    assert len(result.sgd_grid) == 12
    train, val = fit.plan.masks["train"], fit.plan.masks["val"]
    for row in result.sgd_grid[::5]:
        probe = SGDProbe(
            settings.of("sgd").train.model_copy(update={"batch_size": row.batch_size, "schedule": row.schedule})
        )
        predicted = probe.fit(x[train], y[train], groups[train]).predict(x[val])
        assert row.val_pearson == pytest.approx(stats.pearsonr(y[val], predicted).statistic, abs=1e-6)
    assert result.linear_vs_nonlinear is None  # no MLP in the sweep: nothing to compare


def test_length_matched_accuracy_is_the_within_prompt_probes_on_pairs_matched_in_characters(tmp_path):
    """Same-prompt pairs with different ratings whose lengths in characters differ by less than 10% of the longer one,
    found by brute force; their accuracy (ties half) with the within-prompt probe's cross-fitted predictions (refitted
    here on the readout's folds). The store is built so that both choices matter: lengths in words match other pairs,
    and the pooled probe orders these pairs differently."""
    store = planted_store(tmp_path / "s", n_groups=40, state_signal=0.3, words=("a", "answer", "extraordinarily"))
    config = ReadoutConfig(
        sweep=SweepConfig(n_boot=100), permutations=5, split_seeds=1, paired_permutations=50, sgd_grid=False
    )
    readout, fit, crossfit = reward_readout(store, config, progress=False)
    y, groups = fit.target.y, fit.target.groups
    responses = [store.examples[i].response for i in fit.target.rows]
    positions = fit.target.positions(store, None)
    within = _within_crossfit(store, fit.target, positions, crossfit.folds, config, False).padded

    def matched(length):
        return [
            (i, j)
            for i in range(len(y))
            for j in range(i + 1, len(y))
            if groups[i] == groups[j]
            and y[i] != y[j]
            and abs(length[i] - length[j]) < 0.1 * max(length[i], length[j], 1)
        ]

    def accuracy(pairs, p):
        return sum(0.5 if p[i] == p[j] else float((y[i] > y[j]) == (p[i] > p[j])) for i, j in pairs) / len(pairs)

    pairs = matched([len(r) for r in responses])
    assert readout.length_matched_pairs == len(pairs) >= 10
    assert readout.length_matched.value == pytest.approx(accuracy(pairs, within), abs=1e-12)
    assert set(matched([len(r.split()) for r in responses])) != set(pairs)
    assert accuracy(pairs, crossfit.predictions["probe"]) != pytest.approx(accuracy(pairs, within), abs=1e-9)


def test_the_readouts_within_prompt_baselines_are_fitted_on_features_centered_per_prompt():
    """Each baseline's within-prompt fit (compared with the within-prompt probe) is, fold by fold, the probes' ridge on
    its features minus their prompt means and the ratings minus theirs, on the multi-response prompts of the other
    folds, exactly as the within-prompt probe reads states centered per prompt (analysis/targets.py)."""
    from types import SimpleNamespace

    from latent_reward.analysis.targets import Target
    from latent_reward.evaluation.baselines import TextData, length_features
    from latent_reward.evaluation.groups import center_within_groups
    from latent_reward.evaluation.results import LENGTH
    from latent_reward.experiments.readout import WithinProbe, _baseline_predictions
    from latent_reward.probes import RidgeProbe

    rng = np.random.default_rng(0)
    sizes = [1 if g % 7 == 0 else 3 for g in range(40)]  # some prompts have one response: no within-prompt rows
    groups = np.concatenate([[f"p{g:02d}"] * size for g, size in enumerate(sizes)])
    base = np.repeat(rng.integers(5, 200, len(sizes)), sizes)  # a prompt-level part of the length
    extra = rng.integers(0, 30, len(groups))
    responses = ["word " * int(b + e) for b, e in zip(base, extra)]
    y = extra + rng.normal(size=len(groups)) * 3 + np.repeat(rng.normal(size=len(sizes)) * 10, sizes)
    multi = np.repeat(np.array(sizes) > 1, sizes)
    folds = np.repeat(np.arange(len(sizes)) % 5, sizes)
    yc = center_within_groups(y[multi], groups[multi])
    target = Target("rating-within-prompt", yc, groups[multi], multi, within=True)
    within = WithinProbe(target=target, fit=None, multi=multi)
    data = TextData(
        y=y, groups=groups, prompts=[f"question {g}" for g in groups], responses=responses, generators=[None] * len(y)
    )
    masks = {"train": folds < 3, "val": folds == 3, "test": folds == 4}
    fit = SimpleNamespace(plan=SimpleNamespace(masks=masks))
    found = _baseline_predictions(data, fit, folds, within)[LENGTH].within
    x = length_features(responses)[multi]
    xc, g, f = center_within_groups(x, groups[multi]), groups[multi], folds[multi]
    for k in range(5):
        probe = RidgeProbe().fit(xc[f != k], yc[f != k], g[f != k])
        np.testing.assert_allclose(found[multi][f == k], probe.predict(xc[f == k]), rtol=1e-8, atol=1e-8)


def test_the_seed_spread_reads_within_prompt_accuracy_from_the_within_prompt_probe(tmp_path):
    """With a within-prompt probe, each fold seed's within-prompt accuracy is that probe's, cross-fitted on the seed's
    folds: ridge on the eot states and ratings centered per prompt (the cell every fold chooses here), rebuilt with
    sklearn; the first seed's entry is the headline within-prompt probe's."""
    from latent_reward.evaluation.groups import center_within_groups
    from latent_reward.experiments.readout import _within_crossfit, reward_readout

    store = planted_store(tmp_path / "s", n_groups=40, per_group=4)
    factors = (0.01, 0.1, 1.0, 10.0)
    config = ReadoutConfig(
        sweep=SweepConfig(n_boot=100, settings=ProbeOptions({"ridge": {"alpha_factors": factors}})),
        split_seeds=3,
        folds=4,
        permutations=2,
        paired_permutations=50,
        sgd_grid=False,
    )
    readout, fit, _ = reward_readout(store, config, progress=False)
    spread = readout.seed_spread
    assert spread.within_acc[0] == readout.within_probe.scores.within_acc.value
    target, positions = fit.target, fit.target.positions(store, None)
    x = store.array("eot", layers=[2])[:, 0].astype(np.float64)[target.rows]
    for position, seed in enumerate((1, 2)):
        folds = group_folds(target.groups, 4, seed)
        refit = _within_crossfit(store, target, positions, folds, config.model_copy(update={"permutations": 0}), False)
        assert {(c.position, c.layer) for c in refit.fit.cells["probe"]} == {("eot", 2)}
        yc, groups = refit.target.y, refit.target.groups
        xc, f = center_within_groups(x[refit.multi], groups), folds[refit.multi]
        predictions = np.empty(len(yc))
        for k in range(4):
            ridge, _ = sklearn_ridge(xc[f != k], yc[f != k], groups[f != k], factors)
            predictions[f == k] = ridge.predict(xc[f == k])
        assert spread.within_acc[1 + position] == pytest.approx(
            within_prompt_accuracy(yc, predictions, groups), abs=1e-12
        )
    assert len(set(spread.within_acc)) > 1  # the seeds deal different folds
    assert spread.pearson[1:] == [None, None]  # with a within-prompt probe the other seeds re-fit only it


def test_the_seed_spread_sentence_names_the_probe_each_seed_refits():
    """With a within-prompt probe the sentence reports its accuracy across seeds (the pooled r exists for the first
    seed only); without one, the pooled probe's r and within-prompt accuracy."""
    from latent_reward.experiments.readout import SeedSpread
    from latent_reward.report.answers import _seed_spread_sentence

    within_only = SeedSpread(seeds=[0, 1, 2], pearson=[0.5, None, None], within_acc=[0.61, 0.58, None])
    assert _seed_spread_sentence(within_only, within_probe=True) == (
        "Across 2 fold seeds, the within-prompt probe's accuracy runs 0.580 to 0.610."  # the seeds that have one
    )
    pooled = SeedSpread(seeds=[0, 1], pearson=[0.5, 0.42], within_acc=[0.61, 0.6])
    assert _seed_spread_sentence(pooled, within_probe=False) == (
        "Across 2 fold seeds, the pooled probe's r runs 0.420 to 0.500, its within-prompt accuracy 0.600 to 0.610."
    )
    assert _seed_spread_sentence(SeedSpread(seeds=[0, 1], pearson=[0.5, None], within_acc=[None, None]), True) is None
