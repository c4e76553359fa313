"""--device and --device-map on every command that loads a model, and out of memory as one line: in process, with the
loader replaced by one that records where the model would go and stops the command there."""

import numpy as np
import pytest
import torch

import latent_reward.models.loading as loading
from helpers import planted_store, write_jsonl
from latent_reward.cli import app
from latent_reward.cli.errors import run_app
from latent_reward.data.schema import GROUP_KEY_VERSION
from latent_reward.models.devices import resolve_device
from latent_reward.probes import Probe, ProbeInfo

MODEL = "tiny-model"


class Loaded(Exception):
    """Raised by the recording loader: the command got as far as loading its model."""


@pytest.fixture
def placements(monkeypatch):
    """Where each model a command loads would go, and in which precision: (resolved device, device map, dtype)."""
    for name in ("WORLD_SIZE", "LOCAL_RANK", "RANK"):
        monkeypatch.delenv(name, raising=False)
    calls = []

    def load_model(name, device="cpu", dtype="float32", device_map=None, **kwargs):
        calls.append((resolve_device(device), device_map, dtype))
        raise Loaded

    monkeypatch.setattr(loading, "load_model", load_model)
    return calls


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A rated data file, a prompt probe on MODEL, and the store it was trained on."""
    folder = tmp_path_factory.mktemp("inputs")
    data = write_jsonl(
        folder / "arena.jsonl",
        [{"question": f"q{i} the fox", "answer": "paris " * (i + 1), "score": i} for i in range(6)],
    )
    store = planted_store(folder / "store", n_groups=10, model={"name": MODEL})
    rng = np.random.default_rng(0)
    probe = Probe.create("ridge").fit(rng.normal(size=(40, 16)), rng.normal(size=40), np.arange(40) % 8)
    probe.info = ProbeInfo(
        model=MODEL,
        position="assistant_start",
        layer=1,
        model_dtype="float32",
        store=str(store.folder),
        group_key_version=GROUP_KEY_VERSION,
        fit=probe.info.fit,
    )
    return {"data": data, "probe": probe.save(folder / "probe"), "store": store.folder}


def commands(inputs, out) -> dict[str, list[str]]:
    """Every command that loads a model, with the least it needs to get there."""
    data, probe = str(inputs["data"]), str(inputs["probe"])
    return {
        "run": ["run", "--data", data, "--model", MODEL, "--out", out],
        "extract": ["extract", "--data", data, "--model", MODEL, "--out", out],
        "score": ["score", "--data", data, "--probe", probe, "--out", out],
        "steer": ["steer", "--probe", probe, "--store", str(inputs["store"]), "--out", out],
        "conversation": ["conversation", "--data", data, "--prompt-probe", probe, "--out", out],
        "generate": ["generate", "hello", "--probe", probe],
        "respond": ["respond", "--data", data, "--model", MODEL, "--out", out],
        "train": ["train", "sft", "--data", data, "--model", MODEL, "--out", out],
    }


def load_in(args: list[str]) -> None:
    with pytest.raises(Loaded):
        app(args=args, standalone_mode=False)


COMMANDS = ["run", "extract", "score", "steer", "conversation", "generate", "respond", "train"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_puts_its_model_where_it_is_told(command, inputs, placements, tmp_path, monkeypatch):
    args = commands(inputs, str(tmp_path / "out"))[command]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    load_in(args)  # auto without a GPU
    load_in([*args, "--device", "cpu"])
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    load_in(args)  # auto with one
    load_in([*args, "--device", "cpu"])
    load_in([*args, "--device", "cuda:1"])
    load_in([*args, "--device-map", "auto"])
    assert [call[:2] for call in placements] == [
        ("cpu", None),
        ("cpu", None),
        ("cuda", None),
        ("cpu", None),
        ("cuda:1", None),
        ("cuda", "auto"),
    ]


def test_train_loads_its_model_through_the_loader_in_the_dtype_asked(inputs, placements, tmp_path):
    args = commands(inputs, str(tmp_path / "out"))["train"]
    load_in(args)
    load_in([*args, "--dtype", "bfloat16", "--device", "cpu"])
    assert placements[0][2] == "float32" and placements[1] == ("cpu", None, "bfloat16")


def test_every_model_loading_command_has_the_same_device_options():
    import typer.main

    group = typer.main.get_command(app)
    reference = {param.name: param.help for param in group.commands["extract"].params}
    for name in COMMANDS:
        options = {param.name: param for param in group.commands[name].params}
        assert options["device"].default == "auto" and options["device_map"].default is None, name
        assert (options["device"].help, options["device_map"].help) == (reference["device"], reference["device_map"]), (
            name
        )


def test_an_unknown_device_is_one_line_and_exit_2(inputs, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        run_app(app, commands(inputs, str(tmp_path / "out"))["extract"] + ["--device", "gpu"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and len(lines) == 1 and lines[0].startswith("error: unknown device 'gpu'")


@pytest.mark.parametrize(
    "error", [torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB"), MemoryError()]
)
def test_out_of_memory_is_one_line_naming_the_knobs_and_exit_2(error, inputs, tmp_path, capsys, monkeypatch):
    import latent_reward.workflows.extract as workflow

    def run_extract(job, progress=True):
        raise error

    monkeypatch.setattr(workflow, "run_extract", run_extract)
    with pytest.raises(SystemExit) as exit_:
        run_app(app, commands(inputs, str(tmp_path / "out"))["extract"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and len(lines) == 1 and lines[0].startswith("error: out of memory")
    assert all(knob in lines[0] for knob in ("--batch-tokens", "--layers", "--device-map", "--dtype"))


@pytest.mark.parametrize("command", ["score", "steer", "conversation", "generate"])
def test_model_overrides_the_model_a_probe_was_trained_on(command, inputs, tmp_path, monkeypatch):
    names = []

    def load_model(name, **kwargs):
        names.append(name)
        raise Loaded

    monkeypatch.setattr(loading, "load_model", load_model)
    args = commands(inputs, str(tmp_path / "out"))[command]
    load_in(args)
    load_in([*args, "-m", "another-model"])
    assert names == [MODEL, "another-model"]


def test_a_response_probe_that_reads_the_prompt_is_refused_before_any_model_loads(inputs, placements, tmp_path, capsys):
    """conversation's response probe rates replies: one that reads assistant_start would give every reply to a prompt
    the same rating (every contrast +0.000 [+0.000, +0.000]), so it gets one line and exit 2."""
    args = [*commands(inputs, str(tmp_path / "out"))["conversation"], "--response-probe", str(inputs["probe"])]
    with pytest.raises(SystemExit) as exit_:
        run_app(app, args)
    lines = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and len(lines) == 1 and "reads assistant_start, before the response" in lines[0]
    assert placements == [] and not (tmp_path / "out").exists()


def test_the_analysis_fits_where_analysis_device_says(inputs, tiny_model_dir, tmp_path, monkeypatch):
    """--analysis-device places the analysis's ridge fits (default: the CPU) in `sweep`, `prompt-only` and `run`, apart
    from `run`'s model (--device cpu here); the workflows run for real up to the analysis, which records where it would
    fit."""
    import latent_reward.workflows.prompt_only as prompt_only_workflow
    import latent_reward.workflows.run as workflow
    from latent_reward.probes.compute import current_device

    for name in ("WORLD_SIZE", "LOCAL_RANK", "RANK"):
        monkeypatch.delenv(name, raising=False)
    fitted_on = []

    def analyse(*args, **kwargs):
        fitted_on.append(str(current_device()))
        raise Loaded

    monkeypatch.setattr(workflow, "reward_readout", analyse)
    monkeypatch.setattr(prompt_only_workflow, "prompt_only", analyse)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # two GPUs to name (none computes here)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    sweep = ["sweep", "--store", str(inputs["store"]), "--out", str(tmp_path / "sweep")]
    prompt_only = ["prompt-only", "--store", str(inputs["store"]), "--out", str(tmp_path / "prompt-only")]
    run = ["run", "--data", str(inputs["data"]), "--model", str(tiny_model_dir), "--out", str(tmp_path / "run")]
    run += ["--device", "cpu", "--dtype", "float32", "--no-random-init-control", "--no-trajectory"]
    for args in (sweep, prompt_only, run):
        load_in(args)  # the CPU by default, for run whatever its model's --device
        load_in([*args, "--analysis-device", "cuda:1"])
        load_in([*args, "--analysis-device", "auto"])
        load_in([*args, "--analysis-device", "mps"])  # no float64 on mps: the CPU
    assert fitted_on == ["cpu", "cuda:1", "cuda", "cpu"] * 3


@pytest.mark.parametrize("command", ["sweep", "run"])
def test_an_analysis_device_torch_does_not_see_is_one_line_and_exit_2_before_any_work(
    command, inputs, tmp_path, capsys, monkeypatch, placements
):
    """Refused before anything is written or loaded: `run` would otherwise extract both stores first."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    args = {
        "sweep": ["sweep", "--store", str(inputs["store"]), "--out", str(tmp_path / "out")],
        "run": commands(inputs, str(tmp_path / "out"))["run"],
    }[command]
    with pytest.raises(SystemExit) as exit_:
        run_app(app, [*args, "--analysis-device", "cuda"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and len(lines) == 1 and "torch sees no GPU" in lines[0]
    assert placements == [] and not (tmp_path / "out").exists()
