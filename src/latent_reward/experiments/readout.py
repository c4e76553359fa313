"""Does the model encode the reward of its responses? The sweep, its baselines and controls, in one result."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from latent_reward.activations.store import ActivationStore
from latent_reward.evaluation.baselines import SplitData, run_baselines
from latent_reward.evaluation.metrics import all_metrics, bootstrap_ci, partial_correlation
from latent_reward.experiments.prompt_only import PromptOnlyResult, prompt_only
from latent_reward.experiments.sgd_settings import sgd_settings_grid
from latent_reward.experiments.sweep import SweepOptions, SweepResult, sweep
from latent_reward.experiments.trajectory import TrajectoryResult


@dataclass
class Readout:
    sweep: SweepResult
    comparisons: dict[str, dict[str, Any]]  # name -> test metrics with intervals (baselines, controls)
    sgd_grid: pd.DataFrame | None
    partial_r_given_length: float
    random_init: SweepResult | None
    prompt_only: PromptOnlyResult | None = None
    timings: dict[str, float] = field(default_factory=dict)
    trajectory: TrajectoryResult | None = None


def split_data(store: ActivationStore, result: SweepResult) -> SplitData:
    keep = result.keep
    examples = [e for e, k in zip(store.examples, keep) if k]
    prompts = ["\n".join(m["content"] for m in e["messages"][:-1]) for e in examples]
    responses = [e["messages"][-1]["content"] for e in examples]
    logprobs = store.stat("logprob_mean")[keep].astype(np.float64) if store.manifest["fingerprint"].get("logprobs") else None
    return SplitData(
        y=result.y, groups=result.groups, masks=result.masks, prompts=prompts, responses=responses,
        response_tokens=store.stat("response_tokens_count")[keep].astype(np.float64),
        generators=[e["meta"].get("generator") for e in examples], logprob_mean=logprobs,
    )


def scored(y: np.ndarray, predictions: np.ndarray, groups: np.ndarray, test: np.ndarray, n_boot: int, seed: int) -> dict[str, Any]:
    metrics = all_metrics(y[test], predictions[test], groups[test])
    intervals = bootstrap_ci(y[test], predictions[test], groups[test], n_boot, seed)
    return {"test": metrics, "test_ci": {k: v.as_dict() for k, v in intervals.items()}}


def reward_readout(store: ActivationStore, options: SweepOptions, random_init_store: ActivationStore | None = None,
                   sgd_grid: bool = True, progress: bool = True) -> Readout:
    timings = {}
    tick = time.perf_counter()
    result = sweep(store, options, progress)
    timings["sweep"] = time.perf_counter() - tick
    test, y, groups = result.masks["test"], result.y, result.groups
    best = result.best

    tick = time.perf_counter()
    data = split_data(store, result)
    comparisons: dict[str, dict[str, Any]] = {}
    for name, predictions in run_baselines(data).items():
        comparisons[name] = {"kind": "baseline", **scored(y, predictions, groups, test, options.n_boot, options.seed)}
    timings["baselines"] = time.perf_counter() - tick

    ridge_layer0 = result.table[(result.table.probe == "ridge") & (result.table.layer == 0)]
    if len(ridge_layer0):  # the layer-0 cell (any position) chosen on validation, like the probe
        position = ridge_layer0.loc[ridge_layer0["val_pearson"].idxmax(), "position"]
        comparisons["layer 0 (embeddings)"] = {"kind": "baseline", "cell": {"position": position, "layer": 0},
                                               **scored(y, result.predictions[(position, 0, "ridge")], groups, test, options.n_boot, options.seed)}
    best_row = result.table[(result.table.position == best["position"]) & (result.table.layer == best["layer"])
                            & (result.table.probe == best["probe"])].iloc[0]
    if "control_test_pearson" in best_row:
        comparisons["control: ratings shuffled within prompt"] = {
            "kind": "control", "test_ci": {},
            "test": {"pearson": float(best_row["control_within_shuffle_test_pearson"]), "within_acc": float(best_row["control_test_within_acc"])},
        }
        comparisons["control: ratings shuffled across responses"] = {
            "kind": "control", "test_ci": {}, "test": {"pearson": float(best_row["control_test_pearson"])},
        }
    random_result = None
    if random_init_store is not None:
        tick = time.perf_counter()
        random_options = SweepOptions(probes=("ridge",), positions=(best["position"],), target=options.target,
                                      seed=options.seed, n_boot=options.n_boot, control=False)
        random_result = sweep(random_init_store, random_options, progress)
        comparisons["random-init model"] = {
            "kind": "baseline", "cell": {k: random_result.best[k] for k in ("position", "layer")},
            "test": random_result.best["test"], "test_ci": random_result.best["test_ci"],
        }
        timings["random_init_sweep"] = time.perf_counter() - tick

    best_predictions = result.predictions[(best["position"], best["layer"], best["probe"])]
    partial = partial_correlation(y[test], best_predictions[test], data.response_tokens[test])
    grid = None
    if sgd_grid:
        tick = time.perf_counter()
        index = list(store.layers).index(best["layer"])
        x = store.array(best["position"], layers=[store.layers[index]])[result.keep, 0].astype(np.float32)
        grid = sgd_settings_grid(x, y, groups, result.masks, options.train)
        timings["sgd_grid"] = time.perf_counter() - tick
    tick = time.perf_counter()
    expected = prompt_only(store, result, random_init_store, options.target, options.seed, options.n_boot)
    timings["prompt_only"] = time.perf_counter() - tick
    return Readout(result, comparisons, grid, partial, random_result, expected, timings)
