"""The report's plain-sentence answers, each with its number, interval and strongest baseline."""

from __future__ import annotations

from typing import Any

import numpy as np

from latent_reward.experiments.readout import Readout


def _ci(entry: dict[str, Any], metric: str) -> str:
    value = entry["test"].get(metric)
    interval = entry.get("test_ci", {}).get(metric)
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "n/a"
    return f"{value:.3f} [{interval['low']:.3f}, {interval['high']:.3f}]" if interval else f"{value:.3f}"


def _strongest(readout: Readout, metric: str) -> tuple[str, dict[str, Any]] | None:
    candidates = [(name, c) for name, c in readout.comparisons.items()
                  if c["kind"] == "baseline" and not np.isnan(c["test"].get(metric, np.nan))]
    return max(candidates, key=lambda item: item[1]["test"][metric]) if candidates else None


def answers(readout: Readout, model_name: str, n_layers: int) -> list[dict[str, str]]:
    best = readout.sweep.best
    probe_entry = {"test": best["test"], "test_ci": best["test_ci"]}
    out = []

    strongest_r, strongest_acc = _strongest(readout, "pearson"), _strongest(readout, "within_acc")
    within_control = readout.comparisons.get("control: ratings shuffled within prompt", {}).get("test", {})
    global_control = readout.comparisons.get("control: ratings shuffled across responses", {}).get("test", {})
    random_init = readout.comparisons.get("random-init model")
    text = (f"The best cell (chosen on validation) is a {best['probe']} probe at {best['position']}, layer {best['layer']} "
            f"of {n_layers}: test Pearson r = {_ci(probe_entry, 'pearson')}, within-prompt accuracy = "
            f"{_ci(probe_entry, 'within_acc')} (chance 0.5).")
    if strongest_r:
        text += f" Strongest baseline by r: {strongest_r[0]}, r = {_ci(strongest_r[1], 'pearson')}."
    if strongest_acc:
        text += f" Strongest by within-prompt accuracy: {strongest_acc[0]}, {_ci(strongest_acc[1], 'within_acc')}."
    if random_init:
        text += f" A randomly initialised copy of the model reaches r = {_ci(random_init, 'pearson')}."
    if within_control and global_control:
        text += (f" Trained on controls, the same probe gets r = {global_control['pearson']:.3f} with ratings shuffled across "
                 f"all responses, and within-prompt accuracy {within_control['within_acc']:.3f} (chance 0.5) with ratings "
                 f"shuffled within each prompt (r = {within_control['pearson']:.3f} there: each prompt's mean rating is kept).")
    text += f" Controlling for response length, the probe's partial correlation with the rating is {readout.partial_r_given_length:.3f}."
    verdict = _verdict(best, strongest_r, strongest_acc)
    out.append({"question": f"Does {model_name} encode the reward of its responses?", "answer": verdict + " " + text})

    curves = readout.sweep.curves
    if not curves.empty:
        peaks = curves.loc[curves.groupby("position")["pearson"].idxmax()]
        per_position = "; ".join(f"{row.position}: layer {int(row.layer)} ({row.layer / n_layers:.0%} of depth, r = {row.pearson:.3f})"
                                 for row in peaks.itertuples())
        layer0 = readout.comparisons.get("layer 0 (embeddings)")
        where = (f"The readout peaks at {best['relative_depth']:.0%} of the model's depth at {best['position']}. "
                 f"Peak per position (test r): {per_position}.")
        if layer0:
            where += f" At layer 0 (token embeddings, no context) r = {_ci(layer0, 'pearson')}."
        out.append({"question": "Where is it?", "answer": where})

    if readout.prompt_only is not None:
        out.append({"question": "Does the model expect a reward before it has written anything?",
                    "answer": prompt_only_answer(readout)})

    if readout.trajectory is not None:
        result = readout.trajectory
        parts = [f"{name}: {'separates from ' + format(value, '.0%') + ' of the response on' if value is not None else 'does not separate'}"
                 for name, value in result.separation.items()]
        out.append({"question": "How does the expected reward move token by token?", "answer": (
            f"At layer {result.layer}, over {result.n_test} held-out responses, the estimate for high- and low-rated "
            f"responses (top vs bottom third; 95% intervals do not overlap): " + "; ".join(parts) + ".")})

    table = readout.sweep.table
    kinds = table.probe.unique()
    if len(kinds) > 1:
        best_by_kind = table.loc[table.groupby("probe")["val_pearson"].idxmax()]
        summary = "; ".join(f"{row.probe}: test r {row.test_pearson:.3f} at {row.position} layer {int(row.layer)}"
                            for row in best_by_kind.itertuples())
        linear = best_by_kind[best_by_kind.probe.isin(["ridge", "sgd"])]["test_pearson"].max()
        mlp = best_by_kind[best_by_kind.probe == "mlp"]["test_pearson"].max() if "mlp" in kinds else np.nan
        interval = best["test_ci"]["pearson"]
        half_width = (interval["high"] - interval["low"]) / 2
        comparison = (f" MLP {mlp:.3f} vs best linear {linear:.3f}: a difference "
                      f"{'within' if abs(mlp - linear) < half_width else 'beyond'} the best cell's 95% interval half-width "
                      f"({half_width:.2f})." if not np.isnan(mlp) else "")
        out.append({"question": "Linear or nonlinear?", "answer": f"Best cell per probe type (chosen on validation): {summary}.{comparison}"})
    grid = readout.sgd_grid
    if grid is not None and not grid.empty:
        by_batch = grid.groupby("batch_size")["val_pearson"].mean()
        by_schedule = grid.groupby("schedule")["val_pearson"].mean()
        top = grid.loc[grid["val_pearson"].idxmax()]
        out.append({"question": "What did the SGD settings change?", "answer": (
            f"At the best cell, mean validation r by batch size: {', '.join(f'{b}: {v:.3f}' for b, v in by_batch.items())}; "
            f"by schedule: {', '.join(f'{s}: {v:.3f}' for s, v in by_schedule.items())}. The best setting "
            f"(batch {int(top.batch_size)}, {top.schedule}) reaches test r {top.test_pearson:.3f}; the closed-form ridge probe "
            f"at the same cell reaches {_ridge_at_best(readout):.3f}.")})
    return out


