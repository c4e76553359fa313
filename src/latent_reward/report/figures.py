"""The report's figures (matplotlib, written as PNG), drawn from the typed results alone.

Each function takes a result and the output folder and returns the PNG path (None when the result
lacks what the figure shows). File names are fixed plain slugs: see `FIGURES`.

Importing this module changes no matplotlib setting: figures are drawn on their own Agg canvas (not through
pyplot, so the backend stays whatever the user chose), and the report's style applies only while a figure is
drawn (`styled`, matplotlib's rc_context).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, ParamSpec, TypeVar

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from latent_reward.analysis.crossfit import PROBE_KIND
from latent_reward.evaluation.results import CHANCE, HEADLINE_METRICS, METRIC_LABELS, Metric
from latent_reward.experiments.compare import CompareResult
from latent_reward.experiments.run_result import RunResult
from latent_reward.io import atomic_path

if TYPE_CHECKING:
    from matplotlib.typing import RcKeyType

STYLE: dict[RcKeyType, Any] = {"figure.dpi": 110, "font.size": 9, "axes.spines.top": False, "axes.spines.right": False}
Arguments = ParamSpec("Arguments")
Drawn = TypeVar("Drawn")


def styled(function: Callable[Arguments, Drawn]) -> Callable[Arguments, Drawn]:
    """`function` run inside the report's style; matplotlib's settings are restored when it returns."""

    @functools.wraps(function)
    def wrapper(*args: Arguments.args, **kwargs: Arguments.kwargs) -> Drawn:
        with matplotlib.rc_context(STYLE):
            return function(*args, **kwargs)

    return wrapper


def new_figure(
    nrows: int = 1,
    ncols: int = 1,
    *,
    figsize: tuple[float, float],
    layout: Literal["constrained", "compressed", "tight"] | None = None,
    **subplots,
) -> tuple[Figure, Any]:
    """A figure on its own Agg canvas (no pyplot, no global figure list) and its axes, as `plt.subplots` gives them."""
    figure = Figure(figsize=figsize, layout=layout)
    FigureCanvasAgg(figure)
    return figure, figure.subplots(nrows, ncols, **subplots)


def save(figure: Figure, folder: Path, name: str) -> Path:
    """Write `figure` as folder/name.png, atomically; returns the path."""
    path = Path(folder) / f"{name}.png"
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", bbox_inches="tight")
    return path


@styled
def comparison(result: RunResult, folder: Path) -> Path:
    """Probe, baselines and controls: cross-fitted r and within-prompt accuracy with intervals."""
    readout = result.readout
    entries = [(f"probe (cross-fitted {PROBE_KIND})", readout.probe.scores, "C3")]
    entries += [(c.name, c.scores, "C7" if c.kind == "control" else "C0") for c in readout.comparisons]
    if readout.within_probe is not None:
        entries.append((readout.within_probe.name, readout.within_probe.scores, "C1"))
    figure, axes = new_figure(1, 2, figsize=(10, 0.32 * len(entries) + 1.2), sharey=True)
    for axis, metric in zip(axes, HEADLINE_METRICS):
        values = np.array(
            [s.metric(metric).value if s.metric(metric).known else np.nan for _, s, _ in entries], dtype=float
        )
        lows = np.array([_or(s.metric(metric).low, v) for (_, s, _), v in zip(entries, values)], dtype=float)
        highs = np.array([_or(s.metric(metric).high, v) for (_, s, _), v in zip(entries, values)], dtype=float)
        errors = np.nan_to_num(np.array([values - lows, highs - values]).clip(min=0))
        axis.barh(
            np.arange(len(entries)), np.nan_to_num(values), xerr=errors, color=[c for _, _, c in entries], alpha=0.8
        )
        axis.axvline(CHANCE[metric], color="k", lw=0.8)
        axis.set_title(METRIC_LABELS[metric] + " (all prompts, cross-fitted)")
    axes[0].set_yticks(np.arange(len(entries)), [name for name, _, _ in entries])
    axes[0].invert_yaxis()
    return save(figure, folder, "comparison")


def _or(value, default):
    return default if value is None else value


def _grid_frame(result: RunResult, metric: Metric) -> pd.DataFrame:
    rows = [
        {"position": c.position, "layer": c.layer, "probe": c.probe, "value": c.val.metric(metric).value}
        for c in result.readout.sweep.grid
    ]
    return pd.DataFrame(rows)


@styled
def heatmap(result: RunResult, folder: Path, metric: Metric) -> Path:
    """The shown probe kind (the default, when swept) at every (position, layer): validation metric."""
    frame = _grid_frame(result, metric)
    kind = result.readout.sweep.shown_kind
    grid = frame[frame.probe == kind].pivot(index="position", columns="layer", values="value").astype(float)
    grid = grid.reindex(list(dict.fromkeys(frame.position)))
    center = CHANCE.get(metric, 0.0)
    figure, axis = new_figure(figsize=(max(6, 0.28 * grid.shape[1] + 2), 0.45 * grid.shape[0] + 1.2))
    spread = np.nanmax(np.abs(grid.values - center)) if np.isfinite(grid.values).any() else 1.0
    image = axis.imshow(
        grid.values, aspect="auto", cmap="RdBu_r", vmin=center - (spread or 1), vmax=center + (spread or 1)
    )
    axis.set_yticks(range(len(grid.index)), grid.index)
    step = max(1, grid.shape[1] // 16)
    axis.set_xticks(range(0, grid.shape[1], step), grid.columns[::step])
    axis.set_xlabel("layer (0 = embeddings)")
    axis.set_title(f"{kind}: validation {METRIC_LABELS[metric]}")
    figure.colorbar(image, ax=axis, fraction=0.03)
    return save(figure, folder, f"heatmap_{metric}")


@styled
def layer_curves(result: RunResult, folder: Path, metric: Metric) -> Path:
    """Validation metric by relative depth per position (the shown probe kind), with intervals over validation
    prompts."""
    sweep, n_layers = result.readout.sweep, max(result.model.n_layers, 1)
    kind = sweep.shown_kind
    figure, axis = new_figure(figsize=(7, 3.6))
    for position in dict.fromkeys(c.position for c in sweep.cells(kind)):
        cells = sweep.cells(kind, position)
        depth = np.array([c.layer / n_layers for c in cells])
        values = np.array([_or(c.val.metric(metric).value, np.nan) for c in cells], dtype=float)
        axis.plot(depth, values, label=position, lw=1.5)
        if any(c.val.metric(metric).low is not None for c in cells):  # the shown kind's cells carry intervals
            low = np.array([_or(c.val.metric(metric).low, np.nan) for c in cells], dtype=float)
            high = np.array([_or(c.val.metric(metric).high, np.nan) for c in cells], dtype=float)
            axis.fill_between(depth, low, high, alpha=0.15)
    axis.axhline(CHANCE[metric], color="k", lw=0.6)
    axis.set_xlabel("relative depth (layer / n_layers)")
    axis.set_ylabel(f"validation {METRIC_LABELS[metric]}")
    axis.set_title(f"{kind} probe by layer (validation prompts, 95% intervals)")
    axis.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    return save(figure, folder, f"layers_{metric}")


@styled
def scatter(result: RunResult, predictions: pd.DataFrame | None, folder: Path) -> Path | None:
    """Cross-fitted prediction against the rating, every example."""
    if predictions is None or "probe" not in predictions:
        return None
    y, p = predictions["rating"].to_numpy(float), predictions["probe"].to_numpy(float)
    figure, axis = new_figure(figsize=(4.6, 4.2))
    jitter = np.random.default_rng(0).uniform(-0.12, 0.12, len(y)) if len(np.unique(y)) <= 12 else 0
    axis.scatter(y + jitter, p, s=6, alpha=0.4)
    if np.ptp(y) > 0:
        slope, intercept = np.polyfit(y, p, 1)
        grid = np.linspace(y.min(), y.max(), 50)
        axis.plot(
            grid,
            slope * grid + intercept,
            color="C3",
            lw=1.5,
            label=f"fit (r = {result.readout.probe.scores.pearson.value:.2f})",
        )
        axis.legend()
    axis.set_xlabel(result.readout.target)
    axis.set_ylabel("cross-fitted probe prediction")
    return save(figure, folder, "scatter")


@styled
def probe_kinds(result: RunResult, folder: Path) -> Path | None:
    sweep = result.readout.sweep
    kinds = list(dict.fromkeys(c.probe for c in sweep.grid))
    if len(kinds) < 2:
        return None
    figure, axis = new_figure(figsize=(7, 3.4))
    n_layers = max(result.model.n_layers, 1)
    for kind in kinds:
        cells = sweep.cells(kind, sweep.best.position)
        axis.plot(
            [c.layer / n_layers for c in cells], [_or(c.val.pearson.value, np.nan) for c in cells], label=kind, lw=1.5
        )
    axis.set_xlabel("relative depth")
    axis.set_ylabel("validation Pearson r")
    axis.set_title(f"probe types at {sweep.best.position}")
    axis.legend()
    return save(figure, folder, "probe_kinds")


@styled
def sgd_grid(result: RunResult, folder: Path) -> Path | None:
    grid = result.readout.sgd_grid
    if not grid:
        return None
    figure, axis = new_figure(figsize=(5.5, 3.2))
    for schedule in dict.fromkeys(r.schedule for r in grid):
        rows = [r for r in grid if r.schedule == schedule]
        axis.plot([r.batch_size for r in rows], [_or(r.val_pearson, np.nan) for r in rows], marker="o", label=schedule)
    axis.set_xscale("log", base=2)
    axis.set_xlabel("batch size")
    axis.set_ylabel("validation Pearson r")
    axis.set_title("SGD probe settings at the best cell")
    axis.legend(fontsize=7)
    return save(figure, folder, "sgd_grid")


@styled
def ratings(result: RunResult, folder: Path) -> Path:
    figure, axis = new_figure(figsize=(4.6, 2.6))
    values = np.array([v for v, _ in result.data.rating_histogram])
    counts = [c for _, c in result.data.rating_histogram]
    width = 0.6 * (np.min(np.diff(values)) if len(values) > 1 else 1)
    axis.bar(values, counts, width=width)
    axis.set_xlabel("rating")
    axis.set_ylabel("responses")
    return save(figure, folder, "ratings")


@styled
def controls(result: RunResult, folder: Path) -> Path | None:
    """Each control's null interval against the real probe's value."""
    tests = [
        (f"{c.name}: {METRIC_LABELS[metric]}", test)
        for c in result.readout.comparisons
        if c.kind == "control"
        for metric, test in c.null.items()
        if test.observed is not None
    ]
    if not tests:
        return None
    figure, axis = new_figure(figsize=(7, 0.45 * len(tests) + 1))
    for row, (_name, test) in enumerate(tests):
        axis.plot([test.null_low, test.null_high], [row, row], color="C7", lw=6, alpha=0.6)
        axis.plot([test.observed], [row], "o", color="C3")
    axis.set_yticks(range(len(tests)), [label for label, _ in tests], fontsize=7)
    axis.set_title("controls: 95% of the shuffled-rating probes (grey) vs the real probe (red)")
    return save(figure, folder, "controls")


@styled
def prompt_only(result: RunResult, folder: Path) -> Path | None:
    po = result.prompt_only
    if po is None:
        return None
    figure, axis = new_figure(figsize=(7, 3.4))
    n_layers = max(result.model.n_layers, 1)
    for position in dict.fromkeys(c.position for c in po.curves):
        cells = [c for c in po.curves if c.position == position]
        depth = np.array([c.layer / n_layers for c in cells])
        axis.plot(depth, [_or(c.val.value, np.nan) for c in cells], label=f"probe at {position}", lw=1.5)
        axis.fill_between(
            depth, [_or(c.val.low, np.nan) for c in cells], [_or(c.val.high, np.nan) for c in cells], alpha=0.15
        )
    axis.axhline(0, color="k", lw=0.6)
    axis.set_xlabel("relative depth (layer / n_layers)")
    axis.set_ylabel("validation r with the prompt's mean rating")
    axis.set_title("expected reward from the user's input alone (validation prompts)")
    axis.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    return save(figure, folder, "prompt_only")


@styled
def decomposition(result: RunResult, folder: Path) -> Path | None:
    """Per position: cross-fitted r of all responses, of prompt means and of within-prompt deviations, with
    intervals."""
    rows = result.readout.decomposition
    if not rows:
        return None
    figure, axis = new_figure(figsize=(6.5, 3))
    x = np.arange(len(rows))
    for offset, field, label in (
        (-0.27, "response_r", "all responses"),
        (0, "between_prompt_r", "prompt means"),
        (0.27, "within_prompt_r", "within prompts"),
    ):
        intervals = [getattr(r, field) for r in rows]
        values = np.array([_or(i.value, np.nan) for i in intervals], dtype=float)
        errors = np.nan_to_num(
            np.array(
                [values - [_or(i.low, np.nan) for i in intervals], [_or(i.high, np.nan) for i in intervals] - values]
            )
        )
        axis.bar(x + offset, values, width=0.27, yerr=errors.clip(min=0), label=label)
    axis.set_xticks(x, [r.position for r in rows], fontsize=7)
    axis.axhline(0, color="k", lw=0.6)
    axis.set_ylabel("cross-fitted Pearson r")
    axis.set_title("where each position's r comes from (95% intervals over prompts)")
    axis.legend(fontsize=7)
    return save(figure, folder, "decomposition")


@styled
def trajectory(result: RunResult, folder: Path) -> Path | None:
    """Paired difference (better minus worse response to the same prompt) per bin, each probe x axis."""
    trajectory = result.trajectory
    if trajectory is None or not trajectory.curves:
        return None
    curves = trajectory.curves
    probes = list(dict.fromkeys(c.probe for c in curves))
    figure, axes = new_figure(len(probes), 2, figsize=(10, 3 * len(probes)), squeeze=False)
    for row, probe in enumerate(probes):
        for col, axis_name in enumerate(("tokens", "relative")):
            curve = trajectory.curve(probe, axis_name)
            axis = axes[row][col]
            if curve is None:
                continue
            mean = np.array([_or(d.value, np.nan) for d in curve.difference], dtype=float)
            axis.plot(curve.bins, mean, color="C0", label="better - worse")
            axis.fill_between(
                curve.bins,
                [_or(d.low, np.nan) for d in curve.difference],
                [_or(d.high, np.nan) for d in curve.difference],
                color="C0",
                alpha=0.2,
            )
            axis.axhline(0, color="k", lw=0.6)
            if curve.separates_from is not None:
                axis.axvline(curve.separates_from, color="k", ls=":", lw=1, label="separated from here on")
            axis.set_xlabel("token index" if axis_name == "tokens" else "relative position in the response")
            axis.set_ylabel("estimate difference")
            axis.set_title(f"{probe}, layer {trajectory.layer}", fontsize=8)
            axis.legend(fontsize=7)
    return save(figure, folder, "trajectory")


@styled
def compare_layers(result: CompareResult, folder: Path) -> Path:
    figure, axis = new_figure(figsize=(7, 3.6))
    for row in result.rows:
        if row.layer_curve:
            depth, values = zip(*row.layer_curve)
            where = f"{row.curve_probe} @ {row.best.position}" if row.best else row.curve_probe
            axis.plot(depth, [_or(v, np.nan) for v in values], label=f"{row.label}: {where}")
    axis.set_xlabel("relative depth (layer / n_layers)")
    axis.set_ylabel("validation Pearson r")
    axis.legend(fontsize=7)
    return save(figure, folder, "compare_layers")


# Every figure a run report can write (the report folder holds these PNGs and nothing else of the kind).
FIGURES = (
    "comparison",
    "heatmap_pearson",
    "heatmap_within_acc",
    "layers_pearson",
    "layers_within_acc",
    "scatter",
    "probe_kinds",
    "sgd_grid",
    "ratings",
    "controls",
    "prompt_only",
    "decomposition",
    "trajectory",
)
