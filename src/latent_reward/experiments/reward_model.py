"""The probe as a reward model: pair accuracy, best-of-n, and how well it tracks another dataset's ratings.

Prompts the probe was trained or validated on never count (a probe saves both sets of prompts).
Intervals resample prompts. A pair is a record of a preference file (`meta["pair"]`): its two sides
were judged against each other; responses of different records to the same prompt never form a pair.
Records whose sides have the same text, repeats of a record, and records with tied ratings are not
compared (each counted). Pair accuracy is also reported on length-matched pairs (lengths of the full,
untruncated texts), where response length cannot decide the order.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Literal, get_args

import numpy as np
import pandas as pd

from latent_reward.activations.extract import extract
from latent_reward.activations.store import ActivationStore
from latent_reward.config import ExtractConfig
from latent_reward.data.schema import Example
from latent_reward.errors import UserError
from latent_reward.evaluation.baselines import length_features
from latent_reward.evaluation.groups import group_index, group_sizes
from latent_reward.evaluation.metrics import (
    Pairs,
    Resampler,
    length_matched_accuracy,
    pair_counts,
    quantile_interval,
    score,
)
from latent_reward.evaluation.paired import paired_pair_difference
from latent_reward.evaluation.results import LENGTH, LOGPROB, Interval, PairedDifference, Result, Scores
from latent_reward.models.loading import LoadedModel
from latent_reward.probes import Probe, Provenance

Normalization = Literal["sum", "mean", "none"]  # DPO implicit reward: log-probabilities summed, averaged, or none
NORMALIZATIONS: tuple[str, ...] = get_args(Normalization)
PROBE = "probe"  # the pooled probe (`run`'s best_probe)
WITHIN_PROBE = "within-prompt probe"  # trained on within-prompt differences (`run`'s within_probe): shown first
IMPLICIT_REWARD = "DPO implicit reward"  # predictor names: f"{IMPLICIT_REWARD} ({normalization})"
LOGPROB_RULE = (
    "Log-probability predictors (mean log-prob, DPO's implicit reward) sum log pi over the "
    "response's tokens and the end-of-turn token after them, and score only the pairs whose sides no model "
    "truncated at the token budget (a truncated text's log-probability is not log pi(y|x)); the probes and "
    "response length (characters of the full text) score every pair."
)


class PairAccuracy(Result):
    subset: str
    pairs: int  # pairs compared: records with two different texts and ratings, each record once
    prompts: int
    predictors: dict[str, Interval]  # name -> accuracy (score(chosen) > score(rejected), ties half)
    predictor_pairs: dict[str, int] = {}  # pairs a predictor scored where fewer than `pairs` (untruncated pairs only)
    # records left out, by reason: identical text, duplicate or contradicting records, tied ratings, one side only
    not_compared: dict[str, int] = {}
    truncated_pairs: int = 0  # compared pairs with a side cut at the token budget
    length_matched: dict[str, Interval] = {}  # the same over pairs whose lengths differ by < 10%
    length_matched_pairs: int = 0
    reference: str | None = PROBE  # the probe the paired differences are taken against (none: no probe ranks pairs)
    versus_probe: dict[str, PairedDifference] = {}  # name -> reference probe minus this predictor (all subsets only)


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
    excluded_prompts: int  # prompts the probes were trained or validated on
    probe: Provenance
    probes: list[str] = [PROBE]  # the probes scored, the headline first
    truncated: int = 0  # counted responses cut at the token budget
    # probes that read a position before the response (one value per prompt): not scored where responses to one
    # prompt are compared (pairs, best-of-n), where every comparison would tie
    prompt_side: dict[str, str] = {}  # name -> its position
    log_probability_rule: str = LOGPROB_RULE
    pair_accuracy: list[PairAccuracy] = []
    best_of_n: BestOfN | None = None
    transfer: Transfer | None = None


def score_examples(
    loaded: LoadedModel,
    probes: dict[str, Probe],
    examples: list[Example],
    folder: str | Path,
    logprobs: bool = True,
    progress: bool = True,
    source: str | None = None,
    max_tokens: int | None = None,
) -> tuple[ActivationStore, dict[str, np.ndarray]]:
    """Extract every probe's (position, layer) for `examples` into `folder` (resumable; one pass for all) and score
    them with each probe. The token budget is `max_tokens`, else the first probe's."""
    cells = {name: probe.info.cell() for name, probe in probes.items()}
    first = next(iter(probes.values()))
    config = ExtractConfig(
        positions=tuple(dict.fromkeys(p for p, _ in cells.values())),
        layers=tuple(sorted({layer for _, layer in cells.values()})),
        max_tokens=max_tokens or first.info.max_tokens or 1024,
        logprobs=logprobs,
    )
    store = extract(loaded, examples, folder, config, progress=progress, source=source).store
    return store, {
        name: probes[name].predict(store.array(position, [layer])[:, 0].astype(np.float32))
        for name, (position, layer) in cells.items()
    }


