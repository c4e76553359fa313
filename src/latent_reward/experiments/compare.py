"""Several runs (models, or datasets) side by side, from their saved typed results.

Models run on the same examples are also compared pairwise on those examples: the difference in
the cross-fitted probe's r and within-prompt accuracy, with paired bootstrap intervals and paired
permutation p-values over the shared prompts. A checkpoint trained by latent-reward is also compared with
the model it was trained from (each stage's change), and an online checkpoint with an offline DPO one.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from latent_reward.evaluation.metrics import Resampler
from latent_reward.evaluation.paired import paired_differences
from latent_reward.evaluation.results import (
    RANDOM_INIT,
    Cell,
    Interval,
    Metric,
    PairedDifference,
    Result,
    Scores,
    strongest,
)
from latent_reward.experiments.conversation import ConversationResult, XSTestResult
from latent_reward.experiments.reward_model import IMPLICIT_REWARD, PROBE, WITHIN_PROBE
from latent_reward.experiments.run_result import PREDICTIONS_FILE, WITHIN_COLUMN, RunResult
from latent_reward.models.loading import training_record
from latent_reward.probes import DEFAULT_PROBE

# What a comparison of a handful of small bundled models can and cannot say, stated on every comparison page.
CAVEAT = (
    "These models differ in more than their post-training: size, pretraining data, tokenizer and chat format all "
    "change "
    "together, and a base model is read through a plain fallback format it was never tuned on. A difference in probe "
    "accuracy is therefore a difference between these checkpoints, not an effect of DPO. None of the bundled models "
    "was "
    "trained online (RL with a reward model queried on its own samples), so this comparison cannot answer whether "
    "online "
    "training would make a model represent expected reward more strongly; checkpoints trained from one starting point "
    "(latent-reward train) can."
)
# Stated instead when every run's model is the same starting model or a checkpoint trained from it by latent-reward.
CONTROLLED_CAVEAT = (
    "Every model here is {root} or a checkpoint post-trained from it ({data}), so the checkpoints differ only in how "
    "they "
    "were post-trained ({sizes}). Each stage is one training run (one seed): the intervals resample prompts, not "
    "training runs, so a difference belongs to these runs, and how much it would move with another seed or more steps "
    "is not measured. Each run's own report shows the rows its model was post-trained on "
    "apart from the others."
)
ONLINE, OFFLINE = "online", "dpo"
CONVERSATION_FOLDER = (
    "conversation"  # a `conversation --out RUN/conversation` inside a run folder is shown with the run
)


class CompareRow(Result):
    run: str
    label: str
    model: str
    data: str
    n_layers: int
    best: Cell | None  # the single split's validation-best cell
    probe: Scores  # cross-fitted (the pooled probe: r)
    within_acc: Interval = Interval()  # the headline: the within-prompt probe's within-prompt accuracy (else pooled)
    prompt_only: Interval | None = None  # cross-fitted r with the prompt's mean rating
    strongest_baseline: str | None = None  # by validation r
    strongest_baseline_scores: Scores | None = None
    random_init: Scores | None = None
    pair_accuracy: Interval | None = None  # the headline probe's, from a `score` run saved in the run folder
    implicit_reward_accuracy: Interval | None = None  # DPO's implicit reward from the same `score` run (`--reference`)
    training: dict = {}  # a latent-reward checkpoint's record: method, base_model, steps, data
    conversation: dict[str, Interval] = {}  # the conversation experiment's paired measures of V, where it was run
    layer_curve: list[tuple[float, float | None]] = []  # (relative depth, validation r) at the best position
    curve_probe: str = DEFAULT_PROBE  # the probe kind of `layer_curve`


class ModelDifference(Result):
    first: str
    second: str
    examples: int
    prompts: int
    difference: dict[Metric, PairedDifference]  # first minus second


class CompareResult(Result):
    rows: list[CompareRow]
    differences: list[ModelDifference] = []  # every pair, first minus second
    stages: list[
        ModelDifference
    ] = []  # each checkpoint minus the model it was trained from, when that model's run is here
    online_minus_offline: ModelDifference | None = None  # an online checkpoint minus a DPO one, when both are here
    caveat: str = CAVEAT


def compare(folders: list[Path], n_boot: int = 1000, seed: int = 0) -> CompareResult:
    runs = [(Path(folder), RunResult.load(folder)) for folder in folders]
    rows = [_row(folder, result) for folder, result in runs]
    if len({row.data for row in rows}) == 1 and len({row.model for row in rows}) == len(
        rows
    ):  # one data: name the models
        rows = [row.model_copy(update={"label": row.model}) for row in rows]

    def paired(i: int, j: int) -> ModelDifference | None:
        return _paired(runs[i], runs[j], rows[i].label, rows[j].label, n_boot, seed)

    differences = [d for i in range(len(runs)) for j in range(i + 1, len(runs)) if (d := paired(i, j)) is not None]
    parents = [_parent(row, rows) for row in rows]
    stages = [d for i, parent in enumerate(parents) if parent is not None and (d := paired(i, parent)) is not None]
    online = next(
        (
            d
            for i, a in enumerate(rows)
            for j, b in enumerate(rows)
            if _offline_counterpart(a, b) and (d := paired(i, j)) is not None
        ),
        None,
    )
    return CompareResult(
        rows=rows, differences=differences, stages=stages, online_minus_offline=online, caveat=_caveat(rows)
    )


def _offline_counterpart(online: CompareRow, offline: CompareRow) -> bool:
    """An online checkpoint and a DPO one trained from the same model on the same data, read on the same data."""
    a, b = online.training, offline.training
    return (
        a.get("method") == ONLINE
        and b.get("method") == OFFLINE
        and online.data == offline.data
        and a.get("data") == b.get("data")
        and _same_model(str(a.get("base_model")), str(b.get("base_model")))
    )


def _same_model(a: str, b: str) -> bool:
    return a == b or (Path(a).is_dir() and Path(b).is_dir() and Path(a).resolve() == Path(b).resolve())


def _parent(row: CompareRow, rows: list[CompareRow]) -> int | None:
    """The index of the run whose model this checkpoint was trained from, if that model is among the runs."""
    base = row.training.get("base_model")
    return next((i for i, other in enumerate(rows) if base and _same_model(other.model, str(base))), None)


def _root(model: str) -> str:
    """The model a chain of latent-reward checkpoints started from (the model itself when it is not one)."""
    seen = set()
    while Path(model).is_dir() and (base := training_record(Path(model)).get("base_model")) and model not in seen:
        seen.add(model)
        model = str(base)
    return model


def _caveat(rows: list[CompareRow]) -> str:
    roots = {_root(row.model) for row in rows}
    if len(roots) != 1 or not any(row.training for row in rows):
        return CAVEAT
    data = sorted({Path(str(row.training["data"])).name for row in rows if row.training.get("data")})
    sizes = "; ".join(
        f"{row.label}: {row.training.get('method')}, {row.training.get('steps')} steps on "
        f"{row.training.get('pairs_or_examples')} rows"
        for row in rows
        if row.training
    )
    return CONTROLLED_CAVEAT.format(
        root=roots.pop(), data="data: " + ", ".join(data) if data else "data not recorded", sizes=sizes
    )


def _row(folder: Path, result: RunResult) -> CompareRow:
    readout = result.readout
    model = result.model
    best = readout.sweep.best
    strongest_baseline = strongest(readout.comparisons, "pearson")
    random_init = readout.comparison(RANDOM_INIT)
    # one `score` run gives both (the one with DPO's implicit reward when there is one): the probe's pair accuracy and
    # the implicit reward's on the same pairs. "(none)" is also what score writes without a reference model (the
    # policy's log-likelihood alone): not DPO's reward.
    runs = [s.pair_accuracy[0] for s in result.scores.values() if s.pair_accuracy]
    implicit_of = {
        id(p): next(
            (v for k, v in p.predictors.items() if k.startswith(IMPLICIT_REWARD) and not k.endswith("(none)")), None
        )
        for p in runs
    }
    pairs = next((p for p in runs if implicit_of[id(p)] is not None), runs[0] if runs else None)
    within = (readout.within_probe or readout.probe).scores.within_acc
    local = Path(model.identity or model.name)  # a local model's identity is its absolute path
    kind = readout.sweep.shown_kind
    curve = [(c.layer / max(model.n_layers, 1), c.val.pearson.value) for c in readout.sweep.cells(kind, best.position)]
    return CompareRow(
        run=str(folder),
        label=f"{model.name} ({Path(result.data.source).name})",
        model=model.name,
        data=result.data.source,
        n_layers=model.n_layers,
        best=best,
        probe=readout.probe.scores,
        within_acc=within,
        prompt_only=result.prompt_only.cross_fitted.pearson if result.prompt_only else None,
        strongest_baseline=strongest_baseline.name if strongest_baseline else None,
        strongest_baseline_scores=strongest_baseline.scores if strongest_baseline else None,
        random_init=random_init.scores if random_init else None,
        pair_accuracy=pairs.predictors.get(WITHIN_PROBE, pairs.predictors.get(PROBE)) if pairs else None,
        implicit_reward_accuracy=implicit_of[id(pairs)] if pairs else None,
        layer_curve=curve,
        curve_probe=kind,
        training=training_record(local) if local.is_dir() else {},
        conversation=_conversation(folder / CONVERSATION_FOLDER),
    )


def _conversation(folder: Path) -> dict[str, Interval]:
    """The paired differences in V from a conversation run saved in `folder` (empty when there is none)."""
    path = folder / "results.json"
    if not path.exists():
        return {}
    try:
        saved = json.loads(path.read_text())
        measures = {m.name: m.value for m in ConversationResult.model_validate(saved["result"]).behaviour}
        if saved.get("xstest"):
            partial = XSTestResult.model_validate(saved["xstest"]).v_partial_minus_full
            measures[f"XSTest: {partial.name}"] = partial.value
    except (OSError, KeyError, TypeError, ValueError):  # another kind of results.json, or an older format: not shown
        return {}
    return measures


def _predictions(folder: Path) -> pd.DataFrame | None:
    for candidate in (folder / PREDICTIONS_FILE, folder / "report" / PREDICTIONS_FILE):
        if candidate.exists():
            return pd.read_csv(candidate)
    return None


def _paired(
    first: tuple[Path, RunResult], second: tuple[Path, RunResult], label_a: str, label_b: str, n_boot: int, seed: int
) -> ModelDifference | None:
    """Both runs' probes on the examples they share (same id and rating), paired by prompt: r from the pooled probes,
    within-prompt accuracy from the within-prompt probes (the headline) where both runs have them."""
    a, b = _predictions(first[0]), _predictions(second[0])
    if a is None or b is None:
        return None
    merged = a.merge(b, on=["id", "group", "rating"], suffixes=("_a", "_b"))
    if merged["group"].nunique() < 10:
        return None
    y, groups = merged["rating"].to_numpy(float), merged["group"].astype(str).to_numpy()
    resampler = Resampler.make(groups, n_boot, seed)
    column = WITHIN_COLUMN if f"{WITHIN_COLUMN}_a" in merged and f"{WITHIN_COLUMN}_b" in merged else "probe"
    difference = paired_differences(
        y,
        merged["probe_a"].to_numpy(float),
        merged["probe_b"].to_numpy(float),
        resampler,
        metrics=("pearson",),
        seed=seed,
    )
    multi = (merged[f"{column}_a"].notna() & merged[f"{column}_b"].notna()).to_numpy()  # the within probe's prompts
    within = merged[multi]
    a_within, b_within = (within[f"{column}_{side}"].to_numpy(float) for side in ("a", "b"))
    difference |= paired_differences(
        y[multi], a_within, b_within, Resampler.make(groups[multi], n_boot, seed), metrics=("within_acc",), seed=seed
    )
    return ModelDifference(
        first=label_a, second=label_b, examples=len(merged), prompts=int(np.unique(groups).size), difference=difference
    )
