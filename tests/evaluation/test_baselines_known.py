"""Known answers for evaluation/baselines.py: the kernel ridge shortcut against sklearn's Ridge refitted on every
leave-one-prompt-out split, and the length and text features by hand."""

import math

import numpy as np
import pytest
from scipy import sparse
from sklearn.linear_model import Ridge
from sklearn.model_selection import LeaveOneGroupOut

from latent_reward.evaluation.baselines import (TEXT_ALPHAS, TextData, _dense, _kernel_ridge_errors, _one_hot_generator,
                                                length_features, text_statistics)


def _sparse_design(seed, n=36, d=50):
    rng = np.random.default_rng(seed)
    x = sparse.random(n, d, density=0.15, random_state=seed, format="csr") * 3.0
    groups = np.repeat(np.arange(n // 3), 3)
    y = np.asarray(x @ rng.normal(size=d)).ravel() + rng.normal(size=n) + 2.0  # an offset: the intercept matters
    return x.tocsr(), y, groups


@pytest.mark.parametrize("n,d", [(36, 50), (60, 8)])  # more features than rows (as TF-IDF has) and fewer
def test_kernel_ridge_errors_equal_sklearn_ridge_on_each_leave_one_prompt_out_split(n, d):
    x, y, groups = _sparse_design(seed=n + d, n=n, d=d)
    alphas = np.array([1e-3, 0.1, 1.0, 10.0, 300.0])
    total_kernel, total_sklearn = np.zeros(len(alphas)), np.zeros(len(alphas))
    for train, held in LeaveOneGroupOut().split(x, y, groups):
        train_mask = np.zeros(n, dtype=bool)
        train_mask[train] = True
        errors = _kernel_ridge_errors(x, y, train, held, alphas)
        expected = [np.sum((Ridge(alpha=a).fit(x[train].toarray(), y[train]).predict(x[held].toarray()) - y[held]) ** 2)
                    for a in alphas]
        np.testing.assert_allclose(errors, expected, rtol=1e-7, atol=1e-9)
        # boolean masks select the same rows as index arrays
        np.testing.assert_allclose(_kernel_ridge_errors(x, y, train_mask, ~train_mask, alphas), errors, rtol=1e-10)
        total_kernel += errors
        total_sklearn += expected
    assert total_kernel.argmin() == total_sklearn.argmin()


def test_length_features_by_hand():
    texts = ["hello world", "", "  spaced   out\ttext \n"]
    expected = np.array([[11, 2, math.log(12), math.log(3)],
                         [0, 0, 0, 0],
                         [21, 3, math.log(22), math.log(4)]])
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
    data = TextData(y=np.zeros(4), groups=np.zeros(4), prompts=[""] * 4, responses=[""] * 4,
                    generators=["m2", None, "m1", "m2"])
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
    scrambled = TextData(y=np.where(train, y, 100 * rng.normal(size=n)), groups=groups, prompts=[""] * n,
                         responses=[""] * n, generators=[None] * n)
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
