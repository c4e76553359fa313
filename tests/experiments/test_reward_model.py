import numpy as np
import pytest

from helpers import write_store
from latent_reward.data.schema import Example
from latent_reward.experiments.reward_model import best_of_n, implicit_reward, pair_accuracy


def make_scored_store(folder, ratings, groups, meta, responses=None):
    examples = [
        Example(
            id=f"e{i}",
            group=g,
            rating=float(r),
            meta=m,
            messages=[
                {"role": "user", "content": g},
                {"role": "assistant", "content": (responses or ["x"] * len(ratings))[i]},
            ],
        )
        for i, (r, g, m) in enumerate(zip(ratings, groups, meta))
    ]
    return write_store(folder, {"eot": np.zeros((len(examples), 1, 2))}, examples, [0])


def test_pair_accuracy_per_subset_resamples_prompts_and_matches_lengths(tmp_path):
    ratings = [1, 0, 1, 0, 1, 0, 1, 0]
    meta = [{"pair": f"p{i // 2}", "subset": "a" if i < 4 else "b"} for i in range(8)]
    groups = ["q0", "q0", "q1", "q1", "q2", "q2", "q2", "q2"]  # q2 has two pairs: resampled together
    responses = ["long answer here", "short", "abc", "abd", "same len", "same lex", "x" * 10, "y" * 10]
    store = make_scored_store(tmp_path / "s", ratings, groups, meta, responses)
    keep = np.ones(8, bool)
    result = pair_accuracy(store, {"probe": np.array([2.0, 1.0, 0.0, 1.0, 3.0, 3.0, 1.0, 0.0])}, keep, n_boot=200)
    overall = {entry.subset: entry for entry in result}
    assert overall["all"].pairs == 4 and overall["all"].prompts == 3
    assert overall["a"].predictors["probe"].value == pytest.approx(0.5)
    assert overall["all"].length_matched_pairs > 0
    # by hand: rated pairs with lengths within 10% are abc/abd (wrong), "same len"/"same lex" (tied: 0.5) and
    # x*10/y*10 (right): 3 pairs at 0.5; q0's 16 vs 5 characters and q2's 8 vs 10 are not matched
    assert overall["all"].length_matched_pairs == 3 and overall["all"].length_matched["probe"].value == pytest.approx(
        0.5
    )
    assert overall["a"].length_matched_pairs == 1 and overall["a"].length_matched["probe"].value == pytest.approx(0.0)
    assert overall["b"].length_matched_pairs == 2 and overall["b"].length_matched["probe"].value == pytest.approx(0.75)
    # q2 holds two records: each record's two sides form a pair, never a side of one with a side of the other (which
    # were not judged against each other): q0 right, q1 wrong, q2's records tied (half) and right -> 2.5 / 4
    assert overall["all"].predictors["probe"].value == pytest.approx(2.5 / 4)
    kept = pair_accuracy(
        store, {"probe": np.zeros(8)}, np.array([False, False, True, True, True, True, True, True]), n_boot=100
    )
    assert kept[0].pairs == 3 and kept[0].prompts == 2  # the excluded prompt's pair is gone


def test_pair_accuracy_versus_the_probe_is_the_paired_difference_with_an_exact_p(tmp_path):
    """Four prompts of one pair each: the probe orders all four, the other predictor q0 and q1 only. The difference is
    1 - 1/2 = 1/2; swapping the two predictors prompt by prompt (16 ways) gives a difference at least as large in
    absolute
    value only when q2 and q3 are not swapped or both are (the q0/q1 contributions are 0): exact p = 8 / 16."""
    from itertools import product

    ratings = [1, 0] * 4
    groups = ["q0", "q0", "q1", "q1", "q2", "q2", "q3", "q3"]
    meta = [{"pair": f"p{i // 2}"} for i in range(8)]
    # q3's replies have the same number of words but not of characters (13 vs 5): not length-matched
    store = make_scored_store(tmp_path / "s", ratings, groups, meta, ["abc", "abd"] * 3 + ["one two three", "a b c"])
    probe = np.array([1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0])
    other = np.array([1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 1.0])
    result = pair_accuracy(store, {"probe": probe, "other": other}, np.ones(8, bool), n_boot=200)
    entry = result[0]
    assert entry.predictors["probe"].value == 1.0 and entry.predictors["other"].value == 0.5
    versus = entry.versus_probe["other"]
    assert versus.difference.value == pytest.approx(0.5)
    contribution = np.array([0, 0, 1, 1])  # probe minus other, per prompt (one pair each), over 4 pairs
    null = [abs(np.where(swap, -contribution, contribution).sum()) / 4 for swap in product([False, True], repeat=4)]
    exact = np.mean(np.array(null) >= 0.5)
    assert exact == 0.5
    assert versus.p_value == pytest.approx(exact, abs=0.06)  # 1000 permutations: Monte Carlo sd ~0.016
    assert "probe" not in entry.versus_probe and entry.length_matched_pairs == 3


