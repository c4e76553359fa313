"""The run's result folder: typed results, the report's exact files, compare, and score results added to a run."""

import json
import re

import pandas as pd
import pytest

from helpers import planted_store
from latent_reward.analysis.sweep import SweepConfig
from latent_reward.evaluation.results import Interval
from latent_reward.experiments.conversation import ConversationResult, PairedMeasure
from latent_reward.experiments.readout import ReadoutConfig
from latent_reward.experiments.reward_model import BestOfN, PairAccuracy, ScoreResult
from latent_reward.experiments.run_result import RunResult
from latent_reward.probes import ProbeOptions, TrainConfig
from latent_reward.workflows.compare import CompareJob, run_compare
from latent_reward.workflows.replay import recorded
from latent_reward.workflows.run import SweepJob, sweep_stores
from latent_reward.workflows.score import _add_to_run

# The report's plumbing, not the SGD probe's quality: its minibatch loop runs 4 epochs (sweep and settings grid)
FAST = ReadoutConfig(
    sweep=SweepConfig(
        n_boot=200, probes=("ridge", "sgd"), settings=ProbeOptions({"sgd": {"train": TrainConfig(epochs=4)}})
    ),
    permutations=10,
    split_seeds=2,
    paired_permutations=200,
)


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("run")
    store = planted_store(
        folder / "store",
        n_groups=50,
        model={"post_training": ["planted:train"]},
        splits=["train" if i % 5 else "eval" for i in range(50)],
    )
    random_store = planted_store(folder / "store-random-init", n_groups=50, seed=0, response_signal=0.0)
    outcome = sweep_stores(
        SweepJob(
            store=folder / "store", out=folder / "report", random_init_store=folder / "store-random-init", readout=FAST
        ),
        progress=False,
    )
    assert random_store.ids == store.ids
    return folder, outcome


def test_report_is_self_contained_answers_first_with_plain_figure_names(run_folder):
    folder, outcome = run_folder
    text = outcome.report.read_text()
    assert text.index("Answers") < text.index("Where: layers x positions")
    assert not re.search(r'(src|href)="https?://', text)
    pngs = {p.name for p in (folder / "report").glob("*.png")}
    assert pngs == {
        "comparison.png",
        "heatmap_pearson.png",
        "heatmap_within_acc.png",
        "layers_pearson.png",
        "layers_within_acc.png",
        "scatter.png",
        "probe_kinds.png",
        "sgd_grid.png",
        "ratings.png",
        "controls.png",
        "prompt_only.png",
        "decomposition.png",
    }
    assert len(re.findall(r'src="data:image/png;base64,', text)) == len(pngs)
    assert {p.name for p in (folder / "report").iterdir()} == pngs | {
        "report.html",
        "results.json",
        "predictions.csv",
        "run.json",
        ".lock",
        "best_probe",
        "prompt_probe",
        "within_probe",
        "grid.csv",
        "comparisons.csv",
    }


def test_the_csv_tables_hold_the_grid_every_comparison_and_every_cross_fitted_prediction(run_folder):
    """grid.csv: one row per probe kind x position x layer with its validation metrics; comparisons.csv: one row per
    predictor and metric with its interval and the paired difference; predictions.csv: the restricted choices'
    out-of-fold
    predictions too. Each read back against results.json."""
    folder, _ = run_folder
    result = RunResult.load(folder / "report")
    grid = pd.read_csv(folder / "report" / "grid.csv")
    assert len(grid) == len(result.readout.sweep.grid)
    best = result.readout.sweep.best
    row = grid[(grid.probe == best.probe) & (grid.position == best.position) & (grid.layer == best.layer)].iloc[0]
    cell = next(
        c
        for c in result.readout.sweep.grid
        if (c.probe, c.position, c.layer) == (best.probe, best.position, best.layer)
    )
    assert row.val_pearson == pytest.approx(cell.val.pearson.value)
    table = pd.read_csv(folder / "report" / "comparisons.csv")
    tfidf = result.readout.comparison("TF-IDF response")
    line = table[(table.predictor == "TF-IDF response") & (table.metric == "within_acc")].iloc[0]
    assert (line.value, line.low, line.high) == pytest.approx(
        (tfidf.scores.within_acc.value, tfidf.scores.within_acc.low, tfidf.scores.within_acc.high)
    )
    assert line.probe_minus == pytest.approx(tfidf.versus_probe["within_acc"].difference.value)
    assert line.p_value == pytest.approx(tfidf.versus_probe["within_acc"].p_value)
    assert set(table.kind) == {"probe", "baseline", "control"}
    predictions = pd.read_csv(folder / "report" / "predictions.csv")
    assert {"probe", "layer 0 (embeddings)"} <= set(predictions.columns)


