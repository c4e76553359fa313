"""The report's figures (matplotlib, written as PNG)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from latent_reward.experiments.readout import Readout  # noqa: E402

plt.rcParams.update({"figure.dpi": 110, "font.size": 9, "axes.spines.top": False, "axes.spines.right": False})


def _save(figure, folder: Path, name: str) -> Path:
    path = folder / f"{name}.png"
    figure.savefig(path, bbox_inches="tight")
    plt.close(figure)
    return path


def heatmap(table: pd.DataFrame, metric: str, title: str, folder: Path, name: str, center: float = 0.0) -> Path:
    ridge = table[table.probe == "ridge"].pivot(index="position", columns="layer", values=metric)
    ridge = ridge.reindex(list(dict.fromkeys(table.position)))  # the store's order, not alphabetical
    figure, axis = plt.subplots(figsize=(max(6, 0.28 * ridge.shape[1] + 2), 0.45 * ridge.shape[0] + 1.2))
    spread = np.nanmax(np.abs(ridge.values - center)) or 1.0
    image = axis.imshow(ridge.values, aspect="auto", cmap="RdBu_r", vmin=center - spread, vmax=center + spread)
    axis.set_yticks(range(len(ridge.index)), ridge.index)
    step = max(1, ridge.shape[1] // 16)
    axis.set_xticks(range(0, ridge.shape[1], step), ridge.columns[::step])
    axis.set_xlabel("layer (0 = embeddings)")
    axis.set_title(title)
    figure.colorbar(image, ax=axis, fraction=0.03)
    return _save(figure, folder, name)


def layer_curves(readout: Readout, metric: str, folder: Path, name: str) -> Path:
    curves, n_layers = readout.sweep.curves, readout.sweep.n_layers
    figure, axis = plt.subplots(figsize=(7, 3.6))
    for position, rows in curves.groupby("position", sort=False):
        depth = rows["layer"] / n_layers
        axis.plot(depth, rows[metric], label=position, lw=1.5)
        axis.fill_between(depth, rows[f"{metric}_low"], rows[f"{metric}_high"], alpha=0.15)
    reference = _strongest_baseline(readout, metric)
    if reference:
        axis.axhline(reference[1], color="k", ls="--", lw=1, label=f"best baseline: {reference[0]}")
    name = "control: ratings shuffled across responses" if metric == "pearson" else "control: ratings shuffled within prompt"
    control = readout.comparisons.get(name, {}).get("test", {}).get(metric)
    if control is not None:
        axis.axhline(control, color="grey", ls=":", lw=1, label=f"{name} (best cell)")
    axis.set_xlabel("relative depth (layer / n_layers)")
    axis.set_ylabel({"pearson": "test Pearson r", "within_acc": "test within-prompt accuracy"}[metric])
    axis.set_title("ridge probe by layer, 95% intervals over prompts")
    axis.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    return _save(figure, folder, name)


def _strongest_baseline(readout: Readout, metric: str) -> tuple[str, float] | None:
    values = [(name, c["test"].get(metric)) for name, c in readout.comparisons.items()
              if c["kind"] == "baseline" and c["test"].get(metric) is not None and not np.isnan(c["test"][metric])]
    return max(values, key=lambda item: item[1]) if values else None


def scatter(readout: Readout, folder: Path, name: str) -> Path:
    data, best = readout.sweep.test_predictions, readout.sweep.best
    y, p = data["y"], data["prediction"]
    figure, axis = plt.subplots(figsize=(4.6, 4.2))
    jitter = np.random.default_rng(0).uniform(-0.12, 0.12, len(y)) if len(np.unique(y)) <= 12 else 0
    axis.scatter(y + jitter, p, s=8, alpha=0.5)
    slope, intercept = np.polyfit(y, p, 1)
    grid = np.linspace(y.min(), y.max(), 50)
    axis.plot(grid, slope * grid + intercept, color="C3", lw=1.5, label=f"fit (r = {best['test']['pearson']:.2f})")
    axis.set_xlabel("rating")
    axis.set_ylabel("probe prediction")
    axis.set_title(f"test set: {best['probe']} @ {best['position']} layer {best['layer']}")
    axis.legend()
    return _save(figure, folder, name)


def comparison_bars(readout: Readout, folder: Path, name: str) -> Path:
    best = readout.sweep.best
    entries = [(f"probe ({best['probe']} @ {best['position']} L{best['layer']})", best["test"], best["test_ci"])]
    entries += [(label, c["test"], c.get("test_ci", {})) for label, c in readout.comparisons.items()]
    figure, axes = plt.subplots(1, 2, figsize=(10, 0.32 * len(entries) + 1.2), sharey=True)
    for axis, metric, title, chance in ((axes[0], "pearson", "test Pearson r", 0.0), (axes[1], "within_acc", "within-prompt accuracy", 0.5)):
        values = [e[1].get(metric, np.nan) for e in entries]
        lows = [e[2].get(metric, {}).get("low", v) for e, v in zip(entries, values)]
        highs = [e[2].get(metric, {}).get("high", v) for e, v in zip(entries, values)]
        positions = np.arange(len(entries))
        colors = ["C3"] + ["C7" if "control" in e[0] else "C0" for e in entries[1:]]
        errors = np.nan_to_num(np.array([np.subtract(values, lows), np.subtract(highs, values)]).clip(min=0))
        axis.barh(positions, values, xerr=errors, color=colors, alpha=0.8)
        axis.axvline(chance, color="k", lw=0.8)
        axis.set_title(title)
    axes[0].set_yticks(np.arange(len(entries)), [e[0] for e in entries])
    axes[0].invert_yaxis()
    return _save(figure, folder, name)


def probe_kinds(readout: Readout, folder: Path, name: str) -> Path | None:
    table, best = readout.sweep.table, readout.sweep.best
    kinds = table.probe.unique()
    if len(kinds) < 2:
        return None
    figure, axis = plt.subplots(figsize=(7, 3.4))
    for kind in kinds:
        rows = table[(table.probe == kind) & (table.position == best["position"])]
        axis.plot(rows["layer"] / readout.sweep.n_layers, rows["test_pearson"], label=kind, lw=1.5)
    axis.set_xlabel("relative depth")
    axis.set_ylabel("test Pearson r")
    axis.set_title(f"probe types at {best['position']}")
    axis.legend()
    return _save(figure, folder, name)


def sgd_grid(readout: Readout, folder: Path, name: str) -> Path | None:
    grid = readout.sgd_grid
    if grid is None or grid.empty:
        return None
    figure, axis = plt.subplots(figsize=(5.5, 3.2))
    for schedule, rows in grid.groupby("schedule", sort=False):
        axis.plot(rows["batch_size"], rows["val_pearson"], marker="o", label=schedule)
    axis.set_xscale("log", base=2)
    axis.set_xlabel("batch size")
    axis.set_ylabel("validation Pearson r")
    axis.set_title("SGD probe settings at the best cell")
    axis.legend(fontsize=7)
    return _save(figure, folder, name)


def rating_histogram(ratings: np.ndarray, folder: Path, name: str) -> Path:
    figure, axis = plt.subplots(figsize=(4.6, 2.6))
    distinct = np.unique(ratings)
    if distinct.size <= 12:
        counts = [(ratings == v).sum() for v in distinct]
        axis.bar(distinct, counts, width=0.6 * (np.min(np.diff(distinct)) if distinct.size > 1 else 1))
    else:
        axis.hist(ratings, bins=20)
    axis.set_xlabel("rating")
    axis.set_ylabel("responses")
    return _save(figure, folder, name)


def prompt_only_curves(readout: Readout, folder: Path, name: str) -> Path | None:
    result = readout.prompt_only
    if result is None:
        return None
    figure, axis = plt.subplots(figsize=(7, 3.4))
    n_layers = readout.sweep.n_layers
    for position, rows in result.curves.groupby("position", sort=False):
        depth = rows["layer"] / n_layers
        axis.plot(depth, rows["pearson"], label=f"probe at {position}", lw=1.5)
        axis.fill_between(depth, rows["pearson_low"], rows["pearson_high"], alpha=0.15)
    for index, (label, entry) in enumerate(result.baselines.items()):
        axis.axhline(entry["value"], color=f"C{index + 3}", ls="--", lw=1, label=label)
    axis.axhline(0, color="k", lw=0.6)
    axis.set_xlabel("relative depth (layer / n_layers)")
    axis.set_ylabel("test r with the prompt's mean rating")
    axis.set_title("expected reward from the user's input alone")
    axis.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    return _save(figure, folder, name)


def decomposition_bars(readout: Readout, folder: Path, name: str) -> Path | None:
    result = readout.prompt_only
    if result is None or result.decomposition.empty:
        return None
    table = result.decomposition
    figure, axis = plt.subplots(figsize=(6.5, 3))
    positions = np.arange(len(table))
    for offset, column, label in ((-0.27, "response_r", "all test responses"), (0, "between_prompt_r", "prompt means"),
                                  (0.27, "within_prompt_r", "within prompts")):
        axis.bar(positions + offset, table[column], width=0.27, label=label)
    axis.set_xticks(positions, [f"{p}\n(layer {l})" for p, l in zip(table.position, table.layer)], fontsize=7)
    axis.axhline(0, color="k", lw=0.6)
    axis.set_ylabel("test Pearson r")
    axis.set_title("where each position's response-level r comes from")
    axis.legend(fontsize=7)
    return _save(figure, folder, name)


def trajectory_curves(readout: Readout, folder: Path, name: str) -> Path | None:
    result = readout.trajectory
    if result is None:
        return None
    probes = list(dict.fromkeys(result.curves.probe))
    figure, axes = plt.subplots(1, len(probes), figsize=(5 * len(probes), 3.3), squeeze=False)
    for axis, probe in zip(axes[0], probes):
        for group, colour in (("high", "C2"), ("low", "C3")):
            rows = result.curves[(result.curves.probe == probe) & (result.curves.group == group)]
            axis.plot(rows["bin"], rows["mean"], color=colour, label=f"{group}-rated responses")
            axis.fill_between(rows["bin"], rows["low"], rows["high"], color=colour, alpha=0.2)
        split = result.separation.get(probe)
        if split is not None:
            axis.axvline(split, color="k", ls=":", lw=1, label=f"separate from {split:.0%}")
        axis.set_xlabel("relative position in the response")
        axis.set_ylabel("probe estimate")
        axis.set_title(f"{probe}, layer {result.layer}")
        axis.legend(fontsize=7)
    return _save(figure, folder, name)