def test_best_of_n_picks_averages_ties_and_excludes_training_prompts(tmp_path):
    ratings = [0.1, 0.9, 0.5, 0.2, 0.4, 0.0, 1.0, 1.0, 0.0]
    groups = ["a", "a", "a", "b", "b", "b", "c", "c", "c"]
    store = make_scored_store(tmp_path / "s", ratings, groups, [{} for _ in ratings])
    scores = np.array([0.0, 1.0, 0.5, 5.0, 0.0, 0.0, 0.0, 0.0, 9.0])
    keep = np.array([g != "c" for g in groups])
    result = best_of_n(store, {"probe": scores}, keep, n_boot=200)
    assert result.prompts == 2
    assert result.picks["probe pick"].value == pytest.approx((0.9 + 0.2) / 2)
    assert result.picks["best possible"].value == pytest.approx((0.9 + 0.4) / 2)
    assert result.picks["random pick"].value == pytest.approx((0.5 + 0.2) / 2)
    tied = best_of_n(store, {"flat": np.zeros(9)}, keep, n_boot=100)
    assert tied.picks["flat pick"].value == pytest.approx((0.5 + 0.2) / 2)  # all tied: the mean, not the first row


def test_best_of_n_versus_random_by_hand_and_its_two_prompt_interval(tmp_path):
    """Prompt a: the probe picks 0.9 against a mean of 0.5 (+0.4); prompt b: 0.2 against 0.2 (0). A prompt resample of
    two prompts is {a, a} (+0.4), {b, b} (0) or {a, b} (+0.2): the interval runs from 0 to 0.4. A prompt with one sample
    cannot be picked from and is dropped; a sample without a score is never picked."""
    ratings = [0.1, 0.9, 0.5, 0.2, 0.4, 0.0, 0.7]
    groups = ["a", "a", "a", "b", "b", "b", "d"]
    store = make_scored_store(tmp_path / "s", ratings, groups, [{} for _ in ratings])
    scores = np.array([0.0, 1.0, np.nan, 5.0, 0.0, 0.0, 3.0])
    result = best_of_n(store, {"probe": scores}, np.ones(7, bool), n_boot=300)
    assert result.prompts == 2 and result.samples_per_prompt == 3.0
    versus = result.versus_random["probe pick"]
    assert versus.value == pytest.approx(0.2) and (versus.low, versus.high) == (pytest.approx(0.0), pytest.approx(0.4))
    best = result.versus_random["best possible"]  # a: 0.9 - 0.5, b: 0.4 - 0.2
    assert best.value == pytest.approx(0.3) and (best.low, best.high) == (pytest.approx(0.2), pytest.approx(0.4))
    assert "random pick" not in result.versus_random
    # with a's unscored sample the best scored one: a NaN score must not win over 0.0 and 1.0
    assert best_of_n(store, {"p": np.array([0.0, np.nan, 1.0, 5.0, 0, 0, 0])}, np.ones(7, bool), n_boot=50).picks[
        "p pick"
    ].value == pytest.approx((0.5 + 0.2) / 2)


def test_implicit_reward_uses_each_models_summed_log_probability():
    policy, reference = np.array([-10.0, -8.0]), np.array([-15.0, -4.0])
    np.testing.assert_allclose(implicit_reward(policy, reference, normalization="sum"), [5.0, -4.0])
    counts = np.array([[10.0, 4.0], [12.0, 5.0]])  # the two tokenizers count tokens differently
    np.testing.assert_allclose(implicit_reward(policy, reference, counts, "mean"), [-1.0 + 15 / 12, -2.0 + 0.8])
    np.testing.assert_allclose(implicit_reward(policy, None, normalization="none"), [-10.0, -8.0])


def test_best_of_n_never_picks_an_unscored_sample():
    from latent_reward.experiments.reward_model import _pick

    scores = np.array([np.nan, 0.2, 0.1, np.nan, np.nan])
    ratings = np.array([9.0, 1.0, 3.0, 4.0, 6.0])
    index = np.array([0, 0, 0, 1, 1])
    np.testing.assert_allclose(_pick(scores, ratings, index, 2), [1.0, 5.0])  # prompt 1: nothing scored, the mean


