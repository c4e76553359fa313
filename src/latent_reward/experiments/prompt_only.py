"""Does the model expect a reward before it has written anything?

Probes at `user_end` and `assistant_start` (states that exist before the response) predict each
prompt's mean rating, one row per prompt. The ratings are off-policy: they belong to other models'
responses, so this measures how well answers to a prompt tend to be rated, not the model's own
expected reward. Beside it: prompt-only baselines, the intraclass correlation (how much of the
rating's variance lies between prompts, corrected for chance; two-way with the response's role or
generator fixed where the rows carry one), the reliability of a prompt's mean rating and the ceiling
it puts on the prompt probe's r (`evaluation.reliability`). Wide states choose their cells on a
sketch and are fitted exactly at the cells chosen (`analysis.sketch`).
"""

from __future__ import annotations

import numpy as np
from pydantic import ConfigDict, Field

from latent_reward.activations.store import ActivationStore
from latent_reward.analysis.crossfit import cross_fit_arrays
from latent_reward.analysis.sketch import SketchConfig, SketchedStore, exact_reader, full_store, sketch_view
from latent_reward.analysis.sweep import SweepFit, plan_for
from latent_reward.analysis.targets import Target, make_target
from latent_reward.data.schema import GROUP_KEY_VERSION
from latent_reward.data.splits import SplitPlan
from latent_reward.errors import UserError
from latent_reward.evaluation.baselines import TextData, prompt_text_baselines
from latent_reward.evaluation.groups import group_means
from latent_reward.evaluation.metrics import Resampler, icc1_interval, pearson, quantile_interval, score
from latent_reward.evaluation.paired import paired_differences
from latent_reward.evaluation.reliability import Reliability, fixed_factor, reliability
from latent_reward.evaluation.results import RANDOM_INIT, Cell, Comparison, Interval, Result, Scores
from latent_reward.heap import reuses_freed_memory
from latent_reward.positions import PROMPT_POSITIONS
from latent_reward.probes import Probe, ProbeInfo, RidgeProbe, fit_ridge_all_layers

OFF_POLICY = (
    "The ratings belong to other models' responses (off-policy): a prompt's mean rating says how well answers to "
    "it tend to be rated, which is not the model's own expected reward. An on-policy target needs the model's own "
    "sampled replies rated by an independent judge (latent-reward respond + judge)."
)


class PromptOnlyConfig(Result):
    model_config = ConfigDict(frozen=True, extra="forbid")

    target: str = Field(
        "rating", description="What to predict: rating, rating-within-prompt, or an aspect the data has."
    )
    seed: int = 0
    n_boot: int = Field(1000, ge=100, description="Bootstrap resamples (prompts) for the intervals.")
    folds: int = Field(5, ge=2, description="Cross-fitting folds over prompts (the headline).")
    sketch: SketchConfig = SketchConfig()


class LayerValue(Result):
    position: str
    layer: int
    val: Interval  # Pearson r with the prompt's mean rating on the validation prompts


class PromptRow(Result):
    prompt: str
    expected_reward: float
    mean_rating: float
    responses: int


class PromptOnlyResult(Result):
    target: str
    off_policy: str = OFF_POLICY
    n_prompts: dict[str, int]
    curves: list[LayerValue]
    best: Cell  # chosen on validation
    best_test: Interval  # the single split's test prompts, once
    cross_fitted: Scores  # every prompt tested once (cell chosen inside each fold)
    fold_cells: list[Cell]
    baselines: list[Comparison]  # cross-fitted on the same folds, paired against the probe
    icc: Interval  # the one-way ICC(1) of the rating by prompt (for reference where the rows carry a role or generator)
    reliability: Reliability | None = None  # the right ICC for these rows, the prompt mean's reliability, r's ceiling
    raw_between_share: float  # the uncorrected between-prompt share of variance (biased upward; for reference)
    top_prompts: list[PromptRow] = []
    bottom_prompts: list[PromptRow] = []


