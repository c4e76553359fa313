"""How permutation p-values are printed: at the floor 1 / (B + 1) as a bound, never as an exact value."""

from latent_reward.report.pvalue import p_text


def test_a_p_at_its_permutation_floor_is_printed_as_a_bound():
    assert p_text(1 / 101, 100) == "p <= 0.010"
    assert p_text(1 / 20, 19, "rank p") == "rank p <= 0.050"
    assert p_text(1 / 10000, 9999) == "p <= 0.0001"  # enough digits to show the floor
    assert p_text(3 / 101, 100) == "p = 0.030"
    assert p_text(0.2, None) == "p = 0.200" and p_text(None, 100) == "p n/a"


def test_the_run_and_compare_pages_print_a_paired_p_at_its_floor_as_a_bound():
    import numpy as np

    from latent_reward.evaluation.metrics import Resampler
    from latent_reward.evaluation.paired import paired_differences
    from latent_reward.evaluation.results import Comparison, Interval, PairedDifference, Scores
    from latent_reward.report.answers import _versus
    from latent_reward.report.html import _difference_text

    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(40), 2).astype(str)
    y = rng.normal(size=80)
    found = paired_differences(
        y,
        y + 0.01 * rng.normal(size=80),
        rng.normal(size=80),
        Resampler.make(groups, 50, 0),
        metrics=("pearson",),
        n_permutations=100,
    )["pearson"]
    assert found.n_permutations == 100 and found.p_value == 1 / 101  # the probe reads y, the other predictor noise
    assert _difference_text(found).endswith("(p <= 0.010)")
    comparison = Comparison(name="length", kind="baseline", scores=Scores(), versus_probe={"pearson": found})
    assert _versus(comparison, "pearson").endswith("p <= 0.010")
    later = PairedDifference(metric="pearson", difference=Interval.of(0.1), p_value=0.25, n_permutations=100)
    assert _difference_text(later) == "+0.100 (p = 0.250)"
