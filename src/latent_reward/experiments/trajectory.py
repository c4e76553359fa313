"""Reward token by token: the probe's estimate at every response token.

Two probes read the same layer: the response-level probe trained at `response_last` (what it would
say if the response ended at this token) and a probe trained on every response token, each token
labelled with its response's rating. Curves are averaged over held-out responses against relative
position, separately for high- and low-rated responses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from latent_reward.activations.store import ActivationStore
from latent_reward.activations.tokens import response_token_states
from latent_reward.experiments.sweep import SweepResult
from latent_reward.models.loading import LoadedModel
from latent_reward.probes import Probe, RidgeProbe

RESPONSE_POSITIONS = ("response_last", "eot", "response_mean")


@dataclass
class TrajectoryResult:
    layer: int
    curves: pd.DataFrame  # probe, group (high/low), bin, mean, low, high
    separation: dict[str, float | None]  # probe -> first relative position where high and low separate
    lens: list[dict[str, Any]] = field(default_factory=list)  # examples: tokens with the estimate at each
    n_test: int = 0
    n_train: int = 0


def _bin_means(estimates: list[np.ndarray], bins: int) -> np.ndarray:
    """[n_responses, bins]: each response's estimates averaged within equal slices of its length."""
    out = np.full((len(estimates), bins), np.nan)
    for row, values in enumerate(estimates):
        positions = (np.arange(len(values)) + 0.5) / len(values)
        index = np.minimum((positions * bins).astype(int), bins - 1)
        sums, counts = np.bincount(index, values, bins), np.bincount(index, minlength=bins)
        out[row] = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    return out


def _curves(name: str, estimates: list[np.ndarray], ratings: np.ndarray, bins: int) -> tuple[list[dict], float | None]:
    table = _bin_means(estimates, bins)
    low_cut, high_cut = np.quantile(ratings, [1 / 3, 2 / 3])
    rows, bands = [], {}
    for label, mask in (("high", ratings >= high_cut), ("low", ratings <= low_cut)):
        values = table[mask]
        mean = np.nanmean(values, axis=0)
        half = 1.96 * np.nanstd(values, axis=0) / np.sqrt(np.maximum(np.sum(~np.isnan(values), axis=0), 1))
        bands[label] = (mean - half, mean + half)
        rows += [{"probe": name, "group": label, "bin": (b + 0.5) / bins, "mean": mean[b], "low": mean[b] - half[b],
                  "high": mean[b] + half[b]} for b in range(bins)]
    apart = np.flatnonzero(bands["high"][0] > bands["low"][1])
    return rows, (float((apart[0] + 0.5) / bins) if apart.size else None)


def reward_trajectories(loaded: LoadedModel, store: ActivationStore, result: SweepResult, n_test: int = 120, n_train: int = 200,
                        tokens_per_response: int = 48, bins: int = 20, seed: int = 0) -> TrajectoryResult:
    """Estimates at every response token of up to `n_test` held-out responses (and a token-level probe
    trained on up to `n_train` training responses), at the best response-level layer."""
    table = result.table[(result.table.probe == "ridge") & result.table.position.isin(RESPONSE_POSITIONS)]
    layer = int(table.loc[table["val_pearson"].idxmax(), "layer"])
    max_tokens = store.manifest["fingerprint"].get("max_tokens")
    rows_of = {split: np.flatnonzero(result.keep)[mask] for split, mask in result.masks.items()}
    rng = np.random.default_rng(seed)
    test_rows = np.sort(rng.permutation(rows_of["test"])[:n_test])
    train_rows = np.sort(rng.permutation(rows_of["train"])[:n_train])
    examples = store.examples

    end_probe = _end_probe(store, result, layer)
    train_states, _ = response_token_states(loaded, [examples[i]["messages"] for i in train_rows], layer, max_tokens)
    features, labels, groups = [], [], []
    for row, states in zip(train_rows, train_states):
        pick = rng.permutation(len(states))[:tokens_per_response]
        features.append(states[pick])
        labels.append(np.full(len(pick), examples[row]["rating"]))
        groups.append(np.full(len(pick), examples[row]["group"]))
    token_probe = RidgeProbe().fit(np.concatenate(features), np.concatenate(labels), np.concatenate(groups))

    test_states, rendered = response_token_states(loaded, [examples[i]["messages"] for i in test_rows], layer, max_tokens)
    ratings = np.array([examples[i]["rating"] for i in test_rows])
    curves, separation, estimates_by_probe = [], {}, {}
    for name, probe in (("end-of-response probe", end_probe), ("all-token probe", token_probe)):
        estimates = [probe.predict(states) for states in test_states]
        estimates_by_probe[name] = estimates
        rows, separation[name] = _curves(name, estimates, ratings, bins)
        curves += rows
    lens = _lens_examples(loaded, rendered, estimates_by_probe["end-of-response probe"], ratings, [examples[i]["id"] for i in test_rows])
    return TrajectoryResult(layer, pd.DataFrame(curves), separation, lens, len(test_rows), len(train_rows))


def _end_probe(store: ActivationStore, result: SweepResult, layer: int) -> Probe:
    """The sweep's ridge probe at response_last (or the best response position) and `layer`, refitted on its training rows."""
    position = "response_last" if "response_last" in store.positions else next(p for p in RESPONSE_POSITIONS if p in store.positions)
    x = store.array(position, layers=[layer])[result.keep, 0].astype(np.float32)
    train = result.masks["train"]
    return RidgeProbe().fit(x[train], result.y[train], result.groups[train])


def _lens_examples(loaded: LoadedModel, rendered, estimates: list[np.ndarray], ratings: np.ndarray, ids: list[str], per_kind: int = 2):
    """Two high-rated, two low-rated and two surprising responses (largest gap between final estimate and rating)."""
    finals = np.array([e[-1] for e in estimates])
    order = np.argsort(ratings)
    surprise = np.argsort(-np.abs((finals - finals.mean()) / (finals.std() or 1) - (ratings - ratings.mean()) / (ratings.std() or 1)))
    chosen = []
    for kind, candidates in (("high", order[::-1]), ("low", order), ("surprising", surprise)):
        picked = [int(i) for i in candidates if int(i) not in {c[1] for c in chosen}][:per_kind]
        chosen += [(kind, i) for i in picked]
    out = []
    for kind, i in chosen:
        spans = rendered[i].spans
        ids_ = rendered[i].input_ids[spans.response_start : spans.response_end]
        out.append({"kind": kind, "id": ids[i], "rating": float(ratings[i]),
                    "tokens": [loaded.tokenizer.decode([t]) for t in ids_], "estimates": [float(v) for v in estimates[i]]})
    return out
