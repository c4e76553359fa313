"""One vocabulary across the command line: the same option name means the same thing in every command, choices are
listed, every option says what it does, --version, completion, --debug, the old names still work with a warning."""

import sys
import typing

import pytest
import typer.main

from helpers import cli, write_jsonl
from latent_reward import __version__
from latent_reward.cli import app
from latent_reward.cli.choices import Dtype
from latent_reward.cli.renames import translate
from latent_reward.config import DEFAULT_DATA, DataSpec

GROUP = typer.main.get_command(app)
DATA_COMMANDS = ["extract", "run", "score", "respond", "judge", "steer", "conversation", "train"]  # and data inspect
ENDPOINT_COMMANDS = ["respond", "judge", "steer", "train"]
MODEL_COMMANDS = ["extract", "run", "generate", "score", "respond", "steer", "conversation", "train"]


def commands():
    """(path, click command) for every command, the data group's included."""
    for name, command in GROUP.commands.items():
        if hasattr(command, "commands"):  # a group
            yield from ((f"{name} {sub}", subcommand) for sub, subcommand in command.commands.items())
        else:
            yield name, command


def params(name: str) -> dict:
    command = GROUP.commands[name] if " " not in name else GROUP.commands[name.split()[0]].commands[name.split()[1]]
    return {p.name: p for p in command.params}


def test_version_completion_and_debug(monkeypatch):
    assert cli("--version").stdout.strip() == f"latent-reward {__version__}"
    help_text = cli("--help").stdout
    assert all(option in help_text for option in ("--version", "--debug", "--install-completion", "--show-completion"))
    # typer detects the user's shell from the process tree, which here may be make's /bin/sh: say it is bash
    monkeypatch.setattr("shellingham.detect_shell", lambda *args, **kwargs: ("bash", "/bin/bash"))
    script = cli("--show-completion")
    assert script.returncode == 0 and "_LATENT_REWARD_COMPLETE=complete_bash" in script.stdout


def test_the_shell_completes_commands_and_options(monkeypatch):
    monkeypatch.setenv("_LATENT_REWARD_COMPLETE", "complete_bash")
    monkeypatch.setenv("COMP_WORDS", "latent-reward judge --endpoint-m")
    monkeypatch.setenv("COMP_CWORD", "2")
    assert cli().stdout.split() == ["--endpoint-model"]


def test_every_option_and_argument_says_what_it_does():
    missing = [
        f"{path} {param.name}"
        for path, command in commands()
        for param in command.params
        if not (getattr(param, "help", None) or "").strip()
    ]
    assert not missing
    assert (GROUP.commands["rerun"].help or "").strip() and all((c.help or "").strip() for _, c in commands())


def test_choices_are_listed_in_help_and_agree_with_the_library(monkeypatch):
    from latent_reward.experiments.judge import JudgeConfig
    from latent_reward.experiments.reward_model import NORMALIZATIONS
    from latent_reward.experiments.steer import SteerConfig
    from latent_reward.models.loading import DTYPES
    from latent_reward.training.trainers import METHODS, REPORT_TO, PostTrainConfig

    def literal(config, name):
        return list(typing.get_args(config.model_fields[name].annotation))

    assert {d.value for d in Dtype} == set(DTYPES) | {"auto"}
    assert literal(PostTrainConfig, "method") == list(METHODS)
    assert literal(PostTrainConfig, "report_to") == list(REPORT_TO)
    choices = {  # the options' choices: an enum where no config holds the option, else the config's Literal
        "dtype": [d.value for d in Dtype],
        "mode": literal(JudgeConfig, "mode"),
        "normalization": list(NORMALIZATIONS),
        "method": list(METHODS),
        "scope": literal(SteerConfig, "scope"),
        "random_layers": literal(SteerConfig, "random_layers"),
        "report_to": list(REPORT_TO),
    }
    seen = set()
    monkeypatch.setenv("COLUMNS", "200")  # help on one line per option
    for path, command in commands():
        shown = [param.name for param in command.params if param.name in choices]
        help_text = cli(*path.split(), "--help").stdout if shown else ""
        for name in shown:
            assert "<" + "|".join(choices[name]) + ">" in help_text, (path, name)  # listed in --help
            seen.add(name)
    assert seen == set(choices)


def test_an_unknown_choice_is_one_line_naming_the_choices(tmp_path):
    result = cli("train", "ppo", "--out", tmp_path / "o")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1 and "sft" in result.stderr


