"""The conversation page: does the model expect reward from the user's input, do its replies lead to user turns it
expects more reward for than counterfactual replies, do redirecting refusals do that more than plain ones?"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from latent_reward.io import atomic_write_text
from latent_reward.report import figures
from latent_reward.report.html import embed, render
from latent_reward.report.pvalue import holm_text, p_text


def _sentence(measure, primary: bool = False) -> str:
    """The measure with its interval and p: read on its 95% interval if it is the primary contrast, else on its
    Holm-adjusted p."""
    interval = measure.value
    if not interval.known:
        return f"{measure.name}: n/a"
    if primary or measure.p_holm is None:
        verdict = (
            "positive"
            if interval.above(0)
            else "negative"
            if interval.high is not None and interval.high < 0
            else "no difference shown"
        )
        p = f"; {p_text(measure.p_value, measure.permutations)}" if measure.p_value is not None else ""
    else:
        shown = measure.p_holm <= 0.05
        verdict = (
            "positive"
            if shown and interval.value > 0
            else "negative"
            if shown and interval.value < 0
            else "no difference shown"
        )
        p = f"; {holm_text(measure.p_value, measure.p_holm, measure.permutations)}"
    return f"{measure.name}: {interval:+.3f} ({verdict}{p}; {measure.prompts} prompts)"


def answers(report) -> list[tuple[str, str]]:
    result = report.result
    primary = next((m for m in result.behaviour if m.name == result.primary), None)
    rest = [m for m in result.behaviour if m.name != result.primary]
    out = []
    if primary is not None:
        tokens = result.reply_tokens
        lengths = (
            f" (replies of {tokens['refusal']}, {tokens['redirect']} and {tokens['padded refusal']} tokens)"
            if {"refusal", "redirect", "padded refusal"} <= set(tokens)
            else ""
        )
        out.append(
            (
                "Primary contrast, declared in advance: does a reply that steers the user toward a request the "
                "model can serve lead to user turns it expects more reward for?",
                f"{_sentence(primary, primary=True)}. The redirect is compared with the plain refusal padded with "
                f"neutral filler to the redirect's token count{lengths}, since V reads length; the unpadded "
                "comparison and the padding's own effect are secondary below.",
            )
        )
    out.append(
        (
            "Do the model's replies lead to user turns it expects more reward for than other replies? (secondary, "
            "Holm-adjusted over every secondary contrast)",
            "; ".join(_sentence(m) for m in rest) + ".",
        )
    )
    if result.preference is not None:
        out.append(
            (
                "Does the model prefer replies whose follow-ups it expects to be rewarded?",
                _sentence(result.preference) + ". Zero is what a model indifferent to the user's next turn gives; "
                "a positive value is what steering the user would look like.",
            )
        )
    if result.user_model:
        out.append(
            (
                "What does the model expect the user to say next?",
                "; ".join(_sentence(m) for m in result.user_model) + ".",
            )
        )
    xs = report.xstest
    if xs is not None:
        styles = "; ".join(
            f"{label} prompts: " + ", ".join(f"{k} {v}" for k, v in counts.items())
            for label, counts in xs.own_styles.items()
        )
        measures = (xs.v_partial_minus_full, xs.logprob_partial_minus_full, xs.probe_partial_minus_full)
        out.append(
            (
                "Refusal or redirect (XSTest)?",
                "; ".join(_sentence(m) for m in measures if m is not None)
                + f". The model's own greedy replies by style (a keyword heuristic): {styles}.",
            )
        )
    out.append(
        (
            "Is it trained online?",
            "The bundled SmolLM2 was post-trained offline (SFT, then DPO on fixed pairs): "
            "it never received a reward that depended on the user's next turn, so any steering here would be a "
            "generalisation. Compare checkpoints trained online from the same start (latent-reward train) to "
            "separate the two.",
        )
    )
    return out


def _intervals(axis, labels: list[str], intervals: list, color: str) -> None:
    """One row per interval: the point and its 95% bar (rows without a value are left empty)."""
    for row, interval in enumerate(intervals):
        if interval.known:
            low = interval.value if interval.low is None else interval.low
            high = interval.value if interval.high is None else interval.high
            axis.plot([low, high], [row, row], color=color, lw=3, alpha=0.5)
            axis.plot([interval.value], [row], "o", color=color)
    axis.set_yticks(np.arange(len(labels)), labels, fontsize=7)
    axis.invert_yaxis()


@figures.styled
def v_figure(report, folder: Path) -> Path:
    """Left: mean E[V] after each kind of reply; right: the paired differences in V (own reply vs counterfactuals,
    redirect vs refusal, XSTest partial vs full refusal), all with 95% intervals over prompts."""
    result, xs = report.result, report.xstest
    contrasts = [(m.name, m.value) for m in result.behaviour]
    if xs is not None:
        contrasts.append((f"XSTest: {xs.v_partial_minus_full.name}", xs.v_partial_minus_full.value))
    figure, (left, right) = figures.new_figure(
        1, 2, figsize=(12, 0.35 * max(len(contrasts), len(result.expected_v)) + 1.4), layout="constrained"
    )
    _intervals(left, list(result.expected_v), list(result.expected_v.values()), "C0")
    left.set_title("mean E[V] over simulated next user turns, by reply")
    _intervals(right, [name for name, _ in contrasts], [value for _, value in contrasts], "C3")
    right.axvline(0, color="k", lw=0.8)
    right.set_title("paired differences in E[V] (0 = no difference)")
    return figures.save(figure, folder, "conversation_v")


def write_conversation_report(report, folder: Path) -> Path:
    result = report.result
    rows = [[kind, str(interval)] for kind, interval in result.expected_v.items()]
    follow = [[kind, *[str(values[name]) for name in values]] for kind, values in result.follow_ups.items()]
    names = list(next(iter(result.follow_ups.values()))) if result.follow_ups else []
    html = render(
        "conversation.html.j2",
        result=result,
        answers=answers(report),
        expected_rows=rows,
        follow_rows=follow,
        follow_names=names,
        seconds=report.seconds,
        figure=embed(v_figure(report, folder)),
    )
    return atomic_write_text(Path(folder) / "conversation.html", html)