def score_probes(
    loaded: LoadedModel,
    probes: dict[str, Probe],
    examples: list[Example],
    source: str,
    folder: Path,
    max_tokens: int | None = None,
    reference: LoadedModel | None = None,
    normalization: str = "sum",
    n_boot: int = 1000,
    seed: int = 0,
    progress: bool = True,
) -> tuple[ScoreResult, pd.DataFrame]:
    """The probes (the headline first, then `PROBE`) as reward models on `examples`, beside response length, the mean
    log-probability and DPO's implicit reward (with `reference`, or reference-free with normalization "none"; one of
    NORMALIZATIONS): pair
    accuracy on preference records, else transfer and best-of-n. Prompts any probe was trained or validated on do not
    count. `source` names the data; stores go into `folder` ("store", and "store-reference"). Returns the result and
    one row per example."""
    store, scores = score_examples(
        loaded, probes, examples, folder / "store", progress=progress, source=source, max_tokens=max_tokens
    )
    truncated = store.stat("truncated").astype(bool)
    logprob_sum = np.where(truncated, np.nan, store.stat("logprob_sum"))  # a truncated text's is not log pi(y|x)
    predictors = {
        **scores,
        LENGTH: length_features([e.response for e in store.examples])[:, 0],
        LOGPROB: np.where(truncated, np.nan, store.stat("logprob_mean").astype(np.float64)),
    }
    if reference is not None:
        implicit, reference_truncated = _implicit(
            reference, examples, store, folder / "store-reference", normalization, progress
        )
        truncated = truncated | reference_truncated
        predictors[f"{IMPLICIT_REWARD} ({normalization})"] = np.where(truncated, np.nan, implicit)
    elif normalization == "none":
        predictors[f"{IMPLICIT_REWARD} (none)"] = implicit_reward(logprob_sum, None, normalization="none")
    excluded = set().union(*(p.info.excluded_groups() for p in probes.values()))
    keep = np.array([g not in excluded for g in store.groups])
    if not keep.any():
        raise UserError("every prompt in this data was used to train or validate the probe; score it on other prompts")
    probe = probes[PROBE]
    prompt_side = {name: p.info.cell()[0] for name, p in probes.items() if p.info.reads_prompt_only}
    ranking = {name: scores for name, scores in predictors.items() if name not in prompt_side}
    result = ScoreResult(
        data=source,
        examples=int(keep.sum()),
        excluded_prompts=len(excluded & set(store.groups)),
        probe=probe.info.provenance(),
        probes=list(probes),
        truncated=int((truncated & keep).sum()),
        prompt_side=prompt_side,
    )
    first_ranker = next((name for name in probes if name not in prompt_side), None)
    result.pair_accuracy = pair_accuracy(store, ranking, keep, n_boot, seed, truncated, reference=first_ranker)
    if not result.pair_accuracy:
        result.transfer = transfer(store, predictors, keep, n_boot, seed)
        for name in prompt_side:  # one value per prompt: its within-prompt metrics are ties, not applicable
            result.transfer.predictors[name].within_acc = Interval()
            result.transfer.predictors[name].within_spearman = Interval()
        result.best_of_n = best_of_n(store, ranking, keep, n_boot, seed)
    frame = pd.DataFrame(
        {
            "id": store.ids,
            "group": store.groups,
            "rating": store.ratings,
            "counted": keep,
            **predictors,
            "truncated": truncated,
        }
    )
    return result, frame


