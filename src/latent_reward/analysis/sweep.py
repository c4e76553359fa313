"""The layer x position x probe grid on one split by prompt: explored on validation, tested once.

Every probe kind in the registry is fitted at every (position, layer) on the training prompts and
scored on the validation prompts; the grid (heatmaps, layer curves, probe kinds) is shown on
validation only. The best cell by validation Pearson r is scored on the test prompts once.

On a sketched store (wide states, `analysis.sketch`) the grid is explored on each layer's sketch (its
validation numbers are the sketch's) and the best cell's probe is then fitted on the full states: the
probe that is scored, saved and used; `SweepFit.cell_predictions` refits any other cell a later
comparison needs the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import ConfigDict, Field, model_validator

from latent_reward.activations.store import ActivationStore
from latent_reward.analysis.sketch import SketchedStore, SketchSummary, full_store, sketch_summary
from latent_reward.analysis.targets import Target, make_target, within_prompt
from latent_reward.data.schema import GROUP_KEY_VERSION
from latent_reward.data.splits import SplitPlan, plan_splits
from latent_reward.errors import UserError
from latent_reward.evaluation.metrics import Resampler, all_metrics, pair_counts, pearson, quantile_interval, score
from latent_reward.evaluation.results import HEADLINE_METRICS, Cell, Interval, Metric, Result, Scores
from latent_reward.heap import reuses_freed_memory
from latent_reward.io import progress_bar
from latent_reward.probes import DEFAULT_PROBE, Probe, ProbeInfo, ProbeOptions, RidgeProbe


class SweepConfig(Result):
    model_config = ConfigDict(frozen=True, extra="forbid")

    probes: tuple[str, ...] = Field((DEFAULT_PROBE,), description="Probe kinds: ridge, sgd, mlp, mean_diff, pairwise.")
    positions: tuple[str, ...] | None = Field(None, description="Positions to sweep (default: all in the store).")
    target: str = Field(
        "rating", description="What to predict: rating, rating-within-prompt, or an aspect the data has."
    )
    seed: int = 0
    n_boot: int = Field(1000, ge=100, description="Bootstrap resamples (prompts) for the intervals.")
    settings: ProbeOptions = ProbeOptions()  # each kind's own settings; a kind not named gets its defaults

    @property
    def shown_kind(self) -> str:
        """The kind whose validation cells get intervals: the default probe when it is swept, else the first kind."""
        return DEFAULT_PROBE if DEFAULT_PROBE in self.probes else self.probes[0]


class GridCell(Result):
    position: str
    layer: int
    probe: str
    val: Scores  # every metric on the validation prompts; intervals for the shown kind's Pearson r and within-prompt
    # accuracy only

    @model_validator(mode="before")
    @classmethod
    def _from_dicts(cls, value: Any) -> Any:
        """Results written before `val` was typed: {metric: value} beside {metric: interval} (`val_ci`)."""
        val = value.get("val") if isinstance(value, dict) else None
        if not isinstance(val, dict) or any(isinstance(item, dict) for item in val.values()):
            return value
        intervals = value.get("val_ci") or {}
        return {**value, "val": {name: intervals.get(name, {"value": point}) for name, point in val.items()}}


class SplitSummary(Result):
    how: str
    prompts: dict[str, int]
    examples: dict[str, int]


class SweepResult(Result):
    target: str
    n_layers: int
    split: SplitSummary
    grid: list[GridCell]
    best: Cell  # chosen by validation Pearson r
    sketch: SketchSummary | None = None  # set when the grid was explored on a sketch of wide states
    best_validation: Scores
    best_test: Scores  # the single split's test prompts, touched once for this cell

    @property
    def shown_kind(self) -> str:
        """The kind the grid's figures and answers show: the default probe when it was swept, else the first kind."""
        kinds = list(dict.fromkeys(c.probe for c in self.grid))
        return DEFAULT_PROBE if DEFAULT_PROBE in kinds or not kinds else kinds[0]

    def cells(self, probe: str | None = None, position: str | None = None) -> list[GridCell]:
        return [
            c for c in self.grid if (probe is None or c.probe == probe) and (position is None or c.position == position)
        ]

    def val_best(
        self, probe: str | None = None, position: str | None = None, metric: Metric = "pearson"
    ) -> GridCell | None:
        cells = [c for c in self.cells(probe, position) if c.val.metric(metric).known]
        return max(cells, key=lambda c: c.val.metric(metric).sort_key) if cells else None


