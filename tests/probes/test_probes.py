import numpy as np
import pytest
from sklearn.linear_model import Ridge

from helpers import planted, split
from latent_reward.evaluation.metrics import all_metrics
from latent_reward.probes import (
    MeanDiffProbe,
    MLPProbe,
    PairwiseProbe,
    Probe,
    ProbeOptions,
    RidgeProbe,
    SGDProbe,
    TrainConfig,
    ridge_cv_all_layers,
)


@pytest.mark.parametrize(
    "probe",
    [
        RidgeProbe(),
        SGDProbe(TrainConfig(epochs=60, lr=3e-3)),
        MLPProbe(TrainConfig(epochs=60, lr=3e-3)),
        MeanDiffProbe(),
        PairwiseProbe(c=1.0),
    ],
    ids=lambda p: p.kind,
)
def test_probes_recover_a_planted_direction(probe, tmp_path):
    x, y, groups, direction = planted()
    train, val, test = split(groups)
    probe.fit(x[train | val], y[train | val], groups[train | val])  # early stopping: an inner split of these prompts
    metrics = all_metrics(y[test], probe.predict(x[test]), groups[test])
    assert metrics["pearson"] > {"mean_diff": 0.8, "mlp": 0.85}.get(probe.kind, 0.9)
    assert metrics["within_acc"] > 0.8
    if probe.kind != "mlp":
        assert abs(probe.direction @ direction) > {"mean_diff": 0.8}.get(probe.kind, 0.9)
    reloaded = Probe.load(probe.save(tmp_path / probe.kind))
    np.testing.assert_allclose(reloaded.predict(x[test]), probe.predict(x[test]), rtol=1e-6, atol=1e-6)


def test_ridge_matches_sklearn_at_the_same_penalty():
    x, y, groups, _ = planted(d=20)
    probe = RidgeProbe(alpha_factor=0.1).fit(x, y)
    z = (x - x.mean(0)) / x.std(0)
    reference = Ridge(alpha=0.1 * len(y)).fit(z, y)
    np.testing.assert_allclose(probe.predict(x), reference.predict(z), rtol=1e-8, atol=1e-8)


def test_grouped_cv_picks_more_shrinkage_for_pure_noise():
    x, y, groups, _ = planted(noise=0.05)
    rng = np.random.default_rng(1)
    stacked = np.stack([x, rng.normal(size=x.shape)], axis=1)  # layer 0: signal, layer 1: noise
    cv = ridge_cv_all_layers(stacked, y, groups)
    assert cv.best_alpha[1, 0] > cv.best_alpha[0, 0]
    assert cv.mse[0].min() < 0.1 * cv.mse[1].min()


def test_the_registry_builds_every_kind_with_one_signature():
    settings = ProbeOptions(
        {"sgd": {"train": {"epochs": 3}}, "pairwise": {"c": 0.5}, "mlp": {"hidden": 16, "train": {"epochs": 3}}}
    )
    assert set(Probe.registry) == {"ridge", "sgd", "mlp", "mean_diff", "pairwise"}
    built = {kind: Probe.create(kind, settings.of(kind)) for kind in Probe.registry}
    assert built["pairwise"].c == 0.5 and built["mlp"].hidden == 16 and built["sgd"].config.epochs == 3
    assert [kind for kind, cls in Probe.registry.items() if not cls.linear] == ["mlp"]
    x, y, groups, _ = planted(n_groups=30, d=8)
    for kind, cls in Probe.registry.items():  # fit_layers: probes[target][layer] for x [n, layers, d]
        fitted = cls.fit_layers(settings.of(kind), np.stack([x, x], axis=1), y, groups)
        assert len(fitted) == 1 and len(fitted[0]) == 2 and fitted[0][1].kind == kind


