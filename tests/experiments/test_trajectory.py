import numpy as np
import pytest

from helpers import synthetic_examples
from latent_reward.activations import ExtractConfig, extract
from latent_reward.experiments.sweep import SweepConfig, sweep
from latent_reward.experiments.trajectory import END_PROBE, TOKEN_PROBE, TrajectoryConfig, _simultaneous_band, reward_trajectories
from latent_reward.probes import RidgeProbe


@pytest.fixture(scope="module")
def tiny_store(tiny, tmp_path_factory):
    examples = synthetic_examples(n_prompts=30, per_prompt=3)
    return extract(tiny, examples, tmp_path_factory.mktemp("tiny-store"), ExtractConfig(), progress=False).store


def test_trajectory_pairs_responses_to_the_same_prompt_and_ends_where_the_response_probe_reads(tiny, tiny_store):
    fit = sweep(tiny_store, SweepConfig(n_boot=100), progress=False)
    trajectory = reward_trajectories(tiny, tiny_store, fit, TrajectoryConfig(pairs=20, train_responses=20, relative_bins=5, n_boot=200,
                                                                             null_probes=20))
    assert {(c.probe, c.axis) for c in trajectory.curves} == {(p, a) for p in (END_PROBE, TOKEN_PROBE) for a in ("relative", "tokens")}
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
    x = tiny_store.array("response_last", layers=[trajectory.layer])[:, 0].astype(np.float32)
    train = fit.plan.masks["train"]
    end_probe = RidgeProbe().fit(x[fit.target.keep][train], fit.target.y[train], fit.target.groups[train])
    for item in trajectory.lens:
        assert "".join(item.tokens).strip() == by_id[item.id].response
        assert len(item.tokens) == len(item.estimates)
        row = tiny_store.ids.index(item.id)
        # the estimate at the last response token is the response-level probe's reading of response_last
        assert item.estimates[-1] == pytest.approx(end_probe.predict(x[row : row + 1])[0], rel=1e-2, abs=1e-2)


def test_simultaneous_band_finds_a_planted_separation_and_not_noise():
    rng = np.random.default_rng(0)
    noise = rng.normal(size=(80, 10))
    planted = noise + np.linspace(0, 1.5, 10)  # separates in the later bins
    bands = _simultaneous_band(planted, 500, 0)
    assert bands[-1].low > 0 and bands[0].low < 0
    null = _simultaneous_band(noise, 500, 1)
    assert sum(b.low > 0 or b.high < 0 for b in null) <= 1  # 10 bins, simultaneous 95%: rarely any
