"""Baselines that use no residual states, fitted on training prompts only and scored like the probes.

Dense features (lengths, text statistics, generator identity, log-probability) go through the same
ridge as the probes (penalty by leave-one-prompt-out CV on the training prompts). TF-IDF features
get the same penalty choice, with the vectorizer fitted on the training rows only, never on held-out
rows. A within-prompt fit (`TextData.center`) centers every feature on its prompt's mean, as the
within-prompt probe's states are centered (`analysis.targets`); TF-IDF rows stay sparse and are centered
through their kernel, H K H with H the per-prompt centering (`probes.ridge.logo_ridge`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy import sparse
from sklearn.feature_extraction.text import TfidfVectorizer

from latent_reward.evaluation import results as names
from latent_reward.evaluation.groups import center_within_groups, group_index
from latent_reward.probes import RidgeProbe
from latent_reward.probes.ridge import logo_ridge

TEXT_ALPHAS = np.logspace(-2, 3, 11)  # TF-IDF ridge penalties (sklearn's alpha)
# The TF-IDF fits' eigendecomposition (of the n x n kernel, n training rows) runs in float32: 3.5 s instead of 6.0 s at
# arena-bench's 3,786 training rows (scipy's evd, 2 cores), most of each fit. The rest runs in float64; predictions
# stay within 1e-5 of float64's relative to their spread, the leave-one-prompt-out errors within 1e-3 (so penalties
# that close to a tie could be chosen otherwise; tests/evaluation/test_baselines_known.py pins both).
TEXT_DECOMPOSITION = torch.float32
TFIDF_TERMS = 20000  # a TF-IDF column's vocabulary: the most frequent unigrams and bigrams of the training rows
# Data of more rows than this keeps `TFIDF_CAPPED_TERMS` terms per column instead, in every fit of the analysis (the
# folds, the validation split, the pooled and within-prompt targets: one vocabulary size per data set, from its row
# count alone). A fit's exact leave-one-prompt-out ridge decomposes a matrix min(training rows, terms) on a side: up to
# 8,192 rows that is the n x n kernel of its training rows; past them, 4,096 wide per column (8,192 for prompt +
# response), and the cost grows linearly in the rows. With 20,000 terms at any size, AlpacaEval's 48,458 answers meant
# a 20,000-wide decomposition per fit. UltraFeedback's subset (2,398 rows) and arena-bench (4,733) keep 20,000. What
# the cap costs is measured in docs/performance.md: it can only weaken the TF-IDF baselines, so a report on capped data
# says how many terms they kept. Each column keeps the same number, so prompt + response holds every feature the
# response alone has.
TFIDF_CAP_ROWS = 8192
TFIDF_CAPPED_TERMS = 4096


def tfidf_terms(rows: int, capped: int = TFIDF_CAPPED_TERMS) -> int:
    """The vocabulary each TF-IDF column keeps in an analysis of `rows` rows: `TFIDF_TERMS`, or past `TFIDF_CAP_ROWS`
    rows `capped`."""
    return TFIDF_TERMS if rows <= TFIDF_CAP_ROWS else capped


@dataclass
class TextData:
    """Everything a baseline may look at, for all rows."""

    y: np.ndarray
    groups: np.ndarray
    prompts: list[str]
    responses: list[str]
    generators: list[str | None]
    logprob_mean: np.ndarray | None = None
    center: bool = False  # a within-prompt fit: every feature minus its prompt's mean (y is centered by the caller)
    tfidf_capped_terms: int = TFIDF_CAPPED_TERMS  # terms per TF-IDF column past `TFIDF_CAP_ROWS` rows (`tfidf_terms`)
    # TF-IDF of a column fitted on some rows, (column, vocabulary size, those rows) -> (the texts, [n, terms]): the
    # pooled and within-prompt fits and the two TF-IDF baselines vectorize a fold's training rows once.
    # `dataclasses.replace` shares it; an entry counts only for the very texts it was made from, so a copy given other
    # texts refits.
    tfidf_cache: dict[tuple[str, int, bytes], tuple[list[str], sparse.csr_matrix]] = field(
        default_factory=dict, repr=False, compare=False
    )

    # TF-IDF fits' predictions, (columns, training rows, center) -> (the texts and prompt ids, a copy of y,
    # predictions): a within-prompt fit on prompt + response whose prompts are one text per prompt is the
    # response-only fit (centering zeroes the prompt's features), so the second baseline reuses the first's. Valid only
    # for the same texts and prompt ids (the same objects) and equal ratings.
    tfidf_fits: dict[tuple[tuple[str, ...], bytes, bool, int], tuple[list[object], np.ndarray, np.ndarray]] = field(
        default_factory=dict, repr=False, compare=False
    )
    # Dense features, (the function that made them) -> (the texts, generators and log-probabilities they were made
    # from, [n, p]): each fold's fits read one computation (text statistics of 48,458 answers: 3.8-4.2 s).
    feature_cache: dict[Callable[[TextData], np.ndarray], tuple[list[object], np.ndarray]] = field(
        default_factory=dict, repr=False, compare=False
    )

    def features(self, make: Callable[[TextData], np.ndarray]) -> np.ndarray:
        """`make(self)` as float64 [n, p], cached for the same texts, generators and log-probabilities."""
        inputs = [self.prompts, self.responses, self.generators, self.logprob_mean]
        cached = self.feature_cache.get(make)
        if cached is None or not all(a is b for a, b in zip(cached[0], inputs, strict=True)):
            cached = self.feature_cache[make] = (inputs, np.asarray(make(self), dtype=np.float64))
        return cached[1]

    @property
    def tfidf_vocabulary(self) -> int:
        """Terms per TF-IDF column in every fit on these rows (`tfidf_terms` of all of them)."""
        return tfidf_terms(len(self.y), self.tfidf_capped_terms)

    def tfidf(self, column: str, fit_rows: np.ndarray, terms: int = TFIDF_TERMS) -> sparse.csr_matrix:
        """TF-IDF of `column` ("prompt" or "response") for every row, the vocabulary (at most `terms`) and IDF weights
        fitted on `fit_rows` only (indices), cached."""
        texts = getattr(self, f"{column}s")
        key = (column, terms, np.asarray(fit_rows, dtype=np.int64).tobytes())
        cached = self.tfidf_cache.get(key)
        if cached is None or cached[0] is not texts:
            cached = self.tfidf_cache[key] = (texts, _tfidf_features(texts, fit_rows, terms))
        return cached[1]


def length_features(texts: list[str]) -> np.ndarray:
    """Length of each full (untruncated) text: characters, words, and their logs; float64 [n, 4]."""
    chars = np.array([len(t) for t in texts], dtype=np.float64)
    words = np.array([len(t.split()) for t in texts], dtype=np.float64)
    return np.column_stack([chars, words, np.log1p(chars), np.log1p(words)])


def text_statistics(texts: list[str]) -> np.ndarray:
    """Length and simple shape features of each response: lists, code, questions, refusals; float64 [n, 12]."""
    rows = []
    for text in texts:
        lines = text.splitlines() or [""]
        rows.append(
            [
                len(lines),
                sum(line.lstrip().startswith(("-", "*", "•")) or bool(re.match(r"\s*\d+[.)]", line)) for line in lines),
                text.count("```"),
                text.count("?"),
                text.count("!"),
                sum(map(str.isdigit, text)) / max(len(text), 1),
                sum(map(str.isupper, text)) / max(len(text), 1),
                len(re.findall(r"\b(sorry|cannot|can't|unable|apologize)\b", text.lower())),
            ]
        )
    return np.column_stack([length_features(texts), np.asarray(rows, dtype=np.float64)])


def _dense(features: Callable[[TextData], np.ndarray]) -> Callable[[TextData, np.ndarray], np.ndarray]:
    def fit_predict(data: TextData, train: np.ndarray) -> np.ndarray:
        x = data.features(features)
        if data.center:
            x = center_within_groups(x, data.groups)
        probe = RidgeProbe().fit(x[train], data.y[train], data.groups[train])
        return probe.predict(x)

    return fit_predict


def _tfidf_features(texts: list[str], fit_rows: np.ndarray, terms: int) -> sparse.csr_matrix:
    """TF-IDF of every text on at most `terms` terms, the vectorizer fitted on the texts at `fit_rows` only."""
    vectorizer = TfidfVectorizer(max_features=terms, ngram_range=(1, 2), sublinear_tf=True, min_df=2)
    try:
        vectorizer.fit([texts[i] for i in fit_rows])
    except ValueError:  # too few documents for min_df: keep every term
        vectorizer.set_params(min_df=1).fit([texts[i] for i in fit_rows])
    return vectorizer.transform(texts).tocsr()


def _vectorize(data: TextData, columns: tuple[str, ...], fit_rows: np.ndarray) -> sparse.csr_matrix:
    """TF-IDF of each column, fitted on `fit_rows` only, for every row of `data` (columns side by side; each column's
    vocabulary as `tfidf_terms` sizes it for all of `data`'s rows, so every fit of an analysis has the same size)."""
    return sparse.hstack([data.tfidf(column, fit_rows, data.tfidf_vocabulary) for column in columns]).tocsr()


def _tfidf(columns: tuple[str, ...]) -> Callable[[TextData, np.ndarray], np.ndarray]:
    """Ridge on TF-IDF features, fitted like the probes: the vectorizer and the penalty (leave-one-prompt-out
    cross-validation, exact from one decomposition) chosen on the training rows only. Like the probes' z-scoring, the
    vocabulary and IDF weights are fitted once on all training rows, the prompt each leave-one-out split holds out
    included (its text, never its rating)."""

    def fit_predict(data: TextData, train: np.ndarray) -> np.ndarray:
        rows = np.flatnonzero(train)
        if data.center and np.intersect1d(data.groups[train], data.groups[~train]).size:
            raise ValueError("a within-prompt fit trains on whole prompts (centering reads every row of a prompt)")
        used = _columns_that_vary(data, columns)
        inputs = [*(getattr(data, f"{column}s") for column in used), data.groups]
        key = (used, rows.tobytes(), data.center, data.tfidf_vocabulary)
        cached = data.tfidf_fits.get(key)
        if cached is not None and all(a is b for a, b in zip(cached[0], inputs)) and np.array_equal(cached[1], data.y):
            return cached[2]
        x = _vectorize(data, used, rows)
        predictions = logo_ridge(
            x[rows], data.y[rows], data.groups[rows], TEXT_ALPHAS, within=data.center, decompose_in=TEXT_DECOMPOSITION
        ).predict(x, data.groups)
        data.tfidf_fits[key] = (inputs, data.y.copy(), predictions)
        return predictions

    return fit_predict


def _columns_that_vary(data: TextData, columns: tuple[str, ...]) -> tuple[str, ...]:
    """The columns a fit reads: for a within-prompt fit, a column with one text per prompt is left out (centered per
    prompt its features are zero), unless no column would be left."""
    if not data.center:
        return columns
    _, index = group_index(data.groups)
    varying = []
    for column in columns:
        texts = getattr(data, f"{column}s")
        first: dict[int, str] = {}
        if any(first.setdefault(int(g), text) != text for g, text in zip(index, texts)):
            varying.append(column)
    return tuple(varying) or columns


def _one_hot_generator(data: TextData) -> np.ndarray:
    labels = np.array([g or "unknown" for g in data.generators])
    return (labels[:, None] == np.unique(labels)[None, :]).astype(np.float64)


@dataclass(frozen=True)
class Baseline:
    """A predictor that uses no residual states: its name, how it fits and predicts, and when it applies."""

    name: str
    fit_predict: Callable[[TextData, np.ndarray], np.ndarray]  # (data, train mask) -> predictions for every row
    available: Callable[[TextData], bool] = lambda data: True


def _logprob_column(data: TextData) -> np.ndarray:
    """The responses' mean token log-probability as one feature column [n, 1] (the baseline applies only with it)."""
    if data.logprob_mean is None:
        raise ValueError("the log-prob baseline needs the responses' mean log-probabilities")
    return data.logprob_mean.reshape(-1, 1)


def has_text(data: TextData) -> bool:
    """Whether the responses have text (a store made from arrays alone has none, and no text baseline applies)."""
    return any(response.strip() for response in data.responses)


BASELINES: tuple[Baseline, ...] = (
    Baseline(names.LENGTH, _dense(lambda d: length_features(d.responses)), has_text),
    Baseline(names.TEXT_STATS, _dense(lambda d: text_statistics(d.responses)), has_text),
    Baseline(names.GENERATOR, _dense(_one_hot_generator), lambda d: len({g or "unknown" for g in d.generators}) >= 2),
    Baseline(names.TFIDF_RESPONSE, _tfidf(("response",)), has_text),
    Baseline(names.TFIDF_PROMPT_RESPONSE, _tfidf(("prompt", "response")), has_text),
    Baseline(names.LOGPROB, _dense(_logprob_column), lambda d: d.logprob_mean is not None),
)


def available_baselines(data: TextData) -> list[Baseline]:
    """The baselines that apply to `data` (e.g. generator identity only with two or more generators)."""
    return [b for b in BASELINES if b.available(data)]


def prompt_text_baselines(data: TextData) -> dict[str, Callable[[TextData, np.ndarray], np.ndarray]]:
    """Baselines for predicting a prompt's expected rating from the prompt text alone (`responses` unused); none when
    the prompts have no text."""
    if not any(prompt.strip() for prompt in data.prompts):
        return {}
    return {"prompt length": _dense(lambda d: length_features(d.prompts)), "TF-IDF prompt": _tfidf(("prompt",))}
