"""`latent-reward compare`: several runs (models, or datasets) side by side."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

import pandas as pd

from latent_reward.activations.store import atomic_write_text
from latent_reward.errors import UserError

# What a comparison of a handful of small bundled models can and cannot say, stated in every comparison page.
CAVEAT = (
    "These models differ in more than their post-training: size, pretraining data, tokenizer and chat format all change "
    "together, and a base model is read through a plain fallback format it was never tuned on. A difference in probe "
    "accuracy is therefore a difference between these checkpoints, not an effect of DPO. None of the bundled models was "
    "trained online (RL with a reward model queried on its own samples), so this comparison cannot answer whether online "
    "training would make a model represent expected reward more strongly; it can show whether an offline-DPO model's "
    "readout exceeds a base model's and the text-only baselines on the same data."
)


def _load_run(folder: Path) -> tuple[dict[str, Any], Path]:
    for candidate in (folder / "report" / "results.json", folder / "results.json"):
        if candidate.exists():
            return json.loads(candidate.read_text()), candidate.parent
    raise UserError(f"{folder} holds no results.json; give folders written by `latent-reward run` or `sweep`")


def _pair_accuracy(folder: Path) -> float | None:
    for path in sorted(folder.glob("*/score.json")):
        score = json.loads(path.read_text())
        if "pair_accuracy" in score:
            return score["pair_accuracy"]["all"]["probe"]["value"]
    return None


def _fmt(entry: dict[str, Any] | None) -> str:
    if not entry or entry.get("value") is None:
        return "n/a"
    return f"{entry['value']:.3f} [{entry['low']:.3f}, {entry['high']:.3f}]"


def compare_runs(folders: list[Path], out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, curves = [], []
    for folder in folders:
        results, report = _load_run(Path(folder))
        best, model = results["best"], results["model"]
        label = f"{model['name']} ({Path(str(results.get('data', {}).get('source', ''))).name})"
        comparisons = {k: v for k, v in results["comparisons"].items() if v.get("kind") == "baseline"}
        strongest = max(comparisons.items(), key=lambda kv: kv[1]["test"].get("pearson") or -1, default=(None, None))
        prompt_only = results.get("prompt_only") or {}
        rows.append({
            "run": label,
            "best cell": f"{best['probe']} @ {best['position']} L{best['layer']} ({best['relative_depth']:.0%})",
            "test r": _fmt(best["test_ci"].get("pearson")),
            "within-prompt acc.": _fmt(best["test_ci"].get("within_acc")),
            "prompt-only r": _fmt((prompt_only.get("best") or {}).get("test_pearson")),
            "strongest baseline r": f"{strongest[0]}: {_fmt(strongest[1].get('test_ci', {}).get('pearson'))}" if strongest[0] else "n/a",
            "random-init r": _fmt(results["comparisons"].get("random-init model", {}).get("test_ci", {}).get("pearson")),
            "pair accuracy": f"{value:.3f}" if (value := _pair_accuracy(Path(folder))) is not None else "n/a",
        })
        layer_curves = pd.read_csv(report / "layer_curves.csv")
        rows_at = layer_curves[layer_curves.position == best["position"]]
        curves.append((label, rows_at["layer"] / model["n_layers"], rows_at["pearson"], best["position"]))
    out.mkdir(parents=True, exist_ok=True)
    figure, axis = plt.subplots(figsize=(7, 3.6))
    for label, depth, r, position in curves:
        axis.plot(depth, r, label=f"{label} @ {position}")
    axis.set_xlabel("relative depth (layer / n_layers)")
    axis.set_ylabel("test Pearson r (ridge)")
    axis.legend(fontsize=7)
    figure.savefig(out / "compare_layers.png", bbox_inches="tight")
    plt.close(figure)
    table = pd.DataFrame(rows)
    table.to_csv(out / "compare.csv", index=False)
    atomic_write_text(out / "compare.json", json.dumps({"runs": rows, "caveat": CAVEAT}, indent=1))
    image = base64.b64encode((out / "compare_layers.png").read_bytes()).decode()
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>latent-reward comparison</title></head>"
            f"<body style='font:15px system-ui;max-width:1080px;margin:2em auto'><h1>Comparing runs</h1>"
            f"{table.to_html(index=False, escape=True)}<img src='data:image/png;base64,{image}' style='max-width:100%'>"
            f"<h2>What this comparison can and cannot say</h2><p>{html.escape(CAVEAT)}</p></body></html>")
    atomic_write_text(out / "compare.html", page)
    return out / "compare.html"