def test_early_stopping_never_sees_rows_outside_the_training_prompts():
    """The SGD probe's fit takes only training rows: its early stopping holds out some of their prompts."""
    x, y, groups, _ = planted(n_groups=50, d=8)
    probe = SGDProbe(TrainConfig(epochs=5, patience=2)).fit(x, y, groups)
    assert probe.info.fit["epochs_run"] <= 5 and np.isfinite(probe.info.fit["final_val_loss"])
    # Planted: the prompts the inner split holds out get inverted, ten times larger ratings. Watching them (and only
    # them), the
    # validation loss rises from the first epoch, so training stops after `patience` more epochs with the first epoch's
    # weights; watching the fitted rows instead, it would keep improving for several epochs; fitting on the held rows
    # too
    # would turn the learned direction around.
    from latent_reward.data.splits import inner_split

    config = TrainConfig(epochs=30, patience=2, lr=3e-2, batch_size=8, schedule="constant")
    x, y, groups, _ = planted(n_groups=40, d=8, noise=0.1)
    held = inner_split(groups, config.inner_val_fraction, config.seed)
    assert 0 < held.sum() < len(y) / 3
    clean = SGDProbe(config).fit(x, y, groups)
    assert clean.info.fit["best_epoch"] >= 3  # clean held prompts: the loss keeps falling for a while
    planted_y = np.where(held, -10 * y, y)
    probe = SGDProbe(config).fit(x, planted_y, groups)
    assert probe.info.fit["best_epoch"] == 0 and probe.info.fit["epochs_run"] == config.patience + 1
    assert np.corrcoef(probe.predict(x[~held]), y[~held])[0, 1] > 0.5  # learned from the fitted rows only
    # the recorded loss is the restored network's MSE on exactly those rows, on the z-scale of the fitted rows
    z = (probe.predict(x[held]) - probe.y_mean) / probe.y_scale
    expected = np.mean((z - (planted_y[held] - probe.y_mean) / probe.y_scale) ** 2)
    assert probe.info.fit["final_val_loss"] == pytest.approx(expected, rel=1e-4)
    assert probe.y_mean == pytest.approx(y[~held].mean()) and probe.y_scale == pytest.approx(y[~held].std())
    np.testing.assert_allclose(probe.standardizer.mean, x[~held].mean(0))
    # rows of other prompts, given to the fit, change the split and the stopping point: the fit is what sees them
    other_x, other_y, other_groups, _ = planted(n_groups=40, d=8, noise=0.1, seed=5)
    other_groups = np.char.add("other", other_groups)
    widened = SGDProbe(config).fit(
        np.concatenate([x, other_x]), np.concatenate([planted_y, -other_y]), np.concatenate([groups, other_groups])
    )
    assert (widened.info.fit["epochs_run"], widened.info.fit["best_epoch"]) != (
        probe.info.fit["epochs_run"],
        probe.info.fit["best_epoch"],
    )


def test_dual_ridge_path_agrees_with_sklearn():
    """n < d: the solve goes through X X^T (the dual form)."""
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(30, 80)), rng.normal(size=30)
    probe = RidgeProbe(alpha_factor=0.5).fit(x, y)
    z = (x - x.mean(0)) / x.std(0)
    np.testing.assert_allclose(probe.predict(x), Ridge(alpha=0.5 * 30).fit(z, y).predict(z), rtol=1e-8, atol=1e-8)


def test_a_damaged_probe_is_a_clear_error(tmp_path):
    from latent_reward.errors import UserError

    x, y, groups, _ = planted(n_groups=20, d=8)
    folder = RidgeProbe().fit(x, y, groups).save(tmp_path / "p")
    (folder / "probe.json").write_text("{not json")
    with pytest.raises(UserError, match="probe.json is not a valid probe file"):
        Probe.load(folder)
    (folder / "probe.json").write_text('{"kind": "forest"}')
    with pytest.raises(UserError, match="known kind"):
        Probe.load(folder)


def test_leave_one_prompt_out_residuals_are_exact():
    """The closed-form leave-one-prompt-out CV equals refitting without each prompt (same standardization)."""
    from latent_reward.probes.ridge import ridge_cv_all_layers

    for n_groups, d in ((12, 30), (40, 6)):  # dual (n < d) and primal (n >= d) forms
        x, y, groups, _ = planted(n_groups=n_groups, per_group=3, d=d, noise=1.0)
        cv = ridge_cv_all_layers(x[:, None, :], y, groups, alpha_factors=(0.3,))
        z = (x - x.mean(0)) / x.std(0)
        brute = np.empty(len(y))
        for g in np.unique(groups):
            out = groups == g
            brute[out] = Ridge(alpha=0.3 * len(y)).fit(z[~out], y[~out]).predict(z[out])
        np.testing.assert_allclose(cv.predictions[0, :, 0], brute, rtol=1e-8, atol=1e-8)
