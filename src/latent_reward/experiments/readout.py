"""Does the model encode the reward of its responses? The grid, the cross-fitted headline, its
baselines and controls with paired tests, and a verdict that follows fixed rules.

- Grid (all probe kinds x positions x layers): on one split by prompt, shown on validation.
- Headline: ridge probes cross-fitted over prompt folds (every prompt tested once; the cell chosen
  inside each fold), beside baselines fitted on the same folds, compared on the same prompts with
  paired bootstrap intervals and paired permutation p-values; controls from 100+ permutations.
- A within-prompt probe (target: rating minus its prompt's mean) for data with 2+ responses per prompt.
- Wide states (a 7B model's) choose cells on a sketch and fit exactly at the chosen cells (`analysis.sketch`).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import ConfigDict, Field

from latent_reward.activations.store import ActivationStore
from latent_reward.analysis.crossfit import ANY_CELL, LAYER_ZERO, CrossFit, cross_fit
from latent_reward.analysis.sgd_settings import SGDSetting, sgd_settings_grid
from latent_reward.analysis.sketch import SketchConfig, SketchedStore, full_store, sketch_view
from latent_reward.analysis.sweep import SweepConfig, SweepFit, SweepResult, sweep
from latent_reward.analysis.targets import Target, make_target, within_prompt
from latent_reward.config import Device
from latent_reward.data.splits import group_folds
from latent_reward.errors import UserError
from latent_reward.evaluation import results as names
from latent_reward.evaluation.baselines import (
    TextData,
    available_baselines,
    has_text,
    length_features,
    text_statistics,
)
from latent_reward.evaluation.groups import group_index
from latent_reward.evaluation.metrics import (
    Resampler,
    length_matched_accuracy,
    partial_correlation,
    quantile_interval,
    score,
)
from latent_reward.evaluation.metrics import metric as metric_value
from latent_reward.evaluation.multiplicity import holm
from latent_reward.evaluation.paired import null_test, paired_differences
from latent_reward.evaluation.results import (
    Cell,
    Comparison,
    Interval,
    Metric,
    PairedDifference,
    Result,
    Scores,
    finite,
)
from latent_reward.heap import reuses_freed_memory
from latent_reward.probes import SGDProbe, probe_class
from latent_reward.probes.compute import analysis_device

WITHIN_PREDICTIONS = "within-prompt probe"  # the key of its out-of-fold predictions in the returned cross-fit


class ReadoutConfig(Result):
    model_config = ConfigDict(frozen=True, extra="forbid")

    sweep: SweepConfig = SweepConfig()
    folds: int = Field(5, ge=2, description="Cross-fitting folds over prompts (the headline).")
    permutations: int = Field(100, ge=0, description="Shuffled-rating probes per control (null distributions).")
    split_seeds: int = 5  # fold seeds whose spread the report shows (the within-prompt probe's accuracy, else pooled r)
    paired_permutations: int = 1000
    sgd_grid: bool = Field(True, description="Train the SGD probe over batch sizes x schedules at the best cell.")
    within_probe: bool = True  # also fit the within-prompt target where prompts have 2+ responses
    sketch: SketchConfig = SketchConfig()  # wide states: cells chosen on a sketch, fits exact
    device: Device = Field(
        "cpu",
        description="Where the analysis's ridge fits compute: cpu, cuda, cuda:N or auto (cuda when torch sees one; mps "
        "computes on the CPU).",
    )
    equivalence_margin: float = 0.01  # within-prompt accuracy: a baseline "matches" only inside +-margin (TOST)
    # shuffled-rating controls re-choose their cell in each fold; on wide states (behind a sketch) only when this is
    # set, since each re-chosen cell costs an exact fit per fold (analysis.crossfit)
    reselect_wide_controls: bool = False


class SeedSpread(Result):
    """The headline under each fold seed (the first is the headline's own)."""

    seeds: list[int]
    pearson: list[float | None] = Field(
        description="The pooled probe's r per seed; None for the extra seeds where a within-prompt probe is the "
        "headline (only it is re-fitted)."
    )
    within_acc: list[float | None] = Field(
        description="Within-prompt accuracy per seed, of the within-prompt probe where there is one (None where a "
        "seed's folds leave it too few prompts), else of the pooled probe."
    )


class Subset(Result):
    name: str
    scores: Scores


class LinearVsNonlinear(Result):
    linear: Cell
    nonlinear: Cell
    linear_test: Scores
    nonlinear_test: Scores
    difference: dict[Metric, PairedDifference]  # linear minus nonlinear, single split's test prompts


class Decomposition(Result):
    position: str
    cells: list[int]  # layers chosen in the folds
    response_r: Interval
    between_prompt_r: Interval  # prompt means of the predictions against prompt means of the ratings
    within_prompt_r: Interval  # deviations from the prompt means, prompts with 2+ responses


ALPHA = 0.05
DECLARED_TEST = (
    "the within-prompt probe against each baseline by the paired permutation test of their within-prompt accuracy "
    "(swapping the two predictions prompt by prompt; two-sided, alpha 0.05): probe better where p < 0.05 and the "
    "difference is positive (the states are credited only when this holds for every baseline, an intersection-union "
    "test that needs no adjustment); baseline better where the difference is negative and Holm's adjusted p over the "
    "baselines is < 0.05; otherwise indistinguishable, and the baseline matches the probe only when the paired "
    "difference's 90% interval lies within +-{margin} (two one-sided tests at 0.05)"
)


class BaselineTest(Result):
    """One baseline against the within-prompt probe under the declared test."""

    name: str
    outcome: Literal["probe better", "indistinguishable", "baseline better"]
    difference: Interval  # probe minus baseline, within-prompt accuracy
    p_value: float | None = None
    holm_p: float | None = None  # adjusted over the baselines (for "baseline better", a claim about any of them)
    equivalent: bool = False  # TOST: the 90% interval of the difference within +-margin


class Verdict(Result):
    kind: Literal[
        "encodes",
        "baseline matches",
        "indistinguishable from a baseline",
        "baseline better",
        "no within-prompt evidence",
        "no baseline tested",
    ]
    not_beaten: list[str] = []  # baselines the probe was not shown to beat (indistinguishable or better)
    test: str = ""  # the declared test, in words
    margin: float | None = None  # the equivalence margin (within-prompt accuracy)
    baselines: list[BaselineTest] = []


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
    partial_r_given_length: Interval = Interval()  # given length and text statistics
    within_probe: Comparison | None = None
    within_fold_cells: list[Cell] = []
    decomposition: list[Decomposition] = []
    sgd_grid: list[SGDSetting] | None = None
    linear_vs_nonlinear: LinearVsNonlinear | None = None
    verdict: Verdict
    timings: dict[str, float] = {}
    fit_device: str = "cpu"  # where the ridge fits computed
    tfidf_terms: int | None = Field(
        None, description="Terms per column the TF-IDF baselines kept (fewer than 20,000 on data past 8,192 rows)."
    )

    def comparison(self, name: str) -> Comparison | None:
        return next((c for c in self.comparisons if c.name == name), None)


def text_data(store: ActivationStore | SketchedStore, target: Target) -> TextData:
    examples = [store.examples[i] for i in target.rows]
    logprobs = store.stat("logprob_mean")[target.keep].astype(np.float64) if store.has_stat("logprob_mean") else None
    return TextData(
        y=target.y,
        groups=target.groups,
        prompts=[e.prompt_text for e in examples],
        responses=[e.response for e in examples],
        generators=[e.meta.get("generator") for e in examples],
        logprob_mean=logprobs,
    )


@reuses_freed_memory
def reward_readout(
    store: ActivationStore | SketchedStore,
    config: ReadoutConfig | None = None,
    random_init_store: ActivationStore | SketchedStore | None = None,
    progress: bool = True,
) -> tuple[ReadoutResult, SweepFit, CrossFit]:
    """The whole response-level analysis; returns the typed result, the sweep and the cross-fit (for later steps).

    Two cross-fits: the pooled probe (target as given; its cell chosen by inner r over every position, which is what
    global r asks) and the within-prompt probe (ratings and states centered per prompt, response positions only, its
    cell chosen by inner within-prompt r). Global r and its comparisons use the first; within-prompt accuracy, its
    comparisons, its control and the verdict use the second. The returned cross-fit's predictions also hold the
    within-prompt probe's out-of-fold predictions (`WITHIN_PREDICTIONS`; NaN on prompts with one response).
    """
    config = config or ReadoutConfig()
    with analysis_device(config.device) as device:
        readout, fit, crossfit = _readout(store, config, random_init_store, progress)
    readout.fit_device = str(device)
    return readout, fit, crossfit


def _readout(
    store: ActivationStore | SketchedStore,
    config: ReadoutConfig,
    random_init_store: ActivationStore | SketchedStore | None,
    progress: bool,
) -> tuple[ReadoutResult, SweepFit, CrossFit]:
    """`reward_readout`'s work, on the device its fits compute on."""
    store, random_init_store = sketch_view(store, config.sketch), sketch_view(random_init_store, config.sketch)
    timings: dict[str, float] = {}
    tick = time.perf_counter()
    fit = sweep(store, config.sweep, progress)
    timings["sweep"] = time.perf_counter() - tick
    target, seed = fit.target, config.sweep.seed
    positions = target.positions(store, config.sweep.positions)

    tick = time.perf_counter()
    selectors = {"probe": ANY_CELL, names.LAYER0: LAYER_ZERO, **{f"at {p}": position_selector(p) for p in positions}}
    folds = group_folds(target.groups, config.folds, seed)  # the pooled probe's folds, dealt as cross_fit deals them
    within = (
        _within_crossfit(store, target, positions, folds, config, progress)
        if config.within_probe and not target.within
        else None
    )
    # ratings shuffled within prompts test the within-prompt probe where there is one (its own cross-fit has them)
    crossfit = cross_fit(
        store,
        target,
        positions,
        config.folds,
        seed,
        config.sweep.settings,
        selectors,
        config.permutations,
        progress,
        folds=folds,
        controls=("global",) if within is not None else ("within", "global"),
        reselect_wide=config.reselect_wide_controls,
    )
    timings["cross_fit"] = time.perf_counter() - tick
    resampler = Resampler.make(target.groups, config.sweep.n_boot, seed)
    y, groups, probe_p = target.y, target.groups, crossfit.predictions["probe"]
    within_p = within.padded if within is not None else probe_p
    if within is not None:
        crossfit.predictions[WITHIN_PREDICTIONS] = np.where(within.multi, within_p, np.nan)
    probe_for: dict[Metric, np.ndarray] = {"pearson": probe_p, "within_acc": within_p}
    probe_scores = score(y, probe_p, groups, resampler=resampler)
    within_scores = within.scores(config.sweep.n_boot, seed) if within is not None else None

    data = text_data(store, target)
    others = _all_baselines(data, store, random_init_store, fit, crossfit, within, positions, config, progress, timings)
    comparisons = [
        _compare(name, y, groups, baseline, probe_for, resampler, config, seed) for name, baseline in others.items()
    ]
    comparisons += _controls(
        crossfit, within.fit if within is not None else crossfit, probe_scores, within_scores or probe_scores
    )

    lengths = length_features(data.responses)
    matched, n_matched = length_matched_accuracy(y, within_p, groups, lengths[:, 0], resampler)
    within_cells = within.fit.cells["probe"] if within is not None else crossfit.cells["probe"]
    result = ReadoutResult(
        target=target.name,
        evaluation=(
            f"cross-fitted: {config.folds} folds of the {len(np.unique(groups))} prompts; each fold's probe (cell and "
            "penalty chosen by leave-one-prompt-out cross-validation inside the other folds) predicts the held-out fold"
        ),
        sweep=fit.result,
        probe=Comparison(name="probe", kind="probe", scores=probe_scores, validation=fit.result.best_validation),
        fold_cells=crossfit.cells["probe"],
        comparisons=comparisons,
        subsets=_seen_subsets(store, target, probe_p, within_p, config.sweep.n_boot, seed),
        length_matched=matched,
        length_matched_pairs=n_matched,
        partial_r_given_length=_partial_interval(
            y, probe_p, text_statistics(data.responses), groups, config.sweep.n_boot, seed
        ),
        within_probe=Comparison(name="within-prompt probe", kind="probe", cell=within_cells[0], scores=within_scores)
        if within_scores is not None
        else None,
        within_fold_cells=within_cells,
        decomposition=_decompose(crossfit, positions, y, groups, resampler),
        verdict=verdict(within_scores or probe_scores, comparisons, config.equivalence_margin),
        tfidf_terms=data.tfidf_vocabulary if has_text(data) else None,
    )
    _optional_parts(result, store, fit, config, positions, progress, timings)
    result.timings = timings
    return result, fit, crossfit


def _all_baselines(
    data: TextData,
    store: ActivationStore | SketchedStore,
    random_init_store: ActivationStore | SketchedStore | None,
    fit: SweepFit,
    crossfit: CrossFit,
    within: WithinProbe | None,
    positions,
    config: ReadoutConfig,
    progress: bool,
    timings: dict[str, float],
) -> dict[str, _Baseline]:
    """The text baselines, layer 0 and the random-init model, each cross-fitted on the probe's folds."""
    tick = time.perf_counter()
    others = _baseline_predictions(data, fit, crossfit.folds, within)
    timings["baselines"] = time.perf_counter() - tick
    if names.LAYER0 in crossfit.predictions:
        others[names.LAYER0] = _Baseline(
            crossfit.predictions[names.LAYER0],
            None,
            crossfit.cells[names.LAYER0][0],
            within.padded_for(names.LAYER0) if within is not None else None,
        )
    if random_init_store is not None:
        tick = time.perf_counter()
        others[names.RANDOM_INIT] = _random_init(
            random_init_store, store, fit.target, positions, crossfit.folds, within, config, progress
        )
        timings["random_init"] = time.perf_counter() - tick
    return others


def position_selector(position: str):
    return lambda p, layer: p == position


@dataclass
class WithinProbe:
    """The within-prompt probe's cross-fit on the multi-response prompts and its predictions there."""

    target: Target  # the readout target centered per prompt (a subset of its rows)
    fit: CrossFit
    multi: np.ndarray  # bool [readout rows]: the rows the within-prompt target keeps

    def pad(self, values: np.ndarray) -> np.ndarray:
        """Values on the multi-response rows, spread over every readout row (0 elsewhere: those prompts have no
        pairs)."""
        padded = np.zeros(len(self.multi))
        padded[self.multi] = values
        return padded

    @property
    def padded(self) -> np.ndarray:
        return self.pad(self.fit.predictions["probe"])

    def padded_for(self, selector: str) -> np.ndarray | None:
        return self.pad(self.fit.predictions[selector]) if selector in self.fit.predictions else None

    def scores(self, n_boot: int, seed: int) -> Scores:
        """Scored on its own target: r is then the within-prompt correlation; within-prompt accuracy is unchanged by
        centering (the order inside each prompt is the same)."""
        return score(self.target.y, self.fit.predictions["probe"], self.target.groups, n_boot, seed)


def _within_crossfit(
    store: ActivationStore | SketchedStore,
    target: Target,
    positions,
    folds: np.ndarray,
    config: ReadoutConfig,
    progress: bool,
    layer_zero: bool = True,
) -> WithinProbe | None:
    """The within-prompt probe (the readout target centered per prompt, response positions only), cross-fitted on the
    pooled probe's folds so the two compare on the same prompts; with `layer_zero`, also the layer-0 baseline fitted
    like it."""
    try:
        within = within_prompt(target)
        response_positions = within.positions(store, positions)
    except UserError:
        return None
    multi = within.keep[target.rows]  # the readout target's rows that the within-prompt target keeps
    if len(np.unique(within.groups)) < 2 * config.folds or len(np.unique(folds[multi])) < config.folds:
        return None
    selectors = {"probe": ANY_CELL, **({names.LAYER0: LAYER_ZERO} if layer_zero else {})}
    fitted = cross_fit(
        store,
        within,
        response_positions,
        config.folds,
        config.sweep.seed,
        config.sweep.settings,
        selectors,
        permutations=config.permutations,
        progress=progress,
        folds=folds[multi],
        controls=("within",),
        reselect_wide=config.reselect_wide_controls,
    )
    return WithinProbe(within, fitted, multi)


@dataclass
class _Baseline:
    pooled: np.ndarray  # out-of-fold predictions of a fit on the target (compared with the pooled probe)
    validation: Scores | None
    cell: Cell | None
    within: np.ndarray | None = (
        None  # out-of-fold predictions of a fit on the within-prompt target (vs the within probe)
    )


def _baseline_predictions(
    data: TextData, fit: SweepFit, folds: np.ndarray, within: WithinProbe | None
) -> dict[str, _Baseline]:
    """Each baseline's out-of-fold predictions (same folds as the probe), its single-split validation scores, and, when
    there is a within-prompt probe, the same baseline fitted like it: features and ratings centered per prompt."""
    masks, out = fit.plan.masks, {}
    centered = dataclasses.replace(data, y=within.pad(within.target.y), center=True) if within is not None else None
    for baseline in available_baselines(data):
        oof = _out_of_fold(baseline.fit_predict, data, folds, np.ones(len(folds), dtype=bool))
        single = baseline.fit_predict(data, masks["train"])
        validation = score(data.y[masks["val"]], single[masks["val"]], data.groups[masks["val"]], n_boot=200, seed=0)
        out[baseline.name] = _Baseline(
            oof,
            validation,
            None,
            _out_of_fold(baseline.fit_predict, centered, folds, within.multi)
            if within is not None and centered is not None
            else None,
        )
    data.tfidf_cache.clear()  # the folds' TF-IDF matrices, fits and dense features: not needed after the baselines
    data.tfidf_fits.clear()
    data.feature_cache.clear()
    return out


def _out_of_fold(fit_predict, data: TextData, folds: np.ndarray, usable: np.ndarray) -> np.ndarray:
    """Predictions for each fold's rows from a fit on the other folds' usable rows."""
    oof = np.zeros(len(data.y))
    for k in np.unique(folds):
        oof[folds == k] = fit_predict(data, (folds != k) & usable)[folds == k]
    return oof


def _random_init(
    random_store: ActivationStore | SketchedStore,
    store: ActivationStore | SketchedStore,
    target: Target,
    positions,
    folds: np.ndarray,
    within: WithinProbe | None,
    config: ReadoutConfig,
    progress: bool,
) -> _Baseline:
    """The random-init model's probe cross-fitted on the probe's folds; and like the within-prompt probe when there is
    one."""
    if random_store.ids != store.ids:
        raise UserError(
            "the random-init store holds other examples than the model's store; extract both from the same data"
        )
    random_target = make_target(random_store, target.name)
    usable = tuple(p for p in positions if p in random_store.positions)
    fitted = cross_fit(
        random_store,
        random_target,
        usable,
        config.folds,
        config.sweep.seed,
        config.sweep.settings,
        progress=progress,
        folds=folds,
    )
    within_p = None
    if within is not None:
        centered = within_prompt(random_target)
        within_fit = cross_fit(
            random_store,
            centered,
            centered.positions(random_store, usable),
            config.folds,
            config.sweep.seed,
            config.sweep.settings,
            progress=progress,
            folds=folds[within.multi],
        )
        within_p = within.pad(within_fit.predictions["probe"])
    return _Baseline(fitted.predictions["probe"], None, fitted.cells["probe"][0], within_p)


def _compare(
    name, y, groups, baseline: _Baseline, probe_for: dict[Metric, np.ndarray], resampler, config: ReadoutConfig, seed
) -> Comparison:
    """A baseline's scores and the paired differences with the probe. r: the pooled probe against the baseline fitted on
    the target; within-prompt accuracy: the within-prompt probe against the baseline fitted like it, where there is
    one."""
    versus = {}
    scores = score(y, baseline.pooled, groups, resampler=resampler)
    for metric, probe_p in probe_for.items():
        p = baseline.within if metric == "within_acc" and baseline.within is not None else baseline.pooled
        versus.update(
            paired_differences(
                y, probe_p, p, resampler, metrics=(metric,), n_permutations=config.paired_permutations, seed=seed
            )
        )
    if baseline.within is not None:
        fitted_within = score(y, baseline.within, groups, resampler=resampler)
        scores = scores.model_copy(
            update={"within_acc": fitted_within.within_acc, "within_spearman": fitted_within.within_spearman}
        )
    return Comparison(
        name=name,
        kind="baseline",
        cell=baseline.cell,
        scores=scores,
        validation=baseline.validation,
        versus_probe=versus,
    )


def _controls(pooled: CrossFit, within: CrossFit, probe_scores: Scores, within_scores: Scores) -> list[Comparison]:
    """The shuffled-rating controls: probes refitted on permuted ratings, each re-choosing its cell in each fold
    (narrow states; on wide states at each fold's probe cell unless reselect_wide_controls, see analysis.crossfit).
    Ratings shuffled within prompts test the within-prompt probe; ratings shuffled across responses the pooled one."""
    out = []
    for key, name, crossfit, observed_scores in (
        ("within", names.SHUFFLED_WITHIN, within, within_scores),
        ("global", names.SHUFFLED_ALL, pooled, probe_scores),
    ):
        if key not in crossfit.permuted:
            continue
        targets, predictions = crossfit.permuted[key]
        nulls: dict[names.Metric, names.NullTest] = {}
        for metric in names.HEADLINE_METRICS:
            null = [metric_value(metric, t, p, crossfit.groups) for t, p in zip(targets, predictions)]
            observed = observed_scores.metric(metric).value
            nulls[metric] = null_test(metric, np.nan if observed is None else observed, np.array(null))
        intervals = {m: Interval.of(n.null_mean, n.null_low, n.null_high) for m, n in nulls.items()}
        out.append(
            Comparison(name=name, kind="control", scores=Scores(n_examples=targets.shape[1], **intervals), null=nulls)
        )
    return out


def verdict(probe: Scores, comparisons: list[Comparison], margin: float = 0.01) -> Verdict:
    """Fixed rules (`DECLARED_TEST`): the states are credited with the reward of the responses only when (the
    within-prompt probe's) within-prompt accuracy is above chance and the probe is better than every baseline (text,
    generator, log-probability, layer 0, random-init model). Otherwise a baseline is better, matches (equivalent within
    the margin), or is indistinguishable from the probe."""
    test = DECLARED_TEST.format(margin=margin)
    if not probe.within_acc.above(0.5):
        return Verdict(kind="no within-prompt evidence", test=test, margin=margin)
    tested = [c for c in comparisons if c.kind == "baseline" and c.scores.within_acc.known]
    differences = [c.versus_probe.get("within_acc") for c in tested]
    adjusted = holm([d.p_value if d is not None else None for d in differences])
    rows = []
    for comparison, difference, holm_p in zip(tested, differences, adjusted):
        if difference is None:
            difference = PairedDifference(metric="within_acc", difference=Interval())
        d, p = difference.difference.value, difference.p_value
        outcome = (
            "probe better"
            if d is not None and d > 0 and p is not None and p < ALPHA
            else "baseline better"
            if d is not None and d < 0 and holm_p is not None and holm_p < ALPHA
            else "indistinguishable"
        )
        window = difference.equivalence
        equivalent = (
            outcome == "indistinguishable"
            and window is not None
            and window.low is not None
            and window.high is not None
            and -margin < window.low
            and window.high < margin
        )
        rows.append(
            BaselineTest(
                name=comparison.name,
                outcome=outcome,
                difference=difference.difference,
                p_value=p,
                holm_p=holm_p,
                equivalent=equivalent,
            )
        )
    if not rows:  # nothing to beat (e.g. states from arrays, no text): no claim beyond the baselines
        return Verdict(kind="no baseline tested", test=test, margin=margin)
    not_beaten = [row.name for row in rows if row.outcome != "probe better"]
    kind = (
        "baseline better"
        if any(row.outcome == "baseline better" for row in rows)
        else "encodes"
        if not not_beaten
        else "baseline matches"
        if any(row.equivalent for row in rows)
        else "indistinguishable from a baseline"
    )
    return Verdict(kind=kind, not_beaten=not_beaten, test=test, margin=margin, baselines=rows)


def seen_mask(store: ActivationStore | SketchedStore, rows: np.ndarray) -> np.ndarray | None:
    """Which rows the model was post-trained on (its known training data, matched by source and split), or None if
    unknown."""
    known = store.manifest.model.post_training
    if not known:
        return None
    examples = [store.examples[i] for i in rows]
    return np.array([e.source_split in known for e in examples], dtype=bool)


def _seen_subsets(
    store: ActivationStore | SketchedStore,
    target: Target,
    predictions: np.ndarray,
    within: np.ndarray,
    n_boot: int,
    seed: int,
) -> list[Subset]:
    """Scores on the rows the model was post-trained on and on the rest (r from the pooled probe, within-prompt accuracy
    from the within-prompt probe)."""
    seen = seen_mask(store, target.rows)
    if seen is None:
        return []
    out = []
    for label, rows in (
        ("rows the model was post-trained on", seen),
        ("rows the model was not post-trained on", ~seen),
    ):
        if rows.any():
            scores = score(target.y[rows], predictions[rows], target.groups[rows], n_boot, seed)
            scores.within_acc = score(target.y[rows], within[rows], target.groups[rows], n_boot, seed).within_acc
            out.append(Subset(name=label, scores=scores))
    return out


def _partial_interval(y, p, controls, groups, n_boot: int, seed: int) -> Interval:
    """Partial correlation of the probe with the rating given the controls, with a prompt-bootstrap interval (each
    resample's rows repeated as often as their prompt was drawn)."""
    weights = Resampler.make(groups, min(n_boot, 500), seed).weights.astype(np.int64)
    samples = [
        partial_correlation(y[rows], p[rows], controls[rows])
        for rows in (np.repeat(np.arange(len(y)), w) for w in weights)
    ]
    return quantile_interval(partial_correlation(y, p, controls), np.array(samples))


def _decompose(crossfit: CrossFit, positions, y, groups, resampler: Resampler) -> list[Decomposition]:
    """Per position (its cell chosen inside each fold): cross-fitted r overall, on prompt means, and within prompts,
    each with an interval over prompts."""
    names_, index = group_index(groups)
    counts = np.bincount(index)
    multi = counts[index] > 1
    rows = []
    for position in positions:
        p = crossfit.predictions.get(f"at {position}")
        if p is None:
            continue
        y_mean, p_mean = np.bincount(index, weights=y) / counts, np.bincount(index, weights=p) / counts
        between = Resampler.make(names_, resampler.weights.shape[0], 0)
        rows.append(
            Decomposition(
                position=position,
                cells=sorted({c.layer for c in crossfit.cells[f"at {position}"]}),
                response_r=score(y, p, groups, resampler=resampler).pearson,
                between_prompt_r=score(y_mean, p_mean, names_, resampler=between).pearson,
                within_prompt_r=score((y - y_mean[index])[multi], (p - p_mean[index])[multi], groups[multi]).pearson
                if multi.sum() > 2
                else Interval(),
            )
        )
    return rows


def _optional_parts(
    result: ReadoutResult,
    store: ActivationStore | SketchedStore,
    fit: SweepFit,
    config: ReadoutConfig,
    positions,
    progress: bool,
    timings: dict[str, float],
) -> None:
    """The seed spread, the SGD settings grid and linear vs nonlinear, where configured."""
    target, seed = fit.target, config.sweep.seed
    tick = time.perf_counter()
    # The headline's spread: with a within-prompt probe each seed re-fits only it (its accuracy; the pooled r stays the
    # first seed's alone: a second cross-fit per seed doubled this stage's cost); without one, the pooled probe's r and
    # within-prompt accuracy.
    within = result.within_probe.scores if result.within_probe is not None else result.probe.scores
    spread = {seed: (result.probe.scores.pearson.value, within.within_acc.value)}
    no_controls = config.model_copy(update={"permutations": 0})
    for extra in range(1, config.split_seeds):
        if result.within_probe is not None:
            folds = group_folds(target.groups, config.folds, seed + extra)
            refit = _within_crossfit(store, target, positions, folds, no_controls, progress, layer_zero=False)
            accuracy = (  # None where this seed's folds leave the within-prompt probe too few prompts
                metric_value("within_acc", refit.target.y, refit.fit.predictions["probe"], refit.target.groups)
                if refit is not None
                else None
            )
            spread[seed + extra] = (None, accuracy)
            continue
        p = cross_fit(
            store, target, positions, config.folds, seed + extra, config.sweep.settings, progress=progress
        ).predictions["probe"]
        spread[seed + extra] = (
            metric_value("pearson", target.y, p, target.groups),
            metric_value("within_acc", target.y, p, target.groups),
        )
    result.seed_spread = SeedSpread(
        seeds=list(spread),
        pearson=[finite(v[0]) for v in spread.values()],
        within_acc=[finite(v[1]) for v in spread.values()],
    )
    timings["seed_spread"] = time.perf_counter() - tick
    if config.sgd_grid:
        tick = time.perf_counter()
        best = result.sweep.best
        x = target.states(full_store(store), best.position, [best.layer])[:, 0]
        loop = config.sweep.settings.of(SGDProbe.kind).train
        result.sgd_grid = sgd_settings_grid(x, target.y, target.groups, fit.plan.masks, loop)
        timings["sgd_grid"] = time.perf_counter() - tick
    result.linear_vs_nonlinear = _linear_vs_nonlinear(fit, config)


def _linear_vs_nonlinear(fit: SweepFit, config: ReadoutConfig) -> LinearVsNonlinear | None:
    """The validation-best linear and nonlinear cells (as the probe registry classes the kinds), both scored on the
    single split's test prompts, paired."""
    kinds = list(dict.fromkeys(c.probe for c in fit.result.grid))

    def best_of(linear: bool):
        cells = [fit.result.val_best(kind) for kind in kinds if probe_class(kind).linear == linear]
        return max((c for c in cells if c is not None), key=lambda c: c.val.pearson.sort_key, default=None)

    linear, nonlinear = best_of(True), best_of(False)
    if linear is None or nonlinear is None:
        return None
    test = fit.plan.masks["test"]
    y, groups = fit.target.y[test], fit.target.groups[test]
    resampler = Resampler.make(groups, config.sweep.n_boot, config.sweep.seed)
    cells = [Cell(position=c.position, layer=c.layer, probe=c.probe) for c in (linear, nonlinear)]
    p_linear, p_nonlinear = (fit.cell_predictions(c)[test] for c in cells)
    return LinearVsNonlinear(
        linear=cells[0],
        nonlinear=cells[1],
        linear_test=score(y, p_linear, groups, resampler=resampler),
        nonlinear_test=score(y, p_nonlinear, groups, resampler=resampler),
        difference=paired_differences(
            y, p_linear, p_nonlinear, resampler, n_permutations=config.paired_permutations, seed=config.sweep.seed
        ),
    )
