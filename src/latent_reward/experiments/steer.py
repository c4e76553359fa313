"""The causal test: push the residual stream along the reward direction while the model writes, and measure
whether an independent scorer rates the replies higher, at what cost in coherence, and against control directions.

Directions at each steer layer (fitted on the probe's own training prompts and position): the probe kind's
direction ("probe"; the saved probe itself at its own layer), a difference of means ("mean_diff"), random
directions ("random") and random directions with the probe direction projected out ("orthogonal"). A strength
s adds s x sd x unit(direction), where sd is the standard deviation of the stored states' projection on the
probe direction at that layer: every direction at a layer gets the same norm. "ablate" projects the probe
direction out instead.

The control is a distribution, not one draw: `random_directions` random (and orthogonal) directions per layer,
steered at the primary contrast's strength only (the strongest positive push), which keeps the default grid short. A steered direction's effect is compared with them
twice: paired on prompts against their mean, with an interval that resamples prompts and draws ("versus_random"),
and by its rank among them ("random_rank_p", the
share of draws that moved the score at least as far in the strength's direction, counting the direction itself).

Scorers never include the steered probe at its own layer: its reading of the replies is reported only as a
manipulation check, labelled circular.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from pydantic import ConfigDict, Field

from latent_reward.activations.store import ActivationStore
from latent_reward.errors import UserError
from latent_reward.evaluation.metrics import Resampler, quantile_interval
from latent_reward.evaluation.results import Interval, Result
from latent_reward.experiments.targets import make_target
from latent_reward.generation import GenerationConfig, Intervention, generate
from latent_reward.generation.teacher_forced import read_back
from latent_reward.models.loading import LoadedModel
from latent_reward.probes import MeanDiffProbe, Probe, RidgeProbe

DIRECTIONS = ("probe", "mean_diff", "random", "orthogonal")
ABLATE = "ablate"
CIRCULAR = "steered probe (circular: manipulation check)"


class SteerConfig(Result):
    model_config = ConfigDict(frozen=True, extra="forbid")

    layers: tuple[int, ...] | None = None  # default: the probe's layer and the layer at 1/3 of the depth (2/3 if that is it)
    strengths: tuple[float, ...] = (-8.0, -4.0, 0.0, 4.0, 8.0)  # multiples of the projection's standard deviation
    directions: tuple[str, ...] = ("probe", "random")
    random_directions: int = Field(8, ge=1)  # draws per random kind and layer, steered at the primary strength only
    ablate: bool = False
    scope: str = Field("generated", pattern="^(generated|all)$")
    prompts: int = Field(20, ge=1)
    samples: int = Field(1, ge=1)
    max_new_tokens: int = Field(48, ge=1)
    temperature: float = Field(0.0, ge=0)
    batch_size: int = Field(24, ge=1)
    n_boot: int = 1000
    seed: int = 0


class Effect(Result):
    scorer: str
    layer: int
    direction: str
    strength: float | str  # a number, or "ablate"
    mean: Interval  # mean score over prompts (for a random kind: averaged over its draws)
    change: Interval  # paired: minus the unsteered mean on the same prompts
    versus_random: Interval | None = None  # paired: minus the random draws' mean at the same layer and strength (prompts and draws resampled)
    random_rank_p: float | None = None  # share of random draws (plus this direction) moving the score at least as far
    draws: list[float] | None = None  # a random kind's mean change per draw
    wrong_way: float | None  # share of prompts whose score moves against the strength's sign


class SteerResult(Result):
    probe: dict
    layers: list[int]
    sd: dict[int, float]  # the projection's standard deviation at each layer (the strength unit)
    directions: list[str]
    strengths: list[float]
    scorers: list[str]  # independent scorers (the steered probe's own reading excluded)
    coherence: list[str]
    prompts: int
    samples: int
    effects: list[Effect]
    examples: list[dict]  # a few replies at negative, zero and positive strength
    seconds: float = 0.0


def steer_layers(probe: Probe, n_layers: int, config: SteerConfig) -> list[int]:
    own = int(probe.info["layer"])
    away = max(round(n_layers / 3), 1)
    other = own - away if own - away >= 1 else min(own + away, n_layers)  # a third of the depth from the probe's layer
    layers = config.layers or tuple(sorted({own, other}))
    bad = [layer for layer in layers if not 0 <= layer <= n_layers]
    if bad:
        raise UserError(f"layer {bad[0]} is out of range: this model has layers 0..{n_layers}")
    return list(layers)


def family(label: str) -> str:
    """The direction kind of a condition label ("random 3" -> "random")."""
    return label.split(" ")[0]


def direction_vectors(store: ActivationStore, probe: Probe, layer: int, kinds: tuple[str, ...], seed: int,
                      draws: int = 1) -> tuple[dict[str, np.ndarray], float]:
    """Unit vectors at `layer` by label ("probe", "mean_diff", "random 1".."random k", "orthogonal 1"..), and the
    standard deviation of the stored states' projection on the probe direction there (the strength unit)."""
    position = probe.info["position"]
    target = make_target(store, probe.info.get("target") or "rating")
    train_groups = set(probe.info.get("train_groups") or ())
    train = np.array([g in train_groups for g in target.groups]) if train_groups else np.ones(len(target.y), bool)
    x = target.states(store, position, [layer])[:, 0]
    if int(probe.info["layer"]) == layer:
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
    sd = float(np.std(x.astype(np.float64) @ unit))
    return {k: v.astype(np.float32) for k, v in vectors.items() if family(k) in kinds}, sd


