"""`latent-reward score` end to end on the tiny model: pairs, best-of-n, and the prompts a probe may not be scored
on."""

import json

import numpy as np
import pytest

from helpers import cli, synthetic_examples, write_jsonl
from latent_reward.activations import ExtractConfig, extract
from latent_reward.analysis.sweep import SweepConfig, sweep
from latent_reward.data.schema import group_key


@pytest.fixture(scope="module")
def probe_folder(tiny, tiny_model_dir, tmp_path_factory):
    store = extract(
        tiny,
        synthetic_examples(n_prompts=12, per_prompt=3),
        tmp_path_factory.mktemp("store"),
        ExtractConfig(),
        progress=False,
    ).store
    probe = sweep(store, SweepConfig(n_boot=100), progress=False).best_probe
    probe.info.model = str(tiny_model_dir)
    return probe.save(tmp_path_factory.mktemp("probe") / "probe")


def test_score_command_on_pairs_and_best_of_n(probe_folder, tmp_path):
    pairs = write_jsonl(
        tmp_path / "pairs.jsonl",
        [
            {
                "prompt": f"question {i} the fox",
                "chosen": "paris " * (i + 2),
                "rejected": "dog",
                "subset": "s1" if i % 2 else "s2",
            }
            for i in range(8)
        ],
    )
    done = cli("score", "--probe", probe_folder, "--data", pairs, "--out", tmp_path / "o1", "--n-boot", "100")
    assert done.returncode == 0, done.stderr
    summary = json.loads((tmp_path / "o1" / "score.json").read_text())
    entries = {entry["subset"]: entry for entry in summary["pair_accuracy"]}
    assert entries["all"]["pairs"] == 8 and set(entries) == {"all", "s1", "s2"}
    assert entries["all"]["predictors"]["response length"]["value"] == 1.0  # chosen is always longer here
    assert entries["all"]["versus_probe"]["response length"]["difference"]["value"] <= 0
    bon = write_jsonl(
        tmp_path / "bon.jsonl",
        [
            {
                "instruction": f"q{i // 4} brown fox",
                "output": "paris " * (1 + i % 4),
                "generator": "m",
                "sample_index": i % 4,
                "preference": 1 + (i % 4) / 4,
            }
            for i in range(24)
        ],
    )
    done = cli("score", "--probe", probe_folder, "--data", bon, "--out", tmp_path / "o2", "--n-boot", "100")
    assert done.returncode == 0, done.stderr
    picks = json.loads((tmp_path / "o2" / "score.json").read_text())["best_of_n"]["picks"]
    assert picks["best possible"]["value"] == pytest.approx(0.75)
    assert picks["response length pick"]["value"] == pytest.approx(0.75)
    assert picks["random pick"]["value"] == pytest.approx(0.375)


def test_prompts_the_probe_was_trained_or_validated_on_never_count(probe_folder, tmp_path):
    probe = json.loads((probe_folder / "probe.json").read_text())["info"]
    seen = set(probe["train_groups"]) | set(probe["validation_groups"])
    examples = synthetic_examples(
        n_prompts=12, per_prompt=3
    )  # the probe's own data: train, validation and test prompts
    records = [{"question": e.prompt_messages[0]["content"], "answer": e.response, "score": e.rating} for e in examples]
    data = write_jsonl(tmp_path / "own.jsonl", records)
    done = cli("score", "--probe", probe_folder, "--data", data, "--out", tmp_path / "o", "--n-boot", "100")
    assert done.returncode == 0, done.stderr
    summary = json.loads((tmp_path / "o" / "score.json").read_text())
    unseen = [e for e in examples if group_key(e.prompt_messages) not in seen]
    assert summary["excluded_prompts"] == len({e.group for e in examples} & seen) > 0
    assert summary["examples"] == len(unseen) == summary["transfer"]["examples"]
    assert summary["best_of_n"]["prompts"] == len({e.group for e in unseen})
    counted = np.loadtxt(tmp_path / "o" / "scores.csv", delimiter=",", skiprows=1, usecols=3, dtype=str)
    assert (counted == "True").sum() == len(unseen)


