"""The report's plain-sentence answers, each with its number and interval, built from the typed results."""

from __future__ import annotations

from latent_reward.analysis.sgd_settings import SGDSetting
from latent_reward.evaluation import results as names
from latent_reward.evaluation.results import Comparison, Interval, Scores, strongest
from latent_reward.experiments.prompt_only import PromptOnlyResult
from latent_reward.experiments.readout import LinearVsNonlinear, ReadoutResult, SeedSpread
from latent_reward.experiments.run_result import Answer, RunResult
from latent_reward.experiments.trajectory import END_PROBE, TOKEN_PROBE, TrajectoryResult
from latent_reward.report.pvalue import p_text


def answers(result: RunResult) -> list[Answer]:
    """Answers first: the question, then one paragraph with its numbers."""
    model = result.model.name
    readout = result.readout
    out = [
        Answer(question=f"Does {model} encode the reward of its responses?", answer=encodes_answer(readout)),
        Answer(question="Where is it?", answer=where_answer(readout, result.model.n_layers)),
    ]
    if readout.within_probe is not None:
        out.append(
            Answer(question="Does it rank responses to the same prompt?", answer=within_answer(readout.within_probe))
        )
    if result.prompt_only is not None:
        out.append(
            Answer(
                question="Does the model expect a reward before it has written anything?",
                answer=prompt_only_answer(result.prompt_only, readout),
            )
        )
    if result.trajectory is not None:
        out.append(
            Answer(
                question="How does the expected reward move token by token?",
                answer=trajectory_answer(result.trajectory),
            )
        )
    if readout.linear_vs_nonlinear is not None:
        out.append(Answer(question="Linear or nonlinear?", answer=nonlinear_answer(readout.linear_vs_nonlinear)))
    if readout.sgd_grid:
        out.append(Answer(question="What did the SGD settings change?", answer=sgd_answer(readout.sgd_grid, readout)))
    if result.scores:
        out.append(Answer(question="Does the probe work as a reward model?", answer=scores_answer(result)))
    return out


def _versus(comparison: Comparison, metric: names.Metric) -> str:
    test = comparison.versus_probe.get(metric)
    if test is None:
        return ""
    p = f", {p_text(test.p_value, test.n_permutations)}" if test.p_value is not None else ""
    return f"probe minus {comparison.name}: {test.difference:+.3f}{p}"


def _outcome(row) -> str:
    """'TF-IDF response (probe minus it -0.020 [...], p = 0.01, Holm p = 0.03)'."""
    holm = f", Holm p = {row.holm_p:.3f}" if row.outcome == "baseline better" and row.holm_p is not None else ""
    p = f", p = {row.p_value:.3f}" if row.p_value is not None else ""
    return f"{row.name} (probe minus it {row.difference:+.3f}{p}{holm})"