def test_results_load_back_typed_and_say_what_was_seen_in_post_training(run_folder):
    folder, outcome = run_folder
    result = RunResult.load(folder / "report")
    assert result.answers[0].question.startswith("Does planted encode")
    assert result.readout.sweep.best.layer == 2 and result.readout.verdict.kind == "encodes"
    assert result.readout.tfidf_terms == 20000  # a few rows: every term
    names = {c.name for c in result.readout.comparisons}
    assert {
        "random-init model",
        "TF-IDF response",
        "layer 0 (embeddings)",
        "control: ratings shuffled within prompt",
    } <= names
    assert result.readout.comparison("random-init model").scores.pearson.value < 0.4
    assert [s.name for s in result.readout.subsets] == [
        "rows the model was post-trained on",
        "rows the model was not post-trained on",
    ]
    assert result.readout.sweep.split.prompts["test"] == 10  # the data's own held-out split is the test split
    assert len(result.readout.seed_spread.seeds) == 2
    predictions = pd.read_csv(folder / "report" / "predictions.csv")
    assert len(predictions) == 200 and set(predictions.split) == {"train", "val", "test"}


@pytest.mark.slow  # end to end: the whole workflow on the tiny model
def test_compare_pairs_runs_on_shared_examples(run_folder, tmp_path):
    folder, _ = run_folder
    planted_store(
        tmp_path / "weak" / "store",
        n_groups=50,
        model={"post_training": ["planted:train"]},
        splits=["train" if i % 5 else "eval" for i in range(50)],
        state_signal=0.15,
    )
    sweep_stores(
        SweepJob(
            store=tmp_path / "weak" / "store",
            out=tmp_path / "weak" / "report",
            readout=FAST.model_copy(update={"sgd_grid": False, "split_seeds": 1}),
        ),
        progress=False,
    )
    compared = run_compare(CompareJob(runs=(folder, tmp_path / "weak"), out=tmp_path / "cmp"))
    result, html = compared.result, compared.report
    assert result.rows[0].probe.pearson.value > result.rows[1].probe.pearson.value
    difference = result.differences[0]
    assert difference.examples == 200 and difference.difference["pearson"].difference.above(0)
    assert "cannot" in html.read_text() and json.loads((tmp_path / "cmp" / "compare.json").read_text())["rows"]
    assert json.loads((tmp_path / "cmp" / "run.json").read_text())["command"] == "compare"  # on the job skeleton
    again = recorded(tmp_path / "cmp", tmp_path / "cmp2").run()  # so `rerun` replays it
    assert again.result == result and (tmp_path / "cmp2" / "compare.html").exists()
    import latent_reward as lr

    assert lr.compare([folder, tmp_path / "weak"]) == result  # the same result in memory, no folder written
    assert [row.curve_probe for row in result.rows] == ["ridge", "ridge"]

    # one headline everywhere: the within-prompt probe's within-prompt accuracy, and its difference between the runs
    # from the within-prompt probes' predictions
    from latent_reward.evaluation.metrics import within_prompt_accuracy

    assert result.rows[0].within_acc == RunResult.load(folder).readout.within_probe.scores.within_acc
    a, b = (pd.read_csv(f / "report" / "predictions.csv") for f in (folder, tmp_path / "weak"))
    merged = a.merge(b, on=["id", "group", "rating"], suffixes=("_a", "_b"))
    expected = [
        within_prompt_accuracy(merged["rating"], merged[f"within_probe_{side}"], merged["group"]) for side in "ab"
    ]
    assert difference.difference["within_acc"].difference.value == pytest.approx(expected[0] - expected[1])


