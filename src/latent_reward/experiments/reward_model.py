"""The probe as a reward model: score conversations, pair accuracy, best-of-n, transfer across datasets."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from latent_reward.activations.extract import extract
from latent_reward.activations.store import ActivationStore
from latent_reward.config import ExtractConfig
from latent_reward.data.schema import Example
from latent_reward.evaluation.metrics import all_metrics, bootstrap_ci, bootstrap_counts
from latent_reward.models.loading import LoadedModel
from latent_reward.probes import Probe

NORMALIZATIONS = ("sum", "mean", "none")


@dataclass
class Scored:
    store: ActivationStore
    scores: np.ndarray  # the probe's estimate per example, store row order


def score_examples(loaded: LoadedModel, probe: Probe, examples: list[Example], folder: str | Path, logprobs: bool = True,
                   progress: bool = True, source: str | None = None) -> Scored:
    """Extract the probe's (position, layer) for `examples` into `folder` (resumable) and score them."""
    position, layer = probe.info["position"], int(probe.info["layer"])
    config = ExtractConfig(positions=(position,), layers=(layer,), max_tokens=probe.info.get("max_tokens") or 1024, logprobs=logprobs)
    store = extract(loaded, examples, folder, config, progress=progress, source=source).store
    return Scored(store, probe.predict(store.array(position)[:, 0].astype(np.float32)))


def implicit_reward(policy_logprob_mean: np.ndarray, reference_logprob_mean: np.ndarray | None, n_tokens: np.ndarray,
                    normalization: str = "sum", beta: float = 1.0) -> np.ndarray:
    """DPO's implicit reward beta * (log pi(y|x) - log pi_ref(y|x)).

    sum: over the response's tokens (DPO's own); mean: per-token averages; none: the policy's summed
    log-probability alone (reference-free).
    """
    if normalization == "none" or reference_logprob_mean is None:
        return beta * policy_logprob_mean * n_tokens
    if normalization == "mean":
        return beta * (policy_logprob_mean - reference_logprob_mean)
    return beta * (policy_logprob_mean - reference_logprob_mean) * n_tokens


