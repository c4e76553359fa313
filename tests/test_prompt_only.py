import numpy as np

from latent_reward.experiments.prompt_only import prompt_only
from latent_reward.experiments.sweep import SweepOptions, sweep
from test_sweep import planted_store


def test_planted_prompt_signal_is_found_before_the_response_and_not_within_prompts(tmp_path):
    store = planted_store(tmp_path / "s", n_groups=120, response_signal=0.0, prompt_signal=1.0)
    response_level = sweep(store, SweepOptions(n_boot=200), progress=False)
    result = prompt_only(store, response_level, n_boot=300)
    assert (result.best["position"], result.best["layer"]) == ("assistant_start", 2)
    assert result.best["test_pearson"]["value"] > 0.9 and result.best["test_pearson"]["low"] > 0.8
    assert result.variance_between_fraction > 0.9
    row = result.decomposition.set_index("position").loc["assistant_start"]
    assert row["between_prompt_r"] > 0.9 and abs(row["within_prompt_r"]) < 0.25
    assert result.baselines["prompt length"]["value"] < 0.5
    # the prompts it expects most reward for are those with the highest true mean rating
    assert np.mean([p["mean_rating"] for p in result.top_prompts]) > np.mean([p["mean_rating"] for p in result.bottom_prompts])


def test_response_only_signal_gives_no_prompt_level_reward(tmp_path):
    store = planted_store(tmp_path / "s", n_groups=120, response_signal=1.0, prompt_signal=0.0)
    result = prompt_only(store, sweep(store, SweepOptions(n_boot=200), progress=False), n_boot=300)
    assert result.best["test_pearson"]["low"] < 0.3
    row = result.decomposition.set_index("position").loc["eot"]
    assert row["within_prompt_r"] > 0.9
    assert result.variance_between_fraction < 0.45