@dataclass
class SweepFit:
    """The sweep's typed result with what later steps need in memory."""

    result: SweepResult
    target: Target
    plan: SplitPlan
    best_probe: Probe
    predictions: dict[tuple[str, int, str], np.ndarray] = field(default_factory=dict)  # every cell, kept rows
    store: ActivationStore | SketchedStore | None = (
        None  # on a sketched store, `predictions` are the sketch's (but the best)
    )
    settings: ProbeOptions = field(default_factory=ProbeOptions)
    exact: dict[tuple[str, int, str], np.ndarray] = field(default_factory=dict)  # cells refitted on the full states

    def cell_predictions(self, cell: Cell) -> np.ndarray:
        """The cell's predictions for every kept row, from its probe fitted on the training prompts' full states
        (refitted
        once here when the grid was explored on a sketch)."""
        key = (cell.position, cell.layer, cell.probe)
        if self.store is not None and full_store(self.store) is not self.store and key not in self.exact:
            self.exact[key] = fit_cell(
                full_store(self.store), self.target, cell, self.settings, self.plan.masks["train"]
            )[1]
        return self.exact.get(key, self.predictions[key])


def fit_cell(
    store: ActivationStore, target: Target, cell: Cell, settings: ProbeOptions, train: np.ndarray
) -> tuple[Probe, np.ndarray]:
    """The cell's probe fitted on the training rows' full states, and its predictions for every kept row."""
    x = target.states(store, cell.position, [cell.layer])
    fit_layers = Probe.registry[cell.probe].fit_layers
    probe = fit_layers(settings.of(cell.probe), x[train], target.y[train], target.groups[train])[0][0]
    return probe, probe.predict(x[:, 0])


def plan_for(store: ActivationStore | SketchedStore, target: Target, seed: int) -> SplitPlan:
    """Splits by prompt for the target's rows, honouring a held-out split the data names."""
    source_splits = [store.examples[i].meta.get("source_split") for i in target.rows]
    plan = plan_splits(target.groups, source_splits, seed)
    if min(len(plan.groups_of(name, target.groups)) for name in ("train", "val", "test")) < 2:
        raise UserError("the sweep needs at least 6 prompts (groups) to split into train, validation and test")
    return plan


