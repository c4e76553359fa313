"""The causal test: push the residual stream along the reward direction while the model writes, and measure
whether an independent scorer rates the replies higher, at what cost in coherence, and against control directions.

Directions at each steer layer (fitted on the probe's own training prompts and position): the probe kind's
direction ("probe"; the saved probe itself at its own layer), a difference of means ("mean_diff"), random
directions ("random") and random directions with the probe direction projected out ("orthogonal"). "ablate"
projects the probe direction out instead.

Dose: a strength s adds s x sd_d x unit(d), where sd_d is the standard deviation of the stored states' projection on
that direction d itself at that layer. Every direction is pushed the same number of its own standard deviations, so
a random direction gets as unusual a push as the probe's, whatever the residual stream's spread along it (matched in
the states' own units; matching KL instead would need a search over strengths per direction, several generations
each). The KL of the replies at the primary condition is on the page for the probe and the random directions, as a
check of the dose in the model's output.

The control is a distribution, not one draw: `random_directions` random (and orthogonal) directions (19 by default,
so the rank test can reach p = 1 / 20 = 0.05), steered at the primary contrast's strength only (the strongest
positive push), at the primary layer only unless `random_layers` is "all". The primary contrast, fixed in advance:
the probe direction at its own layer (the first steered layer if that is not steered), that strength, read by the
primary scorer (experiments/steer_scoring.py says which and why). It is compared with the random directions twice:
paired on prompts against their mean, with a studentized interval that resamples prompts and directions
("versus_random"), and by its rank among them ("random_rank_p": the share of draws, counting the direction itself,
that moved the score at least as far in the strength's direction; its floor is 1 / (draws + 1)). The result states
the smallest effect each could detect at this run's size. The other probe-direction contrasts with a rank p are
secondary, with Holm-adjusted p.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from typing import Literal, get_args, overload

import numpy as np
import pandas as pd
from pydantic import ConfigDict, Field

from latent_reward.activations.store import ActivationStore
from latent_reward.analysis.targets import make_target
from latent_reward.data.schema import Example
from latent_reward.data.splits import held_out_prompts
from latent_reward.errors import UserError
from latent_reward.evaluation.multiplicity import holm
from latent_reward.evaluation.results import Interval, Result
from latent_reward.evaluation.small_sample import detectable_effect, studentized_crossed, studentized_mean
from latent_reward.experiments.steer_scoring import CIRCULAR, JudgeScorer, Scoring, score_replies
from latent_reward.generation import GenerationConfig, Intervention, generate
from latent_reward.generation.batched import PromptCache
from latent_reward.generation.teacher_forced import read_back
from latent_reward.models.chat import fallback_stops, prompt_token_ids
from latent_reward.models.loading import LoadedModel
from latent_reward.probes import MeanDiffProbe, Probe, Provenance, RidgeProbe
from latent_reward.probes.reader import ProbeReader

Direction = Literal["probe", "mean_diff", "random", "orthogonal"]
DIRECTIONS: tuple[str, ...] = get_args(Direction)
ABLATE = "ablate"
COHERENCE = ("nll", "kl", "distinct_2", "degenerate", "empty", "tokens")
ALPHA = 0.05  # the level the detectable effects are stated at (two-sided for the interval, one-sided for the rank)
POWER = 0.8


class SteerConfig(Result):
    model_config = ConfigDict(frozen=True, extra="forbid")

    layers: tuple[int, ...] | None = Field(
        None,
        description="Residual indices to steer at (default: the probe's layer and the one at 1/3 of the depth, 2/3 "
        "if that is it).",
    )
    strengths: tuple[float, ...] = Field(
        (-8.0, -4.0, 0.0, 4.0, 8.0), description="Multiples of each direction's own projection sd."
    )
    directions: tuple[Direction, ...] = Field(("probe", "random"), description="The directions steered along.")
    random_directions: int = Field(
        19,
        ge=1,
        description="Random (and orthogonal) directions, steered at the primary (strongest positive) strength only; "
        "a rank p can be no smaller than 1/(this + 1): 19 allow 0.05, 99 allow 0.01.",
    )
    random_layers: Literal["primary", "all"] = Field(
        "primary",
        description="Where the random directions are steered: primary (the primary contrast's layer) or all.",
    )
    ablate: bool = Field(False, description="Also project the probe direction out.")
    scope: Literal["generated", "all"] = Field(
        "generated", description="Where the push applies: generated (the reply's tokens) or all (the prompt too)."
    )
    prompts: int = Field(
        20,
        ge=1,
        description="Prompts to steer on: a seeded choice among those the probe was neither trained nor validated on.",
    )
    samples: int = Field(1, ge=1, description="Replies per prompt and condition.")
    max_new_tokens: int = Field(48, ge=1, description="Tokens generated per reply, at most.")
    temperature: float = Field(0.0, ge=0, description="Sampling temperature; 0 = greedy, > 0 samples (seeded).")
    batch_size: int = Field(24, ge=1)
    n_boot: int = 2000
    seed: int = 0


class Effect(Result):
    scorer: str
    layer: int
    direction: str
    strength: float | str  # a number, or "ablate"
    mean: Interval  # mean score over prompts (for a random kind: averaged over its draws)
    change: Interval  # paired: minus the unsteered mean on the same prompts
    versus_random: Interval | None = (
        None  # paired: minus the random draws' mean at the same layer and strength (prompts and draws resampled)
    )
    random_rank_p: float | None = None  # share of random draws (plus this direction) moving the score at least as far
    rank_p_holm: float | None = None  # Holm-adjusted over the secondary contrasts (None for the primary)
    draws: list[float] | None = None  # a random kind's mean change per draw
    wrong_way: float | None  # share of prompts whose score moves against the strength's sign


class PrimaryContrast(Result):
    """The one pre-specified contrast, and what it can detect at this run's size."""

    scorer: str
    scorer_reason: str
    layer: int
    strength: float
    prompts: int
    change: Interval  # minus unsteered, paired on prompts
    versus_random: Interval | None = None  # minus the random directions' mean (prompts and directions resampled)
    random_draws: int = 0
    rank_p: float | None = None
    rank_p_floor: float | None = None  # 1 / (random_draws + 1): the smallest rank p this many draws allow
    detectable_versus_random: float | None = None  # true difference the interval excludes 0 for with 80% power
    detectable_rank: float | None = None  # change needed for rank p <= 0.05 given these draws (None: fewer than 19)
    kl: Interval | None = None  # KL per token of the probe direction's replies (the dose in the model's output)
    random_kl: Interval | None = None  # the same, averaged over the random directions


