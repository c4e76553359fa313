import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import mean_absolute_error, r2_score

from helpers import planted, split
from latent_reward.evaluation.controls import shuffle_within_groups, within_group_permutations
from latent_reward.evaluation.metrics import (
    all_metrics,
    bootstrap_ci,
    icc1,
    icc1_interval,
    metric,
    partial_correlation,
    score,
    within_prompt_accuracy,
)
from latent_reward.probes import RidgeProbe


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
        # exactly: the point on all rows, the ends the 2.5% and 97.5% quantiles over the same seeded prompt resamples
        from latent_reward.evaluation.metrics import Resampler

        samples = Resampler.make(groups, 500, 0).samples(y, p)
        for name in ("pearson", "within_acc"):
            assert (ci[name].low, ci[name].high) == tuple(
                pytest.approx(q) for q in np.quantile(samples[name], [0.025, 0.975])
            )
        assert ci["pearson"].value == pytest.approx(stats.pearsonr(y, p).statistic)
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

    def closed_form(y, p, z):  # one control: r_yp.z = (r_yp - r_yz r_pz) / sqrt((1 - r_yz^2)(1 - r_pz^2))
        r = np.corrcoef([y, p, z])
        return (r[0, 1] - r[0, 2] * r[1, 2]) / np.sqrt((1 - r[0, 2] ** 2) * (1 - r[1, 2] ** 2))

    # a prediction that is length alone: r with the rating ~0.99, nothing left given length
    length_only = length + 0.01 * rng.normal(size=500)
    null = closed_form(rating, length_only, length)
    assert partial_correlation(rating, length_only, length) == pytest.approx(null, abs=1e-10)
    assert abs(null) < 0.2 and np.corrcoef(rating, length_only)[0, 1] > 0.9
    # not a null: the prediction also carries the rating's own noise
    noise = rating - length
    prediction = length + 2 * noise + 0.1 * rng.normal(size=500)
    closed = closed_form(rating, prediction, length)
    assert partial_correlation(rating, prediction, length) == pytest.approx(closed, abs=1e-10) and closed > 0.8


def test_icc_is_about_zero_without_a_prompt_effect_while_the_raw_share_is_not():
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(300), 2)
    y = rng.normal(size=600)
    names, index = np.unique(groups, return_inverse=True)
    means = np.bincount(index, weights=y) / 2
    raw_share = np.sum(2 * (means - y.mean()) ** 2) / np.sum((y - y.mean()) ** 2)
    assert raw_share == pytest.approx(299 / 599, abs=0.08)  # what the old report called "between prompts"
    interval = icc1_interval(y, groups, n_boot=300)
    assert abs(interval.value) < 0.12 and interval.low < 0 < interval.high
    # with a real prompt effect of variance 1 (and noise 1), ICC(1) is about 0.5
    strong = rng.normal(size=300)[index] + rng.normal(size=600)
    assert icc1(strong, groups) == pytest.approx(0.5, abs=0.12)


@pytest.mark.slow
def test_prompt_bootstrap_covers_the_true_correlation_about_95_percent_of_the_time():
    """Data with prompt-level random effects: rows of a prompt are correlated, so a row bootstrap would under-cover."""
    rng = np.random.default_rng(1)
    n_prompts, per = 60, 4
    index = np.repeat(np.arange(n_prompts), per)
    covered, trials = 0, 120  # the population r of y = u + e1 and p = u + e2 (unit variances) is 1 / 2 = 0.5
    for trial in range(trials):
        u = rng.normal(size=n_prompts)[index]
        y = u + rng.normal(size=len(index))
        p = u + rng.normal(size=len(index))
        interval = score(y, p, index.astype(str), n_boot=300, seed=trial).pearson
        covered += interval.low <= 0.5 <= interval.high
    assert 0.88 <= covered / trials <= 0.99, covered / trials


@pytest.mark.slow
def test_prompt_bootstrap_covers_the_true_within_prompt_accuracy_about_95_percent_of_the_time():
    """Ratings y = u + e (a prompt effect u, unit variances) and predictions p = e + eta (sd 1). Within a prompt,
    y_i - y_j = e_i - e_j and p_i - p_j = (e_i - e_j) + (eta_i - eta_j): bivariate normal with correlation 1 / sqrt(2),
    so a pair is ordered correctly with probability 1/2 + arcsin(1 / sqrt(2)) / pi = 3/4 (Sheppard's formula).
    400 simulated data sets of 60 prompts x 4 responses: the mean accuracy sits on 3/4 and the 95% prompt-bootstrap
    interval covers it 95% of the time within Monte Carlo error (sd 0.011; a percentile bootstrap with 60 prompts
    covers 0.93-0.96 here)."""
    rng = np.random.default_rng(2)
    n_prompts, per, trials = 60, 4, 400
    truth = 0.5 + np.arcsin(1 / np.sqrt(2)) / np.pi
    assert truth == pytest.approx(0.75)
    index = np.repeat(np.arange(n_prompts), per)
    groups = index.astype(str)
    covered, estimates = 0, []
    for trial in range(trials):
        e = rng.normal(size=len(index))
        y = rng.normal(size=n_prompts)[index] + e
        interval = score(y, e + rng.normal(size=len(index)), groups, n_boot=300, seed=trial).within_acc
        estimates.append(interval.value)
        covered += interval.low <= truth <= interval.high
    assert np.mean(estimates) == pytest.approx(truth, abs=0.006)  # MC sd of the mean ~0.0015
    assert 0.90 <= covered / trials <= 0.98, covered / trials