def encodes_answer(readout: ReadoutResult) -> str:
    probe = readout.probe.scores
    within = readout.within_probe.scores if readout.within_probe is not None else probe
    verdict = readout.verdict
    states = (
        f"the states predict the rating (pooled probe r = {probe.pearson}; within-prompt probe accuracy "
        f"{within.within_acc})"
    )
    if verdict.kind == "encodes":
        head = (
            f"Yes, within prompts and beyond every baseline: the within-prompt probe orders responses to the same "
            f"prompt correctly {within.within_acc} of the time (chance 0.5), and it is better than every baseline "
            f"under the declared test. Across prompts the pooled probe reaches r = {probe.pearson}."
        )
    elif verdict.kind == "baseline better":
        better = [_outcome(row) for row in verdict.baselines if row.outcome == "baseline better"]
        head = (
            f"No: {states}, but within prompts a baseline ranks responses better than the states: "
            + "; ".join(better)
            + "."
        )
    elif verdict.kind == "no baseline tested":
        head = (
            f"Not tested against baselines: {states}, but no baseline could be scored on these rows (no text, "
            "generator, log-probability or layer 0), so nothing says the states carry more than a simple feature would."
        )
    elif verdict.kind in ("baseline matches", "indistinguishable from a baseline"):
        rows = [row for row in verdict.baselines if row.outcome == "indistinguishable"]
        matched = [_outcome(row) for row in rows if row.equivalent]
        unclear = [_outcome(row) for row in rows if not row.equivalent]
        head = (
            f"Not shown: {states}, but the probe is not better than every baseline within prompts."
            + (
                f" Matching it (equivalent within +-{verdict.margin:g} accuracy): " + "; ".join(matched) + "."
                if matched
                else ""
            )
            + (" Indistinguishable from it, not shown equivalent: " + "; ".join(unclear) + "." if unclear else "")
        )
    else:
        head = (
            f"No within-prompt evidence: the within-prompt probe's accuracy {within.within_acc} does not exclude "
            "chance (0.5)"
            + (" (the data has no prompt with two differently rated responses)" if not within.within_acc.known else "")
            + f". The pooled probe's r = {probe.pearson} can come from prompt difficulty alone."
        )
    parts = [
        head,
        f"Evaluation: {readout.evaluation}; {probe.n_examples} responses to {probe.n_prompts} prompts. Intervals treat "
        "the "
        "fitted probes as fixed (the spread over fold seeds is below).",
    ]
    if verdict.test:
        parts.append(f"Declared test: {verdict.test}.")
    parts.append(
        f"Cells chosen in the folds: pooled probe {'; '.join(sorted({str(c) for c in readout.fold_cells}))}"
        + (
            f"; within-prompt probe {'; '.join(sorted({str(c) for c in readout.within_fold_cells}))}."
            if readout.within_probe
            else "."
        )
    )
    for metric in names.HEADLINE_METRICS:
        best = strongest(readout.comparisons, metric, names.TEXT_BASELINES + (names.GENERATOR, names.LOGPROB))
        if best is not None:
            parts.append(
                f"Strongest baseline by validation {names.METRIC_LABELS[metric]} (on the single split): {best.name}, "
                f"{best.scores.metric(metric)} ({_versus(best, metric)})."
            )
    for name in (names.LAYER0, names.RANDOM_INIT):
        comparison = readout.comparison(name)
        if comparison is not None:
            parts.append(
                f"{name.capitalize()}: r = {comparison.scores.pearson}, within-prompt accuracy "
                f"{comparison.scores.within_acc} ({_versus(comparison, 'within_acc')})."
            )
    parts += _control_sentences(readout)
    if readout.partial_r_given_length.known:
        parts.append(
            f"Controlling for length and text statistics, the probe's partial correlation with the rating is "
            f"{readout.partial_r_given_length}."
        )
    if readout.length_matched_pairs:
        parts.append(
            f"On the {readout.length_matched_pairs} within-prompt pairs whose lengths differ by less than 10%, "
            "accuracy is "
            f"{readout.length_matched}."
        )
    spread = readout.seed_spread
    if (
        spread
        and len(spread.seeds) > 1
        and (sentence := _seed_spread_sentence(spread, readout.within_probe is not None))
    ):
        parts.append(sentence)
    for subset in readout.subsets:
        parts.append(
            f"On the {subset.name} ({subset.scores.n_examples} responses): r = {subset.scores.pearson}, "
            f"within-prompt accuracy {subset.scores.within_acc}."
        )
    return " ".join(parts)


def _control_sentences(readout: ReadoutResult) -> list[str]:
    out = []
    for comparison in readout.comparisons:
        if comparison.kind != "control":
            continue
        metric: names.Metric = "within_acc" if comparison.name == names.SHUFFLED_WITHIN else "pearson"
        test = comparison.null.get(metric)
        if test is None or test.observed is None:
            continue
        out.append(
            f"Trained on {test.n_permutations} sets of ratings shuffled {comparison.name.split('shuffled ')[-1]}, "
            f"probes reach {names.METRIC_LABELS[metric]} {test.null_mean:.3f} [{test.null_low:.3f}, "
            f"{test.null_high:.3f}]; "
            f"the real probe's {test.observed:.3f} has permutation {p_text(test.p_value, test.n_permutations)}."
        )
    return out