class SteerResult(Result):
    probe: Provenance
    layers: list[int]
    sd: dict[int, dict[str, float]]  # layer -> direction label -> sd of the states' projection on it (strength unit)
    directions: list[str]
    strengths: list[float]
    scorers: list[str]  # independent scorers (the steered probe's own reading excluded)
    primary: PrimaryContrast | None = None
    scorer_validation: dict[str, float] = {}  # text scorers: validation r of their prefixes
    coherence: list[str]
    prompts: int
    samples: int
    effects: list[Effect]
    examples: list[dict]  # a few replies at negative, zero and positive strength
    seconds: float = 0.0


def steer_layers(probe: Probe, n_layers: int, config: SteerConfig) -> list[int]:
    own = probe.info.cell()[1]
    away = max(round(n_layers / 3), 1)
    other = own - away if own - away >= 1 else min(own + away, n_layers)  # a third of the depth from the probe's layer
    layers = config.layers or tuple(sorted({own, other}))
    bad = [layer for layer in layers if not 0 <= layer <= n_layers]
    if bad:
        raise UserError(f"layer {bad[0]} is out of range: this model has layers 0..{n_layers}")
    return list(layers)


def primary_layer(probe: Probe, layers: list[int]) -> int:
    """The primary contrast's layer: the probe's own, or the first steered layer when that is not steered."""
    own = probe.info.cell()[1]
    return own if own in layers else layers[0]


def family(label: str) -> str:
    """The direction kind of a condition label ("random 3" -> "random")."""
    return label.split(" ")[0]


