"""Does the model encode the reward of its responses? The grid, the cross-fitted headline, its
baselines and controls with paired tests, and a verdict that follows fixed rules.

- Grid (all probe kinds x positions x layers): on one split by prompt, shown on validation.
- Headline: ridge probes cross-fitted over prompt folds (every prompt tested once; the cell chosen
  inside each fold), beside baselines fitted on the same folds, compared on the same prompts with
  paired bootstrap intervals and paired permutation p-values; controls from 100+ permutations.
- A within-prompt probe (target: rating minus its prompt's mean) for data with 2+ responses per prompt.
"""

from __future__ import annotations

import time
from typing import Literal

import numpy as np
from pydantic import ConfigDict

from latent_reward.activations.store import ActivationStore
from latent_reward.errors import UserError
from latent_reward.evaluation import results as names
from latent_reward.evaluation.baselines import TextData, available_baselines, length_features, text_statistics
from latent_reward.evaluation.metrics import Resampler, length_matched_accuracy, partial_correlation, score
from latent_reward.evaluation.metrics import metric as metric_value
from latent_reward.evaluation.paired import null_test, paired_differences
from latent_reward.evaluation.results import Cell, Comparison, Interval, PairedDifference, Result, Scores, finite
from latent_reward.experiments.crossfit import ANY_CELL, LAYER_ZERO, CrossFit, cross_fit
from latent_reward.experiments.sgd_settings import SGDSetting, sgd_settings_grid
from latent_reward.experiments.sweep import SweepConfig, SweepFit, SweepResult, sweep
from latent_reward.experiments.targets import WITHIN_PROMPT, Target, make_target


class ReadoutConfig(Result):
    model_config = ConfigDict(frozen=True, extra="forbid")

    sweep: SweepConfig = SweepConfig()
    folds: int = 5  # cross-fitting folds over prompts
    permutations: int = 100  # per control
    split_seeds: int = 2  # fold seeds whose spread the report shows
    paired_permutations: int = 1000
    sgd_grid: bool = True
    within_probe: bool = True  # also fit the within-prompt target where prompts have 2+ responses


class SeedSpread(Result):
    seeds: list[int]
    pearson: list[float | None]
    within_acc: list[float | None]


class Subset(Result):
    name: str
    scores: Scores


class LinearVsNonlinear(Result):
    linear: Cell
    nonlinear: Cell
    linear_test: Scores
    nonlinear_test: Scores
    difference: dict[str, PairedDifference]  # linear minus nonlinear, single split's test prompts


class Verdict(Result):
    kind: Literal["encodes", "baseline matches", "no within-prompt evidence"]
    not_beaten: list[str] = []  # text baselines whose paired within-prompt difference includes 0


class ReadoutResult(Result):
    target: str
    evaluation: str  # how the headline was evaluated, in one sentence
    sweep: SweepResult
    probe: Comparison
    fold_cells: list[Cell]
    comparisons: list[Comparison]
    seed_spread: SeedSpread | None = None
    subsets: list[Subset] = []
    length_matched: Interval = Interval()  # within-prompt accuracy over pairs of similar length
    length_matched_pairs: int = 0
    partial_r_given_length: float | None = None  # given length and text statistics
    within_probe: Comparison | None = None
    sgd_grid: list[SGDSetting] | None = None
    linear_vs_nonlinear: LinearVsNonlinear | None = None
    verdict: Verdict
    timings: dict[str, float] = {}

    def comparison(self, name: str) -> Comparison | None:
        return next((c for c in self.comparisons if c.name == name), None)


def text_data(store: ActivationStore, target: Target) -> TextData:
    examples = [store.examples[i] for i in target.rows]
    logprobs = store.stat("logprob_mean")[target.keep].astype(np.float64) if store.has_stat("logprob_mean") else None
    return TextData(y=target.y, groups=target.groups, prompts=[e.prompt_text for e in examples],
                    responses=[e.response for e in examples], generators=[e.meta.get("generator") for e in examples],
                    logprob_mean=logprobs)


