"""Known answers for evaluation/baselines.py: the TF-IDF penalty choice against sklearn's Ridge refitted on every
leave-one-prompt-out split, the fit at the chosen penalty against sklearn's exact Ridge, and the length and text
features by hand."""

import dataclasses
import math

import numpy as np
import pytest
import torch
from scipy import sparse
from sklearn.linear_model import Ridge
from sklearn.model_selection import LeaveOneGroupOut

from latent_reward.evaluation.baselines import (
    TEXT_ALPHAS,
    TextData,
    _dense,
    _one_hot_generator,
    length_features,
    text_statistics,
)
from latent_reward.probes.ridge import logo_ridge


def _sparse_design(seed, n=36, d=50):
    rng = np.random.default_rng(seed)
    x = sparse.random(n, d, density=0.15, random_state=seed, format="csr") * 3.0
    groups = np.repeat(np.arange(n // 3), 3)
    y = np.asarray(x @ rng.normal(size=d)).ravel() + rng.normal(size=n) + 2.0  # an offset: the intercept matters
    return x.tocsr(), y, groups


@pytest.mark.parametrize("n,d", [(36, 50), (60, 8)])  # more features than rows (as TF-IDF has: the kernel) and fewer
def test_logo_ridge_errors_and_fit_equal_sklearn_ridge_refitted_on_each_leave_one_prompt_out_split(n, d):
    """The TF-IDF baselines' penalty choice: leave-one-prompt-out errors from one decomposition, against sklearn's Ridge
    (with its intercept) refitted without each prompt."""
    x, y, groups = _sparse_design(seed=n + d, n=n, d=d)
    alphas = np.array([1e-3, 0.1, 1.0, 10.0, 300.0])
    expected = np.zeros(len(alphas))
    for train, held in LeaveOneGroupOut().split(x, y, groups):
        expected += [
            np.sum((Ridge(alpha=a).fit(x[train].toarray(), y[train]).predict(x[held].toarray()) - y[held]) ** 2)
            for a in alphas
        ]
    for features in (x, x.toarray()):
        fit = logo_ridge(features, y, groups, alphas)
        np.testing.assert_allclose(fit.errors, expected / n, rtol=1e-7, atol=1e-9)
        assert fit.alpha == alphas[int(np.argmin(expected))]
        exact = Ridge(alpha=fit.alpha, solver="svd").fit(x.toarray(), y)  # the fit at the chosen penalty
        new_rows = sparse.random(7, d, density=0.3, random_state=1, format="csr")
        np.testing.assert_allclose(fit.predict(new_rows), exact.predict(new_rows.toarray()), rtol=1e-8, atol=1e-9)
        np.testing.assert_allclose(fit.weights, exact.coef_, rtol=1e-7, atol=1e-9)


def _within_float32_decomposition(predictions: np.ndarray, exact: np.ndarray) -> None:
    """The TF-IDF fits decompose in float32 (`TEXT_DECOMPOSITION`): their predictions agree with float64 arithmetic
    within 1e-5 of the predictions' spread."""
    np.testing.assert_allclose(predictions, exact, rtol=0, atol=1e-5 * np.std(exact))


@pytest.mark.parametrize("within", [False, True])
def test_a_float32_decomposition_chooses_the_float64_penalty_and_predicts_within_1e_5_of_the_spread(within):
    """logo_ridge with the kernel decomposed in float32 (what the TF-IDF baselines use) against float64 throughout, on
    a sparse problem with more columns than rows (the dual path) and prompts of 2 to 6 rows. The leave-one-prompt-out
    errors agree within 1e-3 (2e-4 here, at the smallest penalties, where the fit nearly interpolates and I - H_GG is
    nearly singular), so a choice between penalties this close could differ from float64's."""
    from latent_reward.evaluation.groups import center_within_groups

    rng = np.random.default_rng(7)
    groups = np.repeat(np.arange(120), rng.integers(2, 7, 120))
    x = sparse.random(len(groups), 3 * len(groups), density=0.02, random_state=3, format="csr")
    y = np.asarray(x @ rng.normal(size=x.shape[1])).ravel() + rng.normal(size=len(groups))
    y = center_within_groups(y, groups) if within else y
    exact = logo_ridge(x, y, groups, TEXT_ALPHAS, within=within)
    fast = logo_ridge(x, y, groups, TEXT_ALPHAS, within=within, decompose_in=torch.float32)
    assert fast.alpha == exact.alpha
    assert not np.array_equal(fast.errors, exact.errors)  # the float32 decomposition did run
    np.testing.assert_allclose(fast.errors, exact.errors, rtol=1e-3)
    _within_float32_decomposition(fast.predict(x, groups), exact.predict(x, groups))


def test_the_tfidf_baseline_decomposes_its_kernel_in_float32(monkeypatch):
    from latent_reward.evaluation import baselines
    from latent_reward.probes import ridge

    seen = []
    original = ridge._eigh
    monkeypatch.setattr(ridge, "_eigh", lambda matrices: seen.append(matrices.dtype) or original(matrices))
    rng = np.random.default_rng(2)
    words = np.array("good bad long short clear vague kind rude".split())
    responses = [" ".join(rng.choice(words, 6)) for _ in range(40)]
    data = TextData(
        y=rng.normal(size=40),
        groups=np.repeat(np.arange(20), 2),
        prompts=["p"] * 40,
        responses=responses,
        generators=[None] * 40,
    )
    baselines._tfidf(("response",))(data, np.arange(40) < 30)
    assert seen == [torch.float32]


def test_the_tfidf_baseline_refits_at_the_penalty_leave_one_prompt_out_chooses():
    from latent_reward.evaluation import baselines

    rng = np.random.default_rng(0)
    words = np.array("good bad long short clear vague kind rude".split())
    responses = [" ".join(rng.choice(words, 6)) for _ in range(40)]
    y = np.array([r.count("good") - r.count("bad") for r in responses], dtype=np.float64) + rng.normal(size=40) * 0.1
    groups = np.repeat(np.arange(20), 2)
    data = TextData(y=y, groups=groups, prompts=["p"] * 40, responses=responses, generators=[None] * 40)
    train = np.arange(40) < 30
    predictions = baselines._tfidf(("response",))(data, train)
    x = baselines._vectorize(data, ("response",), np.flatnonzero(train))
    rows = np.flatnonzero(train)
    chosen = float(TEXT_ALPHAS[logo_ridge(x[rows], y[rows], groups[rows], TEXT_ALPHAS).errors.argmin()])
    exact = Ridge(alpha=chosen, solver="svd").fit(x[rows].toarray(), y[rows]).predict(x.toarray())
    _within_float32_decomposition(predictions, exact)
    assert np.corrcoef(predictions[~train], y[~train])[0, 1] > 0.8


def test_the_tfidf_features_are_fitted_on_the_training_texts_only():
    """The vocabulary and IDF weights come from the training rows alone: sklearn's TfidfVectorizer with the documented
    settings fitted on those texts; held-out texts that shift every word's document frequency leave the training rows'
    predictions exactly as they were."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    from latent_reward.evaluation.baselines import _tfidf, _vectorize

    rng = np.random.default_rng(1)
    words = np.array("good bad long short clear vague kind rude".split())
    responses = [" ".join(rng.choice(words, 6)) for _ in range(40)]
    y = np.array([r.count("good") - r.count("bad") for r in responses], dtype=np.float64) + rng.normal(size=40) * 0.1
    groups = np.repeat(np.arange(20), 2)
    train = np.arange(40) < 30

    def data(texts):
        return TextData(y=y, groups=groups, prompts=["p"] * 40, responses=texts, generators=[None] * 40)

    rows = np.flatnonzero(train)
    reference = TfidfVectorizer(max_features=20000, ngram_range=(1, 2), sublinear_tf=True, min_df=2)
    reference.fit([responses[i] for i in rows])
    x = _vectorize(data(responses), ("response",), rows)
    np.testing.assert_allclose(x.toarray(), reference.transform(responses).toarray(), rtol=1e-12, atol=1e-12)
    predictions = _tfidf(("response",))(data(responses), train)
    shifted = [text if keep else "good good kind kind rude clear" for text, keep in zip(responses, train)]
    again = _tfidf(("response",))(data(shifted), train)
    np.testing.assert_allclose(again[train], predictions[train], rtol=1e-12, atol=1e-12)
    assert not np.allclose(again[~train], predictions[~train])  # the held-out rows are read, not fitted on


def test_length_features_by_hand():
    texts = ["hello world", "", "  spaced   out\ttext \n"]
    expected = np.array([[11, 2, math.log(12), math.log(3)], [0, 0, 0, 0], [21, 3, math.log(22), math.log(4)]])
    np.testing.assert_allclose(length_features(texts), expected, rtol=1e-12)


def test_text_statistics_by_hand():
    text = "Sure!\n- one\n* two\n3. three\n```code```\nWhy? I CAN'T, sorry. 42"
    assert len(text) == 61 and len(text.split()) == 13
    # lines, list lines, ``` fences, ?, !, digit share, upper-case share, refusal words (can't, sorry)
    expected_text = [6, 3, 2, 1, 1, 3 / 61, 7 / 61, 2]
    numbered = "1) first\n  2) second\n\u2022 bullet\nplain? no!!"
    expected_numbered = [4, 3, 0, 1, 2, 2 / len(numbered), 0, 0]
    refusal = "I cannot help. I am unable to; I apologize. Cannotx is not a word."
    expected_refusal = [1, 0, 0, 0, 0, 0, 4 / len(refusal), 3]
    features = text_statistics([text, numbered, refusal, ""])
    assert features.shape == (4, 12)
    np.testing.assert_allclose(features[:, :4], length_features([text, numbered, refusal, ""]))
    np.testing.assert_allclose(features[0, 4:], expected_text, rtol=1e-12)
    np.testing.assert_allclose(features[1, 4:], expected_numbered, rtol=1e-12)
    np.testing.assert_allclose(features[2, 4:], expected_refusal, rtol=1e-12)
    np.testing.assert_allclose(features[3], [0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0])


def test_generator_one_hot_counts_missing_as_unknown():
    data = TextData(
        y=np.zeros(4), groups=np.zeros(4), prompts=[""] * 4, responses=[""] * 4, generators=["m2", None, "m1", "m2"]
    )
    # columns in sorted order: m1, m2, unknown
    np.testing.assert_array_equal(_one_hot_generator(data), [[0, 1, 0], [0, 0, 1], [1, 0, 0], [0, 1, 0]])


def test_dense_baselines_fit_on_the_training_rows_only():
    rng = np.random.default_rng(0)
    n = 60
    groups = np.repeat(np.arange(20), 3)
    features = rng.normal(size=(n, 3))
    y = features @ np.array([1.0, -2.0, 0.5]) + 0.3 * rng.normal(size=n)
    train = groups < 14
    fit_predict = _dense(lambda d: features)
    data = TextData(y=y, groups=groups, prompts=[""] * n, responses=[""] * n, generators=[None] * n)
    predictions = fit_predict(data, train)
    # the held-out ratings can be anything: the predictions do not move
    scrambled = TextData(
        y=np.where(train, y, 100 * rng.normal(size=n)),
        groups=groups,
        prompts=[""] * n,
        responses=[""] * n,
        generators=[None] * n,
    )
    np.testing.assert_allclose(fit_predict(scrambled, train), predictions, rtol=1e-12)
    # and they are sklearn's ridge, fitted on the training rows at the chosen penalty, on z-scored features
    from latent_reward.probes import RidgeProbe

    probe = RidgeProbe().fit(features[train], y[train], groups[train])
    z = (features - features[train].mean(0)) / features[train].std(0)
    sk = Ridge(alpha=probe.alpha_factor * train.sum()).fit(z[train], y[train])
    np.testing.assert_allclose(predictions, sk.predict(z), rtol=1e-8, atol=1e-10)
    assert np.corrcoef(predictions[~train], y[~train])[0, 1] > 0.9


def test_text_penalties_span_the_documented_grid():
    np.testing.assert_allclose(TEXT_ALPHAS, np.logspace(-2, 3, 11))


def _prompt_offsets(seed=0, n_prompts=60, per=4):
    """Two features: the first carries the within-prompt signal on top of a large prompt-level offset, the second the
    same offset plus within-prompt noise. The rating's within-prompt part is the signal alone."""
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(n_prompts), per)
    offset = 10 * rng.normal(size=n_prompts)[groups]
    signal = rng.normal(size=len(groups))
    x = np.column_stack([signal + offset, offset + 2 * rng.normal(size=len(groups))])
    y = signal + rng.normal(size=n_prompts)[groups]
    return x, y, groups


def test_a_within_prompt_dense_fit_centers_its_features_per_prompt_like_the_probes_states():
    """Fitted on ratings centered per prompt, a baseline whose features keep their prompt-level part has to spend its
    weights cancelling that part (and reads the second feature's noise); centered like the probe's states it does not.
    The centered fit is the probes' ridge on the features minus their prompt means, by hand."""
    from latent_reward.evaluation.groups import center_within_groups
    from latent_reward.evaluation.metrics import within_prompt_accuracy
    from latent_reward.probes import RidgeProbe

    x, y, groups = _prompt_offsets()
    yc = center_within_groups(y, groups)
    train = groups < 40
    data = TextData(y=yc, groups=groups, prompts=[""] * len(y), responses=[""] * len(y), generators=[None] * len(y))
    centered = _dense(lambda d: x)(TextData(**{**data.__dict__, "center": True}), train)
    xc = x - np.array([x[groups == g].mean(0) for g in groups])
    np.testing.assert_allclose(center_within_groups(x, groups), xc, atol=1e-12)
    by_hand = RidgeProbe().fit(xc[train], yc[train], groups[train]).predict(xc)
    np.testing.assert_allclose(centered, by_hand, rtol=1e-9, atol=1e-9)
    uncentered = _dense(lambda d: x)(data, train)
    held = ~train
    acc_centered = within_prompt_accuracy(y[held], centered[held], groups[held])
    acc_uncentered = within_prompt_accuracy(y[held], uncentered[held], groups[held])
    assert acc_centered > acc_uncentered + 0.03  # the size of the synthetic case (0.735 vs 0.664)


@pytest.mark.parametrize("n,d", [(36, 50), (60, 8)])  # the kernel (dual) path and the primal one
def test_a_within_prompt_logo_ridge_equals_the_fit_on_rows_centered_per_prompt_by_hand(n, d):
    """`within=True` centers the rows per prompt through the kernel (dual) or on the dense rows (primal): its errors,
    penalty and predictions equal logo_ridge's on rows centered by hand, and the fit at the chosen penalty equals
    sklearn's exact Ridge on them. Held-out rows are centered on their own prompts."""
    from latent_reward.evaluation.groups import center_within_groups

    x, y, groups = _sparse_design(seed=n + d + 1, n=n, d=d)
    yc = center_within_groups(y, groups)
    xc = center_within_groups(x.toarray(), groups)
    alphas = np.array([1e-3, 0.1, 1.0, 10.0, 300.0])
    train = groups < groups.max() - 2
    within = logo_ridge(x[train], yc[train], groups[train], alphas, within=True)
    by_hand = logo_ridge(xc[train], yc[train], groups[train], alphas)
    np.testing.assert_allclose(within.errors, by_hand.errors, rtol=1e-9, atol=1e-12)
    assert within.alpha == by_hand.alpha
    np.testing.assert_allclose(within.predict(x, groups), by_hand.predict(xc), rtol=1e-8, atol=1e-10)
    exact = Ridge(alpha=within.alpha, solver="svd").fit(xc[train], yc[train])
    np.testing.assert_allclose(within.predict(x, groups), exact.predict(xc), rtol=1e-7, atol=1e-9)
    with pytest.raises(ValueError, match="groups"):
        within.predict(x)


def test_a_within_prompt_tfidf_fit_is_sklearn_ridge_on_the_rows_centered_per_prompt():
    """A within-prompt TF-IDF fit is sklearn's Ridge on the densely centered rows at the penalty leave-one-prompt-out
    chooses on them."""
    from latent_reward.evaluation import baselines
    from latent_reward.evaluation.groups import center_within_groups

    rng = np.random.default_rng(1)
    words = np.array("good bad long short clear vague kind rude topic other".split())
    n_prompts, per = 24, 3
    topic = rng.choice(words[6:], n_prompts)  # a prompt-level word that moves the rating between prompts only
    responses = [f"{topic[g]} " * 3 + " ".join(rng.choice(words[:6], 5)) for g in range(n_prompts) for _ in range(per)]
    groups = np.repeat(np.arange(n_prompts), per)
    y = np.array([r.count("good") - r.count("bad") for r in responses], dtype=np.float64)
    y += rng.normal(size=len(groups)) * 0.1
    yc = y - np.array([y[groups == g].mean() for g in groups])
    train = groups < 18
    data = TextData(
        y=yc, groups=groups, prompts=[""] * len(y), responses=responses, generators=[None] * len(y), center=True
    )
    predictions = baselines._tfidf(("response",))(data, train)
    rows = np.flatnonzero(train)
    xc = center_within_groups(baselines._vectorize(data, ("response",), rows).toarray(), groups)
    alpha = float(TEXT_ALPHAS[logo_ridge(xc[rows], yc[rows], groups[rows], TEXT_ALPHAS).errors.argmin()])
    exact = Ridge(alpha=alpha, solver="svd").fit(xc[rows], yc[rows]).predict(xc)
    _within_float32_decomposition(predictions, exact)


def test_a_folds_tfidf_is_fitted_once_for_the_pooled_and_the_within_prompt_fits_and_both_baselines():
    """The pooled fit, the within-prompt fit (a `dataclasses.replace` copy) and both TF-IDF baselines of one fold read
    one vectorization per column, and give the predictions that fresh vectorizations give."""

    from latent_reward.evaluation import baselines

    prompts, responses, y, groups = _rated_words(2, 20, "good bad long short clear vague kind rude", 6, 3)
    train = np.arange(40) < 30

    def data():
        return TextData(y=y, groups=groups, prompts=prompts, responses=responses, generators=[None] * 40)

    shared = data()
    centered = dataclasses.replace(shared, y=y - np.repeat(y.reshape(-1, 2).mean(axis=1), 2), center=True)
    fits = [
        (baselines._tfidf(columns), copy)
        for columns in (("response",), ("prompt", "response"))
        for copy in (shared, centered)
    ]
    cached = [fit(copy, train) for fit, copy in fits]
    assert sorted(column for column, *_ in shared.tfidf_cache) == ["prompt", "response"]
    assert centered.tfidf_cache is shared.tfidf_cache
    fresh = [fit(dataclasses.replace(copy, tfidf_cache={}, tfidf_fits={}), train) for fit, copy in fits]
    for a, b in zip(cached, fresh, strict=True):
        np.testing.assert_array_equal(a, b)
    other_texts = dataclasses.replace(shared, responses=list(reversed(responses)))  # shares the cache, not the texts
    np.testing.assert_array_equal(
        baselines._tfidf(("response",))(other_texts, train),
        baselines._tfidf(("response",))(dataclasses.replace(other_texts, tfidf_cache={}, tfidf_fits={}), train),
    )


def test_a_within_prompt_fit_on_prompt_and_response_is_the_response_fit_when_each_prompt_has_one_text():
    """Centered per prompt, one prompt text per prompt has zero features: the within-prompt prompt + response fit
    reuses the response-only fit, and equals logo_ridge on both columns centered by hand. A prompt id whose rows carry
    different prompt texts keeps the prompt column."""
    from latent_reward.evaluation import baselines
    from latent_reward.evaluation.groups import center_within_groups

    rng = np.random.default_rng(4)
    words = np.array("good bad long short clear vague kind rude".split())
    responses = [" ".join(rng.choice(words, 6)) for _ in range(48)]
    prompts = [text for text in (" ".join(rng.choice(words, 3)) for _ in range(16)) for _ in range(3)]
    groups = np.repeat(np.arange(16), 3)
    y = np.array([r.count("good") - r.count("bad") for r in responses], dtype=np.float64) + rng.normal(size=48) * 0.1
    yc = center_within_groups(y, groups)
    train = groups < 12
    data = TextData(y=yc, groups=groups, prompts=prompts, responses=responses, generators=[None] * 48, center=True)
    response_only = baselines._tfidf(("response",))(data, train)
    both = baselines._tfidf(("prompt", "response"))(data, train)
    assert both is response_only and len(data.tfidf_fits) == 1
    rows = np.flatnonzero(train)
    x = center_within_groups(baselines._vectorize(data, ("prompt", "response"), rows).toarray(), groups)
    _within_float32_decomposition(both, logo_ridge(x[rows], yc[rows], groups[rows], TEXT_ALPHAS).predict(x))

    mixed = list(prompts)
    mixed[0] = "a different wording of the first prompt"
    assert baselines._columns_that_vary(dataclasses.replace(data, prompts=mixed), ("prompt", "response")) == (
        "prompt",
        "response",
    )


def test_the_tfidf_fit_cache_is_keyed_on_the_prompt_ids_and_a_copy_of_the_ratings():
    """A copy with other prompt ids (same texts, rows and ratings) or ratings changed in place refits; a within-prompt
    fit whose training rows split a prompt is refused."""
    from latent_reward.evaluation import baselines

    rng = np.random.default_rng(5)
    words = np.array("good bad long short clear vague kind rude".split())
    responses = [" ".join(rng.choice(words, 6)) for _ in range(40)]
    y = np.array([r.count("good") - r.count("bad") for r in responses], dtype=np.float64) + rng.normal(size=40) * 0.1
    data = TextData(
        y=y, groups=np.repeat(np.arange(20), 2), prompts=[""] * 40, responses=responses, generators=[None] * 40
    )
    train = np.arange(40) < 30
    fit = baselines._tfidf(("response",))
    first = fit(data, train)
    regrouped = dataclasses.replace(data, groups=np.repeat(np.arange(10), 4), center=True)
    paired = dataclasses.replace(data, center=True)  # the same rows, texts and ratings, prompts of two
    assert regrouped.tfidf_fits is paired.tfidf_fits is data.tfidf_fits
    fit(regrouped, np.arange(40) < 32)
    fresh = dataclasses.replace(paired, tfidf_cache={}, tfidf_fits={})
    np.testing.assert_array_equal(fit(paired, np.arange(40) < 32), fit(fresh, np.arange(40) < 32))
    data.y[:] = rng.permutation(data.y)  # shuffled in place: the cached fit was for the old ratings
    np.testing.assert_array_equal(
        fit(data, train), fit(dataclasses.replace(data, tfidf_cache={}, tfidf_fits={}), train)
    )
    assert not np.array_equal(fit(data, train), first)
    with pytest.raises(ValueError, match="whole prompts"):
        fit(regrouped, np.arange(40) < 30)  # row 30 and 31 share a prompt with rows 28 and 29


def test_the_tfidf_vocabulary_is_capped_only_past_8192_rows():
    from latent_reward.evaluation.baselines import TFIDF_CAP_ROWS, TFIDF_CAPPED_TERMS, TFIDF_TERMS, tfidf_terms

    assert (TFIDF_TERMS, TFIDF_CAP_ROWS, TFIDF_CAPPED_TERMS) == (20000, 8192, 4096)
    assert tfidf_terms(8192) == 20000  # a fold's n x n kernel is at most 8,192 wide
    assert tfidf_terms(8193) == 4096
    assert tfidf_terms(8193, capped=64) == 64


def _rated_words(seed: int, n_prompts: int, vocabulary: str, response_words: int, prompt_words: int):
    """Two responses per prompt, random words; the rating counts "good" minus "bad" (plus a little noise): prompts,
    responses, ratings, prompt ids."""
    rng = np.random.default_rng(seed)
    words = np.array(vocabulary.split())
    responses = [" ".join(rng.choice(words, response_words)) for _ in range(2 * n_prompts)]
    prompts = [" ".join(rng.choice(words, prompt_words)) for _ in range(n_prompts) for _ in range(2)]
    noise = rng.normal(size=len(responses)) * 0.1
    y = np.array([r.count("good") - r.count("bad") for r in responses], dtype=np.float64) + noise
    return prompts, responses, y, np.repeat(np.arange(n_prompts), 2)


def _capped_words_data(**fields) -> TextData:
    prompts, responses, y, groups = _rated_words(
        3, 30, "good bad long short clear vague kind rude fine poor neat messy", 8, 4
    )
    return TextData(y=y, groups=groups, prompts=prompts, responses=responses, generators=[None] * 60, **fields)


def test_past_the_cap_every_tfidf_fit_keeps_the_most_frequent_training_terms_and_refits_like_sklearn(monkeypatch):
    """Data of more rows than `TFIDF_CAP_ROWS` (here 50: 60 rows, a fold of 46 training rows, so the size comes from
    all rows, not the fold's) keeps `tfidf_capped_terms` per column: sklearn's TfidfVectorizer with that many features,
    fitted on the training texts; the fit is sklearn's Ridge on them at the penalty leave-one-prompt-out chose."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    from latent_reward.evaluation import baselines

    monkeypatch.setattr(baselines, "TFIDF_CAP_ROWS", 50)
    data = _capped_words_data(tfidf_capped_terms=12)
    y, groups = data.y, data.groups
    train = np.arange(60) < 46
    rows = np.flatnonzero(train)
    for columns in (("response",), ("prompt", "response")):
        x = baselines._vectorize(data, columns, rows)
        reference = sparse.hstack(
            [
                TfidfVectorizer(max_features=12, ngram_range=(1, 2), sublinear_tf=True, min_df=2)
                .fit([getattr(data, f"{c}s")[i] for i in rows])
                .transform(getattr(data, f"{c}s"))
                for c in columns
            ]
        )
        assert x.shape[1] == 12 * len(columns)
        np.testing.assert_allclose(x.toarray(), reference.toarray(), rtol=1e-12, atol=1e-12)
        predictions = baselines._tfidf(columns)(data, train)
        chosen = float(TEXT_ALPHAS[logo_ridge(x[rows], y[rows], groups[rows], TEXT_ALPHAS).errors.argmin()])
        exact = Ridge(alpha=chosen, solver="svd").fit(x[rows].toarray(), y[rows]).predict(x.toarray())
        _within_float32_decomposition(predictions, exact)
    # a copy with another cap shares the caches, and neither the vectorization nor the fit is taken from them
    uncapped = dataclasses.replace(data, tfidf_capped_terms=20000)
    assert baselines._vectorize(uncapped, ("response",), rows).shape[1] > 12
    fresh = dataclasses.replace(uncapped, tfidf_cache={}, tfidf_fits={})
    np.testing.assert_array_equal(
        baselines._tfidf(("response",))(uncapped, train), baselines._tfidf(("response",))(fresh, train)
    )
    monkeypatch.setattr(baselines, "TFIDF_CAP_ROWS", 60)  # 60 rows: not past the cap
    assert baselines._vectorize(_capped_words_data(tfidf_capped_terms=12), ("response",), rows).shape[1] > 12


def test_dense_features_are_computed_once_for_the_same_texts():
    calls = []

    def lengths(data):
        calls.append(1)
        return length_features(data.responses)

    fit_predict = _dense(lengths)
    rng = np.random.default_rng(4)
    responses = [" ".join(["word"] * int(k)) for k in rng.integers(1, 30, size=40)]
    y = np.array([len(r) for r in responses], dtype=np.float64) + rng.normal(size=40)
    groups = np.repeat(np.arange(20), 2)
    data = TextData(y=y, groups=groups, prompts=[""] * 40, responses=responses, generators=[None] * 40)
    first = fit_predict(data, groups < 15)
    centered = dataclasses.replace(data, y=y - np.repeat(y.reshape(-1, 2).mean(axis=1), 2), center=True)
    fit_predict(data, groups >= 5)
    fit_predict(centered, groups < 15)
    assert len(calls) == 1  # three fits (two folds, one within-prompt copy), one computation
    other = dataclasses.replace(data, responses=list(reversed(responses)))  # shares the cache, not the texts
    assert not np.allclose(fit_predict(other, groups < 15), first)
    assert len(calls) == 2
    fresh = _dense(lambda d: length_features(d.responses))(dataclasses.replace(data, feature_cache={}), groups < 15)
    np.testing.assert_array_equal(first, fresh)
