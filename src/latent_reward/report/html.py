"""Write the report folder: report.html (figures embedded), PNGs, results.json and CSV tables."""

from __future__ import annotations

import base64
import json
import math
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
import pandas as pd

from latent_reward.activations.store import ActivationStore, atomic_write_text
from latent_reward.experiments.readout import Readout
from latent_reward.report import figures
from latent_reward.report.answers import answers
from latent_reward.report.lens import lens_html


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return None if math.isnan(float(value)) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def write_json(path: Path, payload: Any) -> None:
    atomic_write_text(path, json.dumps(_jsonable(payload), indent=1))


def _fmt(entry: dict[str, Any], metric: str) -> tuple[str, str]:
    value = entry["test"].get(metric)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a", ""
    interval = entry.get("test_ci", {}).get(metric)
    return f"{value:.3f}", (f"[{interval['low']:.3f}, {interval['high']:.3f}]" if interval else "")


def _prompt_only_json(readout: Readout) -> dict[str, Any] | None:
    result = readout.prompt_only
    if result is None:
        return None
    return {"best": result.best, "baselines": result.baselines, "variance_between_fraction": result.variance_between_fraction,
            "decomposition": result.decomposition.to_dict(orient="records"), "top_prompts": result.top_prompts,
            "bottom_prompts": result.bottom_prompts, "n_prompts": result.n_prompts}


def _trajectory_json(readout: Readout) -> dict[str, Any] | None:
    result = readout.trajectory
    if result is None:
        return None
    return {"layer": result.layer, "separation": result.separation, "n_test": result.n_test, "n_train": result.n_train,
            "lens": result.lens}


def _lens_blocks(readout: Readout) -> list[dict[str, str]]:
    result = readout.trajectory
    if result is None or not result.lens:
        return []
    values = np.concatenate([item["estimates"] for item in result.lens])
    low, high = np.quantile(values, [0.05, 0.95])
    return [{"caption": f"{item['kind']}: rating {item['rating']:g}, final estimate {item['estimates'][-1]:.2f} ({item['id']})",
             "html": lens_html(item["tokens"], item["estimates"], low, high)} for item in result.lens]


def _score_tables(run_folder: Path) -> list[dict[str, Any]]:
    """`score` results saved inside the run folder (pairs, best-of-n, transfer), as report tables."""
    tables = []
    for path in sorted(run_folder.glob("*/score.json")):
        score = json.loads(path.read_text())
        title = f"{Path(str(score.get('data'))).name} ({score.get('examples')} responses)"
        rows = []
        for subset, entry in (score.get("pair_accuracy") or {}).items():
            rows.append([f"pair accuracy: {subset} ({entry['pairs']} pairs)"] + [
                f"{k} {v['value']:.3f} [{v['low']:.3f}, {v['high']:.3f}]" for k, v in entry.items() if k != "pairs"])
        for name, entry in (score.get("transfer") or {}).items():
            interval = entry["test_ci"].get("pearson", {})
            rows.append([f"tracks ratings: {name}", f"r {entry['test']['pearson']:.3f} [{interval.get('low', float('nan')):.3f}, "
                         f"{interval.get('high', float('nan')):.3f}]", f"within-prompt acc. {entry['test']['within_acc']:.3f}"])
        bon = score.get("best_of_n")
        if bon:
            rows.append([f"best-of-{bon['samples_per_prompt']:.1f} over {bon['prompts']} prompts (mean rating of the pick)"] + [
                f"{k} {v['value']:.3f} [{v['low']:.3f}, {v['high']:.3f}]" for k, v in bon.items() if isinstance(v, dict)])
        tables.append({"title": title, "rows": rows})
    return tables


def build_results(readout: Readout, store: ActivationStore, extra: dict[str, Any]) -> dict[str, Any]:
    model = store.manifest["model"]
    masks = readout.sweep.masks
    return _jsonable({
        "answers": answers(readout, model["name"], model["n_layers"]),
        "best": readout.sweep.best,
        "comparisons": readout.comparisons,
        "partial_r_given_length": readout.partial_r_given_length,
        "sgd_grid": readout.sgd_grid.to_dict(orient="records") if readout.sgd_grid is not None else None,
        "prompt_only": _prompt_only_json(readout),
        "trajectory": _trajectory_json(readout),
        "splits": {name: int(mask.sum()) for name, mask in masks.items()},
        "model": model,
        "store": {"folder": str(store.folder), "fingerprint": store.manifest["fingerprint"], "stats": store.manifest.get("stats")},
        "timings": readout.timings,
        **extra,
    })