def test_auto_is_the_default_dtype_of_every_model_loading_path_and_resolves_by_hardware(monkeypatch):
    import inspect

    from latent_reward.config import ModelSpec
    from latent_reward.models import devices
    from latent_reward.models.loading import load_model

    assert inspect.signature(load_model).parameters["dtype"].default == "auto"
    defaults = {name: params(name)["dtype"].default for name in MODEL_COMMANDS if "dtype" in params(name)}
    assert set(defaults) == {"extract", "run", "respond", "train"}  # the others: the dtype their probe was trained in
    assert all(str(defaults[name]) == "auto" for name in ("extract", "run", "respond"))
    # auto: bfloat16 where the device computes it natively, float32 elsewhere; a ModelSpec records the one it resolved
    monkeypatch.setattr(devices, "cpu_computes_bfloat16", lambda: True)
    assert ModelSpec(device="cpu").dtype == "bfloat16" and devices.resolve_dtype("auto", "cuda:1") == "bfloat16"
    monkeypatch.setattr(devices, "cpu_computes_bfloat16", lambda: False)
    assert ModelSpec(device="cpu").dtype == "float32" and devices.resolve_dtype("auto", "mps") == "float32"
    assert ModelSpec(device="cpu", dtype="bfloat16").dtype == "bfloat16"  # a named precision is kept
    assert devices.resolve_dtype("auto", "cuda") == "bfloat16"
    assert str(defaults["train"]) == "float32" and "bfloat16 weights lose updates" in params("train")["dtype"].help


def test_model_is_model_on_every_command_that_loads_one():
    for name in MODEL_COMMANDS:
        assert {"--model", "-m"} <= set(params(name)["model"].opts), name
    assert "model" not in params("judge") and params("judge")["endpoint_model"].opts == ["--endpoint-model"]


def test_every_command_that_reads_rated_data_has_the_same_data_options():
    names = ["data inspect", *DATA_COMMANDS]
    reference = {
        n: p.help
        for n, p in params("extract").items()
        if getattr(p, "rich_help_panel", None) == "Data" and n not in ("data", "seed")
    }
    assert set(reference) == {
        "split",
        "format",
        "limit",
        "prompts",
        "sample_prompts",
        "prompt_field",
        "response_field",
        "rating_field",
        "group_field",
    }
    for name in names:
        options = params(name)
        assert {n: options[n].help for n in reference} == reference, name
        assert "data" in options and "seed" in options, name
    assert params("steer")["data"].default is None and "neither trained nor validated" in params("steer")["data"].help


def test_every_endpoint_command_has_the_same_endpoint_options():
    group = ("base_url", "endpoint_model", "api_key_env", "concurrency", "timeout", "retries")
    reference = params("judge")
    for name in ENDPOINT_COMMANDS:
        options = params(name)
        assert all(options[o].opts == reference[o].opts for o in group), name
        assert all(options[o].help == reference[o].help for o in group if o != "endpoint_model"), name
    assert params("respond")["endpoint_model"].multiple and not params("judge")["endpoint_model"].multiple


def test_max_tokens_truncates_input_and_max_new_tokens_bounds_generation():
    truncating = [name for name, _ in commands() if "max_tokens" in params(name)]
    generating = [name for name, _ in commands() if "max_new_tokens" in params(name)]
    assert sorted(truncating) == ["extract", "run", "score", "train"]
    assert all(params(n)["max_tokens"].help.startswith("Input truncation") for n in truncating)
    assert sorted(generating) == ["conversation", "generate", "judge", "respond", "steer", "train"]
    assert all("max_tokens" not in params(n) or n in truncating for n in generating)


def test_seed_says_what_it_seeds_and_reaches_sample_prompts():
    helps = {name: params(name)["seed"].help for name, _ in commands() if "seed" in params(name)}
    assert all(text.startswith("Seed ") for text in helps.values())
    assert all("--sample-prompts" in helps[name] for name in ["data inspect", *DATA_COMMANDS]), helps
    assert len(set(helps.values())) >= 8  # said per command, not one sentence for all


@pytest.fixture
def arena(tmp_path):
    return write_jsonl(
        tmp_path / "arena.jsonl",
        [{"question": f"question {i}", "answer": f"answer {i} {j}", "score": j} for i in range(12) for j in range(2)],
    )