def where_answer(readout: ReadoutResult, n_layers: int) -> str:
    sweep = readout.sweep
    best = sweep.best
    peaks = []
    kind = sweep.shown_kind
    for position in dict.fromkeys(c.position for c in sweep.cells(kind)):
        cell = sweep.val_best(kind, position)
        if cell is not None:
            peaks.append(
                f"{position}: layer {cell.layer} ({cell.layer / max(n_layers, 1):.0%} of depth, "
                f"validation r = {cell.val.pearson.value:.3f})"
            )
    text = (
        f"On the single split ({sweep.split.how}), the validation-best cell is {best} "
        f"({best.layer / max(n_layers, 1):.0%} "
        f"of depth): validation r = {sweep.best_validation.pearson}; on the {sweep.split.prompts['test']} test "
        "prompts, touched "
        f"once, r = {sweep.best_test.pearson} and within-prompt accuracy {sweep.best_test.within_acc}."
    )
    if peaks:
        text += f" Best layer per position ({kind}, validation): " + "; ".join(peaks) + "."
    return text


def within_answer(within_probe: Comparison) -> str:
    s = within_probe.scores
    verdict = "ranks them above chance" if s.within_acc.above(0.5) else "shows no ranking beyond chance"
    return (
        "The within-prompt probe, trained only on within-prompt differences (each rating minus its prompt's mean; "
        "states "
        f"centered per prompt; response positions only) and cross-fitted, {verdict}: within-prompt accuracy "
        f"{s.within_acc} over "
        f"{s.n_pairs} pairs"
        + (
            f", within-prompt Spearman {s.within_spearman}"
            if s.within_spearman.known
            else " (within-prompt Spearman needs 3+ responses per prompt)"
        )
        + "."
    )


def prompt_only_answer(po: PromptOnlyResult, readout: ReadoutResult) -> str:
    text = (
        f"A ridge probe on the states before the response, cross-fitted over {po.cross_fitted.n_prompts} prompts, "
        "predicts "
        f"a prompt's mean rating with r = {po.cross_fitted.pearson}; on the single split the validation-best cell is "
        f"{po.best.position} layer {po.best.layer}, test r = {po.best_test}."
    )
    if po.baselines:
        text += (
            " Prompt-only baselines (cross-fitted): "
            + "; ".join(f"{b.name} r = {b.scores.pearson} ({_versus(b, 'pearson')})" for b in po.baselines)
            + "."
        )
    text += " " + reliability_sentence(po, po.cross_fitted.pearson)
    decomposition = readout.decomposition
    if decomposition:
        text += (
            " Response-level probes at each position (cross-fitted), split into prompt means and within-prompt "
            "deviations: "
            + "; ".join(
                f"{row.position}: r {row.between_prompt_r} between, {row.within_prompt_r} within"
                for row in decomposition
            )
            + "."
        )
    return text + " " + po.off_policy


def reliability_line(po: PromptOnlyResult) -> str:
    """One line for the console: the right ICC, the prompt mean's reliability and the ceiling on r."""
    rel = po.reliability
    if rel is None:
        return f"ICC(1) of the rating by prompt = {po.icc}"
    name = f"two-way ICC(C,1) with the {rel.factor} fixed" if rel.factor else "one-way ICC(1)"
    return (
        f"{name} of the rating by prompt = {rel.icc}; reliability of a prompt's mean of "
        f"{rel.responses_per_prompt:.1f} ratings {rel.mean_reliability}, ceiling on r {rel.r_ceiling}"
    )


