"""Options made from the configs' fields: each option's default, bounds and help are its field's, so a config's change
reaches the command line; bad values are one line and exit 2; the program starts without loading torch."""

import subprocess
import sys
import typing
from pathlib import Path
from typing import Literal

import pytest
import typer
import typer.main
from pydantic import BaseModel, Field

from helpers import cli
from latent_reward.cli import app
from latent_reward.cli.fields import load, with_config_options

GROUP = typer.main.get_command(app)


def decorated(callback):
    """(config reference, fields) of every with_config_options on a command, outermost first."""
    found = []
    while callback is not None:
        source = getattr(getattr(callback, "group", None), "source", None)
        if source is not None:
            found.append(source)
        callback = getattr(callback, "__wrapped__", None)
    return found


def declared(root: type[BaseModel], path: str):
    """(field, the value the config takes when the field is not given): read off a config made with its defaults
    (model_construct leaves out required fields; a nested config that is one of them gives its own defaults)."""
    value, model = root.model_construct(), root
    for part in path.split("."):
        field = model.model_fields[part]
        nested = getattr(value, part, None)
        if nested is None and typing.get_origin(field.annotation) is None and issubclass(field.annotation, BaseModel):
            nested = field.annotation.model_construct()  # a required nested config: its own defaults
        value = nested
        model = type(value) if isinstance(value, BaseModel) else None
    return field, value


def as_text(value):
    """A default as the command line writes it: comma-separated items for a tuple, the value otherwise."""
    if isinstance(value, tuple):
        return ",".join(format(item, "g") if isinstance(item, float) else str(item) for item in value)
    return value


def config_commands():
    for info in app.registered_commands:
        if decorated(info.callback):
            yield info.name or typer.main.get_command_name(info.callback.__name__), info.callback


def test_every_option_made_from_a_config_has_its_fields_default_bounds_and_help():
    checked = {}
    for name, callback in config_commands():
        params = {p.name: p for p in GROUP.commands[name].params}
        for reference, fields in decorated(callback):
            root = load(reference)
            for entry in fields:
                option, _, path = entry.rpartition("=")
                option = option or path.rpartition(".")[2]
                field, default = declared(root, path)
                param = params[option]
                assert param.help == field.description, (name, option)
                given = param.default.value if hasattr(param.default, "value") else param.default
                if param.multiple:
                    assert list(given or ()) == list(default), (name, option)
                else:
                    assert given == as_text(default) or (given is None and default is None), (name, option)
                bounds = {k: getattr(m, k) for m in field.metadata for k in ("ge", "le") if hasattr(m, k)}
                assert (param.min, param.max) == (bounds.get("ge"), bounds.get("le")), (name, option)
                checked.setdefault(name, []).append(option)
    # every command whose options map onto a config uses it, and the counts say nothing went missing
    assert set(checked) == {
        "extract",
        "sweep",
        "run",
        "prompt-only",
        "generate",
        "score",
        "respond",
        "judge",
        "steer",
        "conversation",
        "train",
    }
    # run: --random-init-depth, --shard-size
    assert sum(map(len, checked.values())) == 86, {k: len(v) for k, v in checked.items()}


def test_the_data_and_endpoint_options_are_dataspecs_and_the_clients_fields():
    from latent_reward.config import DataSpec
    from latent_reward.judging.client import Endpoint

    steer = {p.name: p for p in GROUP.commands["steer"].params}
    for name in ("split", "format", "limit", "prompts", "sample_prompts", "prompt_field", "group_field"):
        assert steer[name].help == DataSpec.model_fields[name].description, name
    assert steer["limit"].min == 1 and steer["limit"].default is None
    assert {p.name: p.default for p in GROUP.commands["run"].params}["limit"] == 600  # RunConfig's data default
    for option, field in (("concurrency", "concurrency"), ("timeout", "timeout"), ("retries", "max_retries")):
        assert steer[option].help == Endpoint.model_fields[field].description, option
        assert steer[option].default == Endpoint.model_fields[field].default, option
    assert steer["timeout"].min == 0.1
    assert {p.name: p.default for p in GROUP.commands["respond"].params}["timeout"] == 120.0  # respond's own


@pytest.mark.parametrize(
    "arguments",
    [
        ["steer", "--probe", "p", "--held-out-prompts", "0"],
        ["steer", "--probe", "p", "--temperature", "-1"],
        ["run", "--n-boot", "5"],
        ["sweep", "--store", "s", "--sketch-dim", "-1"],
        ["train", "sft", "--num-generations", "1"],
        ["judge", "--timeout", "0.01"],
        ["extract", "--limit", "0"],
    ],
)
def test_an_out_of_bound_value_is_one_line_and_exit_2(arguments, tmp_path):
    result = cli(*arguments, "--out", tmp_path / "o")
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and arguments[-2] in lines[0], lines
    assert not (tmp_path / "o").exists()


class Captured(Exception):
    """Raised by a stubbed workflow with the job it was given."""


@pytest.fixture
def capture(monkeypatch):
    def stub(module: str, name: str):
        def record(job, *args, **kwargs):
            raise Captured(job)

        monkeypatch.setattr(f"latent_reward.workflows.{module}.{name}", record)

    return stub


def job_of(*arguments):
    with pytest.raises(Captured) as caught:
        app(args=[str(a) for a in arguments], standalone_mode=False)
    return caught.value.args[0]


