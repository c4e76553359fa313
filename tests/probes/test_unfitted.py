"""A probe, or its training loop, with nothing to keep says so instead of failing on a missing part."""

import numpy as np
import pytest
import torch

from latent_reward.probes import Probe
from latent_reward.probes.settings import TrainConfig
from latent_reward.probes.sgd import train_regressor


@pytest.mark.parametrize("kind", sorted(Probe.registry))
def test_a_probe_used_before_it_is_fitted_or_loaded_says_so(kind, tmp_path):
    probe = Probe.create(kind)
    with pytest.raises(RuntimeError, match="before it was fitted or loaded"):
        probe.predict(np.zeros((2, 4)))
    with pytest.raises(RuntimeError, match="before it was fitted or loaded"):
        probe.save(tmp_path / kind)


def test_training_whose_loss_is_never_finite_names_that():
    x = np.random.default_rng(0).normal(size=(8, 3))
    y = np.full(8, np.nan)
    with pytest.raises(RuntimeError, match="not finite in any of 2 epochs"):
        train_regressor(torch.nn.Linear(3, 1), x, y, x, y, TrainConfig(epochs=2, patience=5))
