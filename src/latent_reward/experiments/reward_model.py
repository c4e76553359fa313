"""The probe as a reward model: pair accuracy, best-of-n, and how well it tracks another dataset's ratings.

Prompts the probe was trained or validated on never count (a probe saves both sets of prompts).
Intervals resample prompts. Pair accuracy is also reported on length-matched pairs, where response
length cannot decide the order.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from latent_reward.activations.extract import extract
from latent_reward.activations.store import ActivationStore
from latent_reward.config import ExtractConfig
from latent_reward.data.schema import Example
from latent_reward.evaluation.baselines import length_features
from latent_reward.evaluation.metrics import Resampler, all_metrics, length_matched_accuracy, quantile_interval, score
from latent_reward.evaluation.paired import paired_differences
from latent_reward.evaluation.results import Interval, PairedDifference, Result, Scores
from latent_reward.models.loading import LoadedModel
from latent_reward.probes import Probe

NORMALIZATIONS = ("sum", "mean", "none")
PROBE = "probe"
IMPLICIT_REWARD = "DPO implicit reward"  # predictor names: f"{IMPLICIT_REWARD} ({normalization})"


class PairAccuracy(Result):
    subset: str
    pairs: int
    prompts: int
    predictors: dict[str, Interval]  # name -> accuracy (score(chosen) > score(rejected), ties half)
    length_matched: dict[str, Interval] = {}  # the same over pairs whose lengths differ by < 10%
    length_matched_pairs: int = 0
    versus_probe: dict[str, PairedDifference] = {}  # name -> probe minus this predictor (all subsets only)


class BestOfN(Result):
    prompts: int  # prompts with two or more scored samples (the others cannot show a choice)
    samples_per_prompt: float
    picks: dict[str, Interval]  # mean rating of the sample each predictor picks (ties: the mean of the tied samples)
    versus_random: dict[str, Interval] = {}  # each pick minus the random pick, paired on the same prompts


class Transfer(Result):
    examples: int
    predictors: dict[str, Scores]  # rank metrics are what transfer across rating scales; see the report


class ScoreResult(Result):
    data: str
    examples: int
    excluded_prompts: int  # prompts the probe was trained or validated on
    probe: dict
    pair_accuracy: list[PairAccuracy] = []
    best_of_n: BestOfN | None = None
    transfer: Transfer | None = None


def score_examples(loaded: LoadedModel, probe: Probe, examples: list[Example], folder: str | Path, logprobs: bool = True,
                   progress: bool = True, source: str | None = None) -> tuple[ActivationStore, np.ndarray]:
    """Extract the probe's (position, layer) for `examples` into `folder` (resumable) and score them."""
    position, layer = probe.info["position"], int(probe.info["layer"])
    config = ExtractConfig(positions=(position,), layers=(layer,), max_tokens=probe.info.get("max_tokens") or 1024, logprobs=logprobs)
    store = extract(loaded, examples, folder, config, progress=progress, source=source).store
    return store, probe.predict(store.array(position)[:, 0].astype(np.float32))


def implicit_reward(policy_logprob_sum: np.ndarray, reference_logprob_sum: np.ndarray | None, n_tokens: np.ndarray | None = None,
                    normalization: str = "sum", beta: float = 1.0) -> np.ndarray:
    """DPO's implicit reward beta * (log pi(y|x) - log pi_ref(y|x)), from each model's summed log-probability of the
    response under its own tokenizer.

    sum: DPO's own; mean: per-token averages (each model's sum over its own token count; `n_tokens` is
    (policy tokens, reference tokens) stacked [2, n]); none: the policy's summed log-probability alone.
    """
    if normalization == "none" or reference_logprob_sum is None:
        return beta * policy_logprob_sum
    if normalization == "mean":
        return beta * (policy_logprob_sum / n_tokens[0] - reference_logprob_sum / n_tokens[1])
    return beta * (policy_logprob_sum - reference_logprob_sum)


def excluded_groups(probe: Probe) -> set[str]:
    """Prompts the probe was trained or validated on."""
    return set(probe.info.get("train_groups") or ()) | set(probe.info.get("validation_groups") or ())


