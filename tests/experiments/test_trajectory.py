import numpy as np
import pytest
from sklearn.linear_model import Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from helpers import direct_states, sklearn_ridge, synthetic_examples
from latent_reward.activations import ExtractConfig, extract
from latent_reward.analysis.sweep import SweepConfig, sweep
from latent_reward.experiments.trajectory import (
    END_PROBE,
    TOKEN_PROBE,
    TrajectoryConfig,
    _simultaneous_band,
    reward_trajectories,
)
from latent_reward.probes.settings import DEFAULT_ALPHA_FACTORS


@pytest.fixture(scope="module")
def tiny_store(tiny, tmp_path_factory):
    examples = synthetic_examples(n_prompts=30, per_prompt=3)
    return extract(tiny, examples, tmp_path_factory.mktemp("tiny-store"), ExtractConfig(), progress=False).store


def test_trajectory_pairs_responses_to_the_same_prompt_and_ends_where_the_response_probe_reads(tiny, tiny_store):
    fit = sweep(tiny_store, SweepConfig(n_boot=100), progress=False)
    trajectory = reward_trajectories(
        tiny,
        tiny_store,
        fit,
        TrajectoryConfig(pairs=20, train_responses=20, relative_bins=5, n_boot=200, null_probes=20),
    )
    assert {(c.probe, c.axis) for c in trajectory.curves} == {
        (p, a) for p in (END_PROBE, TOKEN_PROBE) for a in ("relative", "tokens")
    }
    test_groups = set(fit.target.groups[fit.plan.masks["test"]])
    assert 1 <= trajectory.n_pairs <= len(test_groups)
    relative = trajectory.curve(END_PROBE, "relative")
    assert len(relative.bins) == 5 and all(n == trajectory.n_pairs for n in relative.pairs)
    tokens = trajectory.curve(END_PROBE, "tokens")
    assert tokens.bins[:3] == [0.0, 8.0, 16.0] and tokens.pairs[0] <= trajectory.n_pairs
    assert trajectory.null.n_permutations == 20
    # the layer is the validation-best ridge layer at response_last, where the end-of-response probe reads
    assert trajectory.layer == fit.result.val_best("ridge", "response_last").layer
    for curve in trajectory.curves:  # better and worse average the same pairs as their difference
        for better, worse, difference in zip(curve.better, curve.worse, curve.difference):
            if difference.value is not None:
                assert better - worse == pytest.approx(difference.value, abs=1e-9)
    assert len(trajectory.lens) == 6
    by_id = {e.id: e for e in tiny_store.examples}
    # the end-of-response probe, rebuilt with sklearn on the training rows (penalty by leave-one-prompt-out error), and
    # the same Ridge at the other penalties of the grid
    x = tiny_store.array("response_last", layers=[trajectory.layer])[:, 0].astype(np.float64)
    train = fit.plan.masks["train"]
    x_train, y_train = x[fit.target.keep][train], fit.target.y[train]
    _, chosen = sklearn_ridge(x_train, y_train, fit.target.groups[train], DEFAULT_ALPHA_FACTORS)
    alphas = np.array(DEFAULT_ALPHA_FACTORS) * len(y_train)
    end_probes = {alpha: make_pipeline(StandardScaler(), Ridge(alpha=alpha)).fit(x_train, y_train) for alpha in alphas}
    for item in trajectory.lens:
        assert "".join(item.tokens).strip() == by_id[item.id].response
        assert len(item.tokens) == len(item.estimates)
        rendered, states, _ = direct_states(tiny, by_id[item.id].messages)
        last = states[rendered.spans.response_last, trajectory.layer]
        # the state it reads at the last response token is the stored response_last state (float16 in the store) ...
        row = tiny_store.ids.index(item.id)
        np.testing.assert_allclose(last, x[row], rtol=2e-3, atol=2e-3)
        # ... and its estimate there is the sklearn probe's reading of that state, at the chosen penalty only
        readings = {alpha: probe.predict(last[None])[0] for alpha, probe in end_probes.items()}
        assert item.estimates[-1] == pytest.approx(readings[alphas[np.isclose(alphas, chosen)][0]], abs=1e-4)
        assert all(
            abs(item.estimates[-1] - value) > 1e-3
            for alpha, value in readings.items()
            if not np.isclose(alpha, chosen) and abs(np.log10(alpha / chosen)) <= 1
        )


def test_simultaneous_band_finds_a_planted_separation_and_not_noise():
    rng = np.random.default_rng(0)
    noise = rng.normal(size=(80, 10))
    planted = noise + np.linspace(0, 1.5, 10)  # separates in the later bins
    bands = _simultaneous_band(planted, 500, 0)
    assert bands[-1].low > 0 and bands[0].low < 0
    null = _simultaneous_band(noise, 500, 1)
    assert sum(b.low > 0 or b.high < 0 for b in null) <= 1  # 10 bins, simultaneous 95%: rarely any
