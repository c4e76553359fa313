"""Write report pages from typed results: report.html (figures embedded) beside the PNGs.

All markup lives in the Jinja templates; this module only turns typed results into the rows and
strings the templates show.
"""

from __future__ import annotations

import base64
import json
from functools import lru_cache
from pathlib import Path

import jinja2
import numpy as np
import pandas as pd

from latent_reward.analysis.crossfit import PROBE_KIND
from latent_reward.evaluation.baselines import TFIDF_CAP_ROWS, TFIDF_TERMS
from latent_reward.evaluation.results import HEADLINE_METRICS, Comparison, Interval, Metric, PairedDifference
from latent_reward.experiments.compare import CompareResult, ModelDifference
from latent_reward.experiments.reward_model import ScoreResult
from latent_reward.experiments.run_result import RunResult
from latent_reward.io import atomic_write_text
from latent_reward.report import figures
from latent_reward.report.lens import colored_tokens
from latent_reward.report.pvalue import p_text


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("latent_reward.report", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
    )


def render(template: str, **context) -> str:
    return environment().get_template(template).render(**context)


def embed(path: Path | None) -> str | None:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode() if path else None


def _paired(test: PairedDifference) -> str:
    return f"{test.difference:+.3f}" + (f" (p = {test.p_value:.3f})" if test.p_value is not None else "")


def _difference(comparison: Comparison, metric: Metric) -> str:
    test = comparison.versus_probe.get(metric)
    if test is None:
        return ""
    return _difference_text(test)


def _difference_text(test: PairedDifference) -> str:
    """The difference, with its permutation p when it has one."""
    p = f" ({p_text(test.p_value, test.n_permutations)})" if test.p_value is not None else ""
    return f"{test.difference:+.3f}{p}"


def comparison_rows(result: RunResult) -> list[list[str]]:
    readout = result.readout
    rows = [
        [
            f"probe (cross-fitted {PROBE_KIND})",
            str(readout.probe.scores.pearson),
            str(readout.probe.scores.within_acc),
            "",
            "",
            str(readout.sweep.best_validation.pearson),
        ]
    ]
    for c in readout.comparisons + ([readout.within_probe] if readout.within_probe else []):
        rows.append(
            [
                c.name,
                str(c.scores.pearson),
                str(c.scores.within_acc),
                _difference(c, "pearson"),
                _difference(c, "within_acc"),
                str(c.validation.pearson) if c.validation else "",
            ]
        )
    return rows


def score_tables(scores: dict[str, ScoreResult]) -> list[dict]:
    tables = []
    for folder, score in scores.items():
        title = (
            f"{folder}: {Path(score.data).name} ({score.examples} responses, "
            f"{score.excluded_prompts} training/validation prompts excluded)"
        )
        if score.pair_accuracy:
            names = list(score.pair_accuracy[0].predictors)
            header = ["pair accuracy", "pairs compared", *names]
            rows = [
                [entry.subset, str(entry.pairs), *[str(entry.predictors.get(n, Interval())) for n in names]]
                for entry in score.pair_accuracy
            ]
            overall = score.pair_accuracy[0]
            if overall.predictor_pairs:
                scored = [str(overall.predictor_pairs.get(n, "")) for n in names]
                rows.append(["pairs scored (untruncated)", "", *scored])
            rows.append(
                [
                    "length-matched (< 10% apart)",
                    str(overall.length_matched_pairs),
                    *[str(overall.length_matched.get(n, Interval())) for n in names],
                ]
            )
            if overall.reference is not None:
                rows.append(
                    [
                        f"{overall.reference} minus it (paired)",
                        "",
                        *[_paired(overall.versus_probe[n]) if n in overall.versus_probe else "" for n in names],
                    ]
                )
            dropped = ", ".join(f"{n} {reason}" for reason, n in overall.not_compared.items()) or "none"
            unranked = "".join(
                f" The {name} reads {position}, before the response: the same for both sides of a pair, so it is not "
                "scored on pairs."
                for name, position in score.prompt_side.items()
            )
            tables.append(
                {
                    "title": title,
                    "header": header,
                    "rows": rows,
                    "note": f"A pair is a record whose two sides were judged against each other; records "
                    f"not compared: {dropped}. {overall.truncated_pairs} compared pairs have a side "
                    f"truncated at the token budget.{unranked} {score.log_probability_rule}",
                }
            )
        if score.transfer:
            rows = [
                [name, str(s.spearman), str(s.within_acc), str(s.within_spearman)]
                for name, s in score.transfer.predictors.items()
            ]
            tables.append(
                {
                    "title": title + ": how it ranks this dataset's ratings",
                    "header": ["predictor", "Spearman", "within-prompt acc.", "within-prompt Spearman"],
                    "rows": rows,
                }
            )
        if score.best_of_n:
            bon = score.best_of_n
            tables.append(
                {
                    "title": f"{folder}: best-of-{bon.samples_per_prompt:.1f} over {bon.prompts} prompts "
                    "(mean rating of the pick)",
                    "header": ["pick", "mean rating [95%]"],
                    "rows": [[k, str(v)] for k, v in bon.picks.items()],
                }
            )
    return tables