def reward_readout(store: ActivationStore, config: ReadoutConfig | None = None, random_init_store: ActivationStore | None = None,
                   progress: bool = True) -> tuple[ReadoutResult, SweepFit, CrossFit]:
    """The whole response-level analysis; returns the typed result, the sweep and the cross-fit (for later steps)."""
    config = config or ReadoutConfig()
    timings: dict[str, float] = {}
    tick = time.perf_counter()
    fit = sweep(store, config.sweep, progress)
    timings["sweep"] = time.perf_counter() - tick
    target, seed = fit.target, config.sweep.seed
    positions = target.positions(store, config.sweep.positions)

    tick = time.perf_counter()
    crossfit = cross_fit(store, target, positions, config.folds, seed, config.sweep.settings,
                         {"probe": ANY_CELL, names.LAYER0: LAYER_ZERO}, config.permutations, progress)
    timings["cross_fit"] = time.perf_counter() - tick
    resampler = Resampler.make(target.groups, config.sweep.n_boot, seed)
    y, groups, probe_p = target.y, target.groups, crossfit.predictions["probe"]
    probe_scores = score(y, probe_p, groups, resampler=resampler)

    tick = time.perf_counter()
    data = text_data(store, target)
    others = _baseline_predictions(data, fit, crossfit.folds)
    timings["baselines"] = time.perf_counter() - tick
    if names.LAYER0 in crossfit.predictions:
        others[names.LAYER0] = (crossfit.predictions[names.LAYER0], None, crossfit.cells[names.LAYER0][0])
    if random_init_store is not None:
        tick = time.perf_counter()
        others[names.RANDOM_INIT] = _random_init(random_init_store, store, target, positions, config, progress)
        timings["random_init"] = time.perf_counter() - tick
    comparisons = [_compare(name, y, groups, p, validation, cell, probe_p, resampler, config, seed)
                   for name, (p, validation, cell) in others.items()]
    comparisons += _controls(crossfit, probe_scores)

    lengths = length_features(data.responses)
    matched, n_matched = length_matched_accuracy(y, probe_p, groups, lengths[:, 0], resampler)
    result = ReadoutResult(
        target=target.name,
        evaluation=(f"cross-fitted: {config.folds} folds of the {len(np.unique(groups))} prompts; each fold's probe (cell and "
                    "penalty chosen by grouped cross-validation inside the other folds) predicts the held-out fold"),
        sweep=fit.result,
        probe=Comparison(name="probe", kind="probe", scores=probe_scores, validation=fit.result.best_validation),
        fold_cells=crossfit.cells["probe"],
        comparisons=comparisons,
        subsets=_seen_subsets(store, target, probe_p, config.sweep.n_boot, seed),
        length_matched=matched, length_matched_pairs=n_matched,
        partial_r_given_length=partial_correlation(y, probe_p, text_statistics(data.responses)),
        verdict=verdict(probe_scores, comparisons),
    )
    _optional_parts(result, store, fit, config, positions, progress, timings)
    result.timings = timings
    return result, fit, crossfit


def _baseline_predictions(data: TextData, fit: SweepFit, folds: np.ndarray) -> dict[str, tuple[np.ndarray, Scores, None]]:
    """Each baseline's out-of-fold predictions (same folds as the probe) and its single-split validation scores."""
    masks, out = fit.plan.masks, {}
    for baseline in available_baselines(data):
        oof = np.empty(len(data.y))
        for k in np.unique(folds):
            oof[folds == k] = baseline.fit_predict(data, folds != k)[folds == k]
        single = baseline.fit_predict(data, masks["train"])
        validation = score(data.y[masks["val"]], single[masks["val"]], data.groups[masks["val"]], n_boot=200, seed=0)
        out[baseline.name] = (oof, validation, None)
    return out


def _random_init(random_store: ActivationStore, store: ActivationStore, target: Target, positions, config: ReadoutConfig,
                 progress: bool) -> tuple[np.ndarray, None, Cell]:
    if random_store.ids != store.ids:
        raise UserError("the random-init store holds other examples than the model's store; extract both from the same data")
    random_target = make_target(random_store, target.name)
    fitted = cross_fit(random_store, random_target, tuple(p for p in positions if p in random_store.positions), config.folds,
                       config.sweep.seed, config.sweep.settings, progress=progress)
    return fitted.predictions["probe"], None, fitted.cells["probe"][0]


def _compare(name, y, groups, p, validation, cell, probe_p, resampler, config: ReadoutConfig, seed) -> Comparison:
    return Comparison(name=name, kind="baseline", cell=cell, scores=score(y, p, groups, resampler=resampler), validation=validation,
                      versus_probe=paired_differences(y, probe_p, p, resampler, n_permutations=config.paired_permutations, seed=seed))


def _controls(crossfit: CrossFit, probe_scores: Scores) -> list[Comparison]:
    """The shuffled-rating controls: their null distributions, and the real probe's value against them."""
    out = []
    for key, name in (("within", names.SHUFFLED_WITHIN), ("global", names.SHUFFLED_ALL)):
        if key not in crossfit.permuted:
            continue
        targets, predictions = crossfit.permuted[key]
        nulls = {}
        for metric in ("pearson", "within_acc"):
            null = [metric_value(metric, t, p, crossfit.groups) for t, p in zip(targets, predictions)]
            observed = probe_scores.metric(metric).value
            nulls[metric] = null_test(metric, np.nan if observed is None else observed, np.array(null))
        intervals = {m: Interval.of(n.null_mean, n.null_low, n.null_high) for m, n in nulls.items()}
        out.append(Comparison(name=name, kind="control", scores=Scores(n_examples=targets.shape[1], **intervals), null=nulls))
    return out


def verdict(probe: Scores, comparisons: list[Comparison]) -> Verdict:
    """Fixed rules: the states are credited with the reward of the responses only when within-prompt accuracy
    is above chance and above every text baseline, each with a paired interval that excludes it."""
    if not probe.within_acc.above(0.5):
        return Verdict(kind="no within-prompt evidence")
    not_beaten = [c.name for c in comparisons if c.name in names.TEXT_BASELINES
                  and not ("within_acc" in c.versus_probe and c.versus_probe["within_acc"].difference.above(0.0))]
    return Verdict(kind="baseline matches", not_beaten=not_beaten) if not_beaten else Verdict(kind="encodes")