def _random_kind(label: str) -> bool:
    return family(label) in ("random", "orthogonal")


def conditions(config: SteerConfig, layers: list[int], vectors: dict[int, dict[str, np.ndarray]], sd: dict[int, float]):
    """(layer, direction, strength, intervention or None) for every steered condition, and the unsteered one once."""
    out = [(None, "none", 0.0, None)]
    steered = [s for s in config.strengths if s != 0]
    primary = [primary_strength(steered)] if steered else []
    for layer in layers:
        for label, unit in vectors[layer].items():
            for strength in primary if _random_kind(label) else steered:
                out.append((layer, label, float(strength), Intervention(layer, strength * sd[layer] * unit, scope=config.scope)))
        if config.ablate:
            out.append((layer, "probe", ABLATE, Intervention(layer, vectors[layer]["probe"], kind="ablate", scope=config.scope)))
    return out


def primary_strength(strengths) -> float:
    """The strength of the pre-specified contrast: the strongest positive push (the most negative if none is positive)."""
    positive = [s for s in strengths if s > 0]
    return max(positive) if positive else min(strengths)


def generate_conditions(loaded: LoadedModel, prompts: list[list[int]], conditions_list, config: SteerConfig,
                        stop_strings: tuple[str, ...] = ()) -> pd.DataFrame:
    """One row per (condition, prompt, sample): the reply and its read-back coherence measures."""
    generation = GenerationConfig(max_new_tokens=config.max_new_tokens, temperature=config.temperature, seed=config.seed,
                                  batch_size=config.batch_size, stop_strings=stop_strings)
    jobs = [p for p in prompts for _ in range(config.samples)]
    rows = []
    for layer, kind, strength, intervention in conditions_list:
        interventions = (intervention,) if intervention is not None else ()
        replies = generate(loaded, jobs, generation, interventions=interventions)
        back = read_back(loaded, jobs, [r.ids for r in replies], interventions)
        for index, (reply, measured) in enumerate(zip(replies, back)):
            rows.append({"layer": layer, "direction": kind, "strength": strength, "prompt": index // config.samples,
                         "sample": index % config.samples, "reply": reply.text, "tokens": len(reply.ids), "stop": reply.stop,
                         "nll": measured.nll, "kl": measured.kl, "distinct_2": distinct_2(reply.ids),
                         "degenerate": degenerate(reply.ids)})
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