class _Prompts:
    """One row per prompt: mean rating, text, response count, state means, split label."""

    def __init__(self, store: ActivationStore | SketchedStore, target: Target, plan: SplitPlan):
        self.store, self.target = store, target
        self.names, self.means = group_means(target.y, target.groups)
        self.counts = np.bincount(np.searchsorted(self.names, target.groups), minlength=len(self.names))
        first: dict[str, int] = {}  # prompt -> its first row in the store
        for row, group in zip(target.rows, target.groups):
            first.setdefault(group, row)
        self.texts = [store.examples[first[g]].prompt_text for g in self.names]
        split = {g: name for name in ("train", "val", "test") for g in plan.groups_of(name, target.groups)}
        labels = np.array([split[g] for g in self.names])
        self.masks = {name: labels == name for name in ("train", "val", "test")}

    def states(
        self, store: ActivationStore | SketchedStore, position: str, layers: list[int] | None = None
    ) -> np.ndarray:
        """float32 [n_prompts, n_layers, d]: each prompt's state (its rows agree up to batching's float rounding); on a
        sketched store, the sketch of those states."""
        if isinstance(store, SketchedStore):
            key = ("prompt means", self.target.name, hash(self.target.keep.tobytes()))
            return store.sketch(key, position, layers, lambda chunk: self.states(store.full, position, chunk))
        return group_means(store.array(position, layers)[self.target.keep], self.target.groups)[1].astype(np.float32)

    def cross_fit(
        self,
        store: ActivationStore | SketchedStore,
        positions,
        config: PromptOnlyConfig,
        progress: bool,
        folds: np.ndarray | None = None,
    ):
        """The prompt probe cross-fitted over folds of prompts (cells chosen on a sketch when the store is one)."""
        return cross_fit_arrays(
            lambda p: self.states(store, p),
            list(store.layers),
            self.means,
            self.names,
            positions,
            config.folds,
            config.seed,
            progress=progress,
            folds=folds,
            exact=exact_reader(store, self.states),
        )


@reuses_freed_memory
def prompt_only(
    store: ActivationStore | SketchedStore,
    config: PromptOnlyConfig | None = None,
    response_fit: SweepFit | None = None,
    random_init_store: ActivationStore | SketchedStore | None = None,
    progress: bool = False,
) -> PromptOnlyResult | None:
    """None when the store has no state from before the response."""
    config = config or PromptOnlyConfig()
    store, random_init_store = sketch_view(store, config.sketch), sketch_view(random_init_store, config.sketch)
    positions = tuple(p for p in PROMPT_POSITIONS if p in store.positions)
    if not positions:
        return None
    target = response_fit.target if response_fit is not None else make_target(store, config.target)
    if target.within:
        raise UserError("prompt-only needs a rating target, not the within-prompt one")
    plan = response_fit.plan if response_fit is not None else plan_for(store, target, config.seed)
    prompts = _Prompts(store, target, plan)
    y, names, masks = prompts.means, prompts.names, prompts.masks
    curves, predictions = _single_split(store, prompts, positions, config)
    best_value = max(curves, key=lambda c: c.val.sort_key)
    best = Cell(position=best_value.position, layer=best_value.layer)
    best_p = predictions[(best.position, best.layer)]
    if full_store(store) is not store:  # curves on a sketch: the best cell's probe fitted on the full states
        x = prompts.states(full_store(store), best.position, [best.layer])
        train = masks["train"]
        best_p = fit_ridge_all_layers(x[train], y[train], names[train])[0][0].predict(x[:, 0])
    test = masks["test"]
    resampler = Resampler.make(names, config.n_boot, config.seed)
    fitted = prompts.cross_fit(store, positions, config, progress)
    probe_p = fitted.predictions["probe"]
    factor_name, factor = fixed_factor([store.examples[i].meta for i in target.rows])
    return PromptOnlyResult(
        target=target.name,
        n_prompts={name: int(mask.sum()) for name, mask in masks.items()},
        curves=curves,
        best=best,
        best_test=score(y[test], best_p[test], names[test], config.n_boot, config.seed).pearson,
        cross_fitted=score(y, probe_p, names, resampler=resampler),
        fold_cells=fitted.cells["probe"],
        baselines=_baselines(prompts, fitted.folds, probe_p, resampler, random_init_store, positions, config),
        icc=icc1_interval(target.y, target.groups, config.n_boot, config.seed),
        reliability=reliability(target.y, target.groups, factor, factor_name, config.n_boot, config.seed),
        raw_between_share=float(
            np.sum(prompts.counts * (y - target.y.mean()) ** 2) / np.sum((target.y - target.y.mean()) ** 2)
        ),
        top_prompts=_describe(prompts, probe_p, np.argsort(-probe_p)[:5]),
        bottom_prompts=_describe(prompts, probe_p, np.argsort(probe_p)[:5]),
    )


