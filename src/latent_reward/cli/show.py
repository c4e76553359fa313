"""What the command line prints: tables and one-line summaries of typed results."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table
from rich.text import Text

from latent_reward.data.formats import Dataset
from latent_reward.data.summary import summarize

if TYPE_CHECKING:
    from latent_reward.experiments.run_result import RunResult
    from latent_reward.probes import Probe
    from latent_reward.workflows.base import Outcome


def show_dataset(console: Console, dataset: Dataset) -> None:
    summary = summarize(dataset)
    table = Table("", "", show_header=False)
    for key in (
        "source",
        "format",
        "records",
        "examples",
        "groups",
        "responses_per_group",
        "rating",
        "aspects",
        "generators",
        "multi_turn",
        "splits",
        "skipped",
    ):
        table.add_row(key, str(getattr(summary, key)))
    console.print(table)
    peak = max(count for _, count in summary.rating_histogram)
    console.print("[bold]rating histogram[/bold]")
    for value, count in summary.rating_histogram:
        console.print(f"{value:>8.3g} {count:>7} " + ("#" * max(1, round(40 * count / peak)) if count else ""))
    for example in dataset.examples[:2]:
        console.rule(f"{example.id}  rating {example.rating:g}  group {example.group}")
        for message in example.messages:
            text = message["content"]
            console.print(f"[bold]{message['role']}:[/bold] ", end="")
            console.print(text[:400] + ("..." if len(text) > 400 else ""), markup=False, highlight=False)


def show_headline(console: Console, outcome: Outcome[RunResult]) -> None:
    """The report's headline: the within-prompt probe's within-prompt accuracy (the pooled probe's where there is no
    within-prompt probe), the pooled probe's r, and the verdict."""
    readout = outcome.result.readout
    best = readout.sweep.best
    within = readout.within_probe
    accuracy = (
        f"within-prompt probe's within-prompt accuracy = {within.scores.within_acc}"
        if within is not None
        else f"within-prompt accuracy = {readout.probe.scores.within_acc}"
    )
    console.print(
        f"cross-fitted over {readout.probe.scores.n_prompts} prompts: {accuracy}; pooled probe r = "
        f"{readout.probe.scores.pearson}; verdict: {readout.verdict.kind}"
    )
    console.print(f"validation-best cell: {best} (test r = {readout.sweep.best_test.pearson})")
    within_folder = outcome.files.get("within_probe")
    console.print(
        f"report: {outcome.report}\nbest probe: {outcome.files['best_probe']}"
        + (f"\nwithin-prompt probe: {within_folder}" if within_folder else "")
    )


def show_score(console: Console, result, out: Path) -> None:
    console.print(
        f"scored {result.examples} responses from {result.data} ({result.excluded_prompts} prompts the probe was "
        "trained "
        f"or validated on excluded) with {result.probe.position} layer {result.probe.layer} of "
        f"{result.probe.model}"
    )
    for entry in result.pair_accuracy:
        console.print(
            f"{entry.subset} ({entry.pairs} pairs compared): "
            + ", ".join(
                f"{k} {v}" + (f" ({entry.predictor_pairs[k]} untruncated pairs)" if k in entry.predictor_pairs else "")
                for k, v in entry.predictors.items()
            )
        )
    if result.prompt_side and (result.pair_accuracy or result.best_of_n):
        console.print(
            "not scored on responses to the same prompt: "
            + ", ".join(f"{name} (reads {at}, before the response)" for name, at in result.prompt_side.items())
        )
    if result.pair_accuracy and result.pair_accuracy[0].not_compared:
        dropped = result.pair_accuracy[0].not_compared
        console.print("records not compared: " + ", ".join(f"{k} {v}" for k, v in dropped.items()))
    if result.pair_accuracy and result.pair_accuracy[0].length_matched_pairs:
        overall = result.pair_accuracy[0]
        console.print(
            f"length-matched pairs ({overall.length_matched_pairs}): "
            + ", ".join(f"{k} {v}" for k, v in overall.length_matched.items())
        )
    if result.transfer:
        probe = result.transfer.predictors[result.probes[0]]
        console.print(
            f"the {result.probes[0]} ranks the ratings with Spearman {probe.spearman}, within-prompt "
            f"accuracy {probe.within_acc} on {result.transfer.examples} responses"
        )
    if result.best_of_n:
        console.print(
            f"best-of-{result.best_of_n.samples_per_prompt:.1f} over {result.best_of_n.prompts} prompts, mean rating "
            "of the pick: " + ", ".join(f"{k} {v}" for k, v in result.best_of_n.picks.items())
        )
    console.print(f"written: {out / 'scores.csv'}, {out / 'score.json'}")


def stream_tokens(console: Console, probe: Probe):
    """A callback that prints each generated token on the color of its estimate (on the probe's rating range)."""
    from latent_reward.report.lens import color

    low, high = probe.info.rating_range or (0.0, 1.0)

    def show(token: str, estimate: float) -> None:
        r, g, b = color(estimate, low, high)
        console.print(Text(token, style=f"black on rgb({r},{g},{b})"), end="")

    return show
