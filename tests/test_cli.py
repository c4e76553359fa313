import json

import pytest

from helpers import build_model, build_tokenizer, cli, run_cli, write_jsonl


def assert_clean_error(result, text):
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and text in lines[0], result.stderr
    assert "Traceback" not in result.stderr


@pytest.fixture
def arena_file(tmp_path):
    return write_jsonl(
        tmp_path / "a.jsonl",
        [{"question": f"q{i} the fox", "answer": "paris " * (i + 1), "score": i} for i in range(6)],
    )


def test_bad_inputs_get_one_line_and_exit_2(tiny_model_dir, arena_file, tmp_path):
    base = ["extract", "--model", str(tiny_model_dir)]
    assert_clean_error(cli(*base, "--data", str(tmp_path / "nope.jsonl"), "--out", str(tmp_path / "o")), "not found")
    assert_clean_error(
        cli("data", "inspect", str(write_jsonl(tmp_path / "x.jsonl", [{"a": 1}]))), "cannot tell the data format"
    )
    bad_rating = write_jsonl(tmp_path / "r.jsonl", [{"question": "q", "answer": "a", "score": "high"}])
    assert_clean_error(cli(*base, "--data", str(bad_rating), "--out", str(tmp_path / "o")), "not a number")
    assert_clean_error(
        cli(*base, "--data", str(arena_file), "--layers", "0,99", "--out", str(tmp_path / "o")), "out of range"
    )
    assert_clean_error(
        cli(*base, "--data", str(arena_file), "--positions", "middle", "--out", str(tmp_path / "o")), "unknown position"
    )
    assert_clean_error(
        cli(*base, "--data", str(arena_file), "--format", "weird", "--out", str(tmp_path / "o")), "unknown format"
    )
    assert not (tmp_path / "o").exists()  # nothing was written by the refused runs


def test_model_without_chat_template_needs_the_fallback_flag(arena_file, tmp_path):
    folder = tmp_path / "base-model"
    tokenizer = build_tokenizer(chat_template=None)
    build_model(tokenizer).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    common = ["extract", "--model", str(folder), "--data", str(arena_file), "--positions", "eot"]
    assert_clean_error(cli(*common, "--out", str(tmp_path / "o")), "no chat template")
    result = cli(*common, "--fallback-template", "--out", str(tmp_path / "o"))
    assert result.returncode == 0, result.stderr
    manifest = json.loads((tmp_path / "o" / "manifest.json").read_text())
    assert manifest["model"]["chat_template"] == "fallback"


def test_existing_store_from_other_inputs_is_kept(tiny_model_dir, arena_file, tmp_path):
    common = ["extract", "--model", str(tiny_model_dir), "--data", str(arena_file), "--out", str(tmp_path / "o")]
    assert cli(*common, "--positions", "eot").returncode == 0
    before = (tmp_path / "o" / "manifest.json").read_text()
    assert_clean_error(cli(*common, "--positions", "user_end"), "holds a store made from other inputs")
    assert (tmp_path / "o" / "manifest.json").read_text() == before
    run = json.loads((tmp_path / "o" / "run.json").read_text())
    assert run["command"] == "extract" and "torch" in run["versions"]


def test_data_inspect_and_models_commands(arena_file):
    result = cli("data", "inspect", str(arena_file))
    assert result.returncode == 0, result.stderr
    assert "arena" in result.stdout and "rating histogram" in result.stdout
    result = cli("models")
    assert result.returncode == 0 and "smollm2-135m-instruct" in result.stdout


def test_usage_errors_are_one_line_with_exit_2(tmp_path):
    for args, text in (
        (["extract", "--bogus"], "No such option: --bogus"),
        (["frobnicate"], "No such command"),
        (["run", "--limit", "0"], "--limit"),
        (["run", "--limit", "abc"], "--limit"),
        (["sweep", "--store", str(tmp_path)], "Missing option '--out'"),
    ):
        assert_clean_error(cli(*args), text)


