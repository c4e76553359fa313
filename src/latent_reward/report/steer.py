"""The steering page: does pushing along the reward direction raise independently measured reward, where, at what
coherence cost, and more than a random direction of the same norm? Drawn from the typed SteerResult alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from latent_reward.experiments.steer import ABLATE, CIRCULAR, SteerResult
from latent_reward.report import figures
from latent_reward.report.html import embed, render
from latent_reward.io import atomic_write_text

COHERENCE_LABELS = {"nll": "NLL per token under the unsteered model", "kl": "KL(steered || unsteered) per token",
                    "distinct_2": "distinct bigrams", "degenerate": "share degenerate (empty or looping)", "tokens": "reply length (tokens)"}


def _effects(result: SteerResult, scorer: str, layer: int, direction: str):
    return sorted((e for e in result.effects if e.scorer == scorer and e.layer == layer and e.direction == direction
                   and e.strength != ABLATE), key=lambda e: float(e.strength))


def _baseline(result: SteerResult, scorer: str):
    return next(e for e in result.effects if e.scorer == scorer and e.direction == "none")


@figures.styled
def dose_response(result: SteerResult, folder: Path, scorers: list[str], name: str, title: str) -> Path:
    """Change from unsteered (paired, 95% intervals over prompts) against strength: a panel per scorer, a line per
    direction, a column per layer."""
    fig, axes = figures.new_figure(len(scorers), len(result.layers), figsize=(3.4 * len(result.layers), 2.5 * len(scorers)),
                                   squeeze=False, sharex=True)
    for row, scorer in enumerate(scorers):
        for col, layer in enumerate(result.layers):
            axis = axes[row][col]
            for index, direction in enumerate(result.directions):
                effects = _effects(result, scorer, layer, direction)
                strengths = [0.0] + [float(e.strength) for e in effects]
                order = np.argsort(strengths)
                values = np.array([0.0] + [e.change.value if e.change.value is not None else np.nan for e in effects])[order]
                low = np.array([0.0] + [e.change.low if e.change.low is not None else np.nan for e in effects])[order]
                high = np.array([0.0] + [e.change.high if e.change.high is not None else np.nan for e in effects])[order]
                x = np.array(strengths)[order]
                axis.plot(x, values, marker="o", ms=3, color=f"C{index}", label=direction)
                axis.fill_between(x, low, high, color=f"C{index}", alpha=0.15)
                for effect in effects:  # each random draw's mean change: the null distribution the probe is ranked in
                    if effect.draws:
                        axis.scatter([float(effect.strength)] * len(effect.draws), effect.draws, s=6, color=f"C{index}", alpha=0.5)
            axis.axhline(0, color="k", lw=0.6)
            if row == 0:
                axis.set_title(f"layer {layer}", fontsize=8)
            if col == 0:
                axis.set_ylabel(scorer if len(scorer) < 28 else scorer[:26] + "...", fontsize=7)
            if row == len(scorers) - 1:
                axis.set_xlabel("strength (sd of the projection)")
    axes[0][0].legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    return figures.save(fig, folder, name)


def primary_scorer(result: SteerResult) -> str:
    """The pre-specified scorer of the primary contrast: a judge if one scored, else a probe on another model, else the
    first text scorer."""
    for prefix in ("judge", "probe on"):
        found = [s for s in result.scorers if s.startswith(prefix)]
        if found:
            return found[0]
    return result.scorers[0]


def answer(result: SteerResult) -> str:
    """The page's first lines: the primary contrast (probe direction, the probe's own layer, the strongest positive
    push, the primary scorer) against the unsteered replies and the random directions, then the other layers and the
    coherence cost."""
    top = max(s for s in result.strengths)
    layer = int(result.probe.get("layer", result.layers[0]))
    scorer = primary_scorer(result)
    primary = next((e for e in _effects(result, scorer, layer, "probe") if float(e.strength) == top), None)
    if primary is None or top <= 0:
        return "The primary contrast (the probe direction at its own layer, strongest positive push) was not run."
    random = next((e for e in _effects(result, scorer, layer, "random") if float(e.strength) == top), None)
    rank = f", rank p among {len(random.draws)} random directions {primary.random_rank_p:.2f}" if random and primary.random_rank_p else ""
    versus = f", minus the random directions' mean {primary.versus_random:+.3f}" if primary.versus_random is not None else ""
    if primary.versus_random is None:
        raised = primary.change.above(0)
        verdict = (f"Steering along the reward direction {'raised' if raised else 'did not raise'} the primary scorer over the "
                   "unsteered replies (paired 95% interval over prompts); no random directions were run to compare with.")
    elif primary.change.above(0) and primary.versus_random.above(0):
        verdict = ("Steering along the reward direction raised the primary scorer beyond random directions of the same norm "
                   "(95% interval resampling prompts and random directions).")
    else:
        verdict = ("Steering along the reward direction did not raise the primary scorer beyond random directions of the same "
                   "norm (95% interval resampling prompts and random directions).")
    lines = [f"{verdict} Primary contrast (fixed in advance): probe direction at its own layer {layer}, strength +{top:g}, "
             f"scored by {scorer}: change from unsteered {primary.change:+.3f}{versus}{rank}; "
             f"paired on {result.prompts} held-out prompts."]
    others = []
    for other in result.layers:
        for name in result.scorers:
            if (other, name) == (layer, scorer):
                continue
            effect = next((e for e in _effects(result, name, other, "probe") if float(e.strength) == top), None)
            if effect is not None:
                versus = f" (minus random {effect.versus_random:+.3f})" if effect.versus_random is not None else ""
                others.append(f"layer {other} {name} {effect.change:+.3f}{versus}")
    if others:
        lines.append("Secondary (not corrected for multiplicity): " + "; ".join(others) + ".")
    cost = next((e for e in _effects(result, "nll", layer, "probe") if float(e.strength) == top), None)
    degenerate = next((e for e in _effects(result, "degenerate", layer, "probe") if float(e.strength) == top), None)
    if cost and degenerate:
        lines.append(f"Coherence at the primary condition: NLL under the unsteered model {cost.change:+.2f} nats/token, "
                     f"degenerate share {degenerate.mean:.2f}.")
    check = next((e for e in _effects(result, CIRCULAR, layer, "probe") if float(e.strength) == top), None)
    moved = f": at the primary condition it moved by {check.change:+.3f}" if check is not None else ""
    lines.append(f"The {CIRCULAR} is shown only to check that the intervention took{moved}.")
    return " ".join(lines)


def write_steer_report(result: SteerResult, folder: Path) -> Path:
    folder = Path(folder)
    scorers = [*result.scorers, CIRCULAR]
    paths = {"scores": dose_response(result, folder, scorers, "steer_scores", "independent scorers (and the circular check)"),
             "coherence": dose_response(result, folder, [c for c in result.coherence if c != "tokens"], "steer_coherence",
                                        "coherence")}
    table = []
    for effect in result.effects:
        table.append([effect.scorer, "" if effect.layer < 0 else str(effect.layer), effect.direction, str(effect.strength),
                      f"{effect.mean}", f"{effect.change:+.3f}", f"{effect.versus_random:+.3f}" if effect.versus_random else "",
                      "" if effect.random_rank_p is None else f"{effect.random_rank_p:.2f}",
                      "" if effect.wrong_way is None else f"{effect.wrong_way:.2f}"])
    html = render("steer.html.j2", result=result, answer=answer(result), figures={k: embed(v) for k, v in paths.items()},
                  table=table, examples=result.examples, labels=COHERENCE_LABELS)
    return atomic_write_text(folder / "steer.html", html)
