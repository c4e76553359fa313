"""Tidy CSV tables of a run, beside its report: the layer x position grid and every comparison, one row per
predictor and metric (pandas reads them straight into a plot or a paper's table)."""

from __future__ import annotations

import pandas as pd

from latent_reward.analysis.sweep import SweepResult
from latent_reward.evaluation.results import METRICS, Comparison
from latent_reward.experiments.readout import ReadoutResult

GRID_FILE = "grid.csv"
COMPARISONS_FILE = "comparisons.csv"


def grid_frame(sweep: SweepResult) -> pd.DataFrame:
    """Every probe kind x position x layer of the sweep with each metric on the validation prompts."""
    return pd.DataFrame(
        [
            {
                "probe": cell.probe,
                "position": cell.position,
                "layer": cell.layer,
                **{f"val_{metric}": cell.val.metric(metric).value for metric in METRICS},
            }
            for cell in sweep.grid
        ]
    )


def comparisons_frame(readout: ReadoutResult) -> pd.DataFrame:
    """One row per predictor (the probes, every baseline and control) and metric: its value with the interval, and,
    where it was tested against the probe, the paired difference (probe minus it) with its interval and p-value."""
    predictors = [readout.probe, *([readout.within_probe] if readout.within_probe else []), *readout.comparisons]
    return pd.DataFrame([row for comparison in predictors for row in _rows(comparison)])


def _rows(comparison: Comparison) -> list[dict]:
    rows = []
    for metric in METRICS:
        interval = comparison.scores.metric(metric)
        if not interval.known:
            continue
        versus = comparison.versus_probe.get(metric)
        null = comparison.null.get(metric)
        rows.append(
            {
                "predictor": comparison.name,
                "kind": comparison.kind,
                "metric": metric,
                "position": comparison.cell.position if comparison.cell else None,
                "layer": comparison.cell.layer if comparison.cell else None,
                "value": interval.value,
                "low": interval.low,
                "high": interval.high,
                "probe_minus": versus.difference.value if versus else None,
                "probe_minus_low": versus.difference.low if versus else None,
                "probe_minus_high": versus.difference.high if versus else None,
                "p_value": versus.p_value if versus else (null.p_value if null else None),
            }
        )
    return rows