def _single_split(store, prompts: _Prompts, positions, config: PromptOnlyConfig):
    """Ridge at every (position, layer), fitted on the training prompts, scored on validation."""
    y, names, masks = prompts.means, prompts.names, prompts.masks
    val = masks["val"]
    resampler = Resampler.make(names[val], max(200, config.n_boot // 5), config.seed)
    curves, predictions = [], {}
    for position in positions:
        x = prompts.states(store, position)
        probes = fit_ridge_all_layers(x[masks["train"]], y[masks["train"]], names[masks["train"]])[0]
        for index, layer in enumerate(store.layers):
            p = probes[index].predict(x[:, index])
            predictions[(position, layer)] = p
            value = pearson(y[val], p[val])
            curves.append(
                LayerValue(
                    position=position,
                    layer=layer,
                    val=quantile_interval(value, resampler.samples(y[val], p[val])["pearson"]),
                )
            )
    return curves, predictions


def _baselines(prompts: _Prompts, folds, probe_p, resampler, random_init_store, positions, config) -> list[Comparison]:
    y, names = prompts.means, prompts.names
    data = TextData(y=y, groups=names, prompts=prompts.texts, responses=prompts.texts, generators=[None] * len(y))
    found = {}
    for name, fit_predict in prompt_text_baselines(data).items():
        oof = np.empty(len(y))
        for k in np.unique(folds):
            oof[folds == k] = fit_predict(data, folds != k)[folds == k]
        found[name] = oof
    if random_init_store is not None and all(p in random_init_store.positions for p in positions):
        random_target = make_target(random_init_store, prompts.target.name)
        random_prompts = _Prompts(random_init_store, random_target, _plan_from_masks(prompts))
        fitted = random_prompts.cross_fit(random_init_store, positions, config, progress=False, folds=folds)
        found[RANDOM_INIT] = fitted.predictions["probe"]
    return [
        Comparison(
            name=name,
            kind="baseline",
            scores=score(y, p, names, resampler=resampler),
            versus_probe=paired_differences(y, probe_p, p, resampler, metrics=("pearson",), seed=config.seed),
        )
        for name, p in found.items()
    ]


def _plan_from_masks(prompts: _Prompts) -> SplitPlan:
    """The same prompt-level split, expressed over the random-init store's rows."""
    groups = prompts.target.groups
    labels = {g: name for name, mask in prompts.masks.items() for g in prompts.names[mask]}
    return SplitPlan(
        {name: np.array([labels[g] == name for g in groups]) for name in prompts.masks}, "same as the model's"
    )


def _describe(prompts: _Prompts, predictions: np.ndarray, order: np.ndarray) -> list[PromptRow]:
    return [
        PromptRow(
            prompt=prompts.texts[i][:300],
            expected_reward=float(predictions[i]),
            mean_rating=float(prompts.means[i]),
            responses=int(prompts.counts[i]),
        )
        for i in order
    ]


def fit_prompt_probe(
    store: ActivationStore, fit: SweepFit, result: PromptOnlyResult, position: str = "assistant_start"
) -> Probe | None:
    """A ridge probe of a prompt's expected rating at `position` (its validation-best layer), fitted on the training
    prompts' states: V(conversation) for experiments that read expected reward at the start of the assistant's turn."""
    cells = [c for c in result.curves if c.position == position and c.val.value is not None]
    if not cells:
        return None
    layer = max(cells, key=lambda c: c.val.sort_key).layer
    store = full_store(store)
    prompts = _Prompts(store, fit.target, fit.plan)
    x = prompts.states(store, position, [layer])[:, 0]
    train = prompts.masks["train"]
    probe = RidgeProbe().fit(x[train], prompts.means[train], prompts.names[train])
    model = store.manifest.model
    probe.info = ProbeInfo(
        position=position,
        layer=layer,
        target=f"prompt mean {fit.target.name}",
        model=model.name,
        model_dtype=model.dtype,
        chat_template=model.chat_template,
        store=store.location,
        train_groups=sorted(prompts.names[train]),
        validation_groups=sorted(prompts.names[prompts.masks["val"]]),
        group_key_version=GROUP_KEY_VERSION,
        fit=probe.info.fit,
        rating_range=(float(np.quantile(prompts.means[train], 0.05)), float(np.quantile(prompts.means[train], 0.95))),
    )
    return probe