def reliability_sentence(po: PromptOnlyResult, probe_r: Interval) -> str:
    """What the right ICC says about the prompt's mean rating, and the ceiling it puts on any predictor of it."""
    rel = po.reliability
    between = f"(the raw between-prompt share, {po.raw_between_share:.2f}, is inflated by chance spread of group means)"
    if rel is None:  # results saved before the reliability was computed
        return (
            f"The intraclass correlation of the rating by prompt, ICC(1) = {po.icc}, is the share of its variance "
            f"between prompts {between}."
        )
    if rel.factor is None:
        head = (
            f"The responses to a prompt are exchangeable here, so the one-way ICC(1) = {rel.icc} is the share of "
            f"the rating's variance that lies between prompts {between}."
        )
    else:
        gap = "the systematic chosen-rejected gap" if rel.factor == "role" else "the generators' systematic differences"
        head = (
            f"The responses carry a {rel.factor}, so they are not exchangeable: with the {rel.factor} fixed, the "
            f"two-way ICC(C,1) = {rel.icc} is the share of the rating's variance (beyond the {rel.factor}'s "
            f"effect) that lies between prompts; the one-way ICC(1) = {po.icc} counts {gap} as noise {between}."
        )
    ceiling = rel.r_ceiling.value
    share = (
        f"; the prompt probe's r = {probe_r.value:.3f} is {probe_r.value / ceiling:.0%} of it"
        if probe_r.value is not None and ceiling
        else ""
    )
    return (
        head + f" A prompt's mean of {rel.responses_per_prompt:.1f} ratings (harmonic mean) then has reliability "
        f"{rel.mean_reliability} (Spearman-Brown), which caps the correlation of any predictor of the prompt's "
        f"expected rating with its observed mean at r <= {rel.r_ceiling}{share}."
    )


def trajectory_answer(trajectory: TrajectoryResult) -> str:
    parts = []
    for probe in (END_PROBE, TOKEN_PROBE):
        relative, tokens = trajectory.curve(probe, "relative"), trajectory.curve(probe, "tokens")
        if relative is None:
            continue
        where = (
            f"separates from {relative.separates_from:.0%} of the response on"
            if relative.separates_from is not None
            else "does not separate"
        )
        where_tokens = (
            f" (by token index: from token {tokens.separates_from:.0f})"
            if tokens and tokens.separates_from is not None
            else ""
        )
        parts.append(f"{probe}: {where}{where_tokens}")
    text = (
        f"At layer {trajectory.layer}, for {trajectory.n_pairs} held-out prompts, each with its best- and worst-rated "
        "response, "
        f"the paired difference of the estimates (better minus worse; simultaneous 95% bands over prompts): "
        + "; ".join(parts)
        + "."
    )
    null = trajectory.null
    if null is not None and null.observed is not None:
        text += (
            f" Averaged over tokens, the end-of-response probe's difference is {null.observed:.2f} sd of its "
            "estimates; "
            f"{null.n_permutations} probes fitted the same way on ratings shuffled within each training prompt give "
            f"{null.null_mean:.2f} [{null.null_low:.2f}, {null.null_high:.2f}] "
            f"({p_text(null.p_value, null.n_permutations)})."
        )
    return text


def nonlinear_answer(comparison: LinearVsNonlinear) -> str:
    text = (
        f"Validation-best linear cell {comparison.linear}: test r {comparison.linear_test.pearson}; validation-best "
        "MLP "
        f"{comparison.nonlinear}: test r {comparison.nonlinear_test.pearson} (a second look at the single split's test "
        "prompts, "
        "for these two cells fixed on validation)."
    )
    for metric, test in comparison.difference.items():
        p = p_text(test.p_value, test.n_permutations)
        text += f" Linear minus MLP, {names.METRIC_LABELS[metric]}: {test.difference:+.3f} (paired, {p})."
    return text