def _implicit(
    reference: LoadedModel,
    examples: list[Example],
    store: ActivationStore,
    folder: Path,
    normalization: str,
    progress: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """DPO's implicit reward: the policy's and the reference's summed log-probabilities (each over the response and its
    end-of-turn token, under its own tokenizer); and which responses the reference's token budget truncated."""
    config = ExtractConfig(positions=("eot",), layers=(0,), max_tokens=store.manifest.max_tokens, logprobs=True)
    reference_store = extract(reference, examples, folder, config, progress=progress).store
    # per-token averages over the response's tokens and the end-of-turn token
    counts = np.stack([s.stat("response_tokens_count") for s in (store, reference_store)]).astype(np.float64) + 1
    return (
        implicit_reward(store.stat("logprob_sum"), reference_store.stat("logprob_sum"), counts, normalization),
        reference_store.stat("truncated").astype(bool),
    )


def implicit_reward(
    policy_logprob_sum: np.ndarray,
    reference_logprob_sum: np.ndarray | None,
    n_tokens: np.ndarray | None = None,
    normalization: str = "sum",
    beta: float = 1.0,
) -> np.ndarray:
    """DPO's implicit reward beta * (log pi(y|x) - log pi_ref(y|x)), from each model's summed log-probability of the
    response under its own tokenizer.

    sum: DPO's own; mean: per-token averages (each model's sum over its own token count; `n_tokens` is
    (policy tokens, reference tokens) stacked [2, n]); none: the policy's summed log-probability alone.
    """
    if normalization == "none" or reference_logprob_sum is None:
        return beta * policy_logprob_sum
    if normalization == "mean":
        if n_tokens is None:
            raise ValueError("the per-token mean needs each model's token counts")
        return beta * (policy_logprob_sum / n_tokens[0] - reference_logprob_sum / n_tokens[1])
    return beta * (policy_logprob_sum - reference_logprob_sum)


def record_pairs(examples: list[Example], rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, Counter[str]]:
    """The pairs the preference records among `rows` hold: (better-rated rows, worse-rated rows) in record order, and
    the records not compared, by reason. A record whose sides have the same text (whitespace aside) or the same rating
    cannot be ordered; a record repeating an earlier one's prompt and texts in the same order is counted once; records
    that order the same two texts both ways contradict each other and are all left out."""
    sides: dict[str, list[int]] = {}
    for row in rows:
        sides.setdefault(examples[row].meta["pair"], []).append(int(row))
    orderable: dict[tuple[str, frozenset[str]], list[tuple[int, int, tuple[str, str]]]] = {}
    skipped: Counter[str] = Counter()
    for members in sides.values():
        if len(members) != 2:
            skipped["one side only"] += 1
            continue
        a, b = sorted(members, key=lambda row: -examples[row].rating)
        texts = (" ".join(examples[a].response.split()), " ".join(examples[b].response.split()))
        if texts[0] == texts[1]:
            skipped["identical text"] += 1
        elif examples[a].rating == examples[b].rating:
            skipped["tied ratings"] += 1
        else:
            orderable.setdefault((examples[a].group, frozenset(texts)), []).append((a, b, texts))
    kept: list[tuple[int, int]] = []
    for records in orderable.values():
        if len({texts for _, _, texts in records}) > 1:
            skipped["contradicting records"] += len(records)
            continue
        if len(records) > 1:
            skipped["duplicate record"] += len(records) - 1
        kept.append(records[0][:2])  # in the order of each pair's first record
    first, second = ([pair[i] for pair in kept] for i in (0, 1))
    return np.array(first, dtype=np.int64), np.array(second, dtype=np.int64), skipped


def pair_accuracy(
    store: ActivationStore,
    predictors: dict[str, np.ndarray],
    keep: np.ndarray,
    n_boot: int = 1000,
    seed: int = 0,
    truncated: np.ndarray | None = None,
    reference: str | None = PROBE,
) -> list[PairAccuracy]:
    """Per subset and overall, over the records' pairs (`record_pairs`); intervals resample prompts (a prompt may hold
    several records). A NaN score leaves a pair unscored by that predictor. Paired differences are taken against the
    `reference` probe."""
    examples, rows = store.examples, np.flatnonzero(keep)
    if not len(rows) or not all(examples[row].meta.get("pair") for row in rows):
        return []
    first, second, skipped = record_pairs(examples, rows)
    y = store.ratings
    lengths = length_features([e.response for e in examples])[:, 0]  # characters of the full texts
    subsets = np.array([examples[row].meta.get("subset") or "all" for row in first], dtype=object)
    cut = truncated[first] | truncated[second] if truncated is not None else np.zeros(len(first), dtype=bool)
    out = []
    for subset in ["all", *sorted(set(subsets) - {"all"})]:
        chosen = np.ones(len(first), dtype=bool) if subset == "all" else subsets == subset
        names, owner = group_index(store.groups[first[chosen]])
        pairs: Pairs = (first[chosen], second[chosen], owner, len(names))
        resampler = Resampler.make(names, n_boot, seed)
        entry = PairAccuracy(
            subset=subset,
            pairs=int(chosen.sum()),
            prompts=len(names),
            predictors={},
            not_compared=dict(skipped) if subset == "all" else {},
            truncated_pairs=int(cut[chosen].sum()),
            reference=reference,
        )
        for name, scores in predictors.items():
            correct, total = pair_counts(y, scores, None, pairs)
            with np.errstate(invalid="ignore", divide="ignore"):
                samples = (resampler.group_weights @ correct) / (resampler.group_weights @ total)
            entry.predictors[name] = quantile_interval(correct.sum() / total.sum() if total.sum() else np.nan, samples)
            if total.sum() < entry.pairs:
                entry.predictor_pairs[name] = int(total.sum())
            entry.length_matched[name], matched = length_matched_accuracy(
                y, scores, None, lengths, resampler, pairs=pairs
            )
            if name == next(iter(predictors)):  # the headline probe's (log-probabilities score fewer)
                entry.length_matched_pairs = matched
            if subset == "all" and name != reference and reference in predictors:
                entry.versus_probe[name] = paired_pair_difference(
                    y, predictors[reference], scores, pairs, resampler.group_weights, seed=seed
                )
        out.append(entry)
    return out


def best_of_n(
    store: ActivationStore, predictors: dict[str, np.ndarray], keep: np.ndarray, n_boot: int = 1000, seed: int = 0
) -> BestOfN | None:
    """Mean rating (e.g. GPT-4 win-rate vs the reference) of the sample each predictor picks per prompt, beside a
    random pick (the prompt's mean) and the best possible pick. A tie between samples counts as their mean."""
    sizes = np.zeros(len(keep), dtype=np.int64)
    sizes[keep] = group_sizes(store.groups[keep])
    keep = keep & (sizes >= 2)
    groups, y = store.groups[keep], store.ratings[keep]
    names, index = group_index(groups)
    counts = np.bincount(index)
    if len(names) == 0:
        return None
    picks = {"random pick": np.bincount(index, weights=y) / counts, "best possible": _pick(y, y, index, len(names))}
    for name, scores in predictors.items():
        picks[f"{name} pick"] = _pick(scores[keep], y, index, len(names))
    weights, _ = _prompt_weights(names, n_boot, seed)
    random = picks["random pick"]
    return BestOfN(
        prompts=len(names),
        samples_per_prompt=float(counts.mean()),
        picks={name: quantile_interval(v.mean(), weights @ v / weights.sum(1)) for name, v in picks.items()},
        versus_random={
            name: quantile_interval((v - random).mean(), weights @ (v - random) / weights.sum(1))
            for name, v in picks.items()
            if name != "random pick"
        },
    )


def _pick(scores: np.ndarray, ratings: np.ndarray, index: np.ndarray, n_groups: int) -> np.ndarray:
    """Per prompt: the mean rating of the samples with the highest score (a sample without a score is never picked over
    one with a score; a prompt with none scored gets the random pick, its mean)."""
    scores = np.where(np.isfinite(scores), scores, -np.inf)
    top = np.full(n_groups, -np.inf)
    np.maximum.at(top, index, scores)
    chosen = scores == top[index]
    return np.bincount(index, weights=ratings * chosen, minlength=n_groups) / np.bincount(
        index, weights=chosen, minlength=n_groups
    )


def _prompt_weights(names: np.ndarray, n_boot: int, seed: int):
    resampler = Resampler.make(names, n_boot, seed)
    return resampler.weights, resampler.group_weights


def transfer(
    store: ActivationStore, predictors: dict[str, np.ndarray], keep: np.ndarray, n_boot: int = 1000, seed: int = 0
) -> Transfer:
    """How well each predictor ranks this dataset's ratings. Ratings on another scale make R^2 and MAE meaningless
    here; the report shows the rank metrics (Spearman, within-prompt accuracy and Spearman)."""
    y, groups = store.ratings[keep], store.groups[keep]
    resampler = Resampler.make(groups, n_boot, seed)
    out = {}
    for name, s in predictors.items():
        scored = np.isfinite(s[keep])  # log-probabilities leave truncated responses unscored
        if scored.all():
            out[name] = score(y, s[keep], groups, resampler=resampler)
        elif scored.sum() > 2:
            out[name] = score(y[scored], s[keep][scored], groups[scored], n_boot, seed)
    return Transfer(examples=int(keep.sum()), predictors=out)