@pytest.mark.slow
def test_compare_over_checkpoints_from_one_start_reports_each_stage_and_online_vs_offline(run_folder, tmp_path):
    folder, _ = run_folder  # its model is "planted": the starting point
    runs = [folder]
    for method, base, signal in (("sft", "planted", 0.15), ("dpo", "sft", 0.15), ("online", "sft", 0.6)):
        checkpoint = tmp_path / method
        checkpoint.mkdir()
        base_model = base if base == "planted" else str(tmp_path / base)
        (checkpoint / "latent_reward.json").write_text(
            json.dumps({"method": method, "base_model": base_model, "steps": 2, "data": "../shared/data/planted.jsonl"})
        )
        planted_store(
            tmp_path / f"run-{method}" / "store",
            n_groups=50,
            model={"name": str(checkpoint)},
            state_signal=signal,
            splits=["train" if i % 5 else "eval" for i in range(50)],
        )
        sweep_stores(
            SweepJob(
                store=tmp_path / f"run-{method}" / "store",
                out=tmp_path / f"run-{method}" / "report",
                readout=FAST.model_copy(update={"sgd_grid": False, "split_seeds": 1}),
            ),
            progress=False,
        )
        runs.append(tmp_path / f"run-{method}")
    conversation = ConversationResult(
        model="online",
        prompt_probe={},
        prompts=24,
        reply_kinds=["refusal", "redirect"],
        expected_v={},
        behaviour=[PairedMeasure(name="redirect minus refusal", value=Interval.of(0.06, 0.02, 0.11), prompts=24)],
    )
    (runs[-1] / "conversation").mkdir()
    (runs[-1] / "conversation" / "results.json").write_text(
        json.dumps({"result": conversation.model_dump(mode="json"), "xstest": None})
    )
    compared = run_compare(CompareJob(runs=tuple(runs), out=tmp_path / "cmp"))
    result, html = compared.result, compared.report
    labels = [row.label for row in result.rows]
    assert (
        result.rows[-1].conversation == {"redirect minus refusal": Interval.of(0.06, 0.02, 0.11)}
        and not result.rows[0].conversation
    )
    assert [row.training.get("method") for row in result.rows] == [None, "sft", "dpo", "online"]
    assert "Every model here is planted or a checkpoint post-trained from it (data: planted.jsonl)" in result.caveat
    # each checkpoint against the model it was trained from: online and dpo both against sft
    assert [(d.first, d.second) for d in result.stages] == [
        (labels[1], labels[0]),
        (labels[2], labels[1]),
        (labels[3], labels[1]),
    ]
    assert result.stages[0].difference["pearson"].difference.high < 0  # the weak sft states read worse than the start
    online = result.online_minus_offline
    assert (online.first, online.second) == (labels[3], labels[2]) and online.difference["pearson"].difference.above(0)
    text = html.read_text()
    assert (
        "What changed" in text and "Online minus offline (DPO) training" in text and "sft from planted, 2 steps" in text
    )
    assert "Does the model steer the user?" in text and "0.060 [0.020, 0.110]" in text


def test_the_within_prompt_probe_is_saved_and_the_console_headline_is_its_within_prompt_accuracy(run_folder):
    from rich.console import Console

    from latent_reward.cli.show import show_headline
    from latent_reward.probes import Probe

    folder, outcome = run_folder
    assert outcome.files["within_probe"] == folder / "report" / "within_probe"
    within, pooled = Probe.load(outcome.files["within_probe"]), Probe.load(outcome.files["best_probe"])
    assert within.info.target == "rating-within-prompt"
    assert (within.info.position, within.info.layer) == ("eot", 2)
    assert set(within.info.train_groups) <= set(pooled.info.train_groups)  # the split's training prompts only
    assert set(within.info.validation_groups) <= set(pooled.info.validation_groups)
    assert within.info.group_key_version == pooled.info.group_key_version == 2
    console = Console(record=True, width=400)
    show_headline(console, outcome)
    text = console.export_text()
    headline = outcome.result.readout.within_probe.scores.within_acc
    assert f"within-prompt probe's within-prompt accuracy = {headline}" in text and "within-prompt probe: " in text
    assert str(outcome.result.readout.probe.scores.within_acc) not in text  # the pooled probe's is not the headline


