import numpy as np
import pytest
from scipy import stats
from sklearn.linear_model import Ridge
from sklearn.metrics import mean_absolute_error, r2_score

from latent_reward.evaluation.controls import shuffle_within_groups
from latent_reward.evaluation.metrics import all_metrics, bootstrap_ci, partial_correlation, within_prompt_accuracy
from latent_reward.probes import MeanDiffProbe, MLPProbe, PairwiseProbe, Probe, RidgeProbe, SGDProbe, TrainConfig, ridge_cv_all_layers


def planted(n_groups=200, per_group=4, d=48, noise=0.3, seed=0, prompt_signal=0.0):
    """States with a known direction: rating = states . direction (+ optional prompt-level term)."""
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(n_groups), per_group).astype(str)
    scales = rng.uniform(0.5, 50, size=d)  # features on very different scales, like residual layers
    x = rng.normal(size=(len(groups), d)) * scales
    direction = rng.normal(size=d)
    direction /= np.linalg.norm(direction)
    y = (x / scales) @ direction + noise * rng.normal(size=len(groups))
    if prompt_signal:
        y += prompt_signal * rng.normal(size=n_groups)[np.repeat(np.arange(n_groups), per_group)]
    true_residual_direction = direction / scales
    return x, y, groups, true_residual_direction / np.linalg.norm(true_residual_direction)


def split(groups):
    ids = np.array([int(g) for g in groups])
    return ids % 5 < 3, ids % 5 == 3, ids % 5 == 4


@pytest.mark.parametrize("probe", [RidgeProbe(), SGDProbe(TrainConfig(epochs=60, lr=3e-3)), MLPProbe(TrainConfig(epochs=60, lr=3e-3)),
                                   MeanDiffProbe(), PairwiseProbe(c=1.0)], ids=lambda p: p.kind)
def test_probes_recover_a_planted_direction(probe, tmp_path):
    x, y, groups, direction = planted()
    train, val, test = split(groups)
    probe.fit(x[train], y[train], groups[train], x[val], y[val])
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
    best, mse = ridge_cv_all_layers(stacked, y, groups)
    assert best[1] > best[0]
    assert mse[0].min() < 0.1 * mse[1].min()


def test_metrics_agree_with_scipy_and_sklearn():
    rng = np.random.default_rng(0)
    y, p = rng.normal(size=200), rng.normal(size=200)
    p = p + y
    groups = np.repeat(np.arange(50), 4)
    metrics = all_metrics(y, p, groups)
    assert metrics["pearson"] == pytest.approx(stats.pearsonr(y, p).statistic)
    assert metrics["spearman"] == pytest.approx(stats.spearmanr(y, p).statistic)
    assert metrics["r2"] == pytest.approx(r2_score(y, p))
    assert metrics["mae"] == pytest.approx(mean_absolute_error(y, p))
    # within-prompt accuracy by brute force over pairs
    correct = total = 0
    for g in range(50):
        rows = np.flatnonzero(groups == g)
        for i in rows:
            for j in rows:
                if i < j and y[i] != y[j]:
                    total += 1
                    correct += (y[i] - y[j]) * (p[i] - p[j]) > 0
    assert metrics["within_acc"] == pytest.approx(correct / total)


def test_pair_accuracy_for_chosen_rejected_counts_ties_half():
    y = np.array([1, 0, 1, 0, 1, 0])
    p = np.array([2.0, 1.0, 0.0, 1.0, 5.0, 5.0])
    assert within_prompt_accuracy(y, p, np.array(["a", "a", "b", "b", "c", "c"])) == pytest.approx(1.5 / 3)


def test_bootstrap_interval_covers_the_point_and_narrows_with_more_prompts():
    small = planted(n_groups=20, noise=1.0)
    large = planted(n_groups=400, noise=1.0)
    widths = []
    for _, y, groups, _ in (small, large):
        p = y + np.random.default_rng(1).normal(size=len(y))
        ci = bootstrap_ci(y, p, groups, n_boot=500)
        assert ci["pearson"].low <= ci["pearson"].value <= ci["pearson"].high
        assert ci["within_acc"].low <= ci["within_acc"].value <= ci["within_acc"].high
        widths.append(ci["pearson"].high - ci["pearson"].low)
    assert widths[1] < widths[0] / 2


def test_shuffled_control_collapses_and_partial_correlation_removes_length():
    x, y, groups, _ = planted(noise=0.1)
    train, val, test = split(groups)
    control_y = shuffle_within_groups(y, groups, seed=0)
    assert sorted(control_y[groups == "3"]) == sorted(y[groups == "3"])
    probe = RidgeProbe().fit(x[train], control_y[train], groups[train])
    metrics = all_metrics(control_y[test], probe.predict(x[test]), groups[test])
    assert abs(metrics["pearson"]) < 0.2 and abs(metrics["within_acc"] - 0.5) < 0.1
    rng = np.random.default_rng(0)
    length = rng.normal(size=500)
    rating = length + 0.1 * rng.normal(size=500)
    assert abs(partial_correlation(rating, length + 0.01 * rng.normal(size=500), length)) < 0.2
