"""The layer x position x probe sweep, with two shuffled-rating controls in every cell."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from latent_reward.activations.store import ActivationStore, group_means
from latent_reward.positions import PROMPT_POSITIONS
from latent_reward.data.splits import split_masks
from latent_reward.errors import UserError
from latent_reward.evaluation.controls import shuffle_all, shuffle_within_groups
from latent_reward.evaluation.metrics import all_metrics, bootstrap_ci
from latent_reward.probes import MeanDiffProbe, MLPProbe, PairwiseProbe, Probe, SGDProbe, TrainConfig, fit_ridge_all_layers

SWEEP_PROBES = ("ridge", "sgd", "mlp", "mean_diff", "pairwise")


@dataclass
class SweepOptions:
    probes: tuple[str, ...] = ("ridge",)
    positions: tuple[str, ...] | None = None  # None: all in the store
    target: str = "rating"  # or an aspect name
    seed: int = 0
    n_boot: int = 1000
    train: TrainConfig = field(default_factory=TrainConfig)
    control: bool = True


@dataclass
class SweepResult:
    table: pd.DataFrame  # one row per (position, layer, probe)
    best: dict[str, Any]  # the cell chosen on validation, with test metrics and intervals
    best_probe: Probe
    test_predictions: dict[str, np.ndarray]  # "y", "prediction", "groups", "rows" for the best cell
    curves: pd.DataFrame  # ridge test Pearson r / within-prompt accuracy with intervals per (position, layer)
    predictions: dict[tuple[str, int, str], np.ndarray]  # every cell's predictions for the kept rows
    groups: np.ndarray
    keep: np.ndarray  # store rows with a target value
    masks: dict[str, np.ndarray]
    y: np.ndarray
    seconds: float
    n_layers: int


def target_values(store: ActivationStore, target: str) -> np.ndarray:
    if target == "rating":
        return store.ratings
    aspects = store.aspects
    if target not in aspects:
        raise UserError(f"unknown target {target!r}; the data has rating{''.join(', ' + a for a in aspects)}")
    return aspects[target]


def _fit_other(kind: str, x, y, groups, x_val, y_val, train: TrainConfig) -> Probe:
    probe = {"sgd": lambda: SGDProbe(train), "mlp": lambda: MLPProbe(train), "mean_diff": MeanDiffProbe,
             "pairwise": PairwiseProbe}[kind]()
    return probe.fit(x, y, groups, x_val, y_val)


def _cell_row(position: str, layer: int, kind: str, y, predictions, groups, masks, controls=None) -> dict[str, Any]:
    """Metrics of one cell. `controls`: ((y_within, predictions), (y_global, predictions)) from probes
    trained on ratings shuffled within each prompt and across all responses."""
    row: dict[str, Any] = {"position": position, "layer": layer, "probe": kind}
    for split in ("val", "test"):
        rows = masks[split]
        for name, value in all_metrics(y[rows], predictions[rows], groups[rows]).items():
            row[f"{split}_{name}"] = value
    if controls is not None:
        rows = masks["test"]
        (y_within, within_predictions), (y_global, global_predictions) = controls
        within = all_metrics(y_within[rows], within_predictions[rows], groups[rows])
        overall = all_metrics(y_global[rows], global_predictions[rows], groups[rows])
        row["control_test_within_acc"] = within["within_acc"]  # ratings shuffled within each prompt
        row["control_within_shuffle_test_pearson"] = within["pearson"]  # keeps prompt-level signal
        row["control_test_pearson"] = overall["pearson"]  # ratings shuffled across all responses
        row["selectivity_pearson"] = row["test_pearson"] - overall["pearson"]
        row["selectivity_within_acc"] = row["test_within_acc"] - within["within_acc"]
    return row


def sweep(store: ActivationStore, options: SweepOptions | None = None, progress: bool = True) -> SweepResult:
    """Fit every probe kind at every (position, layer) on the train groups; score val and test.

    The best cell is chosen by validation Pearson r and reported on test with 95% intervals that
    resample prompts.
    """
    options = options or SweepOptions()
    unknown = [p for p in options.probes if p not in SWEEP_PROBES]
    if unknown:
        raise UserError(f"unknown probe(s) {', '.join(unknown)}; choose from {', '.join(SWEEP_PROBES)}")
    started = time.perf_counter()
    y_all = target_values(store, options.target)
    keep = ~np.isnan(y_all)
    groups = store.groups[keep]
    y = y_all[keep]
    if len(np.unique(groups)) < 6:
        raise UserError("the sweep needs at least 6 prompts (groups) to split into train, validation and test")
    masks = split_masks(groups, options.seed)
    y_within = shuffle_within_groups(y, groups, options.seed)
    y_global = shuffle_all(y, options.seed)
    positions = options.positions or tuple(store.positions)
    manifest_model = store.manifest.get("model", {})
    model_info = {"model": manifest_model.get("name"), "model_dtype": manifest_model.get("dtype"),
                  "chat_template": manifest_model.get("chat_template"),
                  "max_tokens": store.manifest.get("fingerprint", {}).get("max_tokens")}
    rows, probes, cell_predictions = [], {}, {}
    cells = len(positions) * len(store.layers) * len(options.probes)
    bar = tqdm(total=cells, desc="sweep", unit="cell", disable=not progress, dynamic_ncols=True)
    for position in positions:
        x = store.array(position)[keep].astype(np.float32)
        if position in PROMPT_POSITIONS:
            # States before the response are a function of the prompt alone; copies computed in
            # different batches differ by float rounding, which must not pose as within-prompt signal.
            names, means = group_means(x, groups)
            x = means[np.searchsorted(names, groups)]
        train = masks["train"]
        for kind in options.probes:
            control_targets = (y_within, y_global) if options.control else ()
            if kind == "ridge":  # real and control targets share every decomposition
                fitted = fit_ridge_all_layers(x[train], np.column_stack([y, *control_targets])[train], groups[train])
            for index, layer in enumerate(store.layers):
                if kind == "ridge":
                    probe, control_probes = fitted[0][index], [column[index] for column in fitted[1:]]
                else:
                    val = masks["val"]
                    probe, *control_probes = [
                        _fit_other(kind, x[train, index], target[train], groups[train], x[val, index], target[val], options.train)
                        for target in (y, *control_targets)]
                probe.info.update(position=position, layer=layer, target=options.target, train_groups=sorted(set(groups[train])),
                                  rating_range=[float(np.quantile(y[train], 0.05)), float(np.quantile(y[train], 0.95))],
                                  **model_info)
                predictions = probe.predict(x[:, index])
                controls = [(target, control.predict(x[:, index])) for target, control in zip(control_targets, control_probes)]
                rows.append(_cell_row(position, layer, kind, y, predictions, groups, masks, controls or None))
                probes[(position, layer, kind)] = probe
                cell_predictions[(position, layer, kind)] = predictions
                bar.update(1)
    bar.close()
    table = pd.DataFrame(rows)
    best_row = table.loc[table["val_pearson"].idxmax()]
    key = (best_row["position"], int(best_row["layer"]), best_row["probe"])
    test = masks["test"]
    predictions = cell_predictions[key]
    intervals = bootstrap_ci(y[test], predictions[test], groups[test], options.n_boot, options.seed)
    best = {
        "position": key[0], "layer": key[1], "probe": key[2],
        "relative_depth": key[1] / max(store.layers),
        "val_pearson": float(best_row["val_pearson"]),
        "test": {name: float(best_row[f"test_{name}"]) for name in ("pearson", "spearman", "r2", "mae", "within_acc", "within_spearman")},
        "test_ci": {name: interval.as_dict() for name, interval in intervals.items()},
    }
    if options.control:
        for name in ("control_test_pearson", "control_test_within_acc", "control_within_shuffle_test_pearson"):
            best[name] = float(best_row[name])
    curves = _ridge_curves(table, cell_predictions, y, groups, masks, options) if "ridge" in options.probes else pd.DataFrame()
    rows_index = np.flatnonzero(keep)
    return SweepResult(
        table=table, best=best, best_probe=probes[key],
        test_predictions={"y": y[test], "prediction": predictions[test], "groups": groups[test], "rows": rows_index[test]},
        curves=curves, predictions=cell_predictions, groups=groups, keep=keep, masks=masks, y=y,
        seconds=time.perf_counter() - started, n_layers=max(store.layers),
    )


def _ridge_curves(table, cell_predictions, y, groups, masks, options: SweepOptions) -> pd.DataFrame:
    test = masks["test"]
    rows = []
    for _, row in table[table["probe"] == "ridge"].iterrows():
        key = (row["position"], int(row["layer"]), "ridge")
        intervals = bootstrap_ci(y[test], cell_predictions[key][test], groups[test], max(200, options.n_boot // 5), options.seed)
        entry = {"position": key[0], "layer": key[1]}
        for name in ("pearson", "within_acc"):
            if name in intervals:
                entry.update({name: intervals[name].value, f"{name}_low": intervals[name].low, f"{name}_high": intervals[name].high})
        rows.append(entry)
    return pd.DataFrame(rows)