def direction_vectors(
    store: ActivationStore, probe: Probe, layer: int, kinds: tuple[str, ...], seed: int, draws: int = 1
) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Unit vectors at `layer` by label ("probe", "mean_diff", "random 1".."random k", "orthogonal 1"..), and the
    standard deviation of the stored states' projection on each (its strength unit)."""
    position, own = probe.info.cell()
    target = make_target(store, probe.info.target or "rating")
    train_groups = set(probe.info.train_groups)
    train = np.array([g in train_groups for g in target.groups]) if train_groups else np.ones(len(target.y), bool)
    x = target.states(store, position, [layer])[:, 0]
    if own == layer:
        probe_direction = probe.direction
    else:
        kind = probe.kind if probe.linear else "ridge"
        refit = RidgeProbe() if kind == "ridge" else Probe.create(kind)
        probe_direction = refit.fit(x[train], target.y[train], target.groups[train]).direction
    unit = probe_direction / np.linalg.norm(probe_direction)
    rng = np.random.default_rng(seed + layer)
    vectors = {"probe": unit}
    if "mean_diff" in kinds:
        vectors["mean_diff"] = MeanDiffProbe().fit(x[train], target.y[train]).direction
    for draw in range(1, draws + 1):
        random = rng.normal(size=unit.shape)
        orthogonal = random - (random @ unit) * unit
        vectors[f"random {draw}"] = random / np.linalg.norm(random)
        vectors[f"orthogonal {draw}"] = orthogonal / np.linalg.norm(orthogonal)
    kept = {k: v.astype(np.float32) for k, v in vectors.items() if family(k) in kinds or k == "probe"}
    x64 = x.astype(np.float64)
    return kept, {k: float(np.std(x64 @ v.astype(np.float64))) for k, v in kept.items()}


def _random_kind(label: str) -> bool:
    return family(label) in ("random", "orthogonal")


# A condition: (layer, direction, strength (ABLATE for an ablation), intervention); None for the unsteered one's.
Condition = tuple[int | None, str, float | str, Intervention | None]


def conditions(
    config: SteerConfig, layers: list[int], vectors: dict[int, dict[str, np.ndarray]], sd: dict[int, dict[str, float]]
) -> list[Condition]:
    """(layer, direction, strength, intervention or None) for every steered condition, and the unsteered one once."""
    out: list[Condition] = [(None, "none", 0.0, None)]
    steered = [s for s in config.strengths if s != 0]
    primary = [primary_strength(steered)] if steered else []
    for layer in layers:
        for label, unit in vectors[layer].items():
            if family(label) not in config.directions:
                continue
            for strength in primary if _random_kind(label) else steered:
                vector = strength * sd[layer][label] * unit
                out.append((layer, label, float(strength), Intervention(layer, vector, scope=config.scope)))
        if config.ablate:
            out.append(
                (
                    layer,
                    "probe",
                    ABLATE,
                    Intervention(layer, vectors[layer]["probe"], kind="ablate", scope=config.scope),
                )
            )
    return out


def primary_strength(strengths) -> float:
    """The strength of the pre-specified contrast: the strongest positive push (the most negative if none is
    positive)."""
    positive = [s for s in strengths if s > 0]
    return max(positive) if positive else min(strengths)


def generate_conditions(
    loaded: LoadedModel,
    prompts: list[list[int]],
    conditions_list: list[Condition],
    config: SteerConfig,
    stop_strings: tuple[str, ...] = (),
) -> pd.DataFrame:
    """One row per (condition, prompt, sample): the reply and its read-back coherence measures."""
    generation = GenerationConfig(
        max_new_tokens=config.max_new_tokens,
        temperature=config.temperature,
        seed=config.seed,
        batch_size=config.batch_size,
        stop_strings=stop_strings,
    )
    jobs = [p for p in prompts for _ in range(config.samples)]
    shared = PromptCache(loaded.model)  # every condition generates from the same prompts: run each once
    rows = []
    for layer, kind, strength, intervention in conditions_list:
        interventions = (intervention,) if intervention is not None else ()
        replies = generate(loaded, jobs, generation, interventions=interventions, prompt_cache=shared)
        back = read_back(loaded, jobs, [r.ids for r in replies], interventions, batch_size=8, prompt_cache=shared)
        for index, (reply, measured) in enumerate(zip(replies, back)):
            rows.append(
                {
                    "layer": layer,
                    "direction": kind,
                    "strength": strength,
                    "prompt": index // config.samples,
                    "sample": index % config.samples,
                    "reply": reply.text,
                    "tokens": len(reply.ids),
                    "stop": reply.stop,
                    "nll": measured.nll,
                    "kl": measured.kl,
                    "distinct_2": distinct_2(reply.ids),
                    "degenerate": float(degenerate(reply.ids)),
                    "empty": float(not reply.text.strip()),
                }
            )
    return pd.DataFrame(rows)