def pair_accuracy(store: ActivationStore, predictors: dict[str, np.ndarray], keep: np.ndarray, n_boot: int = 1000,
                  seed: int = 0) -> list[PairAccuracy]:
    """Per subset and overall; intervals resample prompts (a prompt may have several pairs)."""
    meta = [m for m, k in zip(store.meta, keep) if k]
    if not meta or not all(m.get("pair") for m in meta):
        return []
    groups, y = store.groups[keep], store.ratings[keep]
    subsets = np.array([m.get("subset") or "all" for m in meta])
    lengths = length_features([e.response for e, k in zip(store.examples, keep) if k])[:, 0]
    out = []
    for subset in ["all", *sorted(set(subsets) - {"all"})]:
        rows = np.ones(len(y), bool) if subset == "all" else subsets == subset
        resampler = Resampler.make(groups[rows], n_boot, seed)
        entry = PairAccuracy(subset=subset, pairs=int(rows.sum() // 2), prompts=len(np.unique(groups[rows])), predictors={})
        for name, scores in predictors.items():
            s = scores[keep][rows]
            samples = resampler.samples(y[rows], s)
            entry.predictors[name] = quantile_interval(all_metrics(y[rows], s, groups[rows])["within_acc"], samples["within_acc"])
            entry.length_matched[name], entry.length_matched_pairs = length_matched_accuracy(y[rows], s, groups[rows], lengths[rows], resampler)
            if subset == "all" and name != PROBE and PROBE in predictors:
                entry.versus_probe[name] = paired_differences(y[rows], predictors[PROBE][keep][rows], s, resampler,
                                                              metrics=("within_acc",), seed=seed)["within_acc"]
        out.append(entry)
    return out


def best_of_n(store: ActivationStore, predictors: dict[str, np.ndarray], keep: np.ndarray, n_boot: int = 1000,
              seed: int = 0) -> BestOfN | None:
    """Mean rating (e.g. GPT-4 win-rate vs the reference) of the sample each predictor picks per prompt, beside a
    random pick (the prompt's mean) and the best possible pick. A tie between samples counts as their mean."""
    sizes = np.zeros(len(keep), dtype=np.int64)
    kept_groups = store.groups[keep]
    _, kept_index, kept_counts = np.unique(kept_groups, return_inverse=True, return_counts=True)
    sizes[keep] = kept_counts[kept_index]
    keep = keep & (sizes >= 2)
    groups, y = store.groups[keep], store.ratings[keep]
    names, index = np.unique(groups, return_inverse=True)
    counts = np.bincount(index)
    if len(names) == 0:
        return None
    picks = {"random pick": np.bincount(index, weights=y) / counts, "best possible": _pick(y, y, index, len(names))}
    for name, scores in predictors.items():
        picks[f"{name} pick"] = _pick(scores[keep], y, index, len(names))
    weights, _ = _prompt_weights(names, n_boot, seed)
    random = picks["random pick"]
    return BestOfN(prompts=len(names), samples_per_prompt=float(counts.mean()),
                   picks={name: quantile_interval(v.mean(), weights @ v / weights.sum(1)) for name, v in picks.items()},
                   versus_random={name: quantile_interval((v - random).mean(), weights @ (v - random) / weights.sum(1))
                                  for name, v in picks.items() if name != "random pick"})


def _pick(scores: np.ndarray, ratings: np.ndarray, index: np.ndarray, n_groups: int) -> np.ndarray:
    """Per prompt: the mean rating of the samples with the highest score (a sample without a score is never picked over
    one with a score; a prompt with none scored gets the random pick, its mean)."""
    scores = np.where(np.isfinite(scores), scores, -np.inf)
    top = np.full(n_groups, -np.inf)
    np.maximum.at(top, index, scores)
    chosen = scores == top[index]
    return np.bincount(index, weights=ratings * chosen, minlength=n_groups) / np.bincount(index, weights=chosen, minlength=n_groups)


def _prompt_weights(names: np.ndarray, n_boot: int, seed: int):
    resampler = Resampler.make(names, n_boot, seed)
    return resampler.weights, resampler.group_weights


def transfer(store: ActivationStore, predictors: dict[str, np.ndarray], keep: np.ndarray, n_boot: int = 1000,
             seed: int = 0) -> Transfer:
    """How well each predictor ranks this dataset's ratings. Ratings on another scale make R^2 and MAE meaningless
    here; the report shows the rank metrics (Spearman, within-prompt accuracy and Spearman)."""
    y, groups = store.ratings[keep], store.groups[keep]
    resampler = Resampler.make(groups, n_boot, seed)
    return Transfer(examples=int(keep.sum()), predictors={name: score(y, s[keep], groups, resampler=resampler)
                                                          for name, s in predictors.items()})