def _lens_blocks(result: RunResult) -> list[dict]:
    items = result.trajectory.lens if result.trajectory else []
    if not items:
        return []
    values = np.concatenate([item.estimates for item in items])
    low, high = np.quantile(values, [0.05, 0.95])
    return [
        {
            "caption": f"{item.kind}: rating {item.rating:g}, final estimate {item.estimates[-1]:.2f} ({item.id})",
            "tokens": colored_tokens(item.tokens, item.estimates, low, high),
        }
        for item in items
    ]


def _figures(result: RunResult, predictions: pd.DataFrame | None, folder: Path) -> dict[str, Path | None]:
    return {
        "comparison": figures.comparison(result, folder),
        **{f"heatmap_{metric}": figures.heatmap(result, folder, metric) for metric in HEADLINE_METRICS},
        **{f"layers_{metric}": figures.layer_curves(result, folder, metric) for metric in HEADLINE_METRICS},
        "scatter": figures.scatter(result, predictions, folder),
        "probe_kinds": figures.probe_kinds(result, folder),
        "sgd_grid": figures.sgd_grid(result, folder),
        "ratings": figures.ratings(result, folder),
        "controls": figures.controls(result, folder),
        "prompt_only": figures.prompt_only(result, folder),
        "decomposition": figures.decomposition(result, folder),
        "trajectory": figures.trajectory(result, folder),
    }