def test_a_pair_is_a_record_identical_and_repeated_records_are_counted_apart_and_the_prompt_is_the_cluster(tmp_path):
    """Prompt q0 holds three records: r0 (good > bad), r1 (its exact repeat) and r2 (fine > poor); q1 holds one whose
    sides have the same text, q2 one with tied ratings, q3 one ordinary record. Pairs compared: r0, r2, q3's = 3. Across
    records (good vs poor...) nothing is compared: those sides were never judged against each other."""
    rows = [
        ("q0", "r0", "good answer", 1),
        ("q0", "r0", "bad answer", 0),
        ("q0", "r1", "good answer", 1),
        ("q0", "r1", "bad  answer", 0),
        ("q0", "r2", "fine answer", 1),
        ("q0", "r2", "poor answer", 0),
        ("q1", "r3", "same", 1),
        ("q1", "r3", "same ", 0),
        ("q2", "r4", "one", 5),
        ("q2", "r4", "two", 5),
        ("q3", "r5", "yes", 1),
        ("q3", "r5", "no", 0),
    ]
    ratings, groups, meta = [r[3] for r in rows], [r[0] for r in rows], [{"pair": r[1]} for r in rows]
    store = make_scored_store(tmp_path / "s", ratings, groups, meta, [r[2] for r in rows])
    # the probe gets r0 right, r2 wrong, q3 right; a cross-record comparison (good vs poor) would add pairs
    probe = np.array([2.0, 1.0, 2.0, 1.0, 0.0, 3.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0])
    entry = pair_accuracy(store, {"probe": probe}, np.ones(len(rows), bool), n_boot=400)[0]
    assert entry.pairs == 3 and entry.prompts == 2
    assert entry.not_compared == {"identical text": 1, "tied ratings": 1, "duplicate record": 1}
    assert entry.predictors["probe"].value == pytest.approx(2 / 3)
    # resampling prompts: q0 contributes 1 of 2, q3 1 of 1; a resample is {q0, q0} (1/2), {q3, q3} (1) or both (2/3)
    assert (entry.predictors["probe"].low, entry.predictors["probe"].high) == (pytest.approx(0.5), pytest.approx(1.0))


def test_records_ordering_the_same_two_texts_both_ways_contradict_each_other_and_are_all_left_out(tmp_path):
    """q0: r0 says good > bad, r1 (a reversed repeat) says bad > good, r2 repeats r0: all three left out (the raters
    disagree on that pair). q1: an ordinary record, kept. Counting r0 and r1 would score any predictor 0.5 on them."""
    rows = [
        ("q0", "r0", "good answer", 1),
        ("q0", "r0", "bad answer", 0),
        ("q0", "r1", "good answer", 0),
        ("q0", "r1", "bad answer", 1),
        ("q0", "r2", "good answer", 1),
        ("q0", "r2", "bad answer", 0),
        ("q1", "r3", "yes", 1),
        ("q1", "r3", "no", 0),
    ]
    ratings, groups, meta = [r[3] for r in rows], [r[0] for r in rows], [{"pair": r[1]} for r in rows]
    store = make_scored_store(tmp_path / "s", ratings, groups, meta, [r[2] for r in rows])
    probe = np.array([2.0, 1.0, 2.0, 1.0, 2.0, 1.0, 1.0, 0.0])
    entry = pair_accuracy(store, {"probe": probe}, np.ones(len(rows), bool), n_boot=100)[0]
    assert entry.pairs == 1 and entry.prompts == 1
    assert entry.not_compared == {"contradicting records": 3}
    assert entry.predictors["probe"].value == pytest.approx(1.0)


def test_a_predictor_that_did_not_score_a_pair_leaves_it_out_and_says_on_how_many_it_was_scored(tmp_path):
    ratings, groups = [1, 0] * 4, ["q0", "q0", "q1", "q1", "q2", "q2", "q3", "q3"]
    store = make_scored_store(
        tmp_path / "s",
        ratings,
        groups,
        [{"pair": f"p{i // 2}"} for i in range(8)],
        ["a", "b", "c", "d", "e", "f", "g", "h"],
    )
    probe = np.array([1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 1.0, 0.0])
    implicit = np.array([1.0, 0.0, np.nan, 0.0, 1.0, 0.0, 0.0, 1.0])  # q1's pair was truncated: not scored
    truncated = np.array([False, False, True, False, False, False, False, False])
    predictors = {"probe": probe, "implicit": implicit}
    entry = pair_accuracy(store, predictors, np.ones(8, bool), n_boot=100, truncated=truncated)[0]
    assert entry.pairs == 4 and entry.truncated_pairs == 1 and entry.predictor_pairs == {"implicit": 3}
    assert entry.predictors["implicit"].value == pytest.approx(2 / 3) and entry.predictors["probe"].value == 0.75
    # the paired difference is over the 3 pairs both scored: probe 2/3 (q0 right, q2 wrong, q3 right) minus 2/3
    assert entry.versus_probe["implicit"].difference.value == pytest.approx(0.0)