def test_seed_draws_the_sampled_prompts(arena):
    from latent_reward.data import load_dataset

    for seed in (1, 2):
        shown = cli("data", "inspect", arena, "--sample-prompts", "3", "--seed", seed)
        expected = load_dataset(str(arena), sample_prompts=3, seed=seed).examples[0]
        assert shown.returncode == 0 and f"{expected.id}  rating" in shown.stdout
    first = [load_dataset(str(arena), sample_prompts=3, seed=s).examples[0].id for s in (1, 2)]
    assert first[0] != first[1]  # the seed changes the draw, so the check above means something


class Read(Exception):
    """Raised by the recording DataSpec.load: the command got as far as reading its data."""


@pytest.fixture
def reads(monkeypatch):
    seen: list[DataSpec] = []

    def load(self):
        seen.append(self)
        print("loading", file=sys.stderr)
        raise Read

    monkeypatch.setattr(DataSpec, "load", load)
    return seen


@pytest.mark.parametrize("command", [["extract"], ["run"], ["train", "sft"]])
def test_the_seed_reaches_the_data_and_a_left_out_data_is_announced_before_it_is_read(command, reads, tmp_path, capsys):
    with pytest.raises(Read):
        app(
            args=[*command, "--out", str(tmp_path / "o"), "--sample-prompts", "5", "--seed", "7"], standalone_mode=False
        )
    err = capsys.readouterr().err.splitlines()
    assert reads[0].source == DEFAULT_DATA and (reads[0].sample_prompts, reads[0].seed) == (5, 7)
    assert err[0].startswith(f"reading the default data, {DEFAULT_DATA}") and err[1] == "loading"


def test_named_data_is_read_without_announcement(arena, tmp_path):
    result = cli("extract", "--data", arena, "--out", tmp_path / "o", "--model", tmp_path / "no-such-model")
    assert "reading the default data" not in result.stderr


def test_steer_data_options_choose_rows_of_data_only(tmp_path):
    result = cli("steer", "--probe", tmp_path / "p", "--out", tmp_path / "o", "--prompts", "5")
    assert result.returncode == 2 and "--prompts choose rows of --data, which is not given" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_renamed_options_become_the_new_names_with_a_warning(capsys):
    assert translate(["judge", "-m", "x", "--max-tokens=5", "--model", "y"]) == [
        "judge",
        "--endpoint-model",
        "x",
        "--max-new-tokens=5",
        "--endpoint-model",
        "y",
    ]
    assert translate(["steer", "--judge-url", "http://h/v1", "--positions", "all"]) == [
        "steer",
        "--judge",
        "--base-url",
        "http://h/v1",
        "--scope",
        "all",
    ]
    assert translate(["train", "sft", "--max-length", "64", "--max-completion-length", "8"]) == [
        "train",
        "sft",
        "--max-tokens",
        "64",
        "--max-new-tokens",
        "8",
    ]
    unchanged = ["run", "--model", "m", "--max-tokens", "9"]  # names renamed in other commands only
    assert translate(unchanged) == unchanged
    assert translate(["--debug", "respond", "--api-model", "a"]) == ["--debug", "respond", "--endpoint-model", "a"]
    warnings = capsys.readouterr().err.splitlines()
    assert len(warnings) == 8 and warnings[0] == "warning: judge -m is now --endpoint-model; the old name goes in 0.4"


def test_an_old_judge_reward_spec_becomes_the_endpoint_group(arena, tmp_path, monkeypatch, capsys):
    import latent_reward.workflows.train as workflow

    jobs = []

    def run_train(job):
        jobs.append(job)
        raise Read

    monkeypatch.setattr(workflow, "run_train", run_train)
    with pytest.raises(Read):
        app(
            args=[
                "train",
                "online",
                "--data",
                str(arena),
                "--out",
                str(tmp_path / "o"),
                "--reward",
                "judge:http://127.0.0.1:9/v1#rater",
                "--api-key-env",
                "KEY",
            ],
            standalone_mode=False,
        )
    job = jobs[0]
    assert job.reward == "judge" and (job.endpoint.base_url, job.endpoint.model, job.endpoint.api_key_env) == (
        "http://127.0.0.1:9/v1",
        "rater",
        "KEY",
    )
    assert "warning: train --reward judge:URL#MODEL is now --reward judge" in capsys.readouterr().err