def test_length_reads_the_full_texts_and_log_probabilities_score_only_untruncated_pairs(probe_folder, tmp_path):
    """With a 40-token budget both sides of the first four pairs are cut, so their truncated token counts tie; the full
    texts' lengths still order them (chosen is longer). A truncated text's log-probability is not log pi(y|x): the mean
    log-prob scores only the two untruncated pairs, and says so."""
    import pandas as pd

    from latent_reward.probes import Probe

    probe = Probe.load(probe_folder)
    probe.info.max_tokens = 40
    short = probe.save(tmp_path / "short" / "probe")
    records = [
        {
            "prompt": f"question {i} the fox",
            "chosen": "the quick brown fox jumps " * 12,
            "rejected": "the lazy dog " * 10,
        }
        for i in range(4)
    ]  # about 250 and 100 tokens
    records += [{"prompt": f"question {i} the fox", "chosen": "paris " * 3, "rejected": "dog"} for i in range(4, 6)]
    data = write_jsonl(tmp_path / "pairs.jsonl", records)
    done = cli("score", "--probe", short, "--data", data, "--out", tmp_path / "o", "--n-boot", "100")
    assert done.returncode == 0, done.stderr
    overall = json.loads((tmp_path / "o" / "score.json").read_text())["pair_accuracy"][0]
    assert overall["pairs"] == 6 and overall["truncated_pairs"] == 4
    assert overall["predictors"]["response length"]["value"] == 1.0  # truncated token counts would tie 4 of 6: 0.667
    assert overall["predictor_pairs"] == {"mean log-prob": 2}
    frame = pd.read_csv(tmp_path / "o" / "scores.csv")
    assert frame["truncated"].sum() == 8 and frame.loc[frame["truncated"], "mean log-prob"].isna().all()
    assert frame.loc[~frame["truncated"], "mean log-prob"].notna().all()
    # or a budget that fits every pair: then the log-probabilities score them all
    done = cli(
        "score", "--probe", short, "--data", data, "--out", tmp_path / "o2", "--n-boot", "100", "--max-tokens", "400"
    )
    assert done.returncode == 0, done.stderr
    overall = json.loads((tmp_path / "o2" / "score.json").read_text())["pair_accuracy"][0]
    assert overall["truncated_pairs"] == 0 and overall["predictor_pairs"] == {}


def test_a_probe_saved_with_older_prompt_ids_is_refused_since_its_training_prompts_could_not_be_excluded(
    probe_folder, tmp_path
):
    from latent_reward.probes import Probe

    probe = Probe.load(probe_folder)
    probe.info.group_key_version = None
    old = probe.save(tmp_path / "old" / "probe")
    data = write_jsonl(
        tmp_path / "pairs.jsonl", [{"prompt": f"question {i}", "chosen": "paris", "rejected": "dog"} for i in range(3)]
    )
    done = cli("score", "--probe", old, "--data", data, "--out", tmp_path / "o")
    assert done.returncode == 2 and "older version" in done.stderr and "Traceback" not in done.stderr