def distinct_2(ids: list[int]) -> float:
    """Distinct bigrams over all bigrams (1 = no repetition)."""
    bigrams = list(zip(ids, ids[1:]))
    return len(set(bigrams)) / len(bigrams) if bigrams else 1.0


def degenerate(ids: list[int]) -> bool:
    """Empty, or looping: a 4-gram that occurs three or more times, or fewer than half the bigrams distinct."""
    if not ids:
        return True
    grams = [tuple(ids[i : i + 4]) for i in range(len(ids) - 3)]
    counts = pd.Series(grams).value_counts() if grams else pd.Series(dtype=int)
    return bool((len(counts) and counts.max() >= 3) or distinct_2(ids) < 0.5)


def effects(frame: pd.DataFrame, scorers: list[str], config: SteerConfig) -> list[Effect]:
    """Per scorer, layer, direction kind and strength: the mean over prompts, the paired change from unsteered, and
    for non-random kinds the comparison with the random draws at the same layer and strength. Intervals: studentized
    bootstrap over prompts (and random directions), evaluation/small_sample.py."""
    per_prompt = frame.groupby(["layer", "direction", "strength", "prompt"], dropna=False)[scorers].mean().reset_index()
    base = per_prompt[per_prompt.direction == "none"].set_index("prompt")
    per_label = {
        key: rows.set_index("prompt").reindex(base.index)
        for key, rows in per_prompt[per_prompt.direction != "none"].groupby(["layer", "direction", "strength"])
    }
    by_kind: dict[tuple, list[pd.DataFrame]] = {}
    for (layer, label, strength), rows in per_label.items():
        by_kind.setdefault((layer, family(label), strength), []).append(rows)
    out = []
    for (layer, kind, strength), draws in by_kind.items():
        random = by_kind.get((layer, "random", strength)) if not _random_kind(kind) else None
        for scorer in scorers:
            reference = base[scorer].to_numpy(float)
            per_draw = np.stack([d[scorer].to_numpy(float) for d in draws])
            values = _quiet_nanmean(per_draw, axis=0) if len(draws) > 1 else per_draw[0]
            crossed = _random_kind(kind) and len(draws) > 1
            effect = Effect(
                scorer=scorer,
                layer=int(layer),
                direction=kind,
                strength=strength,
                mean=_draws_interval(per_draw, np.zeros_like(reference), config)
                if crossed
                else _interval(values, config),
                change=_draws_interval(per_draw, reference, config)
                if crossed
                else _interval(values - reference, config),
                wrong_way=_wrong_way(values - reference, strength),
            )
            if _random_kind(kind):
                effect.draws = [float(_quiet_nanmean(d - reference)) for d in per_draw]
            elif random is not None:
                random_draws = np.stack([d[scorer].to_numpy(float) for d in random])
                effect.versus_random = studentized_crossed(values, random_draws, config.n_boot, config.seed + 1)[0]
                effect.random_rank_p = _rank_p(
                    float(_quiet_nanmean(values - reference)),
                    [float(_quiet_nanmean(d - reference)) for d in random_draws],
                    float(strength),
                )
            out.append(effect)
    for scorer in scorers:  # the unsteered reference itself
        out.append(
            Effect(
                scorer=scorer,
                layer=-1,
                direction="none",
                strength=0.0,
                mean=_interval(base[scorer].to_numpy(float), config),
                change=Interval.of(0.0, 0.0, 0.0),
                wrong_way=None,
            )
        )
    return out


def _interval(values: np.ndarray, config: SteerConfig) -> Interval:
    return studentized_mean(values, config.n_boot, config.seed)[0]


def _draws_interval(per_draw: np.ndarray, reference: np.ndarray, config: SteerConfig) -> Interval:
    """mean over prompts of (the draws' mean - reference), per_draw [draws, prompts], with an interval that resamples
    prompts and random directions together (the draws are a sample of directions, not fixed conditions). Taken over
    the prompts with a score in every draw (a judge that failed on one reply leaves that prompt out)."""
    flipped = studentized_crossed(reference, per_draw, config.n_boot, config.seed)[0]  # mean of reference - draws
    return Interval.of(
        None if flipped.value is None else -flipped.value,
        None if flipped.high is None else -flipped.high,
        None if flipped.low is None else -flipped.low,
    )