def test_within_prompt_shuffles_keep_prompt_level_r_and_put_pair_accuracy_at_chance():
    rng = np.random.default_rng(2)
    groups = np.repeat(np.arange(200), 3).astype(str)
    prompt_level = rng.normal(size=200)[np.repeat(np.arange(200), 3)]
    y = prompt_level + 0.3 * rng.normal(size=600)
    prediction = prompt_level.copy()  # knows the prompt, nothing about the response
    permuted = within_group_permutations(y, groups, 200, seed=0)
    r = [metric("pearson", t, prediction, groups) for t in permuted]
    accuracy = [metric("within_acc", t, prediction + 1e-6 * rng.normal(size=600), groups) for t in permuted]
    assert np.mean(r) > 0.9 and abs(np.mean(accuracy) - 0.5) < 0.02
    for t in permuted[:5]:  # each permutation stays inside its prompts
        for g in ("0", "17", "199"):
            assert sorted(t[groups == g]) == sorted(y[groups == g])


def test_paired_tests_find_a_planted_difference_and_not_a_null_one():
    from latent_reward.evaluation.metrics import Resampler
    from latent_reward.evaluation.paired import paired_differences

    rng = np.random.default_rng(3)
    groups = np.repeat(np.arange(150), 4).astype(str)
    y = rng.normal(size=600)
    good = y + 0.7 * rng.normal(size=600)
    weak = y + 2.0 * rng.normal(size=600)
    twin = y + 0.7 * rng.normal(size=600)
    resampler = Resampler.make(groups, 500, 0)
    planted_difference = paired_differences(y, good, weak, resampler, n_permutations=500)
    assert planted_difference["pearson"].difference.above(0) and planted_difference["pearson"].p_value < 0.01
    assert planted_difference["within_acc"].difference.above(0) and planted_difference["within_acc"].p_value < 0.01
    null = paired_differences(y, good, twin, resampler, n_permutations=500)
    assert null["pearson"].difference.low < 0 < null["pearson"].difference.high and null["pearson"].p_value > 0.05
    assert null["within_acc"].p_value > 0.05


def test_the_verdict_is_one_declared_test_with_three_outcomes_and_says_matches_only_after_an_equivalence_test():
    from latent_reward.evaluation.results import (
        GENERATOR,
        LENGTH,
        TFIDF_RESPONSE,
        Comparison,
        Interval,
        PairedDifference,
        Scores,
    )
    from latent_reward.experiments.readout import verdict

    def probe(acc):
        return Scores(pearson=Interval.of(0.6, 0.5, 0.7), within_acc=acc)

    def baseline(d, p, window, name=TFIDF_RESPONSE):
        """probe minus baseline d, its permutation p, and the 90% interval of the difference (the TOST window)"""
        difference = PairedDifference(
            metric="within_acc",
            difference=Interval.of(d, d - 0.03, d + 0.03),
            p_value=p,
            equivalence=Interval.of(d, *window),
        )
        return Comparison(
            name=name,
            kind="baseline",
            scores=Scores(within_acc=Interval.of(0.55, 0.5, 0.6)),
            versus_probe={"within_acc": difference},
        )

    strong = probe(Interval.of(0.6, 0.55, 0.65))
    weak = probe(Interval.of(0.55, 0.48, 0.62))
    assert verdict(weak, [baseline(0.05, 0.001, (0.03, 0.07))]).kind == "no within-prompt evidence"
    assert verdict(strong, [baseline(0.05, 0.001, (0.03, 0.07))]).kind == "encodes"
    # not distinguishable, and the 90% window is wider than +-0.01: not shown to match
    unclear = verdict(strong, [baseline(0.005, 0.6, (-0.02, 0.03))])
    assert unclear.kind == "indistinguishable from a baseline" and unclear.not_beaten == [TFIDF_RESPONSE]
    assert [row.outcome for row in unclear.baselines] == ["indistinguishable"] and not unclear.baselines[0].equivalent
    # equivalent within the stated margin by two one-sided tests: matches
    matched = verdict(strong, [baseline(0.001, 0.8, (-0.006, 0.008))])
    assert matched.kind == "baseline matches" and matched.baselines[0].equivalent and matched.margin == 0.01
    assert "0.01" in matched.test and "two one-sided tests" in matched.test
    narrower = verdict(strong, [baseline(0.001, 0.8, (-0.006, 0.008))], margin=0.005)
    assert narrower.kind == "indistinguishable from a baseline"
    # a baseline that beats the probe (the generator identity, -0.070) is "baseline better", never "matches"
    better = verdict(strong, [baseline(0.05, 0.001, (0.03, 0.07)), baseline(-0.070, 0.001, (-0.09, -0.05), GENERATOR)])
    assert better.kind == "baseline better" and better.not_beaten == [GENERATOR]
    assert [row.outcome for row in better.baselines] == ["probe better", "baseline better"]
    # "baseline better" is a claim about any of the baselines: Holm over them (0.03 and 0.04 -> 0.06 and 0.06) leaves
    # neither shown better; "probe better" must hold for every baseline, an intersection-union test: unadjusted
    holm = verdict(strong, [baseline(-0.02, 0.03, (-0.04, -0.001)), baseline(-0.02, 0.04, (-0.04, -0.001), GENERATOR)])
    assert [row.holm_p for row in holm.baselines] == [pytest.approx(0.06), pytest.approx(0.06)]
    assert holm.kind == "indistinguishable from a baseline"
    both = verdict(strong, [baseline(0.02, 0.03, (0.005, 0.04)), baseline(0.02, 0.04, (0.005, 0.04), LENGTH)])
    assert both.kind == "encodes"
    # nothing to beat (no baseline scored): no claim beyond the baselines, not "encodes"
    assert verdict(strong, []).kind == "no baseline tested"
    assert verdict(strong, [Comparison(name=LENGTH, kind="baseline", scores=Scores())]).kind == "no baseline tested"
