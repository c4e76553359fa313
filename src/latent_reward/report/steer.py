"""The steering page: does pushing along the reward direction raise independently measured reward, where, at what
coherence cost, and more than random directions pushed as far in their own units? Drawn from the typed SteerResult
alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from latent_reward.experiments.steer import ABLATE, CIRCULAR, PrimaryContrast, SteerResult
from latent_reward.io import atomic_write_text
from latent_reward.report import figures
from latent_reward.report.html import embed, render
from latent_reward.report.pvalue import p_text

COHERENCE_LABELS = {
    "nll": "NLL per token under the unsteered model",
    "kl": "KL(steered || unsteered) per token",
    "distinct_2": "distinct bigrams",
    "degenerate": "share degenerate (empty or looping)",
    "empty": "share empty",
    "tokens": "reply length (tokens)",
}


def _effects(result: SteerResult, scorer: str, layer: int, direction: str):
    return sorted(
        (
            e
            for e in result.effects
            if e.scorer == scorer and e.layer == layer and e.direction == direction and e.strength != ABLATE
        ),
        key=lambda e: float(e.strength),
    )


def _baseline(result: SteerResult, scorer: str):
    return next(e for e in result.effects if e.scorer == scorer and e.direction == "none")


@figures.styled
def dose_response(result: SteerResult, folder: Path, scorers: list[str], name: str, title: str) -> Path:
    """Change from unsteered (paired, 95% intervals over prompts) against strength: a panel per scorer, a line per
    direction, a column per layer."""
    fig, axes = figures.new_figure(
        len(scorers),
        len(result.layers),
        figsize=(3.4 * len(result.layers), 2.5 * len(scorers)),
        squeeze=False,
        sharex=True,
    )
    for row, scorer in enumerate(scorers):
        for col, layer in enumerate(result.layers):
            axis = axes[row][col]
            for index, direction in enumerate(result.directions):
                effects = _effects(result, scorer, layer, direction)
                strengths = [0.0] + [float(e.strength) for e in effects]
                order = np.argsort(strengths)
                values = np.array([0.0] + [e.change.value if e.change.value is not None else np.nan for e in effects])[
                    order
                ]
                low = np.array([0.0] + [e.change.low if e.change.low is not None else np.nan for e in effects])[order]
                high = np.array([0.0] + [e.change.high if e.change.high is not None else np.nan for e in effects])[
                    order
                ]
                x = np.array(strengths)[order]
                axis.plot(x, values, marker="o", ms=3, color=f"C{index}", label=direction)
                axis.fill_between(x, low, high, color=f"C{index}", alpha=0.15)
                for effect in effects:  # each random draw's mean change: the null distribution the probe is ranked in
                    if effect.draws:
                        axis.scatter(
                            [float(effect.strength)] * len(effect.draws),
                            effect.draws,
                            s=6,
                            color=f"C{index}",
                            alpha=0.5,
                        )
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


def _rank(p: float | None, draws: int, name: str = "rank p") -> str:
    return p_text(p, draws or None, name)


def _at(result: SteerResult, scorer: str, layer: int, strength: float, direction: str = "probe"):
    return next((e for e in _effects(result, scorer, layer, direction) if float(e.strength) == strength), None)


def _verdict(primary: PrimaryContrast) -> str:
    against = "beyond random directions pushed as far in their own units"
    interval = "(95% interval resampling prompts and random directions)"
    if primary.versus_random is None:
        raised = "raised" if primary.change.above(0) else "did not raise"
        return (
            f"Steering along the reward direction {raised} the primary scorer over the unsteered replies (paired "
            "95% interval over prompts); no random directions were run to compare with."
        )
    if primary.change.above(0) and primary.versus_random.above(0):
        return f"Steering along the reward direction raised the primary scorer {against} {interval}."
    return f"Steering along the reward direction did not raise the primary scorer {against} {interval}."


def _detectable(primary: PrimaryContrast) -> str:
    detect = []
    if primary.detectable_versus_random is not None:
        detect.append(
            f"a difference from the random directions of {primary.detectable_versus_random:.3f} (80% power, "
            "two-sided 5%, from this run's standard error)"
        )
    if primary.detectable_rank is not None:
        detect.append(
            f"a change beyond {primary.detectable_rank:+.3f} for rank p <= 0.05 (where these random "
            "directions moved it)"
        )
    elif primary.random_draws:
        detect.append(
            f"no change at all by rank at 0.05: {primary.random_draws} random directions cannot give "
            "p <= 0.05 (19 or more can)"
        )
    return f"What this run can detect, in {primary.scorer} units: " + "; ".join(detect) + "." if detect else ""


def _caution(result: SteerResult, primary: PrimaryContrast) -> str:
    """A warning when the primary scorer barely predicts ratings of text as long as the replies (validation r < 0.1)."""
    r = result.scorer_validation.get(primary.scorer)
    if r is None or r >= 0.1:
        return ""
    return (
        f"The primary scorer's validation r on text this long is only {r:.3f}: it can hardly tell better replies "
        "from worse, so a null here says little about the model (a judge, --judge-url, may read short replies "
        "better)."
    )


def _secondary(result: SteerResult, primary: PrimaryContrast) -> str:
    others = []
    for layer in result.layers:
        for name in result.scorers:
            effect = _at(result, name, layer, primary.strength)
            if effect is None or (layer, name) == (primary.layer, primary.scorer):
                continue
            versus = f", minus random {effect.versus_random:+.3f}" if effect.versus_random is not None else ""
            holm = f", {p_text(effect.rank_p_holm, None, 'Holm rank p')}" if effect.rank_p_holm is not None else ""
            others.append(f"layer {layer} {name} {effect.change:+.3f}{versus}{holm}")
    if not others:
        return ""
    return "Secondary (rank p Holm-adjusted over these): " + "; ".join(others) + "." + _holm_floor(result, primary)


def _holm_floor(result: SteerResult, primary: PrimaryContrast) -> str:
    """Say so when Holm over the secondaries cannot reach 0.05 with this many random draws: the smallest adjusted p
    is (number of secondaries) / (draws + 1)."""
    adjusted = sum(effect.rank_p_holm is not None for effect in result.effects)
    if not adjusted or not primary.random_draws:
        return ""
    floor = adjusted / (primary.random_draws + 1)
    if floor <= 0.05:
        return ""
    return (
        f" With {primary.random_draws} random directions and {adjusted} secondary rank tests the smallest possible "
        f"Holm-adjusted p is {min(floor, 1.0):.3f}, so none of them can reach 0.05 at this size "
        f"(--random-directions {20 * adjusted - 1} would allow it)."
    )


def _coherence(result: SteerResult, primary: PrimaryContrast) -> str:
    cost, degenerate, empty = (
        _at(result, name, primary.layer, primary.strength) for name in ("nll", "degenerate", "empty")
    )
    lines = []
    if cost and degenerate:
        shares = f"degenerate share {degenerate.mean:.2f}" + (f", empty share {empty.mean:.2f}" if empty else "")
        lines.append(
            f"Coherence at the primary condition: NLL under the unsteered model {cost.change:+.2f} nats/token, "
            f"{shares}."
        )
    if primary.kl is not None and primary.random_kl is not None:
        lines.append(
            f"Dose in the model's output: KL per token {primary.kl:.3f} for the probe direction, "
            f"{primary.random_kl:.3f} for the random directions."
        )
    return " ".join(lines)


def answer(result: SteerResult) -> str:
    """The page's first lines: the primary contrast (probe direction, the probe's own layer, the strongest positive
    push, the primary scorer) against the unsteered replies and the random directions, what it could detect at this
    size, then the secondary contrasts and the coherence cost."""
    primary = result.primary
    if primary is None or primary.strength <= 0:
        return "The primary contrast (the probe direction at its own layer, strongest positive push) was not run."
    mean = primary.versus_random
    versus = "" if mean is None else f", minus the random directions' mean {mean:+.3f}"
    draws = primary.random_draws
    rank = (
        f", {_rank(primary.rank_p, draws)} among {draws} random directions (one-sided; the floor with {draws} is "
        f"1/{draws + 1} = {primary.rank_p_floor:.3f})"
        if draws
        else ""
    )
    lines = [
        f"{_verdict(primary)} Primary contrast (fixed in advance): probe direction at layer {primary.layer}, "
        f"strength +{primary.strength:g}, scored by {primary.scorer} ({primary.scorer_reason}): change from "
        f"unsteered {primary.change:+.3f}{versus}{rank}; paired on {primary.prompts} held-out prompts.",
        _detectable(primary),
        _caution(result, primary),
        _secondary(result, primary),
        _coherence(result, primary),
    ]
    check = _at(result, CIRCULAR, primary.layer, primary.strength)
    moved = f": at the primary condition it moved by {check.change:+.3f}" if check is not None else ""
    lines.append(f"The {CIRCULAR} is shown only to check that the intervention took{moved}.")
    return " ".join(line for line in lines if line)


def _draws(result: SteerResult, effect) -> int:
    """How many random draws `effect` was ranked among."""
    random = _at(result, effect.scorer, effect.layer, float(effect.strength), "random")
    return len(random.draws) if random is not None and random.draws else 0


def _units(result: SteerResult) -> list[str]:
    """Per layer: the probe direction's strength unit and the range of the random directions' own units."""
    out = []
    for layer, units in result.sd.items():
        random = [v for k, v in units.items() if k.startswith(("random", "orthogonal"))]
        spread = f"; random directions {min(random):.2f} to {max(random):.2f}" if random else ""
        out.append(f"layer {layer}: probe {units.get('probe', float('nan')):.2f}{spread}")
    return out


def write_steer_report(result: SteerResult, folder: Path) -> Path:
    folder = Path(folder)
    scorers = [*result.scorers, CIRCULAR]
    paths = {
        "scores": dose_response(
            result, folder, scorers, "steer_scores", "independent scorers (and the circular check)"
        ),
        "coherence": dose_response(
            result, folder, [c for c in result.coherence if c != "tokens"], "steer_coherence", "coherence"
        ),
    }
    table = []
    for effect in result.effects:
        rank = "" if effect.random_rank_p is None else _rank(effect.random_rank_p, _draws(result, effect), "p")
        holm = "" if effect.rank_p_holm is None else f" (Holm {effect.rank_p_holm:.3f})"
        table.append(
            [
                effect.scorer,
                "" if effect.layer < 0 else str(effect.layer),
                effect.direction,
                str(effect.strength),
                f"{effect.mean}",
                f"{effect.change:+.3f}",
                f"{effect.versus_random:+.3f}" if effect.versus_random else "",
                rank + holm,
                "" if effect.wrong_way is None else f"{effect.wrong_way:.2f}",
            ]
        )
    html = render(
        "steer.html.j2",
        result=result,
        answer=answer(result),
        figures={k: embed(v) for k, v in paths.items()},
        table=table,
        examples=result.examples,
        labels=COHERENCE_LABELS,
        units=_units(result),
    )
    return atomic_write_text(folder / "steer.html", html)