def pair_accuracy(store: ActivationStore, predictors: dict[str, np.ndarray], n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Accuracy (score(chosen) > score(rejected); ties count half) per subset and overall, with 95% intervals
    resampling pairs."""
    meta = store.meta
    pairs = np.array([m.get("pair") or "" for m in meta])
    if not all(pairs):
        return {}
    subsets = np.array([m.get("subset") or "all" for m in meta])
    y = store.ratings
    out: dict[str, Any] = {}
    for subset in ["all", *sorted(set(subsets) - {"all"})]:
        rows = np.ones(len(y), bool) if subset == "all" else subsets == subset
        out[subset] = {"pairs": int(rows.sum() // 2)}
        for name, scores in predictors.items():
            interval = bootstrap_ci(y[rows], scores[rows], pairs[rows], n_boot, seed)["within_acc"]
            out[subset][name] = interval.as_dict()
    return out


def best_of_n(store: ActivationStore, predictors: dict[str, np.ndarray], exclude_groups: set[str] = frozenset(),
              n_boot: int = 1000, seed: int = 0) -> dict[str, Any] | None:
    """Mean rating (e.g. GPT-4 win-rate vs the reference) of the sample each predictor picks per prompt,
    beside a random pick (the prompt's mean) and the best possible pick. Prompts in `exclude_groups`
    (used to train the probe) never count."""
    groups, y = store.groups, store.ratings
    keep = np.array([g not in exclude_groups for g in groups])
    names, index = np.unique(groups[keep], return_inverse=True)
    counts = np.bincount(index)
    if len(names) == 0 or counts.max() < 2:
        return None
    values = y[keep]
    picks: dict[str, np.ndarray] = {"random pick": np.bincount(index, weights=values) / counts,
                                    "best possible": np.full(len(names), -np.inf)}
    np.maximum.at(picks["best possible"], index, values)
    for name, scores in predictors.items():
        chosen = np.full(len(names), -1)
        best_score = np.full(len(names), -np.inf)
        for row, (g, s) in enumerate(zip(index, scores[keep])):
            if s > best_score[g]:
                best_score[g], chosen[g] = s, row
        picks[f"{name} pick"] = values[chosen]
    weights, _ = bootstrap_counts(names, n_boot, seed)
    result = {"prompts": int(len(names)), "samples_per_prompt": float(counts.mean()), "excluded_prompts": len(set(groups[~keep]))}
    for name, per_prompt in picks.items():
        samples = weights @ per_prompt / weights.sum(1)
        result[name] = {"value": float(per_prompt.mean()), "low": float(np.quantile(samples, 0.025)), "high": float(np.quantile(samples, 0.975))}
    return result


def transfer_metrics(store: ActivationStore, scores: np.ndarray, exclude_groups: set[str] = frozenset(), n_boot: int = 1000,
                     seed: int = 0) -> dict[str, Any]:
    """How well the probe's scores track this dataset's ratings (prompts used in training excluded)."""
    keep = np.array([g not in exclude_groups for g in store.groups])
    y, groups, p = store.ratings[keep], store.groups[keep], scores[keep]
    metrics = all_metrics(y, p, groups)
    intervals = bootstrap_ci(y, p, groups, n_boot, seed)
    return {"examples": int(keep.sum()), "test": metrics, "test_ci": {k: v.as_dict() for k, v in intervals.items()}}


def run_scoring(probe_folder: str | Path, dataset, out: str | Path, model: str | None = None, reference: str | None = None,
                normalization: str = "sum", n_boot: int = 1000, seed: int = 0, progress: bool = True) -> dict[str, Any]:
    """`latent-reward score`: scores.csv, score.json and summary lines for the console."""
    import pandas as pd

    from latent_reward.models.loading import load_model
    from latent_reward.report.html import write_json

    out = Path(out)
    probe = Probe.load(probe_folder)
    name = model or probe.info.get("model")
    dtype = probe.info.get("model_dtype") or "float32"
    fallback = probe.info.get("chat_template") == "fallback"
    loaded = load_model(name, dtype=dtype, allow_fallback_template=fallback)
    scored = score_examples(loaded, probe, dataset.examples, out / "store", progress=progress, source=dataset.source)
    store = scored.store
    n_tokens = store.stat("response_tokens_count").astype(np.float64)
    logprob = store.stat("logprob_mean").astype(np.float64)
    predictors = {"probe": scored.scores, "response length": n_tokens, "mean log-prob": logprob}
    if reference:
        reference_model = load_model(reference, dtype=dtype, allow_fallback_template=fallback)
        config = ExtractConfig(positions=("eot",), layers=(0,), max_tokens=probe.info.get("max_tokens") or 1024, logprobs=True)
        reference_store = extract(reference_model, dataset.examples, out / "store-reference", config, progress=progress).store
        predictors[f"DPO implicit reward ({normalization})"] = implicit_reward(
            logprob, reference_store.stat("logprob_mean").astype(np.float64), n_tokens, normalization)
    elif normalization == "none":
        predictors["DPO implicit reward (none)"] = implicit_reward(logprob, None, n_tokens, "none")
    exclude = set(probe.info.get("train_groups") or ())
    summary: dict[str, Any] = {"probe": {k: v for k, v in probe.info.items() if k != "train_groups"}, "data": dataset.source,
                               "examples": len(store), "excluded_training_prompts": len(exclude & set(store.groups))}
    lines = [f"scored {len(store)} responses from {dataset.source} with {probe.kind} @ {probe.info['position']} "
             f"layer {probe.info['layer']} of {name}"]
    pairs = pair_accuracy(store, predictors, n_boot, seed)
    if pairs:
        summary["pair_accuracy"] = pairs
        for subset, entry in pairs.items():
            lines.append(f"{subset} ({entry['pairs']} pairs): " + ", ".join(
                f"{k} {v['value']:.3f} [{v['low']:.3f}, {v['high']:.3f}]" for k, v in entry.items() if k != "pairs"))
    else:
        summary["transfer"] = {name: transfer_metrics(store, values, exclude, n_boot, seed) for name, values in predictors.items()}
        probe_entry = summary["transfer"]["probe"]
        lines.append(f"tracks the ratings with r = {probe_entry['test']['pearson']:.3f} "
                     f"[{probe_entry['test_ci']['pearson']['low']:.3f}, {probe_entry['test_ci']['pearson']['high']:.3f}], "
                     f"within-prompt accuracy {probe_entry['test']['within_acc']:.3f} on {probe_entry['examples']} responses "
                     f"(prompts used in training excluded)")
        bon = best_of_n(store, predictors, exclude, n_boot, seed)
        if bon:
            summary["best_of_n"] = bon
            lines.append(f"best-of-{bon['samples_per_prompt']:.1f} over {bon['prompts']} prompts, mean rating of the pick: " + ", ".join(
                f"{k} {v['value']:.3f} [{v['low']:.3f}, {v['high']:.3f}]" for k, v in bon.items() if isinstance(v, dict)))
    frame = pd.DataFrame({"id": store.ids, "group": store.groups, "rating": store.ratings, **{k: v for k, v in predictors.items()}})
    frame.to_csv(out / "scores.csv", index=False)
    write_json(out / "score.json", summary)
    summary["lines"] = lines + [f"written: {out / 'scores.csv'}, {out / 'score.json'}"]
    return summary