@overload
def _quiet_nanmean(values: np.ndarray, axis: None = None) -> float: ...
@overload
def _quiet_nanmean(values: np.ndarray, axis: int) -> np.ndarray: ...
def _quiet_nanmean(values: np.ndarray, axis: int | None = None) -> np.ndarray | float:
    """nanmean that returns NaN without a warning where a scorer has no value (e.g. an unreachable judge)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(values, axis=axis)


def _rank_p(change: float, draws: list[float], strength: float) -> float | None:
    """(1 + draws moving the score at least as far in the strength's direction) / (1 + draws): a one-sided rank
    p-value of the direction among random directions (its smallest value is 1 / (1 + draws))."""
    finite = [d for d in draws if np.isfinite(d)]
    if not np.isfinite(change) or not finite or strength == 0:
        return None
    sign = np.sign(strength)
    return (1 + sum(sign * d >= sign * change for d in finite)) / (1 + len(finite))


def detectable_by_rank(draws: list[float], strength: float, alpha: float = ALPHA) -> float | None:
    """The change (in the strength's direction) the rank test needs for p <= alpha against these draws: beyond the
    (floor(alpha (B + 1)))-th farthest draw; None when B draws cannot give p <= alpha (B + 1 < 1 / alpha)."""
    finite = np.asarray([d for d in draws if np.isfinite(d)], dtype=np.float64)
    allowed = int(np.floor(alpha * (finite.size + 1) + 1e-9)) - 1  # draws that may still reach it
    if allowed < 0 or strength == 0:
        return None
    sign = float(np.sign(strength))
    return sign * float(np.sort(sign * finite)[::-1][allowed])


def _wrong_way(change: np.ndarray, strength: float | str) -> float | None:
    if isinstance(strength, str) or strength == 0:
        return None
    moved = change[np.isfinite(change) & (change != 0)]
    return float(np.mean(np.sign(moved) != np.sign(strength))) if moved.size else None


def _find(found: list[Effect], scorer: str, layer: int, direction: str, strength: float) -> Effect | None:
    return next(
        (
            e
            for e in found
            if (e.scorer, e.layer, e.direction) == (scorer, layer, direction)
            and not isinstance(e.strength, str)
            and float(e.strength) == strength
        ),
        None,
    )


def primary_contrast(
    frame: pd.DataFrame, found: list[Effect], scoring: Scoring, layer: int, strength: float, config: SteerConfig
) -> PrimaryContrast | None:
    """The primary contrast's effect, with the smallest effects its two tests can detect at this run's size."""
    effect = _find(found, scoring.primary, layer, "probe", strength)
    if effect is None:
        return None
    random = _find(found, scoring.primary, layer, "random", strength)
    contrast = PrimaryContrast(
        scorer=scoring.primary,
        scorer_reason=scoring.reason,
        layer=layer,
        strength=strength,
        prompts=int(frame.prompt.nunique()),
        change=effect.change,
        versus_random=effect.versus_random,
        rank_p=effect.random_rank_p,
    )
    kl, random_kl = _find(found, "kl", layer, "probe", strength), _find(found, "kl", layer, "random", strength)
    contrast.kl, contrast.random_kl = (kl.change if kl else None), (random_kl.change if random_kl else None)
    if random is None or not random.draws:
        return contrast
    rows = frame[(frame.layer == layer) & (frame.strength == strength)]
    table = rows.groupby(["direction", "prompt"])[scoring.primary].mean().unstack()  # direction x prompt
    draws = table.loc[[label for label in table.index if family(label) == "random"]].to_numpy(float)
    _, se = studentized_crossed(table.loc["probe"].to_numpy(float), draws, config.n_boot, config.seed + 1)
    contrast.random_draws = len(random.draws)
    contrast.rank_p_floor = 1 / (len(random.draws) + 1)
    contrast.detectable_versus_random = detectable_effect(se, contrast.prompts - 1, 1 - ALPHA, POWER)
    contrast.detectable_rank = detectable_by_rank(random.draws, strength)
    return contrast


def adjust_secondary(found: list[Effect], scorers: list[str], primary: PrimaryContrast | None) -> None:
    """Holm-adjusted rank p over the secondary contrasts: every non-random direction, independent scorer and layer
    with a rank p, except the primary contrast."""
    key = (primary.scorer, primary.layer, "probe", primary.strength) if primary else None
    secondary = [
        e
        for e in found
        if e.scorer in scorers and e.random_rank_p is not None and (e.scorer, e.layer, e.direction, e.strength) != key
    ]
    for effect, adjusted in zip(secondary, holm([e.random_rank_p for e in secondary])):
        effect.rank_p_holm = adjusted


def example_replies(frame: pd.DataFrame, layer: int, kind: str, prompts: list[str], count: int = 3) -> list[dict]:
    """For a few prompts: the replies at the most negative, zero and most positive strength."""
    steered = frame[(frame.layer == layer) & (frame.direction == kind) & (frame["sample"] == 0)]
    numeric = pd.to_numeric(steered.strength, errors="coerce")
    if numeric.isna().all():
        return []
    low, high = numeric.min(), numeric.max()
    base = frame[(frame.direction == "none") & (frame["sample"] == 0)].set_index("prompt")
    out = []
    for prompt in sorted(base.index)[:count]:
        pick = steered[steered.prompt == prompt]
        out.append(
            {
                "prompt": prompts[prompt][:300],
                "layer": layer,
                "direction": kind,
                f"strength {low:g}": pick[numeric[pick.index] == low].reply.iloc[0][:400],
                "unsteered": base.loc[prompt].reply[:400],
                f"strength {high:g}": pick[numeric[pick.index] == high].reply.iloc[0][:400],
            }
        )
    return out


def steer(
    loaded: LoadedModel,
    store: ActivationStore,
    probe: Probe,
    examples: list[Example],
    config: SteerConfig,
    readers: Sequence[ProbeReader] = (),
    judge: JudgeScorer | None = None,
    progress: bool = True,
) -> tuple[SteerResult, pd.DataFrame]:
    """Generate every condition's replies to `config.prompts` held-out prompts of `examples`, score them, and compute
    every effect; returns the typed result and one row per reply (with every score) for the CSV file."""
    started = time.perf_counter()
    excluded = probe.info.excluded_groups()
    conversations = [e.prompt_messages for e in held_out_prompts(examples, excluded, config.prompts, config.seed)]
    if not conversations:
        raise UserError("no prompt left that the probe was not trained or validated on")
    layers = steer_layers(probe, loaded.info.n_layers, config)
    own = primary_layer(probe, layers)
    vectors, sd = {}, {}
    for layer in layers:
        draws = config.random_directions if config.random_layers == "all" or layer == own else 0
        vectors[layer], sd[layer] = direction_vectors(store, probe, layer, config.directions, config.seed, draws)
    prompts = [prompt_token_ids(loaded.tokenizer, c) for c in conversations]
    frame = generate_conditions(
        loaded, prompts, conditions(config, layers, vectors, sd), config, fallback_stops(loaded.info.chat_template)
    )
    full = [[*conversations[p], {"role": "assistant", "content": reply}] for p, reply in zip(frame.prompt, frame.reply)]
    scoring = score_replies(frame, full, store, probe, loaded, config.max_new_tokens, readers, judge, progress)
    found = effects(frame, [*scoring.names, CIRCULAR, *COHERENCE], config)
    steered = [s for s in config.strengths if s != 0]
    primary = primary_contrast(frame, found, scoring, own, primary_strength(steered), config) if steered else None
    adjust_secondary(found, scoring.names, primary)
    texts = [c[-1]["content"] for c in conversations]
    result = SteerResult(
        probe=probe.info.provenance(),
        layers=layers,
        sd=sd,
        directions=list(config.directions),
        strengths=list(config.strengths),
        scorers=scoring.names,
        primary=primary,
        scorer_validation=scoring.validation,
        coherence=list(COHERENCE),
        prompts=len(prompts),
        samples=config.samples,
        effects=found,
        examples=[e for layer in layers for e in example_replies(frame, layer, "probe", texts)],
        seconds=time.perf_counter() - started,
    )
    frame.insert(0, "prompt_text", [conversations[p][-1]["content"][:500] for p in frame.prompt])
    return result, frame
