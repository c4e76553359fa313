"""probes/compute.py: where the ridge fits compute. The device names resolve as --device's do (mps on the CPU: no
float64 there), the context sets and restores the device, and the arithmetic a GPU runs in place of numpy's (the
held-out systems solved in torch) gives the same fits, checked here on the CPU."""

import numpy as np
import pytest
import torch

from latent_reward.errors import UserError
from latent_reward.probes import ridge
from latent_reward.probes.compute import analysis_device, current_device, fit_device


@pytest.fixture
def single_process(monkeypatch):
    for name in ("WORLD_SIZE", "LOCAL_RANK", "RANK"):
        monkeypatch.delenv(name, raising=False)


def gpus(monkeypatch, count: int) -> None:
    """torch sees `count` GPUs (none really: nothing here computes on them)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)


def test_device_names_resolve_as_the_models_do_and_mps_computes_on_the_cpu(monkeypatch, single_process):
    gpus(monkeypatch, 0)
    assert [str(fit_device(name)) for name in ("auto", "cpu", "mps")] == ["cpu", "cpu", "cpu"]
    gpus(monkeypatch, 2)
    assert [str(fit_device(name)) for name in ("auto", "cuda", "cuda:1", "cpu")] == ["cuda", "cuda", "cuda:1", "cpu"]


@pytest.mark.parametrize(("count", "name"), [(0, "cuda"), (0, "cuda:0"), (2, "cuda:2")])
def test_a_gpu_torch_does_not_see_is_one_clear_error(monkeypatch, single_process, count, name):
    gpus(monkeypatch, count)
    with pytest.raises(UserError, match="torch sees no GPU" if count == 0 else f"torch sees {count} GPU"):
        fit_device(name)


def test_the_context_sets_the_device_and_restores_the_one_before(monkeypatch, single_process):
    gpus(monkeypatch, 2)
    assert current_device() == torch.device("cpu")
    with analysis_device("cuda:1") as outer:
        assert outer == current_device() == torch.device("cuda:1")
        with pytest.raises(RuntimeError), analysis_device("cpu"):
            assert current_device() == torch.device("cpu")
            raise RuntimeError
        assert current_device() == torch.device("cuda:1")
    assert current_device() == torch.device("cpu")


@pytest.mark.parametrize("before", ["none", "tf32", "ieee"])
def test_float32_products_keep_their_precision_on_a_gpu_and_the_setting_before_returns(
    monkeypatch, single_process, before
):
    gpus(monkeypatch, 1)
    matmul = torch.backends.cuda.matmul  # a property of torch's, not an attribute monkeypatch can set
    saved = matmul.fp32_precision
    matmul.fp32_precision = before
    try:
        with analysis_device("cpu"):
            assert matmul.fp32_precision == before  # the CPU's products: nothing to change
        with analysis_device("cuda"):
            assert matmul.fp32_precision == "ieee" and not matmul.allow_tf32
        assert matmul.fp32_precision == before
    finally:
        matmul.fp32_precision = saved


def _blocks(rng, dtype):
    """Hat blocks [L, A, g, m, m] (symmetric, eigenvalues in [0, 0.9], so I - hat is well conditioned)."""
    basis = np.linalg.qr(rng.normal(size=(2, 3, 4, 5, 5)))[0]
    values = rng.uniform(0, 0.9, size=(2, 3, 4, 5))
    hat = np.einsum("...ij,...j,...kj->...ik", basis, values, basis)
    return torch.as_tensor(hat, dtype=dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("targets", [1, 9])  # fewer targets than rows: solved; more: inverted once
def test_the_device_solver_of_the_held_out_systems_equals_the_cpu_one(dtype, targets):
    rng = np.random.default_rng(0)
    hat = _blocks(rng, dtype)
    others = torch.as_tensor(rng.normal(size=(2, 3, 4, 5, targets)), dtype=dtype)
    few = targets < hat.shape[-1]
    on_device = ridge._held_out_torch(hat, others, few).to(torch.float64)
    on_host = ridge._held_out_numpy(hat, others, few).to(torch.float64)
    tolerance = 1e-12 if dtype == torch.float64 else 1e-5
    np.testing.assert_allclose(on_device.numpy(), on_host.numpy(), rtol=tolerance, atol=tolerance)
    # and both solve the systems: (I - hat) held = others
    residual = others.double() - (torch.eye(5, dtype=torch.float64) - hat.double()) @ on_device
    assert float(residual.abs().max()) < tolerance * 10


def test_the_ridge_with_the_device_solver_is_the_ridge(monkeypatch):
    """The whole cross-validation through the systems a GPU solves (in torch) against numpy's: same errors, penalties
    and fits, for one target (solved) and for many (inverted)."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(90, 3, 12))
    y = np.column_stack([x[:, 1] @ rng.normal(size=12) + rng.normal(size=90), rng.normal(size=(90, 6))])
    groups, folds = np.repeat(np.arange(30), 3), np.repeat(np.arange(30) % 3, 3)
    for targets in (y[:, 0], y):
        expected = list(ridge.ridge_cv_folds(x, targets, groups, folds))
        with monkeypatch.context() as patch:
            patch.setattr(ridge, "_held_out_numpy", ridge._held_out_torch)
            got = list(ridge.ridge_cv_folds(x, targets, groups, folds))
        for a, b in zip(got, expected, strict=True):
            np.testing.assert_allclose(a.mse, b.mse, rtol=1e-10)
            np.testing.assert_array_equal(a.best_alpha, b.best_alpha)
            np.testing.assert_allclose(a.predictions, b.predictions, rtol=1e-10, atol=1e-12)
