"""Baselines that use no residual states, fitted and scored on the same splits as the probes."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import sparse
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import Ridge
from sklearn.model_selection import GridSearchCV, GroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

ALPHAS = np.logspace(-3, 4, 15)


@dataclass
class SplitData:
    """Everything a baseline may look at, for all rows, plus the split masks."""

    y: np.ndarray
    groups: np.ndarray
    masks: dict[str, np.ndarray]
    prompts: list[str]
    responses: list[str]
    response_tokens: np.ndarray
    generators: list[str | None]
    logprob_mean: np.ndarray | None = None


def grouped_ridge(features, y: np.ndarray, groups: np.ndarray, masks: dict[str, np.ndarray], scale: bool = True) -> np.ndarray:
    """Fit ridge on the train rows (penalty by grouped 5-fold CV); predictions for every row."""
    train = masks["train"]
    estimator = make_pipeline(StandardScaler(with_mean=not sparse.issparse(features)), Ridge()) if scale else make_pipeline(Ridge())
    folds = min(5, len(np.unique(groups[train])))
    search = GridSearchCV(estimator, {"ridge__alpha": ALPHAS}, cv=GroupKFold(n_splits=folds), scoring="neg_mean_squared_error")
    search.fit(features[train], y[train], groups=groups[train])
    return search.predict(features)


def text_statistics(texts: list[str], tokens: np.ndarray) -> np.ndarray:
    """Length and simple shape features of each response."""
    rows = []
    for text, n_tokens in zip(texts, tokens):
        lines = text.splitlines() or [""]
        rows.append([
            n_tokens, np.log1p(n_tokens), len(text), len(text.split()), len(lines),
            sum(line.lstrip().startswith(("-", "*", "•")) or bool(re.match(r"\s*\d+[.)]", line)) for line in lines),
            text.count("```"), text.count("?"), text.count("!"),
            sum(c.isdigit() for c in text) / max(len(text), 1),
            sum(c.isupper() for c in text) / max(len(text), 1),
            len(re.findall(r"\b(sorry|cannot|can't|unable|apologize)\b", text.lower())),
        ])
    return np.asarray(rows, dtype=np.float64)


def tfidf_features(texts: list[str], train: np.ndarray):
    vectorizer = TfidfVectorizer(max_features=20000, ngram_range=(1, 2), sublinear_tf=True, min_df=2)
    vectorizer.fit([t for t, keep in zip(texts, train) if keep])
    return vectorizer.transform(texts)


def length_only(data: SplitData) -> np.ndarray:
    features = np.column_stack([data.response_tokens, np.log1p(data.response_tokens)]).astype(np.float64)
    return grouped_ridge(features, data.y, data.groups, data.masks)


def length_and_text_stats(data: SplitData) -> np.ndarray:
    return grouped_ridge(text_statistics(data.responses, data.response_tokens), data.y, data.groups, data.masks)


def generator_identity(data: SplitData) -> np.ndarray | None:
    names = np.array([g or "unknown" for g in data.generators]).reshape(-1, 1)
    if len(np.unique(names)) < 2:
        return None
    features = OneHotEncoder(handle_unknown="ignore").fit(names[data.masks["train"]]).transform(names)
    return grouped_ridge(features, data.y, data.groups, data.masks, scale=False)


def tfidf_response(data: SplitData) -> np.ndarray:
    return grouped_ridge(tfidf_features(data.responses, data.masks["train"]), data.y, data.groups, data.masks, scale=False)


def tfidf_prompt_and_response(data: SplitData) -> np.ndarray:
    train = data.masks["train"]
    features = sparse.hstack([tfidf_features(data.prompts, train), tfidf_features(data.responses, train)]).tocsr()
    return grouped_ridge(features, data.y, data.groups, data.masks, scale=False)


def mean_logprob(data: SplitData) -> np.ndarray | None:
    if data.logprob_mean is None:
        return None
    return grouped_ridge(data.logprob_mean.reshape(-1, 1), data.y, data.groups, data.masks)


BASELINES: dict[str, Callable[[SplitData], np.ndarray | None]] = {
    "response length": length_only,
    "length + text statistics": length_and_text_stats,
    "generator identity": generator_identity,
    "TF-IDF response": tfidf_response,
    "TF-IDF prompt + response": tfidf_prompt_and_response,
    "mean log-prob": mean_logprob,
}


def run_baselines(data: SplitData) -> dict[str, np.ndarray]:
    """Predictions (all rows) of every baseline the data allows."""
    predictions = {}
    for name, baseline in BASELINES.items():
        values = baseline(data)
        if values is not None:
            predictions[name] = values
    return predictions