def write_report(result: RunResult, folder: str | Path, predictions: pd.DataFrame | None = None) -> Path:
    """report.html and its PNGs in `folder`; returns the HTML path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = _figures(result, predictions, folder)
    readout, po = result.readout, result.prompt_only
    summary_keys = (
        "source",
        "format",
        "records",
        "examples",
        "groups",
        "responses_per_group",
        "rating",
        "aspects",
        "splits",
        "skipped",
    )
    data = result.data.model_dump()
    html = render(
        "report.html.j2",
        model=result.model.model_dump(mode="json", exclude_none=True),
        data=data,
        data_name=Path(result.data.source).name,
        target=readout.target,
        split=readout.sweep.split,
        sketch=readout.sweep.sketch,
        tfidf_note=_tfidf_note(readout.tfidf_terms),
        answers=result.answers,
        figures={name: embed(path) for name, path in paths.items()},
        comparison_rows=comparison_rows(result),
        subset_rows=[
            [s.name, str(s.scores.n_examples), str(s.scores.pearson), str(s.scores.within_acc)] for s in readout.subsets
        ],
        seen_note=_seen_note(result),
        fold_cells="; ".join(f"fold {i + 1}: {c}" for i, c in enumerate(readout.fold_cells)),
        sgd_rows=[
            [r.batch_size, r.schedule, r.epochs_run, _fmt(r.val_pearson), _fmt(r.val_within_acc)]
            for r in readout.sgd_grid or []
        ],
        prompt_only=po,
        prompt_rows=[
            [r.prompt, f"{r.expected_reward:.2f}", f"{r.mean_rating:.2f}", r.responses]
            for r in (po.top_prompts + po.bottom_prompts if po else [])
        ],
        lens_blocks=_lens_blocks(result),
        score_tables=score_tables(result.scores),
        data_rows=[(k, data.get(k)) for k in summary_keys if data.get(k) not in (None, {}, [])]
        + [("truncated", result.store.stats.truncated if result.store.stats else None)],
        reproduce=json.dumps({"config": result.config, "fingerprint": result.store.fingerprint}, indent=1, default=str),
        timings=", ".join(f"{k} {v:.1f}" for k, v in result.timings.items()),
    )
    return atomic_write_text(folder / "report.html", html)


def _tfidf_note(terms: int | None) -> str:
    """A sentence for data large enough that the TF-IDF baselines kept fewer terms (`baselines.tfidf_terms`)."""
    if terms is None or terms >= TFIDF_TERMS:
        return ""
    return (
        f" With more than {TFIDF_CAP_ROWS:,} responses the TF-IDF baselines kept the {terms:,} most frequent terms per "
        f"column (not {TFIDF_TERMS:,}), which keeps their cost linear in the responses and can only weaken them."
    )


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _seen_note(result: RunResult) -> str:
    trained = result.model.post_training
    if not trained:
        return ""
    return (
        f"{result.model.name} was post-trained on {', '.join(trained)}: rows from that data are shown separately "
        "from the rest below, since a model may represent its own training pairs differently."
    )


def _training(row) -> str:
    record = row.training
    if not record:
        return "n/a"
    size = record.get("pairs_or_examples")
    return f"{record.get('method')} from {record.get('base_model')}, {record.get('steps')} steps" + (
        f", {size} rows" if size else ""
    )


def _change(difference: ModelDifference) -> str:
    """'r +0.012 [-0.03, +0.05], within-prompt acc. ...: no change shown' for one paired difference."""
    parts, shown = [], False
    labels: tuple[tuple[Metric, str], ...] = (("pearson", "r"), ("within_acc", "within-prompt acc."))
    for metric, label in labels:
        test = difference.difference.get(metric)
        if test is not None and test.difference.known:
            parts.append(f"{label} {test.difference:+.3f}")
            shown = shown or test.difference.excludes(0.0)
    return ", ".join(parts) + ("" if shown else ": no change shown") + f" ({difference.prompts} prompts)"


def compare_answers(result: CompareResult) -> list[tuple[str, str]]:
    """What changed with each stage (each checkpoint minus its starting model) and offline vs online, with paired
    intervals."""
    out = [(f"{d.first} minus {d.second}", _change(d)) for d in result.stages]
    if result.online_minus_offline is not None:
        out.append(("Online minus offline (DPO) training", _change(result.online_minus_offline)))
    return out


def write_compare(result: CompareResult, folder: str | Path) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    image = embed(figures.compare_layers(result, folder))
    header = [
        "run",
        "post-training here",
        "cell (validation)",
        "r (cross-fitted)",
        "within-prompt probe's within-prompt acc.",
        "prompt-only r",
        "strongest baseline r",
        "random-init r",
        "pair accuracy: within-prompt probe",
        "pair accuracy: DPO implicit reward (same score run)",
    ]
    rows = [
        [
            row.label,
            _training(row),
            str(row.best) if row.best else "n/a",
            str(row.probe.pearson),
            str(row.within_acc),
            str(row.prompt_only) if row.prompt_only else "n/a",
            f"{row.strongest_baseline}: {row.strongest_baseline_scores.pearson}"
            if row.strongest_baseline and row.strongest_baseline_scores
            else "n/a",
            str(row.random_init.pearson) if row.random_init else "n/a",
            str(row.pair_accuracy) if row.pair_accuracy else "n/a",
            str(row.implicit_reward_accuracy) if row.implicit_reward_accuracy else "n/a",
        ]
        for row in result.rows
    ]
    differences = [
        [
            d.first,
            d.second,
            str(d.examples),
            str(d.prompts),
            *[_difference_text(d.difference[m]) if m in d.difference else "n/a" for m in HEADLINE_METRICS],
        ]
        for d in result.differences
    ]
    measures = list(dict.fromkeys(name for row in result.rows for name in row.conversation))
    conversation = [
        [row.label, *[str(row.conversation[m]) if m in row.conversation else "n/a" for m in measures]]
        for row in result.rows
        if row.conversation
    ]
    html = render(
        "compare.html.j2",
        header=header,
        rows=rows,
        image=image,
        differences=differences,
        caveat=result.caveat,
        answers=compare_answers(result),
        conversation_header=measures,
        conversation=conversation,
    )
    return atomic_write_text(folder / "compare.html", html)


def write_lens_page(path: str | Path, title: str, items: list[dict], low: float, high: float) -> Path:
    """A standalone page: one block per item with `tokens`, `estimates` and `caption`."""
    blocks = [
        {"caption": item.get("caption", ""), "tokens": colored_tokens(item["tokens"], item["estimates"], low, high)}
        for item in items
    ]
    return atomic_write_text(path, render("lens_page.html.j2", title=title, items=blocks, low=low, high=high))