def _ridge_at_best(readout: Readout) -> float:
    best, table = readout.sweep.best, readout.sweep.table
    rows = table[(table.probe == "ridge") & (table.position == best["position"]) & (table.layer == best["layer"])]
    return float(rows["test_pearson"].iloc[0]) if len(rows) else float("nan")


def _verdict(best: dict[str, Any], strongest_r, strongest_acc) -> str:
    probe_r, probe_low = best["test"]["pearson"], best["test_ci"]["pearson"]["low"]
    if probe_low <= 0:
        return "No clear evidence: the probe's interval includes zero."
    # A baseline "matches" the probe when its point estimate reaches the probe's lower 95% bound.
    matched = []
    if strongest_r and strongest_r[1]["test"]["pearson"] >= probe_low:
        matched.append(strongest_r[0])
    accuracy_low = best["test_ci"].get("within_acc", {}).get("low")
    if strongest_acc and accuracy_low is not None and strongest_acc[1]["test"]["within_acc"] >= accuracy_low:
        matched.append(strongest_acc[0])
    if matched:
        return (f"The states predict the rating (r = {probe_r:.2f}), but a baseline without the model's states "
                f"matches the probe ({', '.join(sorted(set(matched)))}): this alone does not show the model represents reward.")
    return f"Yes, beyond every baseline run here: the states predict the rating (r = {probe_r:.2f})."


def prompt_only_answer(readout: Readout) -> str:
    result = readout.prompt_only
    best = result.best
    r = best["test_pearson"]
    text = (f"From the states before the response, a ridge probe at {best['position']}, layer {best['layer']} "
            f"({best['relative_depth']:.0%} of depth), predicts a held-out prompt's mean rating with r = {r['value']:.3f} "
            f"[{r['low']:.3f}, {r['high']:.3f}] ({result.n_prompts['test']} test prompts).")
    if result.baselines:
        text += " Prompt-only baselines: " + "; ".join(
            f"{name} r = {b['value']:.3f} [{b['low']:.3f}, {b['high']:.3f}]" for name, b in result.baselines.items()) + "."
    text += f" {result.variance_between_fraction:.0%} of the rating's variance lies between prompts."
    if not result.decomposition.empty:
        text += " Response-level probes, split into prompt means and within-prompt deviations (test r): " + "; ".join(
            f"{row.position} (layer {int(row.layer)}): {row.between_prompt_r:.3f} between, {row.within_prompt_r:.3f} within"
            for row in result.decomposition.itertuples()) + "."
    return text
