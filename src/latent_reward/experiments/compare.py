"""Several runs (models, or datasets) side by side, from their saved typed results.

Models run on the same examples are also compared pairwise on those examples: the difference in
the cross-fitted probe's r and within-prompt accuracy, with paired bootstrap intervals and paired
permutation p-values over the shared prompts.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from latent_reward.evaluation.metrics import Resampler
from latent_reward.evaluation.paired import paired_differences
from latent_reward.evaluation.results import Cell, Interval, PairedDifference, Result, Scores, strongest
from latent_reward.experiments.run_result import PREDICTIONS_FILE, RunResult

# What a comparison of a handful of small bundled models can and cannot say, stated on every comparison page.
CAVEAT = (
    "These models differ in more than their post-training: size, pretraining data, tokenizer and chat format all change "
    "together, and a base model is read through a plain fallback format it was never tuned on. A difference in probe "
    "accuracy is therefore a difference between these checkpoints, not an effect of DPO. None of the bundled models was "
    "trained online (RL with a reward model queried on its own samples), so this comparison cannot answer whether online "
    "training would make a model represent expected reward more strongly; checkpoints trained from one starting point "
    "(latent-reward train) can."
)


class CompareRow(Result):
    run: str
    label: str
    model: str
    data: str
    n_layers: int
    best: Cell | None  # the single split's validation-best cell
    probe: Scores  # cross-fitted
    prompt_only: Interval | None = None  # cross-fitted r with the prompt's mean rating
    strongest_baseline: str | None = None  # by validation r
    strongest_baseline_scores: Scores | None = None
    random_init: Scores | None = None
    pair_accuracy: Interval | None = None  # from a `score` run saved in the run folder
    layer_curve: list[tuple[float, float | None]] = []  # (relative depth, validation r) at the best position


class ModelDifference(Result):
    first: str
    second: str
    examples: int
    prompts: int
    difference: dict[str, PairedDifference]  # first minus second


class CompareResult(Result):
    rows: list[CompareRow]
    differences: list[ModelDifference] = []
    caveat: str = CAVEAT


def compare(folders: list[Path], n_boot: int = 1000, seed: int = 0) -> CompareResult:
    runs = [(Path(folder), RunResult.load(folder)) for folder in folders]
    rows = [_row(folder, result) for folder, result in runs]
    differences = []
    for i in range(len(runs)):
        for j in range(i + 1, len(runs)):
            difference = _paired(runs[i], runs[j], rows[i].label, rows[j].label, n_boot, seed)
            if difference is not None:
                differences.append(difference)
    return CompareResult(rows=rows, differences=differences)


def _row(folder: Path, result: RunResult) -> CompareRow:
    readout = result.readout
    model = result.model
    best = readout.sweep.best
    strongest_baseline = strongest(readout.comparisons, "pearson")
    random_init = readout.comparison("random-init model")
    pair = next((s.pair_accuracy[0].predictors.get("probe") for s in result.scores.values() if s.pair_accuracy), None)
    curve = [(c.layer / max(model["n_layers"], 1), c.val.get("pearson")) for c in readout.sweep.cells("ridge", best.position)]
    return CompareRow(
        run=str(folder), label=f"{model['name']} ({Path(result.data.source).name})", model=model["name"], data=result.data.source,
        n_layers=model["n_layers"], best=best, probe=readout.probe.scores,
        prompt_only=result.prompt_only.cross_fitted.pearson if result.prompt_only else None,
        strongest_baseline=strongest_baseline.name if strongest_baseline else None,
        strongest_baseline_scores=strongest_baseline.scores if strongest_baseline else None,
        random_init=random_init.scores if random_init else None, pair_accuracy=pair, layer_curve=curve)


def _predictions(folder: Path) -> pd.DataFrame | None:
    for candidate in (folder / PREDICTIONS_FILE, folder / "report" / PREDICTIONS_FILE):
        if candidate.exists():
            return pd.read_csv(candidate)
    return None


def _paired(first: tuple[Path, RunResult], second: tuple[Path, RunResult], label_a: str, label_b: str, n_boot: int,
            seed: int) -> ModelDifference | None:
    """Both runs' probes on the examples they share (same id and rating), paired by prompt."""
    a, b = _predictions(first[0]), _predictions(second[0])
    if a is None or b is None:
        return None
    merged = a.merge(b, on=["id", "group", "rating"], suffixes=("_a", "_b"))
    if merged["group"].nunique() < 10:
        return None
    y, groups = merged["rating"].to_numpy(float), merged["group"].astype(str).to_numpy()
    resampler = Resampler.make(groups, n_boot, seed)
    difference = paired_differences(y, merged["probe_a"].to_numpy(float), merged["probe_b"].to_numpy(float), resampler, seed=seed)
    return ModelDifference(first=label_a, second=label_b, examples=len(merged), prompts=int(np.unique(groups).size),
                           difference=difference)