def test_parsed_options_and_the_commands_own_arguments_reach_the_nested_configs(capture, tmp_path):
    capture("run", "sweep_stores")
    job = job_of(
        "sweep", "--store", tmp_path, "--out", tmp_path / "o", "--seed", 7, "--n-boot", 200, "--probes", "ridge, mlp"
    )
    assert (job.store, job.readout.sweep.seed, job.readout.sketch.seed) == (tmp_path, 7, 7)
    assert job.readout.sweep.n_boot == 200 and job.readout.sweep.probes == ("ridge", "mlp")
    capture("steer", "run_steer")
    steer = ["steer", "--probe", tmp_path, "--out", tmp_path / "o", "--seed", 3, "--strengths", "-2,0,2.5"]
    job = job_of(*steer, "--direction", "random,probe", "--scorer-probe", "a", "--scorer-probe", "b", "--layers", "4")
    assert job.config.strengths == (-2.0, 0.0, 2.5) and job.config.directions == ("random", "probe")
    assert job.scorer_probes == (Path("a"), Path("b")) and job.config.layers == (4,) and job.config.seed == 3
    capture("respond", "run_respond")  # respond samples by default: RespondJob's declared generation settings
    job = job_of("respond", "--data", tmp_path / "p.jsonl", "--out", tmp_path / "o", "-m", "m", "--seed", 5)
    assert (job.generation.temperature, job.generation.max_new_tokens, job.generation.seed) == (0.7, 256, 5)


def test_bad_comma_separated_items_name_the_option(tmp_path):
    base = ["steer", "--probe", tmp_path, "--out", tmp_path / "o"]
    result = cli(*base, "--direction", "probe,sideways")
    assert result.returncode == 2 and "--direction" in result.stderr and "orthogonal" in result.stderr
    result = cli(*base, "--layers", "1,x")
    assert result.returncode == 2 and "comma-separated numbers" in result.stderr
    result = cli("run", "--positions", "middle", "--out", tmp_path / "o")
    assert result.returncode == 2 and "unknown position" in result.stderr


class Inner(BaseModel):
    x: int = 1
    y: int = Field(2, ge=0, le=9, description="A bounded count.")


class Demo(BaseModel):
    inner: Inner = Inner(x=7)  # a declared nested default the options do not cover entirely
    names: tuple[str, ...] = Field(("a", "b"), description="Names.")
    kind: Literal["up", "down"] = Field("up", description="Which way.")
    flag: bool = Field(False, description="A switch.")
    seed: int = 0


def demo_app(received: list) -> typer.Typer:
    demo = typer.Typer()

    @demo.command()
    @with_config_options(f"{__name__}:Demo", ("count=inner.y", "names", "kind", "flag"), given={"seed": "seed"})
    def main(config: Demo, seed: int = typer.Option(0, help="Seed.")) -> None:
        received.append(config)

    return demo


def test_a_config_becomes_options_and_the_built_config_keeps_its_declared_nested_defaults():
    received: list = []
    demo = demo_app(received)
    shown = typer.main.get_command(demo).params
    assert {p.name: (p.opts, p.secondary_opts) for p in shown}["flag"] == (["--flag"], ["--no-flag"])
    app_ = typer.main.get_command(demo)
    app_.main(["--count", "4", "--names", "p,q", "--kind", "down", "--flag", "--seed", "9"], standalone_mode=False)
    assert received[-1] == Demo(inner=Inner(x=7, y=4), names=("p", "q"), kind="down", flag=True, seed=9)
    app_.main([], standalone_mode=False)
    assert received[-1] == Demo()  # every default the config's own, x=7 from the declared nested default
    with pytest.raises(typer.BadParameter, match="less than or equal to 9"):
        app_.main(["--count", "10"], standalone_mode=False)  # le=9: the option's max


STARTUP = """
import sys
from latent_reward.cli import main
try:
    main({arguments!r})
except SystemExit:
    pass
print("torch loaded:", "torch" in sys.modules, "steer's job loaded:", "latent_reward.workflows.steer" in sys.modules)
"""


@pytest.mark.parametrize(
    "arguments, completing, loaded",
    [
        (["--help"], None, (False, False)),
        (["--version"], None, (False, False)),
        ([], "latent-reward ste", (False, False)),  # the shell completes a command's name
        pytest.param(["steer", "--help"], None, (True, True), marks=pytest.mark.slow),  # imports torch: 10 s
        pytest.param([], "latent-reward steer --held", (True, True), marks=pytest.mark.slow),  # completes its options
    ],
)
def test_only_the_command_that_runs_imports_its_configs(arguments, completing, loaded, monkeypatch):
    if completing:
        monkeypatch.setenv("_LATENT_REWARD_COMPLETE", "complete_bash")
        monkeypatch.setenv("COMP_WORDS", completing)
        monkeypatch.setenv("COMP_CWORD", str(len(completing.split()) - 1))
    code = STARTUP.format(arguments=arguments)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    *shown, last = result.stdout.strip().splitlines()
    assert last == "torch loaded: {} steer's job loaded: {}".format(*loaded), result.stdout
    if completing:
        assert shown == (["steer"] if loaded == (False, False) else ["--held-out-prompts"]), shown


def test_the_commands_standing_in_list_as_the_commands_themselves(monkeypatch):
    from typer.testing import CliRunner

    from latent_reward.cli.app import for_arguments

    monkeypatch.setenv("COLUMNS", "200")
    running = for_arguments(app, ["steer", "--probe", "p"])
    listed = CliRunner().invoke(running, ["--help"]).stdout
    assert listed == CliRunner().invoke(app, ["--help"]).stdout and "conversation" in listed
    built = typer.main.get_command(running).commands
    assert len(built["steer"].params) > 20 and not built["run"].params and not built["data"].commands["inspect"].params
