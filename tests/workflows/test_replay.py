"""`latent-reward rerun FOLDER`: a result folder's command again from its run.json, with the same numbers."""

import json

import pytest

from helpers import cli, planted_store, write_jsonl


def without(value, keys=("timings", "seconds")):
    """`value` with every entry named in `keys` dropped, at any depth (what differs between two identical runs)."""
    if isinstance(value, dict):
        return {k: without(v, keys) for k, v in value.items() if k not in keys}
    if isinstance(value, list):
        return [without(v, keys) for v in value]
    return value


@pytest.fixture
def prompt_only_folder(tmp_path):
    store = planted_store(tmp_path / "store", n_groups=20, prompt_signal=1.0)
    result = cli(
        "prompt-only",
        "--store",
        store.folder,
        "--out",
        tmp_path / "p",
        "--n-boot",
        "100",
        "--folds",
        "2",
        "--seed",
        "4",
    )
    assert result.returncode == 0, result.stderr
    return tmp_path / "p"


def test_rerun_replays_a_folder_into_folder_rerun_with_the_same_results(prompt_only_folder):
    result = cli("rerun", prompt_only_folder)
    again = prompt_only_folder.with_name("p-rerun")
    said = " ".join(result.stdout.split())  # as one line, however the console wrapped it
    assert result.returncode == 0
    assert f"replayed prompt-only from {prompt_only_folder / 'run.json'} into {again}" in said
    first, second = (json.loads((folder / "prompt_only.json").read_text()) for folder in (prompt_only_folder, again))
    assert without(second) == without(first) and first["cross_fitted"]["pearson"]["value"] > 0.3  # a signal, replayed
    recorded, replayed = (json.loads((f / "run.json").read_text())["config"] for f in (prompt_only_folder, again))
    assert {**recorded, "out": None} == {**replayed, "out": None} and replayed["config"]["seed"] == 4


def test_rerun_warns_when_the_versions_differ(prompt_only_folder, tmp_path):
    record = json.loads((prompt_only_folder / "run.json").read_text())
    record["versions"]["numpy"] = "1.0.0"
    (prompt_only_folder / "run.json").write_text(json.dumps(record))
    result = cli("rerun", prompt_only_folder, "--out", tmp_path / "again")
    assert result.returncode == 0
    assert result.stderr.startswith(f"warning: {prompt_only_folder} was made with numpy 1.0.0, installed now")


def test_rerun_of_a_folder_it_cannot_replay_is_one_line(prompt_only_folder, tmp_path):
    result = cli("rerun", tmp_path / "nothing")
    assert result.returncode == 2 and "run record not found" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    record = json.loads((prompt_only_folder / "run.json").read_text())
    for change, message in (
        ({"command": "generate"}, "which rerun cannot replay"),
        ({"config": {**record["config"], "unknown": 1}}, "holds no prompt-only configuration"),
    ):
        (prompt_only_folder / "run.json").write_text(json.dumps({**record, **change}))
        result = cli("rerun", prompt_only_folder, "--out", tmp_path / "again")
        assert result.returncode == 2 and message in result.stderr and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_rerun_of_a_run_gives_the_same_results_json(tiny_model_dir, tmp_path):
    records = [
        {
            "question": f"question {i // 3} the quick fox",
            "answer": "paris is the capital " * (1 + i % 5),
            "score": float((i * 7) % 10),
        }
        for i in range(36)
    ]
    data = write_jsonl(tmp_path / "arena.jsonl", records)
    first = cli(
        "run",
        "--model",
        tiny_model_dir,
        "--data",
        data,
        "--out",
        tmp_path / "r",
        "--n-boot",
        "100",
        "--permutations",
        "0",
        "--folds",
        "2",
        "--no-sgd-grid",
        "--no-random-init-control",
        "--no-trajectory",
        "--positions",
        "eot,assistant_start",
        "--sample-prompts",
        "10",
        "--seed",
        "3",
    )
    assert first.returncode == 0, first.stderr
    again = cli("rerun", tmp_path / "r", "--out", tmp_path / "r2")
    assert again.returncode == 0, again.stderr
    results = [json.loads((tmp_path / folder / "report" / "results.json").read_text()) for folder in ("r", "r2")]
    assert without(results[1], ("timings", "config", "store")) == without(results[0], ("timings", "config", "store"))
    assert results[1]["data"]["groups"] == 10 and results[1]["config"]["data"]["seed"] == 3  # drawn alike