@reuses_freed_memory
def sweep(store: ActivationStore | SketchedStore, config: SweepConfig | None = None, progress: bool = True) -> SweepFit:
    """Fit every probe kind at every (position, layer) on the train prompts; score validation; test the best once.
    On a sketched store the best cell's probe is refitted on the full states."""
    config = config or SweepConfig()
    unknown = [p for p in config.probes if p not in Probe.registry]
    if unknown:
        raise UserError(f"unknown probe(s) {', '.join(unknown)}; choose from {', '.join(Probe.registry)}")
    target = make_target(store, config.target)
    if len(np.unique(target.groups)) < 6:
        raise UserError("the sweep needs at least 6 prompts (groups) to split into train, validation and test")
    plan = plan_for(store, target, config.seed)
    positions = target.positions(store, config.positions)
    train, val = plan.masks["train"], plan.masks["val"]
    y, groups = target.y, target.groups
    val_resampler = Resampler.make(groups[val], max(200, config.n_boot // 5), config.seed)
    grid, probes, predictions = [], {}, {}
    info = _probe_info(store, target, plan)
    bar = progress_bar(len(positions) * len(store.layers) * len(config.probes), "sweep", "cell", progress)
    for position in positions:
        x = target.states(store, position)
        for kind in config.probes:
            fitted = Probe.registry[kind].fit_layers(config.settings.of(kind), x[train], y[train], groups[train])[0]
            for index, layer in enumerate(store.layers):
                probe = fitted[index]
                p = probe.predict(x[:, index])
                probe.info = info.model_copy(update={"position": position, "layer": layer, "fit": probe.info.fit})
                probes[(position, layer, kind)], predictions[(position, layer, kind)] = probe, p
                intervals = val_resampler if kind == config.shown_kind else None
                grid.append(_grid_cell(position, layer, kind, y[val], p[val], groups[val], intervals))
                bar.update(1)
    bar.close()
    best_cell = max(grid, key=lambda c: c.val.pearson.sort_key)
    best = Cell(position=best_cell.position, layer=best_cell.layer, probe=best_cell.probe)
    key = (best.position, best.layer, best.probe)
    if full_store(store) is not store:
        probes[key], predictions[key] = fit_cell(full_store(store), target, best, config.settings, train)
        refitted = probes[key]
        refitted.info = info.model_copy(
            update={"position": best.position, "layer": best.layer, "fit": refitted.info.fit}
        )
    test = plan.masks["test"]
    result = SweepResult(
        target=target.name,
        n_layers=store.n_layers,
        split=_split_summary(plan, groups),
        grid=grid,
        best=best,
        sketch=sketch_summary(store),
        best_validation=score(y[val], predictions[key][val], groups[val], config.n_boot, config.seed),
        best_test=score(y[test], predictions[key][test], groups[test], config.n_boot, config.seed),
    )
    exact = {key: predictions[key]} if full_store(store) is not store else {}
    return SweepFit(result, target, plan, probes[key], predictions, store, config.settings, exact)


def fit_within_probe(
    store: ActivationStore | SketchedStore, fit: SweepFit, positions: tuple[str, ...] | None = None
) -> Probe | None:
    """The within-prompt probe to save and score pairs with: ridge on the within-prompt target (ratings and states
    centered per prompt, response positions only), fitted on the split's training prompts with 2+ responses, at the
    (position, layer) with the best validation within-prompt r (on a sketched store: chosen on the sketch, fitted on
    the full states). None where the target has no such prompts in training and validation."""
    try:
        target = within_prompt(fit.target)
        positions = target.positions(store, positions)
    except UserError:
        return None
    multi = target.keep[fit.target.rows]
    train, val = fit.plan.masks["train"][multi], fit.plan.masks["val"][multi]
    if len(np.unique(target.groups[train])) < 2 or len(np.unique(target.groups[val])) < 2:
        return None
    best: tuple[float, Cell, Probe] | None = None
    for position in positions:
        x = target.states(store, position)
        fitted = RidgeProbe.fit_layers(
            fit.settings.of(RidgeProbe.kind), x[train], target.y[train], target.groups[train]
        )[0]
        for index, layer in enumerate(store.layers):
            r = pearson(target.y[val], fitted[index].predict(x[val, index]))
            if best is None or r > best[0]:
                best = (r, Cell(position=position, layer=layer, probe=RidgeProbe.kind), fitted[index])
    if best is None:
        raise RuntimeError("the store has no (position, layer) to fit the within-prompt probe at")
    _, cell, probe = best
    if full_store(store) is not store:
        probe = fit_cell(full_store(store), target, cell, fit.settings, train)[0]
    probe.info = fit.best_probe.info.model_copy(
        update={  # model, store, dtype, template, budget as the pooled probe's
            "target": target.name,
            "position": cell.position,
            "layer": cell.layer,
            "fit": probe.info.fit,
            "train_groups": sorted(set(target.groups[train])),
            "validation_groups": sorted(set(target.groups[val])),
            "rating_range": (float(np.quantile(target.y[train], 0.05)), float(np.quantile(target.y[train], 0.95))),
        }
    )
    return probe


def _grid_cell(position, layer, kind, y, p, groups, resampler: Resampler | None) -> GridCell:
    points = all_metrics(y, p, groups)
    values = {name: Interval.of(value) for name, value in points.items()}
    if resampler is not None:
        samples = resampler.samples(y, p)
        values.update(
            {name: quantile_interval(points[name], samples[name]) for name in HEADLINE_METRICS if name in samples}
        )
    _, pairs = pair_counts(y, p, groups)
    return GridCell(
        position=position,
        layer=layer,
        probe=kind,
        val=Scores(n_examples=len(y), n_prompts=len(np.unique(groups)), n_pairs=int(pairs.sum()), **values),
    )


def _split_summary(plan: SplitPlan, groups: np.ndarray) -> SplitSummary:
    return SplitSummary(
        how=plan.how,
        prompts={n: len(plan.groups_of(n, groups)) for n in plan.masks},
        examples={n: int(m.sum()) for n, m in plan.masks.items()},
    )


def _probe_info(store: ActivationStore | SketchedStore, target: Target, plan: SplitPlan) -> ProbeInfo:
    """What a saved probe records: which model, and which prompts it may not be scored on (position and layer are added
    per cell)."""
    model = store.manifest.model
    y_train = target.y[plan.masks["train"]]
    return ProbeInfo(
        target=target.name,
        model=model.name,
        store=store.location,
        model_dtype=model.dtype,
        chat_template=model.chat_template,
        max_tokens=store.manifest.max_tokens,
        group_key_version=GROUP_KEY_VERSION,
        train_groups=sorted(plan.groups_of("train", target.groups)),
        validation_groups=sorted(plan.groups_of("val", target.groups)),
        rating_range=(float(np.quantile(y_train, 0.05)), float(np.quantile(y_train, 0.95))),
    )
