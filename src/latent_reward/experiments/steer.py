"""The causal test: push the residual stream along the reward direction while the model writes, and measure
whether an independent scorer rates the replies higher, at what cost in coherence, and against control directions.

Directions at each steer layer (fitted on the probe's own training prompts and position): the probe kind's
direction ("probe"; the saved probe itself at its own layer), a difference of means ("mean_diff"), a random
direction ("random") and a random direction with the probe direction projected out ("orthogonal"). A strength
s adds s x sd x unit(direction), where sd is the standard deviation of the stored states' projection on the
probe direction at that layer: every direction at a layer gets the same norm. "ablate" projects the probe
direction out instead.

Scorers never include the steered probe at its own layer: its reading of the replies is reported only as a
manipulation check, labelled circular.
"""

from __future__ import annotations

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

    layers: tuple[int, ...] | None = None  # default: the probe's layer and the layers at 1/3 and 2/3 of the depth
    strengths: tuple[float, ...] = (-8.0, -4.0, 0.0, 4.0, 8.0)  # multiples of the projection's standard deviation
    directions: tuple[str, ...] = ("probe", "random")
    ablate: bool = False
    scope: str = Field("generated", pattern="^(generated|all)$")
    prompts: int = Field(24, ge=1)
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
    mean: Interval  # mean score over prompts
    change: Interval  # paired: minus the unsteered mean on the same prompts
    versus_random: Interval | None = None  # paired: minus the random direction's score at the same layer and strength
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
    layers = config.layers or tuple(sorted({int(probe.info["layer"]), round(n_layers / 3), round(2 * n_layers / 3)}))
    bad = [layer for layer in layers if not 0 <= layer <= n_layers]
    if bad:
        raise UserError(f"layer {bad[0]} is out of range: this model has layers 0..{n_layers}")
    return list(layers)


def direction_vectors(store: ActivationStore, probe: Probe, layer: int, kinds: tuple[str, ...], seed: int) -> tuple[dict[str, np.ndarray], float]:
    """Unit vectors per direction kind at `layer`, and the standard deviation of the stored states' projection on the
    probe direction there (the strength unit)."""
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
    if "random" in kinds or "orthogonal" in kinds:
        random = rng.normal(size=unit.shape)
        vectors["random"] = random / np.linalg.norm(random)
        orthogonal = random - (random @ unit) * unit
        vectors["orthogonal"] = orthogonal / np.linalg.norm(orthogonal)
    sd = float(np.std(x.astype(np.float64) @ unit))
    return {k: v.astype(np.float32) for k, v in vectors.items() if k in kinds}, sd


def conditions(config: SteerConfig, layers: list[int], vectors: dict[int, dict[str, np.ndarray]], sd: dict[int, float]):
    """(layer, direction, strength, intervention or None) for every steered condition, and the unsteered one once."""
    out = [(None, "none", 0.0, None)]
    for layer in layers:
        for kind, unit in vectors[layer].items():
            for strength in config.strengths:
                if strength != 0:
                    out.append((layer, kind, float(strength), Intervention(layer, strength * sd[layer] * unit, scope=config.scope)))
        if config.ablate:
            out.append((layer, "probe", ABLATE, Intervention(layer, vectors[layer]["probe"], kind="ablate", scope=config.scope)))
    return out


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
    """Per scorer, layer, direction and strength: the mean over prompts and the paired change from unsteered."""
    per_prompt = frame.groupby(["layer", "direction", "strength", "prompt"], dropna=False)[scorers].mean().reset_index()
    base = per_prompt[per_prompt.direction == "none"].set_index("prompt")
    resampler = Resampler.make(np.asarray(base.index.astype(str)), config.n_boot, config.seed)
    out = []
    steered = {key: rows.set_index("prompt").loc[base.index]
               for key, rows in per_prompt[per_prompt.direction != "none"].groupby(["layer", "direction", "strength"])}
    for (layer, kind, strength), rows in steered.items():
        random = steered.get((layer, "random", strength)) if kind != "random" else None
        for scorer in scorers:
            values, reference = rows[scorer].to_numpy(float), base[scorer].to_numpy(float)
            out.append(Effect(scorer=scorer, layer=int(layer), direction=kind, strength=strength,
                              mean=_mean_interval(values, resampler), change=_mean_interval(values - reference, resampler),
                              versus_random=_mean_interval(values - random[scorer].to_numpy(float), resampler) if random is not None else None,
                              wrong_way=_wrong_way(values - reference, strength)))
    for scorer in scorers:  # the unsteered reference itself
        values = base[scorer].to_numpy(float)
        out.append(Effect(scorer=scorer, layer=-1, direction="none", strength=0.0, mean=_mean_interval(values, resampler),
                          change=Interval.of(0.0, 0.0, 0.0), wrong_way=None))
    return out


def _mean_interval(values: np.ndarray, resampler: Resampler) -> Interval:
    finite = np.isfinite(values)
    if not finite.any():
        return Interval()
    weights = resampler.weights * finite
    samples = (weights @ np.where(finite, values, 0)) / np.maximum(weights.sum(1), 1)
    return quantile_interval(float(np.nanmean(values)), samples)


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