def test_compare_takes_the_probes_pair_accuracy_and_the_implicit_reward_from_the_same_score_run(run_folder):
    from latent_reward.experiments.compare import _row

    folder, _ = run_folder
    result = RunResult.load(folder)
    plain = PairAccuracy(subset="all", pairs=4, prompts=4, predictors={"probe": Interval.of(0.9)})
    with_reference = PairAccuracy(
        subset="all",
        pairs=6,
        prompts=6,
        predictors={
            "within-prompt probe": Interval.of(0.6),
            "probe": Interval.of(0.5),
            "DPO implicit reward (sum)": Interval.of(0.55),
        },
    )
    result.scores = {
        "a": ScoreResult(data="x", examples=8, excluded_prompts=0, probe={}, pair_accuracy=[plain]),
        "b": ScoreResult(data="y", examples=12, excluded_prompts=0, probe={}, pair_accuracy=[with_reference]),
    }
    row = _row(folder, result)
    assert row.pair_accuracy == Interval.of(0.6) and row.implicit_reward_accuracy == Interval.of(0.55)


def test_a_score_saved_inside_the_run_appears_in_its_report(run_folder):
    folder, _ = run_folder
    score = ScoreResult(
        data="pairs.jsonl",
        examples=4,
        excluded_prompts=1,
        probe={},
        pair_accuracy=[
            PairAccuracy(subset="all", pairs=2, prompts=2, predictors={"probe": Interval.of(0.75, 0.5, 1.0)})
        ],
        best_of_n=BestOfN(prompts=2, samples_per_prompt=3, picks={"probe pick": Interval.of(0.4, 0.3, 0.5)}),
    )
    (folder / "score-pairs").mkdir()
    _add_to_run(folder / "score-pairs", score)
    text = (folder / "report" / "report.html").read_text()
    assert "The probe as a reward model" in text and "0.750 [0.500, 1.000]" in text
    assert RunResult.load(folder).scores["score-pairs"].pair_accuracy[0].pairs == 2


def _intervals(node, path="results"):
    """Every interval ({value, low, high}) in a results.json tree, with where it is."""
    if isinstance(node, dict):
        if {"value", "low", "high"} <= set(node):
            yield path, node
        for key, child in node.items():
            yield from _intervals(child, f"{path}.{key}")
    elif isinstance(node, list):
        for index, child in enumerate(node):
            yield from _intervals(child, f"{path}[{index}]")


def test_every_interval_in_results_json_contains_its_estimate_and_undefined_ones_read_n_a(run_folder):
    """A within-prompt r at a prompt position (whose states are the same for every response to a prompt) is undefined:
    not 0.000 with an interval that excludes it, but not applicable."""
    folder, _ = run_folder
    results = json.loads((folder / "report" / "results.json").read_text())
    found = list(_intervals(results))
    assert len(found) > 100
    outside = [
        (path, i) for path, i in found if i["low"] is not None and not i["low"] - 1e-9 <= i["value"] <= i["high"] + 1e-9
    ]
    assert not outside, outside[:5]
    without_point = [path for path, i in found if i["value"] is None and (i["low"], i["high"]) != (None, None)]
    assert not without_point
    rows = {row["position"]: row for row in results["readout"]["decomposition"]}
    assert rows["assistant_start"]["within_prompt_r"] == {"value": None, "low": None, "high": None}
    assert rows["eot"]["within_prompt_r"]["value"] > 0.5
    assert "assistant_start: r " in results["answers"][3]["answer"] and "n/a within" in results["answers"][3]["answer"]


def test_each_answer_leads_with_its_first_sentence_and_folds_the_statistics_below(run_folder):
    folder, outcome = run_folder
    result = RunResult.load(folder / "report")
    text = outcome.report.read_text()
    first = result.answers[0]
    assert first.lead and first.details and first.answer.startswith(first.lead)
    assert first.answer.strip()[len(first.lead) :].strip() == first.details
    assert "[" in first.lead  # the key number comes with its interval
    assert text.count("<details><summary>The statistics</summary>") == sum(bool(a.details) for a in result.answers)
    lead_at, details_at = text.index(first.lead), text.index(first.details[:40])
    assert lead_at < text.index("<details>", lead_at) < details_at
