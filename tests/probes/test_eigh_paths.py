"""probes/ridge.py: the two eigensolvers (torch's below 3,072 wide on the CPU, scipy's evd from there) give the same
leave-one-prompt-out errors and weights; the wide path is forced on a small case by lowering the threshold."""

import numpy as np
import pytest

from latent_reward.probes import ridge


@pytest.mark.parametrize("n", [60, 20])  # primal (n >= d) and dual (n < d)
def test_scipy_and_torch_eigensolvers_give_the_same_ridge(monkeypatch, n):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 2, 30)) * rng.uniform(0.5, 5, size=30)
    y = x[:, 1] @ rng.normal(size=30) + rng.normal(size=n)
    groups = np.repeat(np.arange(n // 2), 2)
    torch_cv = ridge.ridge_cv_all_layers(x, y, groups)
    monkeypatch.setattr(ridge, "_SCIPY_EIGH_FROM", 1)
    scipy_cv = ridge.ridge_cv_all_layers(x, y, groups)
    np.testing.assert_allclose(scipy_cv.mse, torch_cv.mse, rtol=1e-9)
    np.testing.assert_array_equal(scipy_cv.best_alpha, torch_cv.best_alpha)
    for a, b in zip(scipy_cv.weights, torch_cv.weights):
        np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-10)
    errors = ridge.logo_ridge(x[:, 0], y, groups, np.array([0.1, 1.0, 10.0])).errors
    monkeypatch.setattr(ridge, "_SCIPY_EIGH_FROM", 10**6)
    again = ridge.logo_ridge(x[:, 0], y, groups, np.array([0.1, 1.0, 10.0])).errors
    np.testing.assert_allclose(errors, again, rtol=1e-9)