def seen_mask(store: ActivationStore, rows: np.ndarray) -> np.ndarray | None:
    """Which rows the model was post-trained on (its known training data, matched by source and split), or None if unknown."""
    known = tuple(store.manifest.get("model", {}).get("post_training") or ())
    if not known:
        return None
    examples = [store.examples[i] for i in rows]
    return np.array([f"{e.id.split(':')[0]}:{e.meta.get('source_split')}" in known for e in examples], dtype=bool)


def _seen_subsets(store: ActivationStore, target: Target, predictions: np.ndarray, n_boot: int, seed: int) -> list[Subset]:
    seen = seen_mask(store, target.rows)
    if seen is None or seen.all() == seen.any():  # unknown, or every row on the same side
        return [] if seen is None else [Subset(name="rows the model was post-trained on" if seen.all() else "rows the model "
                                               "was not post-trained on", scores=score(target.y, predictions, target.groups, n_boot, seed))]
    return [Subset(name=label, scores=score(target.y[rows], predictions[rows], target.groups[rows], n_boot, seed))
            for label, rows in (("rows the model was post-trained on", seen), ("rows the model was not post-trained on", ~seen))]


def _optional_parts(result: ReadoutResult, store: ActivationStore, fit: SweepFit, config: ReadoutConfig, positions,
                    progress: bool, timings: dict[str, float]) -> None:
    """The seed spread, the within-prompt probe, the SGD settings grid and linear vs nonlinear, where configured."""
    target, seed = fit.target, config.sweep.seed
    tick = time.perf_counter()
    spread = {seed: (result.probe.scores.pearson.value, result.probe.scores.within_acc.value)}
    for extra in range(1, config.split_seeds):
        fitted = cross_fit(store, target, positions, config.folds, seed + extra, config.sweep.settings, progress=progress)
        p = fitted.predictions["probe"]
        spread[seed + extra] = (metric_value("pearson", target.y, p, target.groups), metric_value("within_acc", target.y, p, target.groups))
    result.seed_spread = SeedSpread(seeds=list(spread), pearson=[finite(v[0]) for v in spread.values()],
                                    within_acc=[finite(v[1]) for v in spread.values()])
    timings["seed_spread"] = time.perf_counter() - tick
    if config.within_probe and not target.within:
        tick = time.perf_counter()
        result.within_probe = _within_probe(store, target, positions, config, progress)
        timings["within_probe"] = time.perf_counter() - tick
    if config.sgd_grid:
        tick = time.perf_counter()
        best = result.sweep.best
        x = target.states(store, best.position, [best.layer])[:, 0]
        result.sgd_grid = sgd_settings_grid(x, target.y, target.groups, fit.plan.masks, config.sweep.settings.train)
        timings["sgd_grid"] = time.perf_counter() - tick
    result.linear_vs_nonlinear = _linear_vs_nonlinear(fit, config)


def _within_probe(store: ActivationStore, target: Target, positions, config: ReadoutConfig, progress: bool) -> Comparison | None:
    """Ridge probes on the within-prompt target, cross-fitted on the prompts with 2+ responses."""
    try:
        within = make_target(store, WITHIN_PROMPT)
        response_positions = within.positions(store, positions)
    except UserError:
        return None
    if len(np.unique(within.groups)) < 2 * config.folds:
        return None
    fitted = cross_fit(store, within, response_positions, config.folds, config.sweep.seed, config.sweep.settings, progress=progress)
    scores = score(within.y, fitted.predictions["probe"], within.groups, config.sweep.n_boot, config.sweep.seed)
    return Comparison(name="within-prompt probe", kind="probe", cell=fitted.cells["probe"][0], scores=scores)


def _linear_vs_nonlinear(fit: SweepFit, config: ReadoutConfig) -> LinearVsNonlinear | None:
    """The validation-best linear and MLP cells, both scored on the single split's test prompts, paired."""
    linear = max((fit.result.val_best(kind) for kind in ("ridge", "sgd") if fit.result.val_best(kind)),
                 key=lambda c: c.val["pearson"], default=None)
    nonlinear = fit.result.val_best("mlp")
    if linear is None or nonlinear is None:
        return None
    test = fit.plan.masks["test"]
    y, groups = fit.target.y[test], fit.target.groups[test]
    resampler = Resampler.make(groups, config.sweep.n_boot, config.sweep.seed)
    cells = [Cell(position=c.position, layer=c.layer, probe=c.probe) for c in (linear, nonlinear)]
    p_linear, p_nonlinear = (fit.cell_predictions(c)[test] for c in cells)
    return LinearVsNonlinear(linear=cells[0], nonlinear=cells[1], linear_test=score(y, p_linear, groups, resampler=resampler),
                             nonlinear_test=score(y, p_nonlinear, groups, resampler=resampler),
                             difference=paired_differences(y, p_linear, p_nonlinear, resampler,
                                                           n_permutations=config.paired_permutations, seed=config.sweep.seed))

