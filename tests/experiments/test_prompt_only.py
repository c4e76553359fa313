import numpy as np

from helpers import planted_store
from latent_reward.analysis.sweep import SweepConfig, sweep
from latent_reward.experiments.prompt_only import PromptOnlyConfig, prompt_only
from latent_reward.experiments.readout import ReadoutConfig, reward_readout

CONFIG = PromptOnlyConfig(n_boot=300)
FAST = ReadoutConfig(
    sweep=SweepConfig(n_boot=200), permutations=10, split_seeds=1, paired_permutations=200, sgd_grid=False
)


def test_planted_prompt_signal_is_found_before_the_response_and_not_within_prompts(tmp_path):
    store = planted_store(tmp_path / "s", n_groups=120, response_signal=0.0, prompt_signal=1.0)
    response_level = sweep(store, SweepConfig(n_boot=200), progress=False)
    result = prompt_only(store, CONFIG, response_level)
    assert (result.best.position, result.best.layer) == ("assistant_start", 2)
    assert result.best_test.value > 0.9 and result.best_test.low > 0.8
    assert result.cross_fitted.pearson.low > 0.85 and {c.layer for c in result.fold_cells} == {2}
    assert result.icc.value > 0.9
    readout, _, _ = reward_readout(store, FAST, progress=False)
    row = next(r for r in readout.decomposition if r.position == "assistant_start")
    # a prompt position's states are the same for every response to a prompt: its within-prompt r is not applicable
    assert row.between_prompt_r.value > 0.9 and row.within_prompt_r.value is None and str(row.within_prompt_r) == "n/a"
    length = next(b for b in result.baselines if b.name == "prompt length")
    assert length.scores.pearson.value < 0.5 and length.versus_probe["pearson"].difference.above(0)
    # the prompts it expects most reward for are those with the highest true mean rating
    assert np.mean([p.mean_rating for p in result.top_prompts]) > np.mean(
        [p.mean_rating for p in result.bottom_prompts]
    )


def test_response_only_signal_gives_no_prompt_level_reward(tmp_path):
    store = planted_store(tmp_path / "s", n_groups=120, response_signal=1.0, prompt_signal=0.0)
    result = prompt_only(store, CONFIG, sweep(store, SweepConfig(n_boot=200), progress=False))
    assert result.best_test.low < 0.3 and result.cross_fitted.pearson.low < 0.3
    readout, _, _ = reward_readout(store, FAST, progress=False)
    row = next(r for r in readout.decomposition if r.position == "eot")
    assert row.within_prompt_r.value > 0.9 and row.within_prompt_r.low > 0.8
    assert result.icc.value < 0.1 and result.raw_between_share > 0.2  # the raw share is inflated; ICC is not
    assert "off-policy" in result.off_policy


def test_prompt_only_reports_the_two_way_icc_its_reliability_and_the_ceiling_where_rows_name_a_generator(tmp_path):
    from latent_reward.evaluation.reliability import icc
    from latent_reward.report.answers import reliability_sentence

    store = planted_store(tmp_path / "s", n_groups=60, response_signal=1.0, prompt_signal=1.0)
    result = prompt_only(store, CONFIG, sweep(store, SweepConfig(n_boot=100), progress=False))
    generators = np.array([e.meta["generator"] for e in store.examples])
    rel = result.reliability
    assert rel.factor == "generator" and rel.icc.value == icc(store.ratings, store.groups, generators)
    assert rel.responses_per_prompt == 4 and rel.mean_reliability.value == 4 * rel.icc.value / (1 + 3 * rel.icc.value)
    sentence = reliability_sentence(result, result.cross_fitted.pearson)
    assert "two-way ICC(C,1)" in sentence and f"r <= {rel.r_ceiling}" in sentence and str(result.icc) in sentence


def test_the_prompt_only_command_prints_the_right_icc_and_the_ceiling(tmp_path):
    from helpers import cli

    planted_store(tmp_path / "s", n_groups=40, response_signal=1.0, prompt_signal=1.0)
    done = cli("prompt-only", "--store", tmp_path / "s", "--out", tmp_path / "o", "--n-boot", "100")
    assert done.returncode == 0, done.stderr
    text = " ".join(done.stdout.split())  # the console wraps long lines
    assert "two-way ICC(C,1) with the generator fixed of the rating by prompt = " in text
    assert "reliability of a prompt's mean of 4.0 ratings" in text and "ceiling on r" in text