def test_damaged_inputs_are_one_line_with_exit_2(tmp_path, arena_file):
    (tmp_path / "file").write_text("x")
    assert_clean_error(cli("run", "--data", arena_file, "--out", tmp_path / "file"), "is an existing file")
    probe = tmp_path / "probe"
    probe.mkdir()
    (probe / "probe.json").write_text("{oops")
    assert_clean_error(cli("generate", "hi", "--probe", probe), "not a valid probe file")
    store = tmp_path / "store"
    store.mkdir()
    (store / "manifest.json").write_text("[1, 2")
    assert_clean_error(cli("sweep", "--store", store, "--out", tmp_path / "o"), "not a valid store manifest")


def test_an_unreachable_model_or_dataset_fails_fast_and_briefly(tmp_path, arena_file):
    import time

    tick = time.perf_counter()
    result = cli("extract", "--model", "no-such-org/no-such-model", "--data", arena_file, "--out", tmp_path / "o")
    assert_clean_error(result, "cannot load model 'no-such-org/no-such-model'")
    assert time.perf_counter() - tick < 25 and not (tmp_path / "o").exists()
    tick = time.perf_counter()
    assert_clean_error(
        cli("data", "inspect", "no-such-org/no-such-dataset"), "cannot load Hub dataset 'no-such-org/no-such-dataset'"
    )
    assert time.perf_counter() - tick < 25


def test_verify_checks_every_shard(tiny_model_dir, arena_file, tmp_path):
    out = tmp_path / "s"
    assert (
        cli("extract", "--model", tiny_model_dir, "--data", arena_file, "--out", out, "--positions", "eot").returncode
        == 0
    )
    good = cli("verify", out)
    assert good.returncode == 0 and "checksums match" in good.stdout
    shard = next((out / "shards").glob("*.safetensors"))
    data = bytearray(shard.read_bytes())
    data[-3] ^= 1
    shard.write_bytes(bytes(data))
    assert_clean_error(cli("verify", out), "checksum mismatch")


@pytest.mark.slow
def test_run_reuses_matching_stores_and_redoes_changed_ones(tiny_model_dir, tmp_path):
    records = [
        {
            "question": f"question {i // 3} the quick fox",
            "answer": "paris is the capital " * (1 + i % 5),
            "score": float((i * 7) % 10),
        }
        for i in range(36)
    ]
    data = write_jsonl(tmp_path / "arena.jsonl", records)
    common = [
        "run",
        "--model",
        str(tiny_model_dir),
        "--data",
        str(data),
        "--out",
        str(tmp_path / "r"),
        "--n-boot",
        "100",
        "--dtype",
        "float32",
        "--permutations",
        "10",
        "--folds",
        "3",
        "--no-sgd-grid",
    ]
    first = cli(*common)
    assert first.returncode == 0, first.stderr
    results = json.loads((tmp_path / "r" / "report" / "results.json").read_text())
    assert results["answers"][0]["question"].startswith("Does ")
    assert {"prompt_only", "trajectory", "readout"} <= set(results) and results["trajectory"] is not None
    assert "random-init model" in {c["name"] for c in results["readout"]["comparisons"]}
    run_json = json.loads((tmp_path / "r" / "run.json").read_text())
    assert run_json["config"]["readout"]["folds"] == 3 and run_json["config"]["data"]["source"] == str(data)
    shards = sorted((tmp_path / "r" / "store" / "shards").glob("*.safetensors"))
    stamps = [p.stat().st_mtime_ns for p in shards]
    again = cli(*common)
    assert again.returncode == 0, again.stderr
    assert [p.stat().st_mtime_ns for p in shards] == stamps  # reused, not recomputed
    changed = cli(*common, "--max-tokens", "64")
    assert changed.returncode == 2 and "holds a store made from other inputs" in changed.stderr


def test_the_installed_script_runs_and_fails_with_one_line(arena_file):
    """The one test of the console script as installed (a new process); the others call the same main() in this
    process."""
    result = run_cli("data", "inspect", str(arena_file))
    assert result.returncode == 0 and "arena" in result.stdout, result.stderr
    assert_clean_error(run_cli("frobnicate"), "No such command")