def test_a_run_folders_within_prompt_probe_is_scored_first_and_differences_are_taken_against_it(
    tiny, tiny_model_dir, tmp_path
):
    from latent_reward.analysis.sweep import fit_within_probe

    store = extract(
        tiny, synthetic_examples(n_prompts=12, per_prompt=3), tmp_path / "store", ExtractConfig(), progress=False
    ).store
    fit = sweep(store, SweepConfig(n_boot=100), progress=False)
    within = fit_within_probe(store, fit)
    assert within.info.target == "rating-within-prompt" and within.info.position in (
        "response_last",
        "eot",
        "response_mean",
    )
    for probe in (fit.best_probe, within):
        probe.info.model = str(tiny_model_dir)
    fit.best_probe.save(tmp_path / "run" / "best_probe")
    within.save(tmp_path / "run" / "within_probe")
    pairs = write_jsonl(
        tmp_path / "pairs.jsonl",
        [{"prompt": f"question {i} the fox", "chosen": "paris " * (i + 2), "rejected": "dog"} for i in range(8)],
    )
    done = cli(
        "score", "--probe", tmp_path / "run" / "best_probe", "--data", pairs, "--out", tmp_path / "o", "--n-boot", "100"
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads((tmp_path / "o" / "score.json").read_text())
    overall = summary["pair_accuracy"][0]
    assert summary["probes"] == ["within-prompt probe", "probe"]
    assert list(overall["predictors"])[:2] == summary["probes"]
    assert overall["reference"] == "within-prompt probe" and "probe" in overall["versus_probe"]
    # a within-prompt probe that reads another token budget is refused, with one line
    within.info.max_tokens = 64
    within.save(tmp_path / "other" / "within_probe")
    done = cli(
        "score",
        "--probe",
        tmp_path / "run" / "best_probe",
        "--data",
        pairs,
        "--out",
        tmp_path / "o2",
        "--within-probe",
        tmp_path / "other" / "within_probe",
    )
    assert done.returncode == 2 and "another model or token budget" in done.stderr


def test_a_probe_that_reads_the_prompt_is_not_scored_on_pairs(tiny, tiny_model_dir, tmp_path):
    """A pooled probe whose cell is before the response gives both sides of a pair the same value: it is named as
    such and left out of pair accuracy (it would score 0.500 [0.500, 0.500] by ties alone), and the within-prompt probe
    is the reference; with no probe that reads the response there is no reference at all."""
    from latent_reward.analysis.sweep import fit_within_probe

    store = extract(
        tiny, synthetic_examples(n_prompts=12, per_prompt=3), tmp_path / "store", ExtractConfig(), progress=False
    ).store
    fit = sweep(store, SweepConfig(n_boot=100), progress=False)
    within = fit_within_probe(store, fit)
    pooled = fit.best_probe
    pooled.info.position = "assistant_start"  # the same width at every position: this probe now reads the prompt
    for probe in (pooled, within):
        probe.info.model = str(tiny_model_dir)
    pooled.save(tmp_path / "run" / "best_probe")
    within.save(tmp_path / "run" / "within_probe")
    pairs = write_jsonl(
        tmp_path / "pairs.jsonl",
        [{"prompt": f"question {i} the fox", "chosen": "paris " * (i + 2), "rejected": "dog"} for i in range(8)],
    )
    done = cli("score", "--probe", tmp_path / "run" / "best_probe", "--data", pairs, "--out", tmp_path / "o")
    assert done.returncode == 0, done.stderr
    assert "not scored on responses to the same prompt: probe (reads assistant_start" in done.stdout
    summary = json.loads((tmp_path / "o" / "score.json").read_text())
    overall = summary["pair_accuracy"][0]
    assert summary["prompt_side"] == {"probe": "assistant_start"}
    assert "probe" not in overall["predictors"] and "within-prompt probe" in overall["predictors"]
    assert overall["reference"] == "within-prompt probe"

    pooled.save(tmp_path / "alone" / "best_probe")  # no within-prompt probe beside it
    done = cli("score", "--probe", tmp_path / "alone" / "best_probe", "--data", pairs, "--out", tmp_path / "o2")
    assert done.returncode == 0, done.stderr
    overall = json.loads((tmp_path / "o2" / "score.json").read_text())["pair_accuracy"][0]
    assert overall["reference"] is None and overall["versus_probe"] == {}
    assert list(overall["predictors"])[0] == "response length"

    rated = write_jsonl(  # rated responses, no pairs: transfer and best-of-n
        tmp_path / "rated.jsonl",
        [{"question": f"q{i // 3} the fox", "answer": "paris " * (1 + i), "score": i % 3} for i in range(18)],
    )
    done = cli("score", "--probe", tmp_path / "alone" / "best_probe", "--data", rated, "--out", tmp_path / "o3")
    assert done.returncode == 0, done.stderr
    summary = json.loads((tmp_path / "o3" / "score.json").read_text())
    transferred = summary["transfer"]["predictors"]["probe"]
    assert transferred["within_acc"]["value"] is None and transferred["spearman"]["value"] is not None
    assert "probe pick" not in summary["best_of_n"]["picks"]