def effects(frame: pd.DataFrame, scorers: list[str], layers: list[int], config: SteerConfig) -> list[Effect]:
    """Per scorer, layer, direction kind and strength: the mean over prompts, the paired change from unsteered, and
    for non-random kinds the comparison with the random draws at the same layer and strength."""
    per_prompt = frame.groupby(["layer", "direction", "strength", "prompt"], dropna=False)[scorers].mean().reset_index()
    base = per_prompt[per_prompt.direction == "none"].set_index("prompt")
    resampler = Resampler.make(np.asarray(base.index.astype(str)), config.n_boot, config.seed)
    per_label = {key: rows.set_index("prompt").loc[base.index]
                 for key, rows in per_prompt[per_prompt.direction != "none"].groupby(["layer", "direction", "strength"])}
    by_kind: dict[tuple, list[pd.DataFrame]] = {}
    for (layer, label, strength), rows in per_label.items():
        by_kind.setdefault((layer, family(label), strength), []).append(rows)
    out = []
    for (layer, kind, strength), draws in by_kind.items():
        random = by_kind.get((layer, "random", strength)) if kind not in ("random", "orthogonal") else None
        for scorer in scorers:
            reference = base[scorer].to_numpy(float)
            per_draw = np.stack([d[scorer].to_numpy(float) for d in draws])
            values = _quiet_nanmean(per_draw, axis=0) if len(draws) > 1 else per_draw[0]
            effect = Effect(scorer=scorer, layer=int(layer), direction=kind, strength=strength,
                            mean=_mean_interval(values, resampler), change=_mean_interval(values - reference, resampler),
                            wrong_way=_wrong_way(values - reference, strength))
            if kind in ("random", "orthogonal"):
                effect.draws = [float(_quiet_nanmean(d - reference)) for d in per_draw]
            elif random is not None:
                random_draws = np.stack([d[scorer].to_numpy(float) for d in random])
                effect.versus_random = _versus_draws(values, random_draws, resampler, config.seed)
                effect.random_rank_p = _rank_p(float(_quiet_nanmean(values - reference)),
                                               [float(_quiet_nanmean(d - reference)) for d in random_draws], float(strength))
            out.append(effect)
    for scorer in scorers:  # the unsteered reference itself
        values = base[scorer].to_numpy(float)
        out.append(Effect(scorer=scorer, layer=-1, direction="none", strength=0.0, mean=_mean_interval(values, resampler),
                          change=Interval.of(0.0, 0.0, 0.0), wrong_way=None))
    return out


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


def _versus_draws(values: np.ndarray, draws: np.ndarray, resampler: Resampler, seed: int) -> Interval:
    """The mean over prompts of (steered minus the random draws' mean), with an interval that resamples prompts and
    random draws together, so that the spread between random directions counts, not only that between prompts."""
    draw_means = _quiet_nanmean(draws, axis=0)
    point = float(_quiet_nanmean(values - draw_means))
    if not np.isfinite(point):
        return Interval()
    rng = np.random.default_rng(seed + 1)
    picks = rng.integers(0, len(draws), size=(len(resampler.weights), len(draws)))  # draws resampled per bootstrap
    counts = np.stack([np.bincount(p, minlength=len(draws)) for p in picks])  # [n_boot, n_draws]
    finite_draws = np.isfinite(draws)
    random_mean = (counts @ np.where(finite_draws, draws, 0)) / np.maximum(counts @ finite_draws, 1)  # [n_boot, prompts]
    usable = np.isfinite(values)[None] & ((counts @ finite_draws) > 0)
    weights = resampler.weights * usable
    differences = np.where(usable, values[None] - random_mean, 0)
    total = weights.sum(1)
    samples = np.where(total > 0, (weights * differences).sum(1) / np.maximum(total, 1), np.nan)
    return quantile_interval(point, samples[np.isfinite(samples)])


def _mean_interval(values: np.ndarray, resampler: Resampler) -> Interval:
    finite = np.isfinite(values)
    if not finite.any():
        return Interval()
    weights = resampler.weights * finite
    total = weights.sum(1)
    samples = (weights @ np.where(finite, values, 0)) / np.maximum(total, 1)
    return quantile_interval(float(np.nanmean(values)), samples[total > 0])  # a resample with no value has no mean


def _wrong_way(change: np.ndarray, strength: float | str) -> float | None:
    if isinstance(strength, str) or strength == 0:
        return None
    moved = change[np.isfinite(change) & (change != 0)]
    return float(np.mean(np.sign(moved) != np.sign(strength))) if moved.size else None


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
        out.append({"prompt": prompts[prompt][:300], "layer": layer, "direction": kind,
                    f"strength {low:g}": pick[numeric[pick.index] == low].reply.iloc[0][:400],
                    "unsteered": base.loc[prompt].reply[:400],
                    f"strength {high:g}": pick[numeric[pick.index] == high].reply.iloc[0][:400]})
    return out

