"""Does the model expect a reward before it has written anything?

Probes at `user_end` and `assistant_start` (states that exist before the response) predict each
prompt's expected reward: the mean rating of its responses. One row per prompt, split by prompt
exactly as the response-level sweep splits. Beside it: prompt-only baselines, how the rating's
variance divides between and within prompts, and how much of each position's response-level r is
between-prompt (prompt means) vs within-prompt (deviations from them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from latent_reward.activations.store import ActivationStore, group_means
from latent_reward.data.splits import split_groups
from latent_reward.evaluation.baselines import grouped_ridge, tfidf_features
from latent_reward.evaluation.metrics import bootstrap_ci, pearson
from latent_reward.experiments.sweep import SweepResult, target_values
from latent_reward.positions import PROMPT_POSITIONS
from latent_reward.probes import fit_ridge_all_layers


@dataclass
class PromptOnlyResult:
    curves: pd.DataFrame  # position, layer, test r (prompt means) with intervals
    best: dict[str, Any]  # best (position, layer) on validation, test r with interval
    baselines: dict[str, dict[str, float]]  # prompt length, TF-IDF on the prompt, random-init model
    variance_between_fraction: float  # share of the rating's variance that lies between prompts
    decomposition: pd.DataFrame  # per position: response-level r, r on prompt means, r within prompts
    top_prompts: list[dict[str, Any]]  # held-out prompts the probe expects the most reward for
    bottom_prompts: list[dict[str, Any]]
    n_prompts: dict[str, int]


def _group_table(store: ActivationStore, target: str):
    y = target_values(store, target)
    keep = ~np.isnan(y)
    groups = store.groups
    names, inverse = np.unique(groups[keep], return_inverse=True)
    counts = np.bincount(inverse)
    means = np.bincount(inverse, weights=y[keep]) / counts
    return keep, names, inverse, counts, means


def _group_states(store: ActivationStore, position: str, keep: np.ndarray) -> np.ndarray:
    """Each prompt's state (its rows agree up to float rounding from batching), in sorted group order."""
    return group_means(store.array(position)[keep], store.groups[keep])[1]


def _interval(y, p, n_boot, seed) -> dict[str, float]:
    ci = bootstrap_ci(y, p, np.arange(len(y)).astype(str), n_boot, seed)["pearson"]
    return ci.as_dict()


def prompt_only(store: ActivationStore, response_sweep: SweepResult | None = None, random_init_store: ActivationStore | None = None,
                target: str = "rating", seed: int = 0, n_boot: int = 1000) -> PromptOnlyResult | None:
    positions = [p for p in PROMPT_POSITIONS if p in store.positions]
    if not positions:
        return None
    keep, names, inverse, counts, means = _group_table(store, target)
    assignment = split_groups(names, seed)
    split = np.array([assignment[n] for n in names])
    masks = {s: split == s for s in ("train", "val", "test")}
    rows, predictions = [], {}
    for position in positions:
        x = _group_states(store, position, keep)
        probes = fit_ridge_all_layers(x[masks["train"]], means[masks["train"]], names[masks["train"]])[0]
        for index, layer in enumerate(store.layers):
            p = probes[index].predict(x[:, index])
            predictions[(position, layer)] = p
            interval = _interval(means[masks["test"]], p[masks["test"]], max(200, n_boot // 5), seed)
            rows.append({"position": position, "layer": layer, "val_pearson": pearson(means[masks["val"]], p[masks["val"]]),
                         "pearson": interval["value"], "pearson_low": interval["low"], "pearson_high": interval["high"]})
    curves = pd.DataFrame(rows)
    best_row = curves.loc[curves["val_pearson"].idxmax()]
    best_key = (best_row["position"], int(best_row["layer"]))
    test = masks["test"]
    best_p = predictions[best_key]
    best = {"position": best_key[0], "layer": best_key[1], "relative_depth": best_key[1] / max(store.layers),
            "test_pearson": _interval(means[test], best_p[test], n_boot, seed)}

    prompts = _prompt_texts(store, keep, inverse, len(names))
    baselines = {}
    lengths = np.array([[len(t), len(t.split()), np.log1p(len(t))] for t in prompts], dtype=np.float64)
    for name, features, scale in (("prompt length", lengths, True), ("TF-IDF prompt", tfidf_features(prompts, masks["train"]), False)):
        p = grouped_ridge(features, means, names, masks, scale=scale)
        baselines[name] = _interval(means[test], p[test], n_boot, seed)
    if random_init_store is not None and best_key[0] in random_init_store.positions:
        x = _group_states(random_init_store, best_key[0], keep)
        probes = fit_ridge_all_layers(x[masks["train"]], means[masks["train"]], names[masks["train"]])[0]
        val_r = [pearson(means[masks["val"]], probe.predict(x[masks["val"], i])) for i, probe in enumerate(probes)]
        chosen = int(np.argmax(val_r))
        baselines["random-init model"] = _interval(means[test], probes[chosen].predict(x[test, chosen]), n_boot, seed)

    y = target_values(store, target)[keep]
    between = float(np.sum(counts * (means - y.mean()) ** 2) / np.sum((y - y.mean()) ** 2))
    order = np.argsort(best_p[test])
    test_index = np.flatnonzero(test)

    def describe(i: int) -> dict[str, Any]:
        return {"prompt": prompts[i][:300], "expected_reward": float(best_p[i]), "mean_rating": float(means[i]), "responses": int(counts[i])}

    return PromptOnlyResult(
        curves=curves, best=best, baselines=baselines, variance_between_fraction=between,
        decomposition=_decompose(response_sweep, keep, inverse) if response_sweep is not None else pd.DataFrame(),
        top_prompts=[describe(test_index[i]) for i in order[::-1][:5]],
        bottom_prompts=[describe(test_index[i]) for i in order[:5]],
        n_prompts={s: int(m.sum()) for s, m in masks.items()},
    )


def _prompt_texts(store: ActivationStore, keep: np.ndarray, inverse: np.ndarray, n_groups: int) -> list[str]:
    texts = [""] * n_groups
    for example, group_index in zip((e for e, k in zip(store.examples, keep) if k), inverse):
        if not texts[group_index]:
            texts[group_index] = "\n".join(m["content"] for m in example["messages"][:-1])
    return texts


def _decompose(result: SweepResult, keep: np.ndarray, inverse: np.ndarray) -> pd.DataFrame:
    """For each position's best ridge layer (by validation r): test r overall, on prompt means, within prompts."""
    test = result.masks["test"]
    y, groups = result.y[test], result.groups[test]
    table = result.table[result.table.probe == "ridge"]
    rows = []
    for position, cells in table.groupby("position", sort=False):
        layer = int(cells.loc[cells["val_pearson"].idxmax(), "layer"])
        p = result.predictions[(position, layer, "ridge")][test]
        names, index = np.unique(groups, return_inverse=True)
        counts = np.bincount(index)
        y_mean, p_mean = np.bincount(index, weights=y) / counts, np.bincount(index, weights=p) / counts
        multi = counts[index] > 1
        rows.append({"position": position, "layer": layer, "response_r": pearson(y, p),
                     "between_prompt_r": pearson(y_mean, p_mean),
                     "within_prompt_r": pearson((y - y_mean[index])[multi], (p - p_mean[index])[multi])})
    return pd.DataFrame(rows)