def sgd_answer(grid: list[SGDSetting], readout: ReadoutResult) -> str:
    scored = [(row.val_pearson, row) for row in grid if row.val_pearson is not None]
    by_batch: dict[int, list[float]] = {}
    by_schedule: dict[str, list[float]] = {}
    for value, row in scored:
        by_batch.setdefault(row.batch_size, []).append(value)
        by_schedule.setdefault(row.schedule, []).append(value)
    top = max(scored, key=lambda pair: pair[0])[1]
    best = readout.sweep.best
    return (
        "At the best cell, mean validation r by batch size: "
        + ", ".join(f"{b}: {sum(v) / len(v):.3f}" for b, v in by_batch.items())
        + "; by schedule: "
        + ", ".join(f"{s}: {sum(v) / len(v):.3f}" for s, v in by_schedule.items())
        + f". The best setting (batch {top.batch_size}, {top.schedule}) reaches validation r {top.val_pearson:.3f}; "
        f"the sweep's best cell ({best}) has validation r {readout.sweep.best_validation.pearson}. (Validation only: "
        "the test prompts stay untouched.)"
    )


def scores_answer(result: RunResult) -> str:
    parts = []
    for folder, score in result.scores.items():
        if score.pair_accuracy:
            overall = score.pair_accuracy[0]
            dropped = ", ".join(f"{n} {reason}" for reason, n in overall.not_compared.items())
            probes = "; ".join(
                f"{n} {overall.predictors[n]}"
                for n in ([n for n in score.probes if n in overall.predictors] or overall.predictors)
            )
            parts.append(
                f"{folder}: pair accuracy {probes} over the {overall.pairs} pairs compared (each a record "
                "whose sides were judged against each other"
                + (f"; not compared: {dropped}" if dropped else "")
                + f"; {score.excluded_prompts} training/validation prompts excluded)"
                + (
                    f"; length-matched {overall.length_matched[overall.reference]} over "
                    f"{overall.length_matched_pairs} pairs"
                    if overall.reference in overall.length_matched
                    else ""
                )
                + "".join(
                    f"; the {name} reads {position}, before the response, and cannot rank a pair"
                    for name, position in score.prompt_side.items()
                )
            )
            if overall.predictor_pairs:
                parts.append(
                    f"{folder}: "
                    + ", ".join(
                        f"{name} {overall.predictors[name]} over {n} pairs"
                        for name, n in overall.predictor_pairs.items()
                    )
                    + f" (the {overall.truncated_pairs} pairs a model truncated left out)"
                )
        headline = score.probes[0]  # the within-prompt probe where the run saved one
        if score.transfer:
            probe = score.transfer.predictors[headline]
            parts.append(
                f"{folder}: {headline} Spearman {probe.spearman}, within-prompt accuracy {probe.within_acc} "
                f"on {score.transfer.examples} responses"
            )
        ranker = next((name for name in score.probes if name not in score.prompt_side), None)
        if score.best_of_n and ranker is not None:
            picks = score.best_of_n.picks
            parts.append(
                f"{folder}: best-of-{score.best_of_n.samples_per_prompt:.0f}, the {ranker}'s pick "
                f"{picks.get(f'{ranker} pick')} vs random {picks.get('random pick')}"
            )
    return "; ".join(parts) + "."


def headline(scores: Scores) -> str:
    return f"r = {scores.pearson}, within-prompt accuracy = {scores.within_acc}"


def _seed_spread_sentence(spread: SeedSpread, within_probe: bool) -> str | None:
    """How the headline moves with the fold seed: the within-prompt probe's accuracy where there is one (each seed
    re-fits only it), else the pooled probe's r and within-prompt accuracy."""
    r = [v for v in spread.pearson if v is not None]
    acc = [v for v in spread.within_acc if v is not None]
    if within_probe:
        if not acc:
            return None
        return (
            f"Across {len(acc)} fold seeds, the within-prompt probe's accuracy runs {min(acc):.3f} to {max(acc):.3f}."
        )
    if not r:
        return None
    seeds = f"Across {len(r)} fold seeds"
    accuracy = f", its within-prompt accuracy {min(acc):.3f} to {max(acc):.3f}" if acc else ""
    return f"{seeds}, the pooled probe's r runs {min(r):.3f} to {max(r):.3f}{accuracy}."