def write_report(readout: Readout, store: ActivationStore, out: str | Path, data_summary: dict[str, Any],
                 extra: dict[str, Any] | None = None) -> Path:
    """Write the report into `out`; returns the HTML path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    results = build_results(readout, store, {"data": data_summary, **(extra or {})})
    table = readout.sweep.table
    paths = {
        "comparison": figures.comparison_bars(readout, out, "comparison"),
        "heatmap_pearson": figures.heatmap(table, "test_pearson", "ridge: test Pearson r", out, "heatmap_pearson"),
        "heatmap_within": figures.heatmap(table, "test_within_acc", "ridge: test within-prompt accuracy", out, "heatmap_within_acc", 0.5),
        "curves_pearson": figures.layer_curves(readout, "pearson", out, "layers_pearson"),
        "curves_within": figures.layer_curves(readout, "within_acc", out, "layers_within_acc"),
        "scatter": figures.scatter(readout, out, "scatter"),
        "probe_kinds": figures.probe_kinds(readout, out, "probe_kinds"),
        "sgd_grid": figures.sgd_grid(readout, out, "sgd_grid"),
        "ratings": figures.rating_histogram(store.ratings, out, "ratings"),
        "prompt_only": figures.prompt_only_curves(readout, out, "prompt_only"),
        "decomposition": figures.decomposition_bars(readout, out, "decomposition"),
        "trajectory": figures.trajectory_curves(readout, out, "trajectory"),
    }
    embedded = {name: ("data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()) if path else None
                for name, path in paths.items()}
    best = readout.sweep.best
    rows = [{"name": f"probe: {best['probe']} @ {best['position']} layer {best['layer']}", "entry": best}]
    rows += [{"name": name, "entry": entry} for name, entry in readout.comparisons.items()]
    comparison_rows = []
    for row in rows:
        r, r_ci = _fmt(row["entry"], "pearson")
        acc, acc_ci = _fmt(row["entry"], "within_acc")
        comparison_rows.append({"name": row["name"], "r": r, "r_ci": r_ci, "acc": acc, "acc_ci": acc_ci})
    pd.DataFrame(comparison_rows).to_csv(out / "comparisons.csv", index=False)
    table.to_csv(out / "sweep.csv", index=False)
    readout.sweep.curves.to_csv(out / "layer_curves.csv", index=False)
    if readout.sgd_grid is not None:
        readout.sgd_grid.to_csv(out / "sgd_grid.csv", index=False)
    if readout.prompt_only is not None:
        readout.prompt_only.curves.to_csv(out / "prompt_only_curves.csv", index=False)
    environment = jinja2.Environment(loader=jinja2.PackageLoader("latent_reward.report", "templates"),
                                     autoescape=jinja2.select_autoescape(["html", "j2"]))
    summary_keys = ("source", "format", "records", "examples", "groups", "responses_per_group", "rating", "aspects", "skipped")
    html = environment.get_template("report.html.j2").render(
        model=results["model"], answers=results["answers"], figures=embedded, comparison_rows=comparison_rows,
        sgd_rows=results["sgd_grid"] or [], splits=results["splits"], prompt_only=results["prompt_only"],
        lens_blocks=_lens_blocks(readout), score_tables=_score_tables(out.parent),
        data={**data_summary, "source_name": Path(str(data_summary.get("source", "data"))).name},
        data_rows=[(k, data_summary.get(k)) for k in summary_keys if k in data_summary] + [
            ("truncated", (store.manifest.get("stats") or {}).get("truncated"))],
        reproduce=json.dumps({k: results.get(k) for k in ("command", "options", "versions")} | {"fingerprint": results["store"]["fingerprint"]}, indent=1),
        timings=", ".join(f"{k} {v:.1f}" for k, v in results["timings"].items()),
    )
    write_json(out / "results.json", results)
    atomic_write_text(out / "report.html", html)
    return out / "report.html"
