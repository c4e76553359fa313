"""Baselines that use no residual states, fitted on training prompts only and scored like the probes.

Each baseline is an sklearn estimator on features of the text (or the model's log-probability),
with its ridge penalty chosen by grouped cross-validation inside the training prompts. Text
vectorizers (TF-IDF) are fitted inside each cross-validation fold, never on held-out rows.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import Ridge
from sklearn.model_selection import GridSearchCV, GroupKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from latent_reward.evaluation import results as names

ALPHAS = np.logspace(-3, 4, 15)
TEXT_ALPHAS = np.logspace(-2, 3, 9)  # TF-IDF ridge: fewer penalties, each refits the vectorizer per fold (cached)


@dataclass
class TextData:
    """Everything a baseline may look at, for all rows."""

    y: np.ndarray
    groups: np.ndarray
    prompts: list[str]
    responses: list[str]
    generators: list[str | None]
    logprob_mean: np.ndarray | None = None

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame({"prompt": self.prompts, "response": self.responses})


def length_features(texts: list[str]) -> np.ndarray:
    """Length of each full (untruncated) text: characters, words, and their logs."""
    chars = np.array([len(t) for t in texts], dtype=np.float64)
    words = np.array([len(t.split()) for t in texts], dtype=np.float64)
    return np.column_stack([chars, words, np.log1p(chars), np.log1p(words)])


def text_statistics(texts: list[str]) -> np.ndarray:
    """Length and simple shape features of each response: lists, code, questions, refusals."""
    rows = []
    for text in texts:
        lines = text.splitlines() or [""]
        rows.append([
            len(lines),
            sum(line.lstrip().startswith(("-", "*", "•")) or bool(re.match(r"\s*\d+[.)]", line)) for line in lines),
            text.count("```"), text.count("?"), text.count("!"),
            sum(c.isdigit() for c in text) / max(len(text), 1),
            sum(c.isupper() for c in text) / max(len(text), 1),
            len(re.findall(r"\b(sorry|cannot|can't|unable|apologize)\b", text.lower())),
        ])
    return np.column_stack([length_features(texts), np.asarray(rows, dtype=np.float64)])


def _search(pipeline: Pipeline, alphas, train_groups: np.ndarray) -> GridSearchCV:
    folds = min(5, len(np.unique(train_groups)))
    return GridSearchCV(pipeline, {"ridge__alpha": alphas}, cv=GroupKFold(n_splits=folds), scoring="neg_mean_squared_error")


def _dense(features: Callable[[TextData], np.ndarray]) -> Callable[[TextData, np.ndarray], np.ndarray]:
    def fit_predict(data: TextData, train: np.ndarray) -> np.ndarray:
        x = features(data)
        search = _search(Pipeline([("scale", StandardScaler()), ("ridge", Ridge())]), ALPHAS, data.groups[train])
        search.fit(x[train], data.y[train], groups=data.groups[train])
        return search.predict(x)

    return fit_predict


def _tfidf(columns: tuple[str, ...]) -> Callable[[TextData, np.ndarray], np.ndarray]:
    def fit_predict(data: TextData, train: np.ndarray) -> np.ndarray:
        vectorizers = [(column, TfidfVectorizer(max_features=20000, ngram_range=(1, 2), sublinear_tf=True, min_df=2), column)
                       for column in columns]
        frame = data.frame()
        with tempfile.TemporaryDirectory() as cache:  # the vectorizer is fitted once per fold, not once per penalty
            pipeline = Pipeline([("text", ColumnTransformer(vectorizers)), ("ridge", Ridge())], memory=cache)
            search = _search(pipeline, TEXT_ALPHAS, data.groups[train])
            search.fit(frame[train], data.y[train], groups=data.groups[train])
            return search.predict(frame)

    return fit_predict


def _generator(data: TextData, train: np.ndarray) -> np.ndarray:
    labels = np.array([g or "unknown" for g in data.generators]).reshape(-1, 1)
    pipeline = Pipeline([("onehot", OneHotEncoder(handle_unknown="ignore")), ("ridge", Ridge())])
    search = _search(pipeline, ALPHAS, data.groups[train])
    search.fit(labels[train], data.y[train], groups=data.groups[train])
    return search.predict(labels)


@dataclass(frozen=True)
class Baseline:
    name: str
    fit_predict: Callable[[TextData, np.ndarray], np.ndarray]  # (data, train mask) -> predictions for every row
    available: Callable[[TextData], bool] = lambda data: True


BASELINES: tuple[Baseline, ...] = (
    Baseline(names.LENGTH, _dense(lambda d: length_features(d.responses))),
    Baseline(names.TEXT_STATS, _dense(lambda d: text_statistics(d.responses))),
    Baseline(names.GENERATOR, _generator, lambda d: len({g or "unknown" for g in d.generators}) >= 2),
    Baseline(names.TFIDF_RESPONSE, _tfidf(("response",))),
    Baseline(names.TFIDF_PROMPT_RESPONSE, _tfidf(("prompt", "response"))),
    Baseline(names.LOGPROB, _dense(lambda d: d.logprob_mean.reshape(-1, 1)), lambda d: d.logprob_mean is not None),
)


def available_baselines(data: TextData) -> list[Baseline]:
    return [b for b in BASELINES if b.available(data)]


def prompt_text_baselines() -> dict[str, Callable[[TextData, np.ndarray], np.ndarray]]:
    """Baselines for predicting a prompt's expected rating from the prompt text alone (`responses` unused)."""
    return {"prompt length": _dense(lambda d: length_features(d.prompts)), "TF-IDF prompt": _tfidf(("prompt",))}

