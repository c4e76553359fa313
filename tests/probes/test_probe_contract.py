"""The contract every registered probe kind keeps (parametrised over `Probe.registry`, so a new kind is checked with no
new test): its own settings model, fit, predict, a unit direction, save and load, and `to_torch` giving `predict`."""

import numpy as np
import pytest
import torch

from helpers import planted, split
from latent_reward.analysis.sweep import SweepConfig
from latent_reward.errors import UserError
from latent_reward.probes import DEFAULT_PROBE, Probe, ProbeOptions, ProbeSettings

KINDS = sorted(Probe.registry)


@pytest.fixture(scope="module")
def data():
    x, y, groups, direction = planted(n_groups=60, d=10, noise=0.2)
    return x, y, groups, direction


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_fits_predicts_saves_loads_and_gives_a_direction(kind, data, tmp_path):
    x, y, groups, planted_direction = data
    train, _, test = split(groups)
    cls = Probe.registry[kind]
    assert issubclass(cls.Settings, ProbeSettings) and cls.Settings is not ProbeSettings
    probe = Probe.create(kind).fit(x[train], y[train], groups[train])
    predicted = probe.predict(x[test])
    assert predicted.shape == (test.sum(),) and np.isfinite(predicted).all()
    assert np.corrcoef(predicted, y[test])[0, 1] > 0.3  # it learned the planted rating (sgd's defaults train briefly)
    direction = probe.direction
    assert direction.shape == (x.shape[1],) and np.linalg.norm(direction) == pytest.approx(1.0)
    if cls.linear:  # a linear kind's direction is the planted one (in residual space, standardization undone)
        assert abs(direction @ planted_direction) > 0.5  # a random unit direction in 10 dimensions: about 0.25
    reloaded = Probe.load(probe.save(tmp_path / kind))
    assert type(reloaded) is cls and reloaded.info == probe.info
    np.testing.assert_allclose(reloaded.predict(x[test]), predicted, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(reloaded.direction, direction, rtol=1e-6, atol=1e-6)
    fitted = cls.fit_layers(cls.Settings(), np.stack([x[train], -x[train]], axis=1), y[train], groups[train])
    assert len(fitted) == 1 and len(fitted[0]) == 2 and all(type(p) is cls for p in fitted[0])


@pytest.mark.parametrize("kind", KINDS)
def test_to_torch_is_the_same_function_as_predict(kind, data):
    x, y, groups, _ = data
    probe = Probe.create(kind).fit(x, y, groups)
    expected = probe.predict(x[:25])
    module = probe.to_torch(torch.float64)
    assert isinstance(module, torch.nn.Module) and not module.training
    with torch.no_grad():
        exact = module(torch.as_tensor(x[:25])).numpy()
        single = module.float()(torch.as_tensor(x[:25], dtype=torch.float32)).numpy()  # the default dtype
        batched = module(torch.as_tensor(np.stack([x[:25], x[:25]]), dtype=torch.float32)).numpy()  # any leading shape
    # float64 all the way for the closed-form kinds; the trained kinds' networks are float32 (as predict runs them)
    tolerance = 1e-9 if kind in ("ridge", "mean_diff", "pairwise") else 1e-5
    np.testing.assert_allclose(exact, expected, rtol=tolerance, atol=tolerance * np.abs(expected).max())
    np.testing.assert_allclose(single, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())
    assert batched.shape == (2, 25)


def test_probe_options_keep_each_kinds_own_settings_through_json():
    settings = {"mlp": {"hidden": 16, "train": {"epochs": 3}}, "ridge": {"alpha_factors": [0.5]}}
    config = SweepConfig(probes=("ridge", "mlp"), settings=settings)
    again = SweepConfig.model_validate_json(config.model_dump_json())
    assert again == config
    assert again.settings.of("mlp").hidden == 16 and again.settings.of("mlp").train.epochs == 3
    assert again.settings.of("ridge").alpha_factors == (0.5,)
    assert again.settings.of("pairwise") == Probe.registry["pairwise"].Settings()  # not named: the kind's defaults
    with pytest.raises(ValueError, match="unknown probe"):
        ProbeOptions({"lasso": {}})
    with pytest.raises(ValueError, match="hidden"):
        ProbeOptions({"ridge": {"hidden": 16}})  # another kind's option
    with pytest.raises(UserError, match="RidgeSettings"):
        Probe.create("ridge", Probe.registry["mlp"].Settings())
    assert SweepConfig().probes == (DEFAULT_PROBE,) == ("ridge",)


def test_the_old_flat_settings_of_a_run_json_still_load():
    """run.json files written before each kind had its own settings hold one flat object; they still replay."""
    flat = {
        "train": {"epochs": 7},
        "alpha_factors": [0.1, 1.0],
        "mlp_hidden": 32,
        "mlp_dropout": 0.2,
        "mean_diff_quantile": 0.25,
        "pairwise_c": 0.5,
    }
    options = SweepConfig.model_validate({"settings": flat}).settings
    assert options.of("ridge").alpha_factors == (0.1, 1.0) and options.of("sgd").train.epochs == 7
    assert (options.of("mlp").hidden, options.of("mlp").dropout, options.of("mlp").train.epochs) == (32, 0.2, 7)
    assert options.of("mean_diff").quantile == 0.25 and options.of("pairwise").c == 0.5
